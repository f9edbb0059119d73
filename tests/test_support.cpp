// test_support.cpp: fam::supports() reports every reason a configuration cannot run, each fault
// alone gives exactly its reason, several faults give all of them, and the answer agrees with
// validate() plus the backend's head-dim limit over a sweep of configurations.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "fam/fam.hpp"
#include "fam/support.hpp"
#include "support/util.hpp"

namespace {

using fam::index_t;
using fam::support_reason;
using cfg_t = fam::dynamic_config;

constexpr index_t kMax = std::numeric_limits<index_t>::max();

/// A backend whose kernels are the reference ones but whose head dim is limited to 64.
struct small_backend : fam::reference_backend {
  static constexpr index_t max_head_dim = 64;
};

cfg_t valid_config() {
  cfg_t cfg(16, 4, 2, 3);
  cfg.set_heads(4, 2);
  cfg.phi_dim = 8;
  return cfg;
}

std::uint32_t bit(support_reason r) { return static_cast<std::uint32_t>(r); }

/// supports() must flag exactly `expected`, and validate() must fail unless only the backend
/// limit is hit.
template <class Backend = fam::reference_backend, class Config>
void check_exactly(const Config& cfg, std::uint32_t expected) {
  const fam::support_report rep = fam::supports<Backend>(cfg);
  INFO("reasons: " << fam::to_string(rep));
  CHECK(rep.reasons == expected);
  CHECK(rep.ok() == (expected == 0));
  const bool backend_only = expected == bit(support_reason::head_dim_too_large);
  if (expected != 0 && !backend_only) CHECK(cfg.validate() != fam::status::ok);
}

}  // namespace

