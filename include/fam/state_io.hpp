// Save and restore a layer_state as a versioned, self-describing byte buffer (SPEC §5).
//
// Layout (all integers in the writer's byte order, which the byte-order mark records):
//   "FAMSTATE" | u32 format version | u32 byte-order mark 0x01020304 | u32 header bytes
//   | 4 zero padding bytes | i64 D, B, M, F, H, Hkv, phi_dim, position_offset | f64 scale
//   | i64 tokens | u32 phase | u32 fresh | u32 kv storage type (0 fp32, 1 bf16, 2 fp16)
//   | 4 zero padding bytes | u64 payload bytes
//   | payload: the state's whole storage (ring, Kf, Vf, Qf, Uf, Uf lse, Φ) as raw bytes
//   | u64 FNV-1a checksum of every byte before it.
// restore_state() validates everything before it writes a single byte of the target.
#ifndef FAM_STATE_IO_HPP_
#define FAM_STATE_IO_HPP_

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "layer_state.hpp"
#include "stream.hpp"

FAM_NAMESPACE_BEGIN

namespace detail {

inline constexpr char state_magic[8] = {'F', 'A', 'M', 'S', 'T', 'A', 'T', 'E'};
inline constexpr std::uint32_t state_format_version = 1;

template <class KV>
constexpr std::uint32_t kv_type_code() noexcept {
  return std::is_same_v<KV, float> ? 0u : std::is_same_v<KV, bf16> ? 1u : 2u;
}
inline constexpr std::uint32_t byte_order_mark = 0x01020304u;
inline constexpr std::uint32_t swapped_byte_order_mark = 0x04030201u;

/// Fixed-size header after the magic.
struct state_header {
  std::uint32_t version;
  std::uint32_t byte_order;
  std::uint32_t header_bytes;
  std::int64_t head_dim, block_size, mem_segments, fam_len, heads, kv_heads, phi_dim,
      position_offset;
  double scale;
  std::int64_t tokens;
  std::uint32_t phase;
  std::uint32_t fresh;
  std::uint32_t kv_type;
  std::uint64_t payload_bytes;
};

inline constexpr std::size_t state_header_offset = sizeof(state_magic);
inline constexpr std::size_t state_payload_offset = state_header_offset + sizeof(state_header);
inline constexpr std::size_t state_checksum_bytes = sizeof(std::uint64_t);

/// FNV-1a, 64 bit: any single changed byte changes the result (each step is a bijection).
inline std::uint64_t fnv1a(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t h = 14695981039346656037ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

template <class Config, class KV>
state_header make_header(const layer_state<Config, KV>& st) noexcept {
  const Config& c = st.config();
  state_header h;
  std::memset(&h, 0, sizeof(h));  // padding bytes too: the checksum covers them
  h.version = state_format_version;
  h.byte_order = byte_order_mark;
  h.header_bytes = static_cast<std::uint32_t>(sizeof(state_header));
  h.head_dim = c.head_dim();
  h.block_size = c.block_size();
  h.mem_segments = c.mem_segments();
  h.fam_len = c.fam_len();
  h.heads = c.heads;
  h.kv_heads = c.kv_heads;
  h.phi_dim = c.phi_dim;
  h.position_offset = c.position_offset;
  h.scale = c.scale();
  h.tokens = st.tokens();
  h.phase = static_cast<std::uint32_t>(st.phase());
  h.fresh = st.fresh() ? 1u : 0u;
  h.kv_type = kv_type_code<KV>();
  h.payload_bytes = static_cast<std::uint64_t>(state_access::bytes(st));
  return h;
}

}  // namespace detail

/// Bytes that save_state() writes for this state.
template <class Config, class KV>
std::size_t serialized_size(const layer_state<Config, KV>& st) noexcept {
  return detail::state_payload_offset + detail::state_access::bytes(st) +
         detail::state_checksum_bytes;
}

/// Writes the whole state into buf[0, serialized_size(st)).
/// @return ok; not_initialized; null_pointer; buffer_too_small (nothing written).
template <class Config, class KV>
[[nodiscard]] status save_state(const layer_state<Config, KV>& st, void* buf, std::size_t capacity,
                                std::size_t* written = nullptr) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CHECK(buf != nullptr, status::null_pointer);
  const std::size_t size = serialized_size(st);
  FAM_CHECK(capacity >= size, status::buffer_too_small);
  auto* out = static_cast<unsigned char*>(buf);
  const detail::state_header h = detail::make_header(st);
  std::memcpy(out, detail::state_magic, sizeof(detail::state_magic));
  std::memcpy(out + detail::state_header_offset, &h, sizeof(h));
  std::memcpy(out + detail::state_payload_offset, detail::state_access::storage(st),
              size - detail::state_payload_offset - detail::state_checksum_bytes);
  const std::uint64_t sum = detail::fnv1a(out, size - detail::state_checksum_bytes);
  std::memcpy(out + size - detail::state_checksum_bytes, &sum, sizeof(sum));
  if (written != nullptr) *written = size;
  return status::ok;
}

