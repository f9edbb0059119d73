// Widening bf16/fp16 storage to fp32 for the SIMD backend, one overload per ISA (xsimd 8.1 has
// no bf16/fp16 types). The generic versions are plain loops the compiler vectorizes for bf16
// (a 16-bit shift) and that use the portable conversion for fp16; ISAs with F16C get the
// hardware conversion. Every function is tagged with the xsimd Arch it is built for.
#ifndef FAM_BACKEND_SIMD_CONVERT_HPP_
#define FAM_BACKEND_SIMD_CONVERT_HPP_

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../config.hpp"
#include "../types.hpp"

#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

FAM_NAMESPACE_BEGIN
namespace simd {

/// dst[i] = float(src[i]) for i < n.
template <class Arch>
inline void widen(const float* src, float* dst, index_t n, Arch) noexcept {
  std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
}

template <class Arch>
inline void widen(const bf16* src, float* dst, index_t n, Arch) noexcept {
  index_t i = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    for (; i + 16 <= n; i += 16) {  // bf16 -> fp32 is a 16-bit left shift
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
      _mm512_storeu_ps(dst + i,
                       _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
  }
#endif
#if defined(__AVX2__)
  if constexpr (std::is_base_of_v<xsimd::avx2, Arch>) {
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      _mm256_storeu_ps(dst + i,
                       _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
  }
#endif
  for (; i < n; ++i) {
    const std::uint32_t u = std::uint32_t(src[i].bits) << 16;
    std::memcpy(dst + i, &u, sizeof(float));
  }
}

template <class Arch>
inline void widen(const fp16* src, float* dst, index_t n, Arch) noexcept {
  index_t i = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    for (; i + 16 <= n; i += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
  }
#endif
#if defined(__F16C__)
  if constexpr (std::is_base_of_v<xsimd::avx, Arch>) {
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
  }
#endif
  for (; i < n; ++i) dst[i] = to_float(src[i]);
}

/// One batch of floats from the next fbatch<Arch>::size elements at p, widened exactly: what
/// widen() followed by a load gives, without the buffer. Micro-kernels that read a bf16 or
/// fp16 tile in place (decode: one row group per tile) use it.
template <class Arch>
inline xsimd::batch<float, Arch> load_float(const float* p) noexcept {
  return xsimd::batch<float, Arch>::load_unaligned(p);
}

template <class Arch>
inline xsimd::batch<float, Arch> load_float(const bf16* p) noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
#endif
#if defined(__AVX2__)
  if constexpr (std::is_base_of_v<xsimd::avx2, Arch>) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
#endif
  alignas(64) float lanes[xsimd::batch<float, Arch>::size];
  widen(p, lanes, static_cast<index_t>(xsimd::batch<float, Arch>::size), Arch{});
  return xsimd::batch<float, Arch>::load_aligned(lanes);
}

template <class Arch>
inline xsimd::batch<float, Arch> load_float(const fp16* p) noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
#endif
#if defined(__F16C__)
  if constexpr (std::is_base_of_v<xsimd::avx, Arch>) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
#endif
  alignas(64) float lanes[xsimd::batch<float, Arch>::size];
  widen(p, lanes, static_cast<index_t>(xsimd::batch<float, Arch>::size), Arch{});
  return xsimd::batch<float, Arch>::load_aligned(lanes);
}

}  // namespace simd
FAM_NAMESPACE_END

#endif  // FAM_BACKEND_SIMD_CONVERT_HPP_
