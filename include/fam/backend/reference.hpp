// The portable reference backend: tiled over keys, online softmax, every dot product and
// accumulation in double. Slow and clear; the contract every faster backend is tested against.
//
// For one query row q and visible keys k_j (scale s), it computes (SPEC §2)
//   m = max_j s q.k_j,   l = sum_j exp(s q.k_j - m),   out = sum_j exp(s q.k_j - m) v_j / l,
//   lse = m + log(l),
// one key tile at a time: a tile raises the running max to m', the running sums are rescaled
// by exp(m - m') and the tile's terms added (the flash-attention recurrence). The order of
// tiles is fixed by the spans, never by the chunking of the call.
#ifndef FAM_BACKEND_REFERENCE_HPP_
#define FAM_BACKEND_REFERENCE_HPP_

#include <cmath>

#include "../detail/key_spans.hpp"
#include "../detail/math.hpp"
#include "../types.hpp"
#include "backend.hpp"

FAM_NAMESPACE_BEGIN

/// Scalar, double-precision, portable.
struct reference_backend : backend_tag {
  static constexpr const char* name() noexcept { return "reference"; }
  /// Largest head dimension: the row accumulator lives on the stack.
  static constexpr index_t max_head_dim = 1024;
  /// Keys per tile of the online softmax.
  static constexpr index_t key_tile = 64;
};

/// The backend that calls use when none is passed. A program may define FAM_DEFAULT_BACKEND
/// (to a backend declared before fam's call headers are included), as the SIMD test build does.
#ifndef FAM_DEFAULT_BACKEND
#define FAM_DEFAULT_BACKEND ::fam::reference_backend
#endif

namespace kernel {

/// Online-softmax state of one query row: running max m, running sum l, accumulator acc[D].
struct reference_row_state {
  double m = detail::neg_inf;
  double l = 0.0;
  double acc[reference_backend::max_head_dim];  // [D]
};

/// q.k in double; element d of the key is k[d * k_dim_stride].
template <class TQ, class TK>
double dot(const TQ* q, const TK* k, index_t k_dim_stride, index_t n) noexcept {
  double s = 0.0;
  for (index_t d = 0; d < n; ++d)
    s += static_cast<double>(to_float(q[d])) * static_cast<double>(to_float(k[d * k_dim_stride]));
  return s;
}

/// Adds the keys [begin, end) of `span` to the row state.
template <class TQ, class TK>
void reference_add_span(reference_row_state& st, const TQ* q, const key_span<TK>& span,
                        index_t begin, index_t end, index_t head_dim, double scale) noexcept {
  double logits[reference_backend::key_tile];  // [tile]
  for (index_t j0 = begin; j0 < end; j0 += reference_backend::key_tile) {
    const index_t tile =
        end - j0 < reference_backend::key_tile ? end - j0 : reference_backend::key_tile;
    // pass 1: logits and the tile max
    double tile_max = detail::neg_inf;
    for (index_t j = 0; j < tile; ++j) {
      logits[j] = scale * dot(q, span.key(j0 + j), span.k_dim_stride, head_dim);
      tile_max = std::isnan(tile_max) ? tile_max : std::fmax(tile_max, logits[j]);  // NaN sticks
      if (std::isnan(logits[j])) tile_max = logits[j];  // a NaN key poisons its row, visibly
    }
    if (tile_max == detail::neg_inf) continue;  // every weight is exp(-inf) = 0
    // rescale what was accumulated under the old max
    const double m_new = std::isnan(tile_max) ? tile_max : std::fmax(st.m, tile_max);
    const double alpha = st.m == detail::neg_inf ? 0.0 : std::exp(st.m - m_new);
    st.l *= alpha;
    for (index_t d = 0; d < head_dim; ++d) st.acc[d] *= alpha;
    // pass 2: add the tile's weighted values
    for (index_t j = 0; j < tile; ++j) {
      const double p = std::exp(logits[j] - m_new);
      const TK* v = span.v + (j0 + j) * span.v_stride;
      st.l += p;
      for (index_t d = 0; d < head_dim; ++d) st.acc[d] += p * static_cast<double>(to_float(v[d]));
    }
    st.m = m_new;
  }
}

/// Attends `rows` to the keys of `spans` (the first and last spans masked by `mask`).
/// @tparam Spans has `index_t size()` and `key_span<TK> operator[](index_t)`.
/// A row that sees no key gets out = 0 and lse = -inf.
template <class TQ, class Spans>
void attend_rows(const query_rows<TQ>& rows, const Spans& spans, row_mask mask, index_t head_dim,
                 double scale, const reference_backend&) noexcept {
  FAM_ASSERT(head_dim <= reference_backend::max_head_dim);
  const index_t n_spans = spans.size();
  for (index_t i = 0; i < rows.count; ++i) {
    const TQ* q = rows.q + i * rows.q_stride;  // [D]
    reference_row_state st;
    for (index_t d = 0; d < head_dim; ++d) st.acc[d] = 0.0;
    for (index_t s = 0; s < n_spans; ++s) {
      const auto span = spans[s];
      const index_t begin = s == 0 ? mask.hidden(i, span.count) : 0;
      const index_t end = s + 1 == n_spans ? mask.visible(i, span.count) : span.count;
      reference_add_span(st, q, span, begin, end, head_dim, scale);
    }
    float* out = rows.out + i * rows.out_stride;  // [D]
    const bool empty = st.l == 0.0;
    for (index_t d = 0; d < head_dim; ++d)
      out[d] = empty ? 0.0f : static_cast<float>(st.acc[d] / st.l);
    if (rows.lse != nullptr)
      rows.lse[i * rows.lse_stride] =
          static_cast<float>(empty ? detail::neg_inf : st.m + std::log(st.l));
  }
}

template <>
inline constexpr bool reads_window_edge<reference_backend> = true;

}  // namespace kernel

FAM_NAMESPACE_END

#endif  // FAM_BACKEND_REFERENCE_HPP_
