// The KV ring buffer of BSWA (SPEC §2): the last M complete blocks plus the block being filled,
// (M+1)*B rows per kv head, whatever the sequence length. Block b lives in slot b % (M+1);
// writing block b evicts block b-M-1. Which blocks are live follows from the token count alone,
// so positions are never derived from slots and the ring is never reordered.
#ifndef FAM_KV_RING_HPP_
#define FAM_KV_RING_HPP_

#include "config.hpp"

FAM_NAMESPACE_BEGIN

/// Slot arithmetic of a ring of (M+1) blocks of B rows.
struct ring_geometry {
  index_t block_size;    ///< B
  index_t mem_segments;  ///< M

  FAM_HOST_DEVICE constexpr index_t blocks() const noexcept { return mem_segments + 1; }
  FAM_HOST_DEVICE constexpr index_t rows() const noexcept { return blocks() * block_size; }
  /// Slot of (absolute) block b >= 0.
  FAM_HOST_DEVICE constexpr index_t slot_of_block(index_t b) const noexcept { return b % blocks(); }
  /// Ring row of (absolute) token n >= 0.
  FAM_HOST_DEVICE constexpr index_t row_of_token(index_t n) const noexcept {
    return slot_of_block(n / block_size) * block_size + n % block_size;
  }
  /// After n tokens: the block that the next token belongs to is t = n / B; the memory it
  /// reads is blocks [first_memory_block(n), t).
  FAM_HOST_DEVICE constexpr index_t first_memory_block(index_t n) const noexcept {
    const index_t t = n / block_size;
    return t > mem_segments ? t - mem_segments : 0;
  }
};

// ring_key_tile, the keys per tile of the ring's K^T layout, is in config.hpp (validate() bounds
// the tiled ring).

/// Non-owning view of one ring of storage type T, per kv head:
///  K as [slot][tile][D][ring_key_tile]: each block transposed in tiles of 32 keys, so the
///    keys of one tile are one contiguous run of memory (decode streams them, prefill reads
///    them in place); a block of B keys takes ceil(B / 32) tiles;
///  V as [slot * B + offset][D]: value rows contiguous.
template <class T = float>
struct kv_ring_view {
  T* k = nullptr;
  T* v = nullptr;
  index_t kv_heads = 0;
  index_t head_dim = 0;
  ring_geometry geometry{1, 0};

  FAM_HOST_DEVICE constexpr index_t tiles_per_block() const noexcept {
    return (geometry.block_size + ring_key_tile - 1) / ring_key_tile;
  }
  /// Elements of one K tile, of one K slot, and of one kv head of K and of V.
  FAM_HOST_DEVICE constexpr index_t k_tile_elements() const noexcept {
    return ring_key_tile * head_dim;
  }
  FAM_HOST_DEVICE constexpr index_t k_slot_elements() const noexcept {
    return tiles_per_block() * k_tile_elements();
  }
  FAM_HOST_DEVICE constexpr index_t k_head_stride() const noexcept {
    return geometry.blocks() * k_slot_elements();
  }
  FAM_HOST_DEVICE constexpr index_t v_head_stride() const noexcept {
    return geometry.rows() * head_dim;
  }
  /// Start of slot s of kv head h.
  FAM_HOST_DEVICE constexpr T* k_slot(index_t h, index_t s) const noexcept {
    return k + h * k_head_stride() + s * k_slot_elements();
  }
  FAM_HOST_DEVICE constexpr T* v_slot(index_t h, index_t s) const noexcept {
    return v + h * v_head_stride() + s * geometry.block_size * head_dim;
  }
  /// Element d of the key in ring row `row` (= slot * B + offset) of kv head h.
  FAM_HOST_DEVICE constexpr T& k_at(index_t h, index_t row, index_t d) const noexcept {
    const index_t B = geometry.block_size, o = row % B;
    return k_slot(
        h,
        row / B)[(o / ring_key_tile) * k_tile_elements() + d * ring_key_tile + o % ring_key_tile];
  }
  /// The value row `row` of kv head h: D contiguous elements.
  FAM_HOST_DEVICE constexpr T* v_row(index_t h, index_t row) const noexcept {
    return v + h * v_head_stride() + row * head_dim;
  }
};

FAM_NAMESPACE_END

#endif  // FAM_KV_RING_HPP_