TEST_SUITE("support") {
  TEST_CASE("a valid configuration is supported with no reason") {
    const fam::support_report rep = fam::supports(valid_config());
    CHECK(rep.ok());
    CHECK(static_cast<bool>(rep));
    CHECK(rep.count() == 0);
    CHECK(fam::to_string(rep) == "supported");
    // compile-time parameters, MHA, MQA, F = 0, M = 0, B = 1, D = 1
    fam::attention_config<8, 4, 1, 2> fixed;
    fixed.set_heads(8, 1);
    CHECK(fam::supports(fixed).ok());
    cfg_t tiny(1, 1, 0, 0);
    CHECK(fam::supports(tiny).ok());
  }

  TEST_CASE("each fault alone reports exactly its reason") {
    {
      cfg_t c(0, 4, 2, 3);
      check_exactly(c, bit(support_reason::invalid_head_dim));
    }
    {
      cfg_t c(-5, 4, 2, 3);
      check_exactly(c, bit(support_reason::invalid_head_dim));
    }
    {
      cfg_t c(16, 0, 2, 3);
      check_exactly(c, bit(support_reason::invalid_block_size));
    }
    {
      cfg_t c(16, 4, -1, 3);
      check_exactly(c, bit(support_reason::invalid_mem_segments));
    }
    {
      cfg_t c(16, 4, 2, -1);
      check_exactly(c, bit(support_reason::invalid_fam_len));
    }
    {
      cfg_t c = valid_config();
      c.set_heads(0, 1);
      check_exactly(c, bit(support_reason::invalid_heads));
      c.set_heads(4, 0);
      check_exactly(c, bit(support_reason::invalid_heads));
      c.set_heads(-4, -2);
      check_exactly(c, bit(support_reason::invalid_heads));
    }
    {
      cfg_t c = valid_config();
      c.set_heads(6, 4);
      check_exactly(c, bit(support_reason::heads_not_divisible));
      c.set_heads(2, 4);
      check_exactly(c, bit(support_reason::heads_not_divisible));
    }
    {
      cfg_t c = valid_config();
      c.phi_dim = -1;
      check_exactly(c, bit(support_reason::invalid_phi_dim));
    }
    for (double s : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity()}) {
      cfg_t c = valid_config();
      c.set_scale(s);
      check_exactly(c, bit(support_reason::invalid_scale));
    }
    {
      cfg_t c(1025, 4, 2, 3);
      check_exactly(c, bit(support_reason::head_dim_too_large));
      cfg_t at_limit(1024, 4, 2, 3);
      check_exactly(at_limit, 0);
    }
    {
      // a static parameter given another run-time value: invisible except through validate()
      fam::attention_config<8, 4, 1, 2> c(16);
      check_exactly(c, bit(support_reason::static_mismatch));
      fam::attention_config<8, fam::dynamic, 1, 2> d(8, 4, 3);
      check_exactly(d, bit(support_reason::static_mismatch));
    }
  }

  TEST_CASE("sizes that overflow the index type report too_large") {
    {
      cfg_t c(16, index_t{1} << 58, 2, 3);  // ring [H, M+1, B, D]
      check_exactly(c, bit(support_reason::too_large));
    }
    {
      cfg_t c(16, 4, kMax / 64, 3);  // M + 1 would overflow
      check_exactly(c, bit(support_reason::too_large));
    }
    {
      cfg_t c(16, 4, 2, kMax - 1);  // F + 1 would overflow
      check_exactly(c, bit(support_reason::too_large));
    }
    {
      cfg_t c(16, 4, 2, index_t{1} << 40);  // Φ [F, phi_dim]
      c.set_heads(1, 1);
      c.phi_dim = index_t{1} << 30;
      check_exactly(c, bit(support_reason::too_large));
    }
    {
      cfg_t c(1024, 4, 2, 3);  // many heads
      c.set_heads(index_t{1} << 52, 1);
      check_exactly(c, bit(support_reason::too_large));
    }
  }

  TEST_CASE("several faults report every one of them") {
    {
      cfg_t c(0, 0, -1, -1);
      c.set_heads(0, 0);
      c.phi_dim = -3;
      const std::uint32_t all =
          bit(support_reason::invalid_head_dim) | bit(support_reason::invalid_block_size) |
          bit(support_reason::invalid_mem_segments) | bit(support_reason::invalid_fam_len) |
          bit(support_reason::invalid_heads) | bit(support_reason::invalid_phi_dim);
      check_exactly(c, all);
      CHECK(fam::supports(c).count() == 6);
    }
    {
      cfg_t c(2048, 4, 2, 3);
      c.set_heads(6, 4);
      c.set_scale(std::nan(""));
      check_exactly(c, bit(support_reason::head_dim_too_large) |
                           bit(support_reason::heads_not_divisible) |
                           bit(support_reason::invalid_scale));
    }
    {
      cfg_t c(16, index_t{1} << 58, 2, 3);
      c.set_heads(6, 4);
      check_exactly(c, bit(support_reason::too_large) | bit(support_reason::heads_not_divisible));
    }
  }

  TEST_CASE("to_string lists every reason separated by semicolons") {
    cfg_t c(2048, 0, 2, 3);
    c.set_heads(6, 4);
    const fam::support_report rep = fam::supports(c);
    REQUIRE(rep.count() == 3);
    const std::string text = fam::to_string(rep);
    CHECK(text.find(fam::to_string(support_reason::invalid_block_size)) != std::string::npos);
    CHECK(text.find(fam::to_string(support_reason::heads_not_divisible)) != std::string::npos);
    CHECK(text.find(fam::to_string(support_reason::head_dim_too_large)) != std::string::npos);
    std::size_t separators = 0;
    for (std::size_t p = text.find("; "); p != std::string::npos; p = text.find("; ", p + 1))
      ++separators;
    CHECK(separators == 2);
    int visited = 0;
    rep.for_each([&visited](support_reason) { ++visited; });
    CHECK(visited == 3);
    for (support_reason r : fam::all_support_reasons)
      CHECK(std::string(fam::to_string(r)) != "unknown reason");
  }

  TEST_CASE("the backend's head-dim limit is the backend's own") {
    cfg_t c(128, 4, 2, 3);
    CHECK(fam::supports(c).ok());
    check_exactly<small_backend>(c, bit(support_reason::head_dim_too_large));
    cfg_t small(64, 4, 2, 3);
    CHECK(fam::supports<small_backend>(small).ok());
  }

  TEST_CASE("supported means validate ok and head dim within the backend limit") {
    const std::uint64_t seed = testing::base_seed();
    INFO("seed " << seed);
    testing::rng r(seed);
    const index_t dims[] = {-1, 0, 1, 8, 64, 65, 1024, 1025, index_t{1} << 40};
    const index_t blocks[] = {-2, 0, 1, 7, 1024, index_t{1} << 50, kMax};
    const index_t mems[] = {-1, 0, 3, 1000, kMax / 64 - 1, kMax / 64};
    const index_t fams[] = {-1, 0, 64, index_t{1} << 45, kMax / 64};
    const index_t heads[] = {-1, 0, 1, 2, 3, 4, 6, 8, index_t{1} << 40};
    const index_t phis[] = {-1, 0, 16, index_t{1} << 30};
    const double scales[] = {0.0, -1.0, 0.125, 1.0, 1e300, std::numeric_limits<double>::infinity()};
    auto pick = [&r](const auto& arr) {
      const index_t n = static_cast<index_t>(sizeof(arr) / sizeof(arr[0]));
      return arr[r.integer(0, n - 1)];
    };
    int supported = 0;
    for (int i = 0; i < 4000; ++i) {
      cfg_t c(pick(dims), pick(blocks), pick(mems), pick(fams));
      c.set_heads(pick(heads), pick(heads));
      c.phi_dim = pick(phis);
      if (r.integer(0, 1) == 1) c.set_scale(pick(scales));
      const fam::support_report rep = fam::supports(c);
      const fam::support_report small = fam::supports<small_backend>(c);
      const bool valid = c.validate() == fam::status::ok;
      INFO("D " << c.head_dim() << " B " << c.block_size() << " M " << c.mem_segments() << " F "
                << c.fam_len() << " H " << c.heads << " Hkv " << c.kv_heads << " phi " << c.phi_dim
                << " : " << fam::to_string(rep));
      CHECK(rep.ok() == (valid && c.head_dim() <= fam::reference_backend::max_head_dim));
      CHECK(small.ok() == (valid && c.head_dim() <= small_backend::max_head_dim));
      // without the backend limit, the reasons are those of validate()
      const std::uint32_t core = rep.reasons & ~bit(support_reason::head_dim_too_large);
      CHECK((core == 0) == valid);
      CHECK(rep.has(support_reason::static_mismatch) == false);
      supported += rep.ok() ? 1 : 0;
    }
    MESSAGE("supported configurations in the sweep: " << supported);
    CHECK(supported > 0);
  }
}
