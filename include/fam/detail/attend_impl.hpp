// The attention algorithm, written once over the backend's kernel::attend_rows: it turns the
// masks of SPEC §2-§3 into key spans for groups of query rows. Whole sequences, single FAM
// blocks and the streaming state all go through attend_block_rows, so their numbers agree
// bitwise.
#ifndef FAM_DETAIL_ATTEND_IMPL_HPP_
#define FAM_DETAIL_ATTEND_IMPL_HPP_

#include <algorithm>

#include "../mask.hpp"
#include "../view.hpp"
#include "key_spans.hpp"

FAM_NAMESPACE_BEGIN
namespace detail {

/// Keys grouped as [memory blocks | FAM | tail] for one kv head.
/// Memory block i (i < n_mem) is block first_block + i; in a ring it lives at slot
/// (first_block + i) % ring_blocks, in a contiguous tensor at rows [i*block, i*block + block).
/// The first memory span skips mem_skip rows (a sliding window that starts inside a block).
struct block_spans {
  const float* mem_k = nullptr;  // row 0 of the memory (ring slot 0, or the first memory block)
  const float* mem_v = nullptr;
  index_t k_stride = 0;
  index_t v_stride = 0;
  index_t block = 1;
  index_t first_block = 0;
  index_t n_mem = 0;
  index_t mem_skip = 0;
  index_t ring_blocks = 0;  // 0: contiguous memory
  kernel::key_span fam;     // count 0: no FAM columns
  kernel::key_span tail;

