// The attention configuration: the shape parameters of SPEC §1, each fixed at compile time or
// left `fam::dynamic` and set at run time (Eigen's Dynamic idea), so one binary serves any shape.
#ifndef FAM_CONFIG_HPP_
#define FAM_CONFIG_HPP_

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "status.hpp"

FAM_NAMESPACE_BEGIN

/// Signed 64-bit index for every size, offset and position (SPEC §1; never 32-bit).
using index_t = std::int64_t;

/// Marks a configuration parameter whose value is given at run time.
inline constexpr int dynamic = -1;

/// Keys per tile of the ring's K^T layout (fam/kv_ring.hpp, the SIMD backend's key tile): a
/// block of B keys takes ceil(B / ring_key_tile) whole tiles, which validate() bounds too.
inline constexpr index_t ring_key_tile = 32;

/// Most tokens a stream may hold (attend() refuses a chunk past it, restore_state() a blob
/// above it), and the largest |position_offset| validate() accepts: together they keep every
/// position (token and FAM rows, SPEC §1 and §4) inside int64, since 2^61 + 2^62 < 2^63.
inline constexpr index_t max_tokens = std::numeric_limits<index_t>::max() / 4;  // 2^61 - 1
inline constexpr index_t max_position_offset = index_t(1) << 62;

/// Shape of one attention layer.
/// @tparam HeadDim     D, the head dimension (>= 1), or fam::dynamic
/// @tparam BlockSize   B, tokens per block (>= 1), or fam::dynamic
/// @tparam MemSegments M, past blocks kept in the ring (>= 0), or fam::dynamic
/// @tparam FamLen      F, FAM rows per layer (>= 0; 0 is plain BSWA), or fam::dynamic
///
/// Heads, kv heads, scale and the position offset are always run-time values.
/// A static parameter passed to the constructor with another value makes validate() fail.
template <int HeadDim = dynamic, int BlockSize = dynamic, int MemSegments = dynamic,
          int FamLen = dynamic>
class attention_config {
  static_assert(HeadDim == dynamic || HeadDim >= 1, "fam: HeadDim must be >= 1 or fam::dynamic");
  static_assert(BlockSize == dynamic || BlockSize >= 1,
                "fam: BlockSize must be >= 1 or fam::dynamic");
  static_assert(MemSegments == dynamic || MemSegments >= 0,
                "fam: MemSegments must be >= 0 or fam::dynamic");
  static_assert(FamLen == dynamic || FamLen >= 0, "fam: FamLen must be >= 0 or fam::dynamic");

 public:
  static constexpr int head_dim_at_compile_time = HeadDim;
  static constexpr int block_size_at_compile_time = BlockSize;
  static constexpr int mem_segments_at_compile_time = MemSegments;
  static constexpr int fam_len_at_compile_time = FamLen;

  /// Defaults: the compile-time values; a dynamic parameter left unset is invalid.
  constexpr explicit attention_config(index_t head_dim = HeadDim, index_t block_size = BlockSize,
                                      index_t mem_segments = MemSegments,
                                      index_t fam_len = FamLen) noexcept
      : head_dim_(head_dim),
        block_size_(block_size),
        mem_segments_(mem_segments),
        fam_len_(fam_len) {}

  constexpr index_t head_dim() const noexcept { return HeadDim == dynamic ? head_dim_ : HeadDim; }
  constexpr index_t block_size() const noexcept {
    return BlockSize == dynamic ? block_size_ : BlockSize;
  }
  constexpr index_t mem_segments() const noexcept {
    return MemSegments == dynamic ? mem_segments_ : MemSegments;
  }
  constexpr index_t fam_len() const noexcept { return FamLen == dynamic ? fam_len_ : FamLen; }

  /// Rows per kv head that the ring holds: the last M complete blocks plus the block being filled.
  constexpr index_t ring_rows() const noexcept { return (mem_segments() + 1) * block_size(); }

