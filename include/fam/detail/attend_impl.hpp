// The attention algorithm, written once over the backend's kernel::attend_rows: it turns the
// masks of SPEC §2-§3 into key spans for groups of query rows. Whole sequences, single FAM
// blocks and the streaming state all go through attend_group, so their numbers agree bitwise.
#ifndef FAM_DETAIL_ATTEND_IMPL_HPP_
#define FAM_DETAIL_ATTEND_IMPL_HPP_

#include <algorithm>

#include "../backend/reference.hpp"
#include "../mask.hpp"
#include "../view.hpp"
#include "key_spans.hpp"
#include "parallel.hpp"

FAM_NAMESPACE_BEGIN
namespace detail {

/// Keys and values of every kv head: pointers at kv head 0, strides as in kernel::key_span.
template <class T>
struct key_source {
  const T* k = nullptr;
  const T* v = nullptr;
  index_t k_head_stride = 0;
  index_t v_head_stride = 0;
  index_t k_stride = 0;
  index_t k_dim_stride = 1;
  index_t v_stride = 0;
  index_t count = 0;
  index_t k_tile = 0;  // tiled K^T layout (see kernel::key_span)
  index_t k_tile_stride = 0;

  /// Row-major keys and values from two [rows, Hkv, D] views.
  static key_source from_views(tensor_view<const T> k, tensor_view<const T> v) noexcept {
    if (k.rows == 0) return {};
    return {k.data, v.data, k.head_stride, v.head_stride, k.row_stride, 1, v.row_stride, k.rows,
            0,      0};
  }
  kernel::key_span<T> span(index_t kvh) const noexcept {
    if (count == 0) return {};
    return {k + kvh * k_head_stride,
            v + kvh * v_head_stride,
            k_stride,
            k_dim_stride,
            v_stride,
            count,
            k_tile,
            k_tile_stride};
  }
};

/// Keys grouped as [memory blocks | FAM | tail] for one kv head.
/// Memory block i (i < n_mem) is block first_block + i; in a ring it lives at slot
/// (first_block + i) % ring_blocks, in a contiguous tensor at block i from mem_k.
/// The first memory span skips mem_skip keys (a sliding window that starts inside a block).
template <class T>
struct block_spans {
  const T* mem_k = nullptr;  // block (or slot) 0 of the memory
  const T* mem_v = nullptr;
  index_t k_block_stride = 0;  // elements between consecutive blocks (slots)
  index_t v_block_stride = 0;
  index_t k_stride = 0;  // between keys of a block (untiled layouts)
  index_t k_dim_stride = 1;
  index_t k_tile = 0;  // tiled K^T layout (see kernel::key_span)
  index_t k_tile_stride = 0;
  index_t v_stride = 0;
  index_t block = 1;
  index_t first_block = 0;
  index_t n_mem = 0;
  index_t mem_skip = 0;
  index_t ring_blocks = 0;  // 0: contiguous memory
  kernel::key_span<T> fam;  // count 0: no FAM columns
  kernel::key_span<T> tail;