  constexpr index_t size() const noexcept { return n_mem + (fam.count > 0 ? 1 : 0) + 1; }
  constexpr kernel::key_span operator[](index_t i) const noexcept {
    if (i < n_mem) {
      const index_t slot = ring_blocks > 0 ? (first_block + i) % ring_blocks : i;
      const index_t start = slot * block + (i == 0 ? mem_skip : 0);
      return {mem_k + start * k_stride, mem_v + start * v_stride, k_stride, v_stride,
              block - (i == 0 ? mem_skip : 0)};
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

/// Rows [n0, n1) of one query head attend with `keys`; `first_visible` is the causal
/// offset of row n0 inside the tail.
template <class Backend>
void attend_group(const head_geometry& g, tensor_view<const float> q, tensor_view<float> out,
                  lse_view lse, index_t h, index_t n0, index_t n1, const block_spans& keys,
                  kernel::tail_mask tail, const Backend& backend) noexcept {
  kernel::query_rows rows;
  rows.q = q.at(n0, h);
  rows.q_stride = q.row_stride;
  rows.out = out.at(n0, h);
  rows.out_stride = out.row_stride;
  rows.lse = lse.data == nullptr ? nullptr : lse.at(n0, h);
  rows.lse_stride = lse.row_stride;
  rows.count = n1 - n0;
  kernel::attend_rows(rows, keys, tail, g.head_dim, g.scale, backend);
}

/// Keys of a whole sequence are cut at multiples of this many tokens for full causal and
/// sliding-window attention (BSWA and FAM cut at block boundaries).
inline constexpr index_t sequence_granule = 256;

/// Token rows of a whole sequence (full causal, sliding window or BSWA; no FAM columns).
/// @pre views validated: q/out [L, H, D], k/v [L, Hkv, D].
template <class Backend>
void attend_sequence(const head_geometry& g, const mask_spec& mask, tensor_view<const float> q,
                     tensor_view<const float> k, tensor_view<const float> v,
                     tensor_view<float> out, lse_view lse, const Backend& backend) noexcept {
  const index_t L = q.rows;
  const bool blocked = mask.kind == variant::bswa || mask.kind == variant::fam;
  const index_t granule = blocked ? mask.block : sequence_granule;
  for (index_t h = 0; h < g.heads; ++h) {
    const index_t kvh = g.kv_head_of(h);
    index_t n0 = 0;
    while (n0 < L) {
      // rows that share their visible range: the rest of the granule, or (window) one row
      const index_t tail_start = block_of(n0, granule) * granule;
      const index_t granule_end = tail_start + granule < L ? tail_start + granule : L;
      const index_t lo = visible_tokens(mask, n0).lo;
      // a window's rows share lo = 0 only while n < W; after that each row has its own
      const bool window = mask.kind == variant::sliding_window;
      const index_t n1 = !window ? granule_end
                         : n0 < mask.window ? std::min(granule_end, mask.window)
                                            : n0 + 1;
      const index_t tail_begin = lo > tail_start ? lo : tail_start;

      block_spans keys;
      keys.block = granule;
      keys.k_stride = k.row_stride;
      keys.v_stride = v.row_stride;
      keys.first_block = block_of(lo, granule);
      keys.n_mem = block_of(tail_begin, granule) - keys.first_block;
      keys.mem_skip = lo - keys.first_block * granule;
      if (keys.n_mem > 0) {
        keys.mem_k = k.at(keys.first_block * granule, kvh);
        keys.mem_v = v.at(keys.first_block * granule, kvh);
      }
      keys.tail = {k.at(tail_begin, kvh), v.at(tail_begin, kvh), k.row_stride, v.row_stride,
                   granule_end - tail_begin};
      attend_group(g, q, out, lse, h, n0, n1, keys, kernel::tail_mask{true, n0 - tail_begin},
                   backend);
      n0 = n1;
    }
  }
}

/// One block of the FAM layout (SPEC §3), for rows [o0, o1) of a block whose first `b` keys
/// are available in `block_k/v` (row i of the block at block_k + i*stride):
///  token rows see [memory | FAM | block keys 0..offset], FAM rows (`fam_rows`) see
///  [FAM | all b block keys]. `memory` holds the memory spans (n_mem, addressing); its
///  fam/tail members are filled here.
/// @pre every view validated; FAM views have F rows.
struct block_keys {
  block_spans memory;                                // per kv head: mem_k/mem_v at head 0
  index_t mem_k_head_stride = 0;                     // elements between kv heads of memory
  index_t mem_v_head_stride = 0;
  tensor_view<const float> fam_k, fam_v;             // [F, Hkv, D]
  tensor_view<const float> block_k, block_v;         // [b, Hkv, D]

  block_spans for_head(index_t kvh) const noexcept {
    block_spans s = memory;
    if (s.n_mem > 0) {
      s.mem_k += kvh * mem_k_head_stride;
      s.mem_v += kvh * mem_v_head_stride;
    }
    if (fam_k.rows > 0)
      s.fam = {fam_k.at(0, kvh), fam_v.at(0, kvh), fam_k.row_stride, fam_v.row_stride,
               fam_k.rows};
    if (block_k.rows > 0)
      s.tail = {block_k.at(0, kvh), block_v.at(0, kvh), block_k.row_stride, block_v.row_stride,
                block_k.rows};
    return s;
  }
};

/// Token rows [o0, o0 + q.rows) of the current block (q/out hold just those rows).
template <class Backend>
void attend_block_tokens(const head_geometry& g, const block_keys& keys, index_t o0,
                         tensor_view<const float> q, tensor_view<float> out, lse_view lse,
                         const Backend& backend) noexcept {
  for (index_t h = 0; h < g.heads; ++h) {
    const block_spans s = keys.for_head(g.kv_head_of(h));
    attend_group(g, q, out, lse, h, 0, q.rows, s, kernel::tail_mask{true, o0}, backend);
  }
}

/// FAM rows: Qf [F, H, D] attends to [FAM | whole block] (no memory, no causal mask).
template <class Backend>
void attend_block_fam(const head_geometry& g, const block_keys& keys,
                      tensor_view<const float> qf, tensor_view<float> uf, lse_view lse,
                      const Backend& backend) noexcept {
  for (index_t h = 0; h < g.heads; ++h) {
    block_spans s = keys.for_head(g.kv_head_of(h));
    s.n_mem = 0;  // FAM queries never see the memory segments (SPEC §3)
    attend_group(g, qf, uf, lse, h, 0, qf.rows, s, kernel::tail_mask{false, 0}, backend);
  }
}

}  // namespace detail
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_ATTEND_IMPL_HPP_
