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

/// `count` keys and values. Element d of key j is k[j*k_stride + d*k_dim_stride]: row-major keys
/// have k_dim_stride 1 (a caller's [L, H, D] tensor); transposed keys have k_stride 1 (the ring
/// and the FAM keys of a state store each block as K^T [D, B], so a vector of consecutive keys
/// is one load). Value j is the D contiguous elements at v + j*v_stride.
template <class T>
struct key_span {
  const T* k = nullptr;
  const T* v = nullptr;
  index_t k_stride = 0;
  index_t k_dim_stride = 1;
  index_t v_stride = 0;
  index_t count = 0;
};

/// `count` query rows that share the same key spans; row i reads q + i*q_stride and writes
/// out + i*out_stride and, when lse is not null, lse[i*lse_stride].
template <class T>
struct query_rows {
  const T* q = nullptr;
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

  FAM_HOST_DEVICE constexpr index_t visible(index_t row, index_t span_count) const noexcept {
    if (!causal) return span_count;
    const index_t n = first_visible + row + 1;
    return n < span_count ? n : span_count;
  }
};

}  // namespace kernel
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_KEY_SPANS_HPP_
