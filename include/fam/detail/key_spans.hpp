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

/// Which keys of the spans row i sees (SPEC §2):
///  - of the last span: all, or the causal prefix [0, first_visible + i / rows_per_position]
///    (a token sees its own block up to itself; rows_per_position > 1 when the rows are several
///    query heads of one token);
///  - of the first span: all, or, on a sliding window's lower edge, all but the first
///    first_hidden + i / rows_per_position (the window moves on by one key per token). When the
///    first span is also the last, row i sees its keys [hidden(i, n), visible(i, n)).
/// A backend is handed a lower edge only if it says that it reads one (reads_window_edge).
struct row_mask {
  bool causal = false;
  index_t first_visible = 0;  ///< for row 0 (causal only)
  index_t rows_per_position = 1;
  bool window = false;
  index_t first_hidden = 0;  ///< for row 0 (window only)

  /// Keys [0, visible) of the last span (of span_count keys) that row `row` may see.
  FAM_HOST_DEVICE constexpr index_t visible(index_t row, index_t span_count) const noexcept {
    if (!causal) return span_count;
    const index_t n = first_visible + row / rows_per_position + 1;
    return n < span_count ? n : span_count;
  }
  /// Keys [0, hidden) of the first span (of span_count keys) that row `row` does not see.
  FAM_HOST_DEVICE constexpr index_t hidden(index_t row, index_t span_count) const noexcept {
    if (!window) return 0;
    const index_t n = first_hidden + row / rows_per_position;
    return n < span_count ? n : span_count;
  }
};

/// Whether Backend's attend_rows reads row_mask's lower edge, so that the algorithm may hand it
/// many rows of a sliding window at once (else one row at a time, each with its own spans).
/// Declared per exact type, never inherited: a backend derived from one that reads the edge,
/// with an attend_rows of its own, must not be handed an edge it would ignore.
template <class Backend>
inline constexpr bool reads_window_edge = false;

}  // namespace kernel
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_KEY_SPANS_HPP_
