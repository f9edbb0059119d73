// Which fam backend computes the attention: the reference (scalar, double accumulation) or,
// when the build has xsimd (CMake target fam::simd), the SIMD one. Both give the same numbers
// up to float rounding; the engine picks at run time.
#pragma once

#include <stdexcept>
#include <string>

#include "fam/fam.hpp"
#if LLAMA2_HAVE_SIMD
#include "fam/backend/simd.hpp"
#endif

namespace llama2 {

enum class backend_kind { reference, simd };

inline constexpr bool kHaveSimd = LLAMA2_HAVE_SIMD;

/// The fastest backend this build has.
inline backend_kind default_backend() {
  return kHaveSimd ? backend_kind::simd : backend_kind::reference;
}

inline const char* backend_name(backend_kind k) {
  return k == backend_kind::simd ? "simd" : "reference";
}

inline backend_kind parse_backend(const std::string& s) {
  if (s == "reference") return backend_kind::reference;
  if (s == "simd" && kHaveSimd) return backend_kind::simd;
  throw std::runtime_error(s == "simd" ? "this build has no SIMD backend (xsimd not found)"
                                       : "--backend reference|simd");
}

/// fn(backend) with the backend tag of kind k.
template <class Fn>
decltype(auto) with_backend(backend_kind k, Fn&& fn) {
#if LLAMA2_HAVE_SIMD
  if (k == backend_kind::simd) return fn(fam::simd_backend<>{});
#endif
  (void)k;
  return fn(fam::reference_backend{});
}

}  // namespace llama2
