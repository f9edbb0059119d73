// The naive dense path, for teaching: one head at a time, the whole score matrix, a visible()
// mask, a plain softmax. It allocates (std::vector) and is O(L^2): read it, test against it,
// never ship it. The library's real path (attention.hpp, stream.hpp) computes the same numbers
// tile by tile without a score matrix.
#ifndef FAM_NAIVE_HPP_
#define FAM_NAIVE_HPP_

#include <cmath>
#include <vector>

#include "mask.hpp"
#include "view.hpp"

FAM_NAMESPACE_BEGIN
namespace naive {

/// softmax(scale * q.k over visible keys) . V for every query row of one head.
/// rows: query nodes; cols: key nodes; q_at(i) / k_at(j) / v_at(j) give the head's D floats.
template <class QAt, class KAt, class VAt, class OutAt>
void dense_head(const mask_spec& mask, const std::vector<node>& rows, const std::vector<node>& cols,
                index_t D, double scale, QAt q_at, KAt k_at, VAt v_at, OutAt out_at) {
  std::vector<double> s(cols.size());  // [cols]: one row of the score matrix
  for (std::size_t i = 0; i < rows.size(); ++i) {
    // S_ij = scale * q_i . k_j for visible (i, j), -inf elsewhere       (paper Eq. 1)
    double m = -INFINITY;
    for (std::size_t j = 0; j < cols.size(); ++j) {
      s[j] = -INFINITY;
      if (!visible(mask, rows[i], cols[j])) continue;
      double dot = 0.0;
      for (index_t d = 0; d < D; ++d) dot += double(q_at(i)[d]) * double(k_at(j)[d]);
      s[j] = scale * dot;
      m = std::fmax(m, s[j]);
    }
    // P = softmax(S) row-wise, O = P V
    double l = 0.0;
    for (double& x : s) l += (x = (x == -INFINITY ? 0.0 : std::exp(x - m)));
    float* o = out_at(i);
    for (index_t d = 0; d < D; ++d) {
      double acc = 0.0;
      for (std::size_t j = 0; j < cols.size(); ++j)
        if (s[j] != 0.0) acc += s[j] * double(v_at(j)[d]);
      o[d] = l > 0.0 ? float(acc / l) : 0.0f;
    }
  }
}

/// Full causal, sliding-window or BSWA attention of a whole sequence (paper §2.1, Fig. 1):
/// q, out [L, H, D]; k, v [L, Hkv, D]; head h reads kv head h / (H / Hkv).
inline void attention(const mask_spec& mask, double scale, tensor_view<const float> q,
                      tensor_view<const float> k, tensor_view<const float> v,
                      tensor_view<float> out) {
  std::vector<node> tokens;
  for (index_t n = 0; n < q.rows; ++n) tokens.push_back(node::tok(n));
  for (index_t h = 0; h < q.heads; ++h) {
    const index_t g = h / (q.heads / k.heads);
    dense_head(
        mask, tokens, tokens, q.head_dim, scale, [&](std::size_t i) { return q.at(index_t(i), h); },
        [&](std::size_t j) { return k.at(index_t(j), g); },
        [&](std::size_t j) { return v.at(index_t(j), g); },
        [&](std::size_t i) { return out.at(index_t(i), h); });
  }
}

/// One FAM block t (paper Algorithm 2, with the whole block visible to FAM queries, SPEC §3).
/// The sequence so far is q/k/v [n, H or Hkv, D] with block t = its last (possibly partial)
/// block; qf [F, H, D] and kf, vf [F, Hkv, D] project Φ[t-1]. Writes the block's token outputs
/// into out [n, H, D] (rows of block t only) and Uf into uf [F, H, D].
/// The query rows and key columns are [FAM; tokens], masked by visible() (Fig. 2b, 11).
inline void fam_block(const mask_spec& mask, double scale, index_t t, tensor_view<const float> q,
                      tensor_view<const float> k, tensor_view<const float> v,
                      tensor_view<const float> qf, tensor_view<const float> kf,
                      tensor_view<const float> vf, tensor_view<float> out, tensor_view<float> uf) {
  const index_t F = qf.rows, first = t * mask.block;
  std::vector<node> rows, cols;  // rows: [FAM; block t], cols: [FAM; tokens 0..n)
  for (index_t r = 0; r < F; ++r)
    rows.push_back(node::fam_of(t, r)), cols.push_back(node::fam_of(t, r));
  for (index_t n = first; n < q.rows; ++n) rows.push_back(node::tok(n));
  for (index_t n = 0; n < q.rows; ++n) cols.push_back(node::tok(n));
  auto fam_or = [F](std::size_t i, auto fam_row, auto tok_row) {
    return index_t(i) < F ? fam_row(index_t(i)) : tok_row(index_t(i) - F);
  };
  for (index_t h = 0; h < q.heads; ++h) {
    const index_t g = h / (q.heads / k.heads);
    dense_head(
        mask, rows, cols, q.head_dim, scale,
        [&](std::size_t i) {
          return fam_or(
              i, [&](index_t r) { return qf.at(r, h); },
              [&](index_t o) { return q.at(first + o, h); });
        },
        [&](std::size_t j) {
          return fam_or(
              j, [&](index_t r) { return kf.at(r, g); }, [&](index_t n) { return k.at(n, g); });
        },
        [&](std::size_t j) {
          return fam_or(
              j, [&](index_t r) { return vf.at(r, g); }, [&](index_t n) { return v.at(n, g); });
        },
        [&](std::size_t i) {
          return fam_or(
              i, [&](index_t r) { return uf.at(r, h); },
              [&](index_t o) { return out.at(first + o, h); });
        });
  }
}

}  // namespace naive
FAM_NAMESPACE_END

#endif  // FAM_NAIVE_HPP_
