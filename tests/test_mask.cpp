// The public visibility function, pinned by literal pictures written by hand from SPEC §2-§3,
// and the window-boundary probe (T1) through the attention call.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "fam/fam.hpp"
#include "support/util.hpp"

namespace {

using fam::index_t;
using fam::mask_spec;
using fam::node;

/// Checks visible(spec, rows[i], cols[j]) against picture[i][j] ('x' visible, '.' not).
void check_picture(const mask_spec& spec, const std::vector<node>& nodes,
                   const std::vector<std::string>& picture) {
  REQUIRE(picture.size() == nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    REQUIRE(picture[i].size() == nodes.size());
    for (std::size_t j = 0; j < nodes.size(); ++j) {
      INFO("query row ", i, ", key column ", j);
      CHECK(fam::visible(spec, nodes[i], nodes[j]) == (picture[i][j] == 'x'));
    }
  }
}

std::vector<node> tokens(index_t L) {
  std::vector<node> v;
  for (index_t n = 0; n < L; ++n) v.push_back(node::tok(n));
  return v;
}

/// [FAM rows of block 0; tokens of block 0; FAM rows of block 1; ...] (FAM prepended per block).
std::vector<node> fam_layout(index_t B, index_t F, index_t L) {
  std::vector<node> v;
  for (index_t n = 0; n < L; ++n) {
    if (n % B == 0)
      for (index_t r = 0; r < F; ++r) v.push_back(node::fam_of(n / B, r));
    v.push_back(node::tok(n));
  }
  return v;
}

}  // namespace

