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

/// `count` keys and values. Key j starts at key(j) and its element d is key(j)[d*k_dim_stride]:
///  - row-major keys (a caller's [L, H, D] tensor): k_stride = row stride, k_dim_stride = 1;
///  - transposed keys K^T [D, n] (the FAM keys of a state): k_stride = 1, k_dim_stride = n;
///  - tiled transposed keys (the ring): tiles of k_tile keys, each K^T [D, k_tile] and
///    k_tile_stride elements apart, k_dim_stride = k_tile. A tile of keys is then one
///    contiguous block of memory: streamed by decode, read in place by prefill.
/// Value j is the D contiguous elements at v + j*v_stride.
template <class T>
struct key_span {
  const T* k = nullptr;
  const T* v = nullptr;
  index_t k_stride = 0;
  index_t k_dim_stride = 1;
  index_t v_stride = 0;
  index_t count = 0;
  index_t k_tile = 0;  ///< keys per tile of a tiled layout (0: not tiled)
  index_t k_tile_stride = 0;

  FAM_HOST_DEVICE constexpr const T* key(index_t j) const noexcept {
    return k_tile > 0 ? k + (j / k_tile) * k_tile_stride + j % k_tile : k + j * k_stride;
  }
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
/// [0, first_visible + i / rows_per_position] (SPEC §2: a token sees its own block up to
/// itself; rows_per_position > 1 when the rows are several query heads of one token).
struct tail_mask {
  bool causal = false;
  index_t first_visible = 0;  ///< for row 0 (causal only)
  index_t rows_per_position = 1;

  FAM_HOST_DEVICE constexpr index_t visible(index_t row, index_t span_count) const noexcept {
    if (!causal) return span_count;
    const index_t n = first_visible + row / rows_per_position + 1;
    return n < span_count ? n : span_count;
  }
};

}  // namespace kernel
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_KEY_SPANS_HPP_
