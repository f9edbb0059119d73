// Regression: a backend declared after fam/fam.hpp must still get its own kernel (the
// algorithm finds kernels by argument-dependent lookup). Exits non-zero if the SIMD kernel
// was silently replaced by the reference one.
#include "fam/fam.hpp"
// after the algorithm on purpose:
#include "fam/backend/simd.hpp"

#include <cstdio>
#include <vector>

int main() {
  fam::attention_config<> cfg(8, 1, 0, 0);
  std::vector<float> x(64 * 8, 0.5f), out(64 * 8);
  fam::attention_stats stats;
  fam::simd_backend<> backend;
  backend.stats = &stats;
  const auto v = fam::make_view<const float>(x.data(), 64, 1, 8);
  if (fam::attention(cfg, fam::mask_spec::full(), v, v, v, fam::make_view(out.data(), 64, 1, 8),
                     {}, backend) != fam::status::ok)
    return 2;
  std::printf("SIMD kernel tiles: %lld\n", static_cast<long long>(stats.key_tiles.load()));
  return stats.key_tiles.load() > 0 ? 0 : 1;
}
