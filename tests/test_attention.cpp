// Whole-sequence attention (full, sliding window, BSWA) and the fused FAM block against the
// independent float64 oracle, plus the reductions and invariances of SPEC §7.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "fam/fam.hpp"
#include "support/oracle.hpp"
#include "support/util.hpp"

namespace {

using fam::index_t;
using fam::mask_spec;

struct problem {
  index_t L, H, Hkv, D;
  std::vector<float> q, k, v;  // [L, H, D], [L, Hkv, D], [L, Hkv, D]
};

problem random_problem(testing::rng& rng, index_t L, index_t H, index_t Hkv, index_t D,
                       double qk_scale = 1.0) {
  return {L,
          H,
          Hkv,
          D,
          rng.floats(L * H * D, -qk_scale, qk_scale),
          rng.floats(L * Hkv * D, -qk_scale, qk_scale),
          rng.floats(L * Hkv * D, -2.0, 2.0)};
}

fam::attention_config<> config_for(const problem& p) {
  fam::attention_config<> cfg(p.D, 1, 0, 0);
  cfg.set_heads(p.H, p.Hkv);
  return cfg;
}

struct result {
  std::vector<float> out, lse;
};

result run(const problem& p, const mask_spec& spec, const fam::attention_config<>& cfg) {
  result r{std::vector<float>(p.L * p.H * p.D, -7.0f), std::vector<float>(p.L * p.H, -7.0f)};
  const fam::status s = fam::attention(
      cfg, spec, fam::make_view<const float>(p.q.data(), p.L, p.H, p.D),
      fam::make_view<const float>(p.k.data(), p.L, p.Hkv, p.D),
      fam::make_view<const float>(p.v.data(), p.L, p.Hkv, p.D),
      fam::make_view(r.out.data(), p.L, p.H, p.D), fam::make_lse_view(r.lse.data(), p.H));
  REQUIRE(s == fam::status::ok);
  return r;
}

oracle::attn_result run_oracle(const problem& p, const mask_spec& spec, double scale) {
  const oracle::mask kind = spec.kind == fam::variant::full_causal      ? oracle::mask::full
                            : spec.kind == fam::variant::sliding_window ? oracle::mask::window
                                                                        : oracle::mask::bswa;
  return oracle::token_attention(kind, spec.window, spec.block, spec.memory, p.L, int(p.H),
                                 int(p.Hkv), int(p.D), scale, testing::to_double(p.q),
                                 testing::to_double(p.k), testing::to_double(p.v));
}

/// Lengths of SPEC §7's sweeps: 0, < B, partial last blocks, k(M+1)B +- 1.
std::vector<index_t> lengths(index_t B, index_t M) {
  const index_t W = (M + 1) * B;
  std::vector<index_t> ls = {0, 1,     B - 1,     B,         B + 1,        W - 1,
                             W, W + 1, 2 * W - 1, 2 * W + 1, 3 * W + B / 2};
  ls.erase(std::remove_if(ls.begin(), ls.end(), [](index_t l) { return l < 0; }), ls.end());
  return ls;
}

const index_t kHeads[][2] = {{1, 1}, {4, 4}, {4, 2}, {6, 3}, {8, 1}, {3, 1}};

void sweep_against_oracle(index_t max_block, int trials, std::uint64_t seed) {
  testing::rng rng(seed);
  MESSAGE("sweep seed ", seed);
  for (int trial = 0; trial < trials; ++trial) {
    const index_t B = rng.integer(1, max_block), M = rng.integer(0, 3);
    const index_t D = rng.integer(1, 24), W = rng.integer(1, 2 * B + 3);
    const auto& hh = kHeads[rng.integer(0, 5)];
    const std::vector<index_t> ls = lengths(B, M);
    const index_t L = ls[static_cast<std::size_t>(rng.integer(0, index_t(ls.size()) - 1))];
    const problem p = random_problem(rng, L, hh[0], hh[1], D);
    fam::attention_config<> cfg = config_for(p);
    if (rng.integer(0, 1) == 1) cfg.set_scale(rng.uniform(0.05, 2.0));
    for (const mask_spec& spec :
         {mask_spec::full(), mask_spec::sliding_window(W), mask_spec::bswa(B, M)}) {
      INFO("trial ", trial, " kind ", int(spec.kind), " B=", B, " M=", M, " W=", W, " D=", D,
           " H=", hh[0], " Hkv=", hh[1], " L=", L);
      const result got = run(p, spec, cfg);
      const oracle::attn_result want = run_oracle(p, spec, cfg.scale());
      CHECK(testing::close_to_oracle(got.out, want.out, testing::max_abs(p.v)));
      CHECK(testing::close_to_oracle(got.lse, want.lse, 0.0, 1e-5 * (1.0 + L)));
    }
  }
}

}  // namespace