TEST_SUITE("mask") {
  TEST_CASE("visible: BSWA pictures for B up to 4 and M up to 2") {
    check_picture(mask_spec::bswa(2, 1), tokens(6),
                  {"x.....",  // n=0
                   "xx....",  // n=1
                   "xxx...",  // n=2: block 1 sees block 0
                   "xxxx..",  // n=3
                   "..xxx.",  // n=4: block 2 sees block 1 only
                   "..xxxx"});
    check_picture(mask_spec::bswa(3, 1), tokens(7),
                  {"x......", "xx.....", "xxx....", "xxxx...", "xxxxx..", "xxxxxx.", "...xxxx"});
    check_picture(mask_spec::bswa(2, 0), tokens(5),  // M = 0: block-diagonal causal
                  {"x....", "xx...", "..x..", "..xx.", "....x"});
    check_picture(mask_spec::bswa(1, 2), tokens(5),  // B = 1: a window of M+1 = 3
                  {"x....", "xx...", "xxx..", ".xxx.", "..xxx"});
    check_picture(
        mask_spec::bswa(4, 2), tokens(13),
        {"x............", "xx...........", "xxx..........", "xxxx.........", "xxxxx........",
         "xxxxxx.......", "xxxxxxx......", "xxxxxxxx.....", "xxxxxxxxx....", "xxxxxxxxxx...",
         "xxxxxxxxxxx..", "xxxxxxxxxxxx.", "....xxxxxxxxx"});  // n=12: block 3 sees blocks 1 and 2
  }

  TEST_CASE("visible: full causal and sliding window pictures") {
    check_picture(mask_spec::full(), tokens(4), {"x...", "xx..", "xxx.", "xxxx"});
    check_picture(mask_spec::sliding_window(3), tokens(5),
                  {"x....", "xx...", "xxx..", ".xxx.", "..xxx"});
    check_picture(mask_spec::sliding_window(1), tokens(3), {"x..", ".x.", "..x"});
  }

  TEST_CASE("visible: FAM pictures with FAM rows prepended to each block") {
    // B=2, M=1, F=1, L=5: [f0 t0 t1 | f1 t2 t3 | f2 t4], f_t = the FAM that block t reads.
    check_picture(mask_spec::fam(2, 1, 1), fam_layout(2, 1, 5),
                  {"xxx.....",    // f0: its FAM and the whole block 0
                   "xx......",    // t0: f0, itself
                   "xxx.....",    // t1
                   "...xxx..",    // f1: f1, block 1 — never the memory block 0
                   ".xxxx...",    // t2: memory block 0, f1, itself
                   ".xxxxx..",    // t3
                   "......xx",    // f2: f2, the partial block 2
                   "....xxxx"});  // t4: memory block 1, f2, itself
    // B=2, M=0, F=2, L=4: FAM rows see each other bidirectionally.
    check_picture(mask_spec::fam(2, 0, 2), fam_layout(2, 2, 4),
                  {"xxxx....", "xxxx....", "xxx.....", "xxxx....", "....xxxx", "....xxxx",
                   "....xxx.", "....xxxx"});
  }

  TEST_CASE("visible: FAM rows exist only for the FAM variant and r below F") {
    CHECK_FALSE(fam::visible(mask_spec::bswa(2, 1), node::tok(0), node::fam_of(0, 0)));
    CHECK_FALSE(fam::visible(mask_spec::fam(2, 1, 0), node::tok(0), node::fam_of(0, 0)));
    CHECK_FALSE(fam::visible(mask_spec::fam(2, 1, 2), node::tok(0), node::fam_of(0, 2)));
    CHECK_FALSE(fam::visible(mask_spec::fam(2, 1, 2), node::fam_of(0, -1), node::tok(0)));
    CHECK_FALSE(fam::visible(mask_spec::full(), -1, 0));
  }

  TEST_CASE("visible_tokens and visible_pairs agree with visible by brute force") {
    testing::rng rng(testing::base_seed());
    INFO("seed ", testing::base_seed());
    for (int trial = 0; trial < 200; ++trial) {
      const index_t B = rng.integer(1, 9), M = rng.integer(0, 4), W = rng.integer(1, 12);
      const mask_spec specs[] = {mask_spec::full(), mask_spec::sliding_window(W),
                                 mask_spec::bswa(B, M), mask_spec::fam(B, M, 2)};
      for (const mask_spec& s : specs) {
        const index_t L = rng.integer(0, 60);
        index_t pairs = 0;
        for (index_t n = 0; n < L; ++n) {
          const fam::key_range r = fam::visible_tokens(s, n);
          for (index_t m = 0; m <= L; ++m) {
            const bool in_range = m >= r.lo && m <= r.hi;
            REQUIRE(fam::visible(s, n, m) == in_range);
            pairs += fam::visible(s, n, m) ? 1 : 0;
          }
        }
        CHECK(fam::visible_pairs(s, L) == pairs);
      }
    }
  }

  TEST_CASE("mask_spec validation rejects W below 1 and B below 1 and M below 0") {
    CHECK(mask_spec::sliding_window(0).validate() == fam::status::invalid_argument);
    CHECK(mask_spec::sliding_window(-3).validate() == fam::status::invalid_argument);
    CHECK(mask_spec::bswa(0, 1).validate() == fam::status::invalid_argument);
    CHECK(mask_spec::bswa(2, -1).validate() == fam::status::invalid_argument);
    CHECK(mask_spec::fam(2, 1, -1).validate() == fam::status::invalid_argument);
    CHECK(mask_spec::bswa(1, 0).validate() == fam::status::ok);
  }

  // T1: a marker at the first visible key lo(p) must reach query p, a marker at lo(p) - 1 and
  // one after p must not (their weights are exactly zero, so the probe is exact).
  TEST_CASE("window boundary probe T1") {
    const index_t D = 4;
    for (index_t B : {1, 2, 3, 7, 16})
      for (index_t M : {0, 1, 2, 3}) {
        const mask_spec spec = mask_spec::bswa(B, M);
        const index_t L = 4 * (M + 1) * B;
        fam::attention_config<> cfg(D, B, M, 0);
        for (index_t p = 0; p < L; ++p) {
          INFO("B=", B, " M=", M, " p=", p);
          // lo(p) written from SPEC §2 here, not taken from the library
          const index_t lo = p / B - M > 0 ? (p / B - M) * B : 0;
          const index_t len = p + 2 < L ? p + 2 : L;  // one future token when there is room
          std::vector<float> q(len * D, 0.0f), k(len * D, 0.0f), v(len * D, 0.0f), out(len * D);
          q[p * D + 3] = 1.0f;
          auto marker = [&](index_t m, index_t channel) {
            k[m * D + 3] = 20.0f;  // a large logit: the marker dominates when visible
            v[m * D + channel] = 1.0f;
          };
          marker(lo, 0);
          if (lo > 0) marker(lo - 1, 1);
          if (p + 1 < len) marker(p + 1, 2);
          REQUIRE(fam::attention(cfg, spec, fam::make_view<const float>(q.data(), len, 1, D),
                                 fam::make_view<const float>(k.data(), len, 1, D),
                                 fam::make_view<const float>(v.data(), len, 1, D),
                                 fam::make_view(out.data(), len, 1, D)) == fam::status::ok);
          CHECK(out[p * D + 0] > 0.5f);   // lo(p) is visible
          CHECK(out[p * D + 1] == 0.0f);  // lo(p) - 1 is not
          CHECK(out[p * D + 2] == 0.0f);  // nor the future
        }
      }
  }
}
