// Storage types: fp32, bf16 and fp16 for Q, K and V. Softmax and accumulation are always fp32
// or wider (SPEC §1). The conversions here are portable; the SIMD backend converts whole
// vectors with the instructions of its ISA (backend/simd_*.hpp).
#ifndef FAM_TYPES_HPP_
#define FAM_TYPES_HPP_

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "detail/macros.hpp"

FAM_NAMESPACE_BEGIN

/// bfloat16: the top 16 bits of an IEEE binary32.
struct bf16 {
  std::uint16_t bits = 0;
};

/// IEEE binary16.
struct fp16 {
  std::uint16_t bits = 0;
};

FAM_HOST_DEVICE inline float to_float(float x) noexcept { return x; }

FAM_HOST_DEVICE inline float to_float(bf16 x) noexcept {
  const std::uint32_t u = std::uint32_t(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

FAM_HOST_DEVICE inline float to_float(fp16 x) noexcept {
  const std::uint32_t sign = std::uint32_t(x.bits & 0x8000u) << 16;
  std::uint32_t exp = (x.bits >> 10) & 0x1fu, man = x.bits & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // inf, nan
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);  // normal: rebias 15 -> 127
  } else if (man == 0) {
    u = sign;  // zero
  } else {     // subnormal: normalize
    exp = 113;
    while ((man & 0x400u) == 0) man <<= 1, --exp;
    u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Round to nearest even; NaN stays NaN.
FAM_HOST_DEVICE inline bf16 to_bf16(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{std::uint16_t((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{std::uint16_t(u >> 16)};
}

/// Round to nearest even, overflow to infinity; NaN stays NaN.
FAM_HOST_DEVICE inline fp16 to_fp16(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return fp16{std::uint16_t(sign | 0x7e00u)};   // nan
  if (a >= 0x477ff000u) return fp16{std::uint16_t(sign | 0x7c00u)};  // rounds to inf
  if (a < 0x38800000u) {  // subnormal or zero in fp16: scale by 2^24 and round
    float mag;
    std::memcpy(&mag, &a, sizeof mag);
    const float scaled = mag * 16777216.0f;  // 2^24: one fp16 subnormal ulp becomes 1
    const auto n = static_cast<std::uint32_t>(scaled);
    const float rest = scaled - static_cast<float>(n);
    const std::uint32_t r = n + ((rest > 0.5f || (rest == 0.5f && (n & 1u))) ? 1u : 0u);
    return fp16{std::uint16_t(sign | r)};
  }
  std::uint32_t v = a - 0x38000000u;  // rebias 127 -> 15 (in the exponent field)
  v += 0xfffu + ((v >> 13) & 1u);     // round to nearest even at bit 13
  return fp16{std::uint16_t(sign | (v >> 13))};
}

/// Converts a float to storage type T.
template <class T>
FAM_HOST_DEVICE inline T from_float(float f) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return f;
  } else if constexpr (std::is_same_v<T, bf16>) {
    return to_bf16(f);
  } else {
    static_assert(std::is_same_v<T, fp16>, "fam: storage types are float, fam::bf16, fam::fp16");
    return to_fp16(f);
  }
}

/// True for the storage types fam supports.
template <class T>
inline constexpr bool is_storage_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, bf16> || std::is_same_v<T, fp16>;

FAM_NAMESPACE_END

#endif  // FAM_TYPES_HPP_
