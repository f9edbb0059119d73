// Compile-fail test: a block size of 0 must be rejected at compile time with a message that
// starts with "fam:". Built twice: with FAM_SHOULD_FAIL (must fail, with that message) and
// without (the twin, which must compile, so the failure is the static_assert and nothing else).
#include "fam/fam.hpp"

#ifdef FAM_SHOULD_FAIL
using bad = fam::attention_config<64, 0, 1, 0>;  // BlockSize = 0
#else
using bad = fam::attention_config<64, 1, 1, 0>;
#endif

int main() {
  bad cfg;
  return cfg.block_size() == 0 ? 1 : 0;
}