  constexpr index_t size() const noexcept { return n_mem + (fam.count > 0 ? 1 : 0) + 1; }
  constexpr kernel::key_span<T> operator[](index_t i) const noexcept {
    if (i < n_mem) {
      const index_t slot = ring_blocks > 0 ? (first_block + i) % ring_blocks : i;
      const index_t skip = i == 0 ? mem_skip : 0;
      return {mem_k + slot * k_block_stride + skip * k_stride,  // skip > 0: untiled only
              mem_v + slot * v_block_stride + skip * v_stride,
              k_stride,
              k_dim_stride,
              v_stride,
              block - skip,
              k_tile,
              k_tile_stride};
    }
    if (i == n_mem && fam.count > 0) return fam;
    return tail;
  }
};

/// Head geometry shared by every call.
struct head_geometry {
  index_t heads;
  index_t kv_heads;
  index_t head_dim;
  double scale;
  constexpr index_t kv_head_of(index_t h) const noexcept { return h / (heads / kv_heads); }
};

/// Rows [n0, n1) of query head h attend with `keys`; `mask` masks the first and last spans.
template <class TQ, class TK, class Backend>
void attend_group(const head_geometry& g, tensor_view<const TQ> q, tensor_view<float> out,
                  lse_view lse, index_t h, index_t n0, index_t n1, const block_spans<TK>& keys,
                  kernel::row_mask mask, const Backend& backend) noexcept {
  kernel::query_rows<TQ> rows;
  rows.q = q.at(n0, h);
  rows.q_stride = q.row_stride;
  rows.out = out.at(n0, h);
  rows.out_stride = out.row_stride;
  rows.lse = lse.data == nullptr ? nullptr : lse.at(n0, h);
  rows.lse_stride = lse.row_stride;
  rows.count = n1 - n0;
  // Unqualified, so that argument-dependent lookup at instantiation finds every overload:
  // backends declared after this header (fam/backend/simd.hpp, a user's own) included.
  using kernel::attend_rows;
  attend_rows(rows, keys, mask, g.head_dim, g.scale, backend);
}

/// Keys of a whole sequence are cut at multiples of this many tokens for full causal and
/// sliding-window attention (BSWA and FAM cut at block boundaries).
inline constexpr index_t sequence_granule = 256;

/// Query rows per work item at most: a block of B = 1024 rows is cut into four, so that even
/// one block of a few heads gives a thread pool enough items to balance (and later rows, which
/// see more keys of their own block, are not all in one item). Rows of an item still share
/// every key tile; how rows are grouped never changes an output bit.
inline constexpr index_t rows_per_item = 256;

/// One work item of a whole sequence: query head h, rows [n0, n1) sharing their keys.
struct row_group {
  index_t h, n0, n1;
};

/// Cuts the rows of one head into groups that share their spans: the rest of the granule
/// (block), or, once a sliding window's lower edge moves (n >= W), the rows whose lower edges
/// all lie in the same key granule (with `edge`: the backend reads a per-row lower edge) or a
/// single row (without).
inline index_t next_group_end(const mask_spec& mask, index_t granule, index_t n0, index_t L,
                              bool edge) noexcept {
  const index_t granule_end = std::min((n0 / granule + 1) * granule, L);
  if (mask.kind != variant::sliding_window) return granule_end;
  if (n0 < mask.window) return std::min(granule_end, mask.window);  // lower edge still at 0
  if (!edge) return n0 + 1;
  // row n's lower edge n - W + 1 stays inside the granule of row n0's edge (or on its end)
  // while n < edge_granule_end + W
  const index_t edge_granule_end = (block_of(n0 - mask.window + 1, granule) + 1) * granule;
  return std::min(granule_end, edge_granule_end + mask.window);
}

/// Token rows of a whole sequence (full causal, sliding window or BSWA; no FAM columns).
/// @pre views validated: q/out [L, H, D], k/v [L, Hkv, D].
template <class TQ, class TK, class Backend>
void attend_sequence(const head_geometry& g, const mask_spec& mask, tensor_view<const TQ> q,
                     tensor_view<const TK> k, tensor_view<const TK> v, tensor_view<float> out,
                     lse_view lse, const Backend& backend) noexcept {
  const index_t L = q.rows;
  const bool blocked = mask.kind == variant::bswa || mask.kind == variant::fam;
  const index_t granule = blocked ? mask.block : sequence_granule;
  constexpr bool edge = kernel::reads_window_edge<Backend>;
  auto run_group = [&](const row_group& w) {
    const index_t kvh = g.kv_head_of(w.h);
    const index_t tail_start = block_of(w.n0, granule) * granule;
    const index_t tail_end = std::min(tail_start + granule, L);
    const index_t lo = visible_tokens(mask, w.n0).lo;
    const index_t tail_begin = std::max(lo, tail_start);
    block_spans<TK> keys;
    keys.block = granule;
    keys.k_stride = k.row_stride;
    keys.v_stride = v.row_stride;
    keys.first_block = block_of(lo, granule);
    keys.n_mem = block_of(tail_begin, granule) - keys.first_block;
    // only formed when there are memory granules (then granule < L): a granule beyond the
    // sequence (B near INT64_MAX) times a stride would overflow
    keys.k_block_stride = keys.n_mem > 0 ? granule * k.row_stride : 0;
    keys.v_block_stride = keys.n_mem > 0 ? granule * v.row_stride : 0;
    keys.mem_skip = lo - keys.first_block * granule;
    if (keys.n_mem > 0) {
      keys.mem_k = k.at(keys.first_block * granule, kvh);
      keys.mem_v = v.at(keys.first_block * granule, kvh);
    }
    keys.tail = {k.at(tail_begin, kvh),
                 v.at(tail_begin, kvh),
                 k.row_stride,
                 1,
                 v.row_stride,
                 tail_end - tail_begin,
                 0,
                 0};
    // the first span starts at row n0's lower edge; row n0 + i hides its first i keys when the
    // window's edge moves with the rows (next_group_end keeps them inside that span)
    const bool moving_edge = mask.kind == variant::sliding_window && w.n0 >= mask.window;
    attend_group(g, q, out, lse, w.h, w.n0, w.n1, keys,
                 kernel::row_mask{true, w.n0 - tail_begin, 1, moving_edge, 0}, backend);
  };
  // Work items: (head, granule, up to rows_per_item rows of it); each writes its own rows
  // only, so any schedule gives the same bits.
  if (L == 0) return;
  const index_t granules = (L - 1) / granule + 1;  // no L + granule: overflow
  const index_t per_granule = (std::min(granule, L) - 1) / rows_per_item + 1;
  parallel_for(backend, g.heads * granules * per_granule, [&](index_t item) {
    const index_t h = item / (granules * per_granule), gi = item / per_granule % granules;
    const index_t start = gi * granule, granule_end = start + std::min(granule, L - start);
    const index_t first = start + item % per_granule * rows_per_item;
    const index_t last = std::min(first + rows_per_item, granule_end);
    for (index_t n0 = first, n1; n0 < last; n0 = n1) {
      n1 = std::min(next_group_end(mask, granule, n0, L, edge), last);
      run_group({h, n0, n1});
    }
  });
}

/// The keys of one FAM block (SPEC §3): memory blocks (for token rows only), the FAM of
/// Φ[t-1] and the block's own keys, each for every kv head.
template <class T>
struct block_keys {
  block_spans<T> memory;  // memory spans at kv head 0; fam/tail are filled per head
  index_t mem_k_head_stride = 0;
  index_t mem_v_head_stride = 0;
  key_source<T> fam;    // [F] keys
  key_source<T> block;  // [b] keys of the block so far

