// A consumer of fam::simd: the core plus xsimd, whose headers must come through the target.
#include <xsimd/xsimd.hpp>

#include "fam/fam.hpp"

int main() {
  fam::dynamic_config cfg(8, 4, 1, 2);
  return fam::supports(cfg).ok() && XSIMD_VERSION_MAJOR > 0 ? 0 : 1;
}
