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

/// Non-owning view of one ring of storage type T, per kv head:
///  K as [slot][D][B]: each block transposed (K^T), so consecutive keys of one dimension are
///    contiguous — a vector load reads one dimension of many keys, for prefill and decode alike;
///  V as [slot * B + offset][D]: value rows contiguous.
template <class T = float>
struct kv_ring_view {
  T* k = nullptr;
  T* v = nullptr;
  index_t kv_heads = 0;
  index_t head_dim = 0;
  ring_geometry geometry{1, 0};

  constexpr index_t head_stride() const noexcept { return geometry.rows() * head_dim; }
  /// Start of slot s of kv head h: K^T [D, B] and V [B, D].
  constexpr T* k_slot(index_t h, index_t s) const noexcept {
    return k + h * head_stride() + s * geometry.block_size * head_dim;
  }
  constexpr T* v_slot(index_t h, index_t s) const noexcept {
    return v + h * head_stride() + s * geometry.block_size * head_dim;
  }
  /// Element d of the key in ring row `row` (= slot * B + offset) of kv head h.
  constexpr T& k_at(index_t h, index_t row, index_t d) const noexcept {
    const index_t B = geometry.block_size;
    return k_slot(h, row / B)[d * B + row % B];
  }
  /// The value row `row` of kv head h: D contiguous elements.
  constexpr T* v_row(index_t h, index_t row) const noexcept {
    return v + h * head_stride() + row * head_dim;
  }
};

FAM_NAMESPACE_END

#endif  // FAM_KV_RING_HPP_