  block_spans<T> for_head(index_t kvh) const noexcept {
    block_spans<T> s = memory;
    if (s.n_mem > 0) {
      s.mem_k += kvh * mem_k_head_stride;
      s.mem_v += kvh * mem_v_head_stride;
    }
    s.fam = fam.span(kvh);
    s.tail = block.span(kvh);
    return s;
  }
};

/// Token rows [o0, o0 + q.rows) of the current block (q/out hold just those rows): every head.
/// A single token (decode) with grouped heads runs the heads that share a kv head as one row
/// group, so their keys and values are read once; the numbers are the same either way.
template <class TQ, class TK, class Backend>
void attend_block_tokens(const head_geometry& g, const block_keys<TK>& keys, index_t o0,
                         tensor_view<const TQ> q, tensor_view<float> out, lse_view lse,
                         const Backend& backend) noexcept {
  const index_t group = g.heads / g.kv_heads;
  if (q.rows == 1 && group > 1) {
    parallel_for(backend, g.kv_heads, [&](index_t kvh) {
      const index_t h0 = kvh * group;
      kernel::query_rows<TQ> rows;
      rows.q = q.at(0, h0);
      rows.q_stride = q.head_stride;
      rows.out = out.at(0, h0);
      rows.out_stride = out.head_stride;
      rows.lse = lse.data == nullptr ? nullptr : lse.at(0, h0);
      rows.lse_stride = lse.head_stride;
      rows.count = group;
      using kernel::attend_rows;
      attend_rows(rows, keys.for_head(kvh), kernel::row_mask{true, o0, group}, g.head_dim, g.scale,
                  backend);
    });
    return;
  }
  // work items: (head, up to rows_per_item rows)
  if (q.rows == 0) return;
  const index_t per_head = (q.rows - 1) / rows_per_item + 1;
  parallel_for(backend, g.heads * per_head, [&](index_t item) {
    const index_t h = item / per_head, n0 = item % per_head * rows_per_item;
    const index_t n1 = std::min(n0 + rows_per_item, q.rows);
    const block_spans<TK> s = keys.for_head(g.kv_head_of(h));
    attend_group(g, q, out, lse, h, n0, n1, s, kernel::row_mask{true, o0 + n0, 1}, backend);
  });
}

/// FAM rows: Qf [F, H, D] attends to [FAM | whole block] (no memory, no causal mask).
template <class TQ, class TK, class Backend>
void attend_block_fam(const head_geometry& g, const block_keys<TK>& keys, tensor_view<const TQ> qf,
                      tensor_view<float> uf, lse_view lse, const Backend& backend) noexcept {
  parallel_for(backend, g.heads, [&](index_t h) {
    block_spans<TK> s = keys.for_head(g.kv_head_of(h));
    s.n_mem = 0;  // FAM queries never see the memory segments (SPEC §3)
    attend_group(g, qf, uf, lse, h, 0, qf.rows, s, kernel::row_mask{false, 0, 1}, backend);
  });
}

}  // namespace detail
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_ATTEND_IMPL_HPP_