  /// 1/sqrt(D) unless set_scale() was called (SPEC §1).
  double scale() const noexcept {
    return has_scale_ ? scale_ : 1.0 / std::sqrt(static_cast<double>(head_dim()));
  }
  /// Any finite positive value; others make validate() return invalid_argument.
  constexpr attention_config& set_scale(double s) noexcept {
    scale_ = s;
    has_scale_ = true;
    return *this;
  }
  /// Query heads and key/value heads (H % Hkv == 0: MHA, GQA or MQA).
  constexpr attention_config& set_heads(index_t h, index_t hkv) noexcept {
    heads = h;
    kv_heads = hkv;
    return *this;
  }

  index_t heads = 1;            ///< H, query heads
  index_t kv_heads = 1;         ///< Hkv, key/value heads; query head h reads kv head h/(H/Hkv)
  index_t position_offset = 0;  ///< token n has position n + position_offset (never moves
                                ///< blocks); |offset| <= max_position_offset
  index_t phi_dim = 0;          ///< width of the FAM activations Φ a state keeps (0: not kept)

  /// invalid_argument for any value outside SPEC §1, too_large when the ring or the
  /// state would not be addressable with 64-bit offsets.
  status validate() const noexcept {
    FAM_CHECK(head_dim_ == head_dim() && block_size_ == block_size() &&
                  mem_segments_ == mem_segments() && fam_len_ == fam_len(),
              status::invalid_argument);  // a static parameter given another value
    FAM_CHECK(head_dim() >= 1 && block_size() >= 1 && mem_segments() >= 0 && fam_len() >= 0,
              status::invalid_argument);
    // M + 1 and F + 1 below must not overflow
    FAM_CHECK(mem_segments() < std::numeric_limits<index_t>::max() / 64 &&
                  fam_len() < std::numeric_limits<index_t>::max() / 64,
              status::too_large);
    FAM_CHECK(heads >= 1 && kv_heads >= 1 && heads % kv_heads == 0, status::invalid_argument);
    FAM_CHECK(phi_dim >= 0, status::invalid_argument);
    FAM_CHECK(position_offset >= -max_position_offset && position_offset <= max_position_offset,
              status::too_large);  // positions must stay inside int64 (max_tokens above)
    FAM_CHECK(!has_scale_ || (std::isfinite(scale_) && scale_ > 0.0), status::invalid_argument);
    // Every buffer size must fit in an index_t (with headroom for byte counts): the ring
    // [Hkv, (M+1)*B, D], the FAM projections [H, F, D] and Φ [F, phi_dim]. Checked by division,
    // so nothing here can overflow.
    FAM_CHECK(fits({heads, mem_segments() + 1, block_size(), head_dim()}) &&
                  fits({heads, fam_len(), head_dim()}) && fits({fam_len(), phi_dim}),
              status::too_large);
    // The ring keeps K in whole tiles: up to ring_key_tile times the rows when B = 1. (B is
    // bounded by the check above, so rounding it up cannot overflow.)
    FAM_CHECK(fits({heads, mem_segments() + 1, tiled_rows(block_size()), head_dim()}),
              status::too_large);
    return status::ok;
  }

  /// Rows of K the ring stores per block: B rounded up to whole tiles.
  static constexpr index_t tiled_rows(index_t b) noexcept {
    return (b + ring_key_tile - 1) / ring_key_tile * ring_key_tile;
  }

 private:
  static constexpr bool fits(std::initializer_list<index_t> factors) noexcept {
    constexpr index_t kLimit = std::numeric_limits<index_t>::max() / 64;  // room for bytes
    index_t product = 1;
    for (index_t f : factors) {
      if (f != 0 && product > kLimit / f) return false;
      product *= f;
    }
    return true;
  }

  index_t head_dim_, block_size_, mem_segments_, fam_len_;
  double scale_ = 0.0;
  bool has_scale_ = false;
};

/// The fully run-time configuration.
using dynamic_config = attention_config<>;

FAM_NAMESPACE_END

#endif  // FAM_CONFIG_HPP_
