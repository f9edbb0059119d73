// Compile-fail test: a backend tag that is not a fam backend gets one clear "fam:" error.
#include <vector>

#include "fam/fam.hpp"

#ifdef FAM_SHOULD_FAIL
struct not_a_backend {
  static constexpr fam::index_t max_head_dim = 64;
};
using backend = not_a_backend;
#else
struct my_backend : fam::reference_backend {};
using backend = my_backend;
#endif

int main() {
  fam::attention_config<> cfg(4, 2, 1, 0);
  std::vector<float> x(4, 0.5f), out(4);
  const auto in = fam::make_view<const float>(x.data(), 1, 1, 4);
  return fam::attention(cfg, fam::mask_spec::full(), in, in, in,
                        fam::make_view(out.data(), 1, 1, 4), {}, backend{}) == fam::status::ok
             ? 0
             : 1;
}
