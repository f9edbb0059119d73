// Interop with Eigen: views of row-major matrices (the usual Q/K/V projection outputs) and
// one head of a view as an Eigen::Map.
#include <doctest/doctest.h>

#include <Eigen/Core>

#include "fam/eigen.hpp"
#include "fam/fam.hpp"
#include "support/util.hpp"

namespace {
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
}

TEST_SUITE("eigen") {
  TEST_CASE("views of row-major Eigen matrices give the contiguous result bitwise") {
    testing::rng rng(testing::base_seed() + 40);
    const fam::index_t L = 13, H = 4, Hkv = 2, D = 5;
    std::vector<float> q = rng.floats(L * H * D), k = rng.floats(L * Hkv * D),
                       v = rng.floats(L * Hkv * D), out(L * H * D);
    fam::attention_config<> cfg(D, 1, 0, 0);
    cfg.set_heads(H, Hkv);
    const auto spec = fam::mask_spec::bswa(4, 1);
    REQUIRE(fam::attention(cfg, spec, fam::make_view<const float>(q.data(), L, H, D),
                           fam::make_view<const float>(k.data(), L, Hkv, D),
                           fam::make_view<const float>(v.data(), L, Hkv, D),
                           fam::make_view(out.data(), L, H, D)) == fam::status::ok);

    const RowMatrix Q = Eigen::Map<const RowMatrix>(q.data(), L, H * D);
    const RowMatrix K = Eigen::Map<const RowMatrix>(k.data(), L, Hkv * D);
    Eigen::Map<const RowMatrix> V(v.data(), L, Hkv * D);
    RowMatrix O(L, H * D);
    REQUIRE(fam::attention(cfg, spec, fam::as_view(Q, H), fam::as_view(K, Hkv),
                           fam::as_view(V, Hkv), fam::as_view(O, H)) == fam::status::ok);
    CHECK(testing::bitwise_equal(std::vector<float>(O.data(), O.data() + O.size()), out));

    // one head as a [L, D] map with the view's row stride
    const auto head1 = fam::head_matrix(fam::as_view(O, H), 1);
    CHECK(head1.rows() == L);
    CHECK(head1.cols() == D);
    CHECK(head1(3, 2) == out[(3 * H + 1) * D + 2]);
  }
}