TEST_SUITE("attention") {
  TEST_CASE("full and window and BSWA match the float64 oracle over random shapes") {
    sweep_against_oracle(9, 150, testing::base_seed());
  }

  TEST_CASE("BSWA with M at least nblocks-1 is full causal and with M 0 is block-local") {
    testing::rng rng(testing::base_seed() + 1);
    for (int trial = 0; trial < 30; ++trial) {
      const index_t B = rng.integer(1, 6), L = rng.integer(1, 30), nblocks = (L + B - 1) / B;
      const problem p = random_problem(rng, L, 2, 1, 8);
      const fam::attention_config<> cfg = config_for(p);
      INFO("B=", B, " L=", L);
      // M >= nblocks - 1: equal to full causal (up to rounding), against the full oracle
      const result big_m = run(p, mask_spec::bswa(B, nblocks - 1 + rng.integer(0, 2)), cfg);
      CHECK(testing::close_to_oracle(big_m.out, run_oracle(p, mask_spec::full(), cfg.scale()).out,
                                     testing::max_abs(p.v)));
      // M = 0: each block alone is a full causal problem
      const result local = run(p, mask_spec::bswa(B, 0), cfg);
      for (index_t b0 = 0; b0 < L; b0 += B) {
        const index_t len = std::min(B, L - b0);
        problem blk{len,
                    2,
                    1,
                    8,
                    std::vector<float>(p.q.begin() + b0 * 16, p.q.begin() + (b0 + len) * 16),
                    std::vector<float>(p.k.begin() + b0 * 8, p.k.begin() + (b0 + len) * 8),
                    std::vector<float>(p.v.begin() + b0 * 8, p.v.begin() + (b0 + len) * 8)};
        const oracle::attn_result want = run_oracle(blk, mask_spec::full(), cfg.scale());
        std::vector<float> got(local.out.begin() + b0 * 16, local.out.begin() + (b0 + len) * 16);
        CHECK(testing::close_to_oracle(got, want.out, testing::max_abs(p.v)));
      }
    }
  }

  TEST_CASE("BSWA with B 1 equals the window M+1") {
    testing::rng rng(testing::base_seed() + 2);
    for (index_t M : {0, 1, 2, 5}) {
      const problem p = random_problem(rng, 40, 2, 2, 5);
      const fam::attention_config<> cfg = config_for(p);
      const result a = run(p, mask_spec::bswa(1, M), cfg);
      const result b = run(p, mask_spec::sliding_window(M + 1), cfg);
      CHECK(testing::close_to_oracle(a.out, testing::to_double(b.out), testing::max_abs(p.v)));
    }
  }

  TEST_CASE("GQA and MQA equal MHA with kv heads repeated bitwise") {
    testing::rng rng(testing::base_seed() + 3);
    for (const auto& hh : kHeads) {
      const index_t H = hh[0], Hkv = hh[1], D = 7, L = 23;
      problem gqa = random_problem(rng, L, H, Hkv, D);
      problem mha{L, H, H, D, gqa.q, std::vector<float>(L * H * D), std::vector<float>(L * H * D)};
      for (index_t n = 0; n < L; ++n)
        for (index_t h = 0; h < H; ++h)
          for (index_t d = 0; d < D; ++d) {
            const index_t g = h / (H / Hkv);
            mha.k[(n * H + h) * D + d] = gqa.k[(n * Hkv + g) * D + d];
            mha.v[(n * H + h) * D + d] = gqa.v[(n * Hkv + g) * D + d];
          }
      for (const mask_spec& spec : {mask_spec::full(), mask_spec::bswa(3, 1)}) {
        INFO("H=", H, " Hkv=", Hkv);
        CHECK(testing::bitwise_equal(run(gqa, spec, config_for(gqa)).out,
                                     run(mha, spec, config_for(mha)).out));
      }
    }
  }

  TEST_CASE("head mapping: query head h returns the constant of kv head h over group size") {
    const index_t head_pairs[][2] = {{1, 1}, {4, 4}, {6, 2}, {6, 3}, {8, 1}, {12, 4}, {48, 8}};
    for (const auto& hh : head_pairs) {
      const index_t H = hh[0], Hkv = hh[1], D = 3, L = 5;
      problem p{L,
                H,
                Hkv,
                D,
                std::vector<float>(L * H * D, 0.1f),
                std::vector<float>(L * Hkv * D, 0.2f),
                std::vector<float>(L * Hkv * D)};
      for (index_t n = 0; n < L; ++n)
        for (index_t g = 0; g < Hkv; ++g)
          for (index_t d = 0; d < D; ++d) p.v[(n * Hkv + g) * D + d] = float(g + 1);
      const result r = run(p, mask_spec::bswa(2, 1), config_for(p));
      for (index_t n = 0; n < L; ++n)
        for (index_t h = 0; h < H; ++h) {
          INFO("H=", H, " Hkv=", Hkv, " h=", h);
          CHECK(r.out[(n * H + h) * D] == doctest::Approx(double(h / (H / Hkv) + 1)));
        }
    }
  }

  TEST_CASE("strided and head-major and offset views give bitwise the contiguous result") {
    testing::rng rng(testing::base_seed() + 4);
    const index_t L = 19, H = 4, Hkv = 2, D = 6, pad = 3;
    const problem p = random_problem(rng, L, H, Hkv, D);
    const fam::attention_config<> cfg = config_for(p);
    const mask_spec spec = mask_spec::bswa(4, 2);
    const result base = run(p, spec, cfg);
    // head-major q/out with padded rows, token-major k/v with padded heads, base offset by 1
    std::vector<float> q(1 + H * L * (D + pad)), k(1 + L * Hkv * (D + pad)),
        v(1 + L * Hkv * (D + pad)), out(1 + H * L * (D + pad), 0.0f);
    const fam::tensor_view<float> qv{q.data() + 1, L, H, D, D + pad, L * (D + pad)};
    const fam::tensor_view<float> kv{k.data() + 1, L, Hkv, D, Hkv * (D + pad), D + pad};
    const fam::tensor_view<float> vv{v.data() + 1, L, Hkv, D, Hkv * (D + pad), D + pad};
    const fam::tensor_view<float> ov{out.data() + 1, L, H, D, D + pad, L * (D + pad)};
    for (index_t n = 0; n < L; ++n) {
      for (index_t h = 0; h < H; ++h) std::copy_n(&p.q[(n * H + h) * D], D, qv.at(n, h));
      for (index_t g = 0; g < Hkv; ++g) {
        std::copy_n(&p.k[(n * Hkv + g) * D], D, kv.at(n, g));
        std::copy_n(&p.v[(n * Hkv + g) * D], D, vv.at(n, g));
      }
    }
    REQUIRE(fam::attention(cfg, spec, qv, kv, vv, ov) == fam::status::ok);
    std::vector<float> got(L * H * D);
    for (index_t n = 0; n < L; ++n)
      for (index_t h = 0; h < H; ++h) std::copy_n(ov.at(n, h), D, &got[(n * H + h) * D]);
    CHECK(testing::bitwise_equal(got, base.out));
  }

  TEST_CASE("softmax is stable for logits of magnitude 1e4") {
    testing::rng rng(testing::base_seed() + 5);
    const problem p = random_problem(rng, 17, 2, 1, 4, 100.0);  // q.k up to ~4e4
    fam::attention_config<> cfg = config_for(p);
    cfg.set_scale(1.0);
    for (const mask_spec& spec : {mask_spec::full(), mask_spec::bswa(4, 1)}) {
      const result r = run(p, spec, cfg);
      for (float x : r.out) CHECK(std::isfinite(x));
      CHECK(testing::close_to_oracle(r.out, run_oracle(p, spec, 1.0).out, testing::max_abs(p.v)));
    }
  }

  TEST_CASE("NaN in a visible key poisons only the rows that see it") {
    testing::rng rng(testing::base_seed() + 6);
    problem p = random_problem(rng, 12, 1, 1, 4);
    p.k[5 * 4 + 2] = std::nanf("");
    const result r = run(p, mask_spec::bswa(3, 1), config_for(p));
    for (index_t n = 0; n < 12; ++n) {
      const bool sees = n >= 5 && n / 3 - 1 <= 5 / 3;  // rows whose window holds token 5
      INFO("n=", n);
      CHECK(std::isnan(r.out[n * 4]) == sees);
    }
  }

  // Rows of a sliding window are handed to the kernel many at a time, each hiding one more key
  // of the first span than the row before (the window's lower edge), as long as those edges
  // stay in one key granule of 256: windows on, next to and across granule and tile edges.
  TEST_CASE("sliding windows whose lower edges cross key granules match the oracle") {
    testing::rng rng(testing::base_seed() + 7);
    const index_t L = 1100;
    const problem p = random_problem(rng, L, 4, 2, 12);
    const fam::attention_config<> cfg = config_for(p);
    for (index_t W : {1, 2, 31, 32, 33, 255, 256, 257, 300, 700, 1099, 1100}) {
      INFO("W=", W);
      const result got = run(p, mask_spec::sliding_window(W), cfg);
      const oracle::attn_result want = run_oracle(p, mask_spec::sliding_window(W), cfg.scale());
      CHECK(testing::close_to_oracle(got.out, want.out, testing::max_abs(p.v)));
      CHECK(testing::close_to_oracle(got.lse, want.lse, 0.0, 1e-5 * (1.0 + L)));
    }
  }

  // A block or granule of more than 256 rows is cut into work items of at most 256 rows
  // (detail::rows_per_item), in the whole-sequence call and in the streaming one alike: both
  // must still match the oracle and agree bitwise, whatever the chunking of the stream.
  TEST_CASE("blocks of more than 256 rows match the oracle and the stream bitwise") {
    testing::rng rng(testing::base_seed() + 9);
    const index_t B = 600, M = 1, L = 1500, H = 2, Hkv = 1, D = 8;
    const problem p = random_problem(rng, L, H, Hkv, D);
    fam::attention_config<> cfg(D, B, M, 0);
    cfg.set_heads(H, Hkv);
    const result whole = run(p, mask_spec::bswa(B, M), cfg);
    const oracle::attn_result want = run_oracle(p, mask_spec::bswa(B, M), cfg.scale());
    CHECK(testing::close_to_oracle(whole.out, want.out, testing::max_abs(p.v)));
    for (index_t chunk : {index_t(1), index_t(257), B}) {
      fam::layer_state<fam::attention_config<>> st;
      REQUIRE(st.init(cfg) == fam::status::ok);
      std::vector<float> out(L * H * D);
      for (index_t done = 0; done < L;) {
        const index_t c = std::min(chunk, L - done);
        index_t consumed = 0;
        REQUIRE(fam::attend(st, fam::make_view<const float>(p.q.data(), L, H, D).rows_from(done, c),
                            fam::make_view<const float>(p.k.data(), L, Hkv, D).rows_from(done, c),
                            fam::make_view<const float>(p.v.data(), L, Hkv, D).rows_from(done, c),
                            fam::make_view(out.data(), L, H, D).rows_from(done, c), {},
                            &consumed) == fam::status::ok);
        REQUIRE(consumed == c);
        done += c;
      }
      INFO("chunk ", chunk);
      CHECK(testing::bitwise_equal(out, whole.out));
    }
  }

  TEST_CASE("a NaN value below a row's window edge leaves the row finite") {
    // rows that share their spans share the keys in memory, but a row never multiplies a value
    // below its own window's lower edge: 0 * NaN would poison it
    testing::rng rng(testing::base_seed() + 8);
    const index_t L = 700, D = 4;
    for (index_t W : {3, 40, 256, 300})
      for (index_t bad : {0, 17, 255, 256, 300}) {
        problem p = random_problem(rng, L, 1, 1, D);
        p.v[std::size_t(bad * D + 1)] = std::nanf("");
        const result r = run(p, mask_spec::sliding_window(W), config_for(p));
        for (index_t n = 0; n < L; ++n) {
          const bool sees = n >= bad && n - W < bad;
          INFO("W=", W, " NaN value at key ", bad, ", row ", n);
          CHECK(std::isnan(r.out[std::size_t(n * D + 1)]) == sees);
          CHECK(std::isfinite(r.out[std::size_t(n * D)]));
        }
      }
  }

  TEST_CASE("fused FAM block matches the oracle and F 0 equals BSWA bitwise") {
    testing::rng rng(testing::base_seed() + 7);
    MESSAGE("seed ", testing::base_seed() + 7);
    for (int trial = 0; trial < 120; ++trial) {
      const index_t B = rng.integer(1, 8), M = rng.integer(0, 3), F = rng.integer(0, 5);
      const index_t D = rng.integer(1, 16), j = rng.integer(0, M), b = rng.integer(0, B);
      const auto& hh = kHeads[rng.integer(0, 5)];
      const index_t H = hh[0], Hkv = hh[1], Lm = j * B;
      INFO("trial ", trial, " B=", B, " M=", M, " F=", F, " D=", D, " b=", b, " Lm=", Lm);
      fam::attention_config<> cfg(D, B, M, F);
      cfg.set_heads(H, Hkv);
      const auto km = rng.floats(Lm * Hkv * D), vm = rng.floats(Lm * Hkv * D, -2, 2);
      const auto qf = rng.floats(F * H * D), kf = rng.floats(F * Hkv * D),
                 vf = rng.floats(F * Hkv * D, -2, 2);
      const auto q = rng.floats(b * H * D), k = rng.floats(b * Hkv * D),
                 v = rng.floats(b * Hkv * D, -2, 2);
      std::vector<float> ut(b * H * D), uf(F * H * D), lt(b * H), lf(F * H);
      fam::fam_block_args<> a;
      a.mem_k = fam::make_view(km.data(), Lm, Hkv, D);
      a.mem_v = fam::make_view(vm.data(), Lm, Hkv, D);
      a.qf = fam::make_view(qf.data(), F, H, D);
      a.kf = fam::make_view(kf.data(), F, Hkv, D);
      a.vf = fam::make_view(vf.data(), F, Hkv, D);
      a.q = fam::make_view(q.data(), b, H, D);
      a.k = fam::make_view(k.data(), b, Hkv, D);
      a.v = fam::make_view(v.data(), b, Hkv, D);
      a.ut = fam::make_view(ut.data(), b, H, D);
      a.uf = fam::make_view(uf.data(), F, H, D);
      a.lse_t = fam::make_lse_view(lt.data(), H);
      a.lse_f = fam::make_lse_view(lf.data(), H);
      REQUIRE(fam::fam_attention(cfg, a) == fam::status::ok);
      using testing::to_double;
      const oracle::fam_block_result want = oracle::fam_block(
          Lm, F, b, int(H), int(Hkv), int(D), cfg.scale(), to_double(km), to_double(vm),
          to_double(qf), to_double(kf), to_double(vf), to_double(q), to_double(k), to_double(v));
      const double vmax =
          std::max({testing::max_abs(vm), testing::max_abs(vf), testing::max_abs(v)});
      CHECK(testing::close_to_oracle(ut, want.ut, vmax));
      CHECK(testing::close_to_oracle(uf, want.uf, vmax));
      CHECK(testing::close_to_oracle(lt, want.lse_t, 0.0, 1e-4));
      CHECK(testing::close_to_oracle(lf, want.lse_f, 0.0, 1e-4));
      if (F == 0 && b > 0) {  // SPEC §7.2: one block of BSWA, bitwise
        problem seq{Lm + b, H, Hkv, D, std::vector<float>(Lm * H * D, 0.0f), km, vm};
        seq.q.insert(seq.q.end(), q.begin(), q.end());
        seq.k.insert(seq.k.end(), k.begin(), k.end());
        seq.v.insert(seq.v.end(), v.begin(), v.end());
        const result bswa = run(seq, mask_spec::bswa(B, M), cfg);
        CHECK(testing::bitwise_equal(
            ut, std::vector<float>(bswa.out.begin() + Lm * H * D, bswa.out.end())));
      }
    }
  }

  TEST_CASE("naive teaching path matches the oracle") {
    testing::rng rng(testing::base_seed() + 8);
    const index_t L = 14, H = 4, Hkv = 2, D = 5, B = 3, M = 1, F = 2;
    const problem p = random_problem(rng, L, H, Hkv, D);
    const double scale = 1.0 / std::sqrt(double(D));
    for (const mask_spec& spec :
         {mask_spec::full(), mask_spec::sliding_window(4), mask_spec::bswa(B, M)}) {
      std::vector<float> out(L * H * D);
      fam::naive::attention(
          spec, scale, fam::make_view(p.q.data(), L, H, D), fam::make_view(p.k.data(), L, Hkv, D),
          fam::make_view(p.v.data(), L, Hkv, D), fam::make_view(out.data(), L, H, D));
      CHECK(testing::close_to_oracle(out, run_oracle(p, spec, scale).out, testing::max_abs(p.v)));
    }
    // the last (partial) block of a FAM sequence, FAM prepended
    const auto qf = rng.floats(F * H * D), kf = rng.floats(F * Hkv * D),
               vf = rng.floats(F * Hkv * D);
    std::vector<float> out(L * H * D), uf(F * H * D);
    const index_t t = (L - 1) / B, first = t * B, Lm = std::min(M, t) * B;
    fam::naive::fam_block(mask_spec::fam(B, M, F), scale, t, fam::make_view(p.q.data(), L, H, D),
                          fam::make_view(p.k.data(), L, Hkv, D),
                          fam::make_view(p.v.data(), L, Hkv, D), fam::make_view(qf.data(), F, H, D),
                          fam::make_view(kf.data(), F, Hkv, D),
                          fam::make_view(vf.data(), F, Hkv, D), fam::make_view(out.data(), L, H, D),
                          fam::make_view(uf.data(), F, H, D));
    using testing::to_double;
    auto rows = [&](const std::vector<float>& x, index_t r0, index_t r1, index_t heads) {
      return to_double(std::vector<float>(x.begin() + r0 * heads * D, x.begin() + r1 * heads * D));
    };
    const oracle::fam_block_result want = oracle::fam_block(
        Lm, F, L - first, int(H), int(Hkv), int(D), scale, rows(p.k, first - Lm, first, Hkv),
        rows(p.v, first - Lm, first, Hkv), to_double(qf), to_double(kf), to_double(vf),
        rows(p.q, first, L, H), rows(p.k, first, L, Hkv), rows(p.v, first, L, Hkv));
    CHECK(testing::close_to_oracle(std::vector<float>(out.begin() + first * H * D, out.end()),
                                   want.ut, 1.0));
    CHECK(testing::close_to_oracle(uf, want.uf, 1.0));
  }
}

TEST_SUITE("long") {
  TEST_CASE("large B sweep against the oracle") {
    sweep_against_oracle(1024, 12, testing::base_seed() + 100);
  }
}
