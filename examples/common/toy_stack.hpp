// toy_stack.hpp: a float64 stack of small attention layers with random weights, run block by
// block: BSWA when F = 0, FAM (SPEC §3-§4) when F > 0. Who sees whom comes from the library's
// fam::visible(); the arithmetic is double, so that even a tiny influence stays measurable.
// It exists for the receptive-field experiment (examples/03): it follows the library's rules,
// not its kernel, which stores fp32.
//
// One layer, for the rows Z = [Φ[t-1] ; X_t] of block t (FAM rows first):
//   Q, K, V = norm(Z)·Wq, norm(Z)·Wk, norm(Z)·Wv
//   U       = softmax(Q·Kᵀ/√d over the visible keys)·V        keys: memory blocks, then Z
//   A       = Z + U·Wo,   Out = A + W2·tanh(W1·norm(A))
// Out's token rows feed the next layer; its FAM rows become Φ[t] once the block is complete.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "fam/mask.hpp"

namespace toy {

using fam::index_t;
using fam::node;
using vec = std::vector<double>;

/// A dense [rows, cols] matrix: y = W x.
struct matrix {
  int rows = 0, cols = 0;
  vec w;  // [rows, cols] row-major

  vec operator*(const vec& x) const {
    vec y(std::size_t(rows), 0.0);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j)
        y[std::size_t(i)] += w[std::size_t(i * cols + j)] * x[std::size_t(j)];
    return y;
  }
};

/// Uniform in ±1/√cols: keeps every product O(1), so softmax is neither flat nor one-hot.
inline matrix random_matrix(int rows, int cols, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  matrix m{rows, cols, vec(std::size_t(rows * cols))};
  for (double& x : m.w) x = u(rng) / std::sqrt(double(cols));
  return m;
}

inline vec rmsnorm(const vec& x) {
  constexpr double kEps = 1e-6;  // only guards an all-zero row
  double ss = 0.0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / double(x.size()) + kEps);
  vec y = x;
  for (double& v : y) v *= inv;
  return y;
}

inline double dot(const vec& a, const vec& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// Softmax attention of one query over the keys it sees. Keys it does not see never enter the
/// max or the sum, so a row whose visible inputs are unchanged is unchanged bitwise.
inline vec attend(const fam::mask_spec& mask, node query, const vec& q,
                  const std::vector<node>& keys, const std::vector<vec>& k,
                  const std::vector<vec>& v) {
  const double scale = 1.0 / std::sqrt(double(q.size()));
  std::vector<double> logit(keys.size());
  double m = -INFINITY;
  for (std::size_t j = 0; j < keys.size(); ++j)
    if (fam::visible(mask, query, keys[j])) m = std::fmax(m, logit[j] = scale * dot(q, k[j]));
  vec u(q.size(), 0.0);
  double l = 0.0;
  for (std::size_t j = 0; j < keys.size(); ++j) {
    if (!fam::visible(mask, query, keys[j])) continue;
    const double p = std::exp(logit[j] - m);
    l += p;
    for (std::size_t d = 0; d < u.size(); ++d) u[d] += p * v[j][d];
  }
  for (double& x : u) x /= l;
  return u;
}

struct layer {
  matrix wq, wk, wv, wo, w1, w2;
  vec phi0;  // Φ[-1], [F * dim]: this layer's initial FAM
};

/// N layers of width `dim` under `mask` (variant bswa, or fam with F rows).
class stack {
 public:
  stack(const fam::mask_spec& mask, int n_layers, int dim, std::uint64_t seed)
      : mask_(mask), dim_(dim) {
    constexpr int kHiddenPerDim = 2;  // FFN width / model width
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g;
    for (int l = 0; l < n_layers; ++l) {
      layer w{random_matrix(dim, dim, rng),
              random_matrix(dim, dim, rng),
              random_matrix(dim, dim, rng),
              random_matrix(dim, dim, rng),
              random_matrix(kHiddenPerDim * dim, dim, rng),
              random_matrix(dim, kHiddenPerDim * dim, rng),
              vec(std::size_t(fam_len() * dim))};
      for (double& x : w.phi0) x = g(rng);
      layers_.push_back(w);
    }
  }

  index_t fam_len() const { return mask_.kind == fam::variant::fam ? mask_.fam_len : 0; }

  /// Runs tokens x [L][dim] through every layer; returns out[l][n], the output of layer l
  /// (0-based) for token n.
  std::vector<std::vector<vec>> run(const std::vector<vec>& x) const {
    const index_t L = index_t(x.size()), B = mask_.block;
    std::vector<std::vector<vec>> out;
    std::vector<vec> input = x;
    for (const layer& w : layers_) {
      std::vector<vec> output(x.size());
      std::vector<node> past;  // tokens of earlier blocks (keys), with their K and V
      std::vector<vec> past_k, past_v;
      std::vector<vec> phi = split(w.phi0);  // Φ[t-1], F rows
      for (index_t t = 0; t * B < L; ++t) {
        // Z = [Φ[t-1] ; X_t] and its nodes
        std::vector<node> nodes;
        std::vector<vec> z;
        for (index_t r = 0; r < fam_len(); ++r)
          nodes.push_back(node::fam_of(t, r)), z.push_back(phi[std::size_t(r)]);
        for (index_t n = t * B; n < std::min(L, (t + 1) * B); ++n)
          nodes.push_back(node::tok(n)), z.push_back(input[std::size_t(n)]);
        // keys: every earlier token (the mask keeps only the last M blocks), then Z itself
        std::vector<node> keys = past;
        std::vector<vec> k = past_k, v = past_v, q;
        for (std::size_t i = 0; i < z.size(); ++i) {
          const vec h = rmsnorm(z[i]);
          keys.push_back(nodes[i]), q.push_back(w.wq * h), k.push_back(w.wk * h),
              v.push_back(w.wv * h);
        }
        // each row of Z: attention, residual, FFN
        for (std::size_t i = 0; i < z.size(); ++i) {
          vec a = z[i];
          const vec u = w.wo * attend(mask_, nodes[i], q[i], keys, k, v);
          for (std::size_t d = 0; d < a.size(); ++d) a[d] += u[d];
          const vec f = w.w2 * tanh(w.w1 * rmsnorm(a));
          for (std::size_t d = 0; d < a.size(); ++d) a[d] += f[d];
          if (nodes[i].is_fam)
            phi[std::size_t(nodes[i].fam_row)] = a;  // Φ[t] (a final partial block's is unused)
          else
            output[std::size_t(nodes[i].token)] = a;
        }
        // the block's tokens become memory for later blocks (the mask decides who reads them)
        // (FAM keys never are: SPEC §3)
        const std::size_t first = past.size();  // where Z's keys start in `keys`
        for (std::size_t i = 0; i < z.size(); ++i)
          if (!nodes[i].is_fam)
            past.push_back(nodes[i]), past_k.push_back(k[first + i]),
                past_v.push_back(v[first + i]);
      }
      out.push_back(output);
      input = output;
    }
    return out;
  }

 private:
  static vec tanh(vec x) {
    for (double& v : x) v = std::tanh(v);
    return x;
  }
  std::vector<vec> split(const vec& rows) const {
    std::vector<vec> r;
    for (index_t i = 0; i < fam_len(); ++i)
      r.emplace_back(rows.begin() + i * dim_, rows.begin() + (i + 1) * dim_);
    return r;
  }

  fam::mask_spec mask_;
  int dim_;
  std::vector<layer> layers_;
};

}  // namespace toy
