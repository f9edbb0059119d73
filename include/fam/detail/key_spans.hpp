// What a query row reads: an ordered list of contiguous key/value runs ("spans") of one kv
// head. The algorithm (detail/attend_impl.hpp) builds these from the masks; backends consume
// them without knowing about blocks, rings or FAM. Span boundaries are always block (or
// granule) boundaries of absolute token indices, so a row's keys are visited in the same order
// and grouping whether they come from a caller's sequence or from the ring: that is what makes
// prefill, streaming and every chunking bitwise identical.
#ifndef FAM_DETAIL_KEY_SPANS_HPP_
#define FAM_DETAIL_KEY_SPANS_HPP_

#include "../config.hpp"

FAM_NAMESPACE_BEGIN
namespace kernel {

/// `count` key rows (k + j*k_stride) and their value rows (v + j*v_stride), j < count.
struct key_span {
  const float* k = nullptr;
  const float* v = nullptr;
  index_t k_stride = 0;
  index_t v_stride = 0;
  index_t count = 0;

  constexpr key_span tail_from(index_t first) const noexcept {
    return {k + first * k_stride, v + first * v_stride, k_stride, v_stride, count - first};
  }
  constexpr key_span head(index_t n) const noexcept { return {k, v, k_stride, v_stride, n}; }
};

/// `count` query rows that share the same key spans; row i writes out + i*out_stride and,
/// when lse is not null, lse[i*lse_stride].
struct query_rows {
  const float* q = nullptr;
  index_t q_stride = 0;
  float* out = nullptr;
  index_t out_stride = 0;
  float* lse = nullptr;
  index_t lse_stride = 0;
  index_t count = 0;
};

/// The keys of the last span that row i sees: all of them, or the causal prefix
/// [0, first_visible + i] (SPEC §2: a token sees its own block up to itself).
struct tail_mask {
  bool causal = false;
  index_t first_visible = 0;  ///< for row 0 (causal only)

  constexpr index_t visible(index_t row, index_t span_count) const noexcept {
    if (!causal) return span_count;
    const index_t n = first_visible + row + 1;
    return n < span_count ? n : span_count;
  }
};

}  // namespace kernel
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_KEY_SPANS_HPP_