/// Restores a state saved by save_state() into an initialized state of the same configuration.
/// On any error the target is left bitwise untouched.
/// @return ok; not_initialized; null_pointer;
///         corrupt_state (not a fam state, truncated or extended, checksum mismatch, or
///         impossible metadata);
///         incompatible_state (another format version or byte order, or a configuration
///         different from the target's: head dim, B, M, F, heads, kv heads, phi_dim, scale,
///         position offset, kv storage type).
template <class Config, class KV>
[[nodiscard]] status restore_state(layer_state<Config, KV>& st, const void* buf,
                                   std::size_t size) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CHECK(buf != nullptr || size == 0, status::null_pointer);
  const auto* in = static_cast<const unsigned char*>(buf);
  FAM_CHECK(size >= detail::state_payload_offset + detail::state_checksum_bytes,
            status::corrupt_state);
  FAM_CHECK(std::memcmp(in, detail::state_magic, sizeof(detail::state_magic)) == 0,
            status::corrupt_state);
  detail::state_header h;
  std::memcpy(&h, in + detail::state_header_offset, sizeof(h));
  FAM_CHECK(h.version == detail::state_format_version, status::incompatible_state);
  FAM_CHECK(h.byte_order != detail::swapped_byte_order_mark, status::incompatible_state);
  FAM_CHECK(h.byte_order == detail::byte_order_mark, status::corrupt_state);
  FAM_CHECK(h.header_bytes == sizeof(detail::state_header), status::corrupt_state);
  const std::size_t payload_bytes =
      size - detail::state_payload_offset - detail::state_checksum_bytes;
  FAM_CHECK(h.payload_bytes == payload_bytes, status::corrupt_state);
  std::uint64_t sum;
  std::memcpy(&sum, in + size - detail::state_checksum_bytes, sizeof(sum));
  FAM_CHECK(detail::fnv1a(in, size - detail::state_checksum_bytes) == sum, status::corrupt_state);

  // A well-formed blob: is it for this configuration?
  const detail::state_header mine = detail::make_header(st);
  FAM_CHECK(h.head_dim == mine.head_dim && h.block_size == mine.block_size &&
                h.mem_segments == mine.mem_segments && h.fam_len == mine.fam_len &&
                h.heads == mine.heads && h.kv_heads == mine.kv_heads && h.phi_dim == mine.phi_dim &&
                h.position_offset == mine.position_offset &&
                std::memcmp(&h.scale, &mine.scale, sizeof(double)) == 0 &&
                h.kv_type == mine.kv_type && h.payload_bytes == mine.payload_bytes,
            status::incompatible_state);
  // Metadata that no state can have.
  const bool has_fam = h.fam_len > 0;
  const bool at_boundary = h.tokens % h.block_size == 0;
  // tokens: non-negative, and far enough from the top that positions cannot overflow
  FAM_CHECK(h.tokens >= 0 && h.tokens <= max_tokens && h.fresh <= 1u && h.phase <= 2u,
            status::corrupt_state);
  const auto phase = static_cast<fam_phase>(h.phase);
  FAM_CHECK(phase != fam_phase::none || (has_fam && h.tokens == 0), status::corrupt_state);
  FAM_CHECK(phase != fam_phase::pending || (has_fam && at_boundary && h.tokens > 0),
            status::corrupt_state);

  std::memcpy(detail::state_access::storage(st), in + detail::state_payload_offset, payload_bytes);
  detail::state_access::set_meta(st, h.tokens, phase, h.fresh != 0u);
  return status::ok;
}

FAM_NAMESPACE_END

#endif  // FAM_STATE_IO_HPP_
