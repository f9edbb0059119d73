// Everything that depends on the xsimd version lives here (Debian ships xsimd 8.1, whose API
// differs from later releases: hadd instead of reduce_add, no reduce_max, no masked loads).
// Every function takes the architecture as a template parameter, so translation units built
// for different ISAs never define one symbol two ways.
#ifndef FAM_DETAIL_SIMD_COMPAT_HPP_
#define FAM_DETAIL_SIMD_COMPAT_HPP_

// g++ 12 warns falsely (-Wuninitialized, -Wmaybe-uninitialized) inside its own AVX-512
// headers (_mm512_undefined_ps) when they are inlined; silence exactly those, for those headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <xsimd/xsimd.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "macros.hpp"

FAM_NAMESPACE_BEGIN
namespace simd {

template <class Arch>
using fbatch = xsimd::batch<float, Arch>;

/// Sum of the lanes, in xsimd's fixed tree order (deterministic for one ISA).
template <class Arch>
inline float reduce_add(const fbatch<Arch>& x) noexcept {
#if XSIMD_VERSION_MAJOR < 9
  return xsimd::hadd(x);
#else
  return xsimd::reduce_add(x);
#endif
}

/// Largest lane of x, which holds no NaN (the caller tests for NaN itself). A tree of log2(n)
/// steps: the softmax takes one per row and tile, and a chain of n - 1 dependent compares there
/// cost 4-5 % of a whole prefill (BSWA fp32 186-191 -> 180-181 ms, bf16 146-153 -> 142 ms).
template <class Arch>
inline float reduce_max(const fbatch<Arch>& x) noexcept {
  constexpr std::size_t n = fbatch<Arch>::size;
#if defined(__AVX512F__)
  if constexpr (n == 16) return _mm512_reduce_max_ps(x);
#endif
  alignas(64) float lanes[n];
  x.store_aligned(lanes);
  for (std::size_t w = n / 2; w > 0; w /= 2)
    for (std::size_t i = 0; i < w; ++i)
      lanes[i] = lanes[i + w] > lanes[i] ? lanes[i + w] : lanes[i];
  return lanes[0];
}

/// Keeps x in a register from here on: an empty asm that claims to modify it. g++ otherwise
/// folds the load that produced x back into every FMA that uses it, so a micro-kernel with
/// few rows (decode) issues rows x vectors loads per step instead of vectors, and waits on the
/// load ports rather than on the FMA units. Changes no value.
template <class Arch>
inline void keep_in_register(fbatch<Arch>& x) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  typename fbatch<Arch>::register_type r = x;
  asm("" : "+v"(r));
  x = r;
#else
  (void)x;
#endif
}

/// Asks for the cache line at p ahead of its use, into L2 and closer (prefetcht1 on x86): a
/// hint that changes no value; nothing where the compiler has no builtin for it.
inline void prefetch_line(const void* p) noexcept {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 2);
#else
  (void)p;
#endif
}

}  // namespace simd
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_SIMD_COMPAT_HPP_
