// A consumer of fam: includes the umbrella header (and nothing else of fam's build), runs one
// BSWA attention and one capability query, and checks the version macros and the inline ABI
// namespace. Built by the consumer projects of tests/consumers (add_subdirectory,
// find_package after cmake --install, pkg-config); FAM_EXPECTED_VERSION is "major.minor.patch"
// of the project that installed it.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "fam/fam.hpp"

#define FAM_CONSUMER_STR2(x) #x
#define FAM_CONSUMER_STR(x) FAM_CONSUMER_STR2(x)

static_assert(std::is_same_v<fam::status, fam::FAM_ABI_NAMESPACE::status>,
              "fam's names live in the inline ABI namespace");
static_assert(FAM_VERSION ==
                  FAM_VERSION_MAJOR * 10000 + FAM_VERSION_MINOR * 100 + FAM_VERSION_PATCH,
              "FAM_VERSION");

int main() {
#ifdef FAM_EXPECTED_VERSION
  const std::string expected = FAM_CONSUMER_STR(FAM_EXPECTED_VERSION);
  const std::string have = std::to_string(FAM_VERSION_MAJOR) + "." +
                           std::to_string(FAM_VERSION_MINOR) + "." +
                           std::to_string(FAM_VERSION_PATCH);
  if (have != expected) {
    std::printf("version macros say %s, the package %s\n", have.c_str(), expected.c_str());
    return 1;
  }
#endif
  const fam::index_t L = 9, H = 2, D = 4;
  fam::dynamic_config cfg(D, 4, 1, 0);
  cfg.set_heads(H, 1);
  if (!fam::supports(cfg)) {
    std::printf("supports(): %s\n", fam::to_string(fam::supports(cfg)).c_str());
    return 1;
  }
  fam::dynamic_config bad(0, 4, 1, 0);
  if (fam::supports(bad).ok()) return 1;

  std::vector<float> q(L * H * D, 0.25f), k(L * D, 0.5f), v(L * D), out(L * H * D, -1.0f);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 7);
  const fam::status s = fam::attention(
      cfg, fam::mask_spec::bswa(4, 1), fam::make_view<const float>(q.data(), L, H, D),
      fam::make_view<const float>(k.data(), L, 1, D),
      fam::make_view<const float>(v.data(), L, 1, D), fam::make_view(out.data(), L, H, D));
  if (s != fam::status::ok) {
    std::printf("attention: %s\n", fam::to_string(s));
    return 1;
  }
  // equal keys: every visible value weighs the same; token 0 sees only itself
  for (fam::index_t d = 0; d < D; ++d)
    if (std::fabs(out[d] - v[d]) > 1e-6f) return 1;
  std::printf("fam %d.%d.%d consumer: ok\n", FAM_VERSION_MAJOR, FAM_VERSION_MINOR,
              FAM_VERSION_PATCH);
  return 0;
}
