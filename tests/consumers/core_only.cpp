// The umbrella header compiles with the C++17 standard library alone: this file is compiled with
// no include path but fam's own include/ directory, and checks that neither Eigen nor xsimd was
// pulled in (xsimd lives in /usr/include on Debian, so its absence is checked by its macros).
#include "fam/fam.hpp"

#if defined(EIGEN_WORLD_VERSION) || defined(EIGEN_CORE_H)
#error "fam/fam.hpp must not include Eigen (use fam/eigen.hpp explicitly)"
#endif
#if defined(XSIMD_VERSION_MAJOR) || defined(XSIMD_HPP)
#error "fam/fam.hpp must not include xsimd (opt in through the SIMD backend header)"
#endif

int main() {
  fam::dynamic_config cfg(8, 4, 1, 2);
  return fam::supports(cfg).ok() && cfg.validate() == fam::status::ok ? 0 : 1;
}
