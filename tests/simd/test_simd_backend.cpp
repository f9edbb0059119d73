// The SIMD backend on its own: bitwise determinism under any thread count and schedule,
// tile statistics against a brute-force count from the mask, and bf16/fp16 storage error
// against a naive implementation in the same precision.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "fam/backend/simd.hpp"
#include "fam/fam.hpp"
#include "fam/thread_pool.hpp"
#include "support/oracle.hpp"
#include "support/shuffled_hook.hpp"
#include "support/util.hpp"

namespace {

using fam::index_t;

using testing::shuffled_hook;

struct inputs {
  index_t L, H, Hkv, D;
  std::vector<float> q, k, v;
};

inputs random_inputs(testing::rng& rng, index_t L, index_t H, index_t Hkv, index_t D) {
  return {L, H, Hkv, D, rng.floats(L * H * D), rng.floats(L * Hkv * D), rng.floats(L * Hkv * D)};
}

std::vector<float> run_attention(const inputs& x, const fam::mask_spec& spec,
                                 const fam::simd_backend<>& be) {
  fam::attention_config<> cfg(x.D, 1, 0, 0);
  cfg.set_heads(x.H, x.Hkv);
  std::vector<float> out(x.L * x.H * x.D);
  REQUIRE(fam::attention(cfg, spec, fam::make_view(x.q.data(), x.L, x.H, x.D),
                         fam::make_view(x.k.data(), x.L, x.Hkv, x.D),
                         fam::make_view(x.v.data(), x.L, x.Hkv, x.D),
                         fam::make_view(out.data(), x.L, x.H, x.D), {}, be) == fam::status::ok);
  return out;
}

}  // namespace

TEST_SUITE("simd") {
  TEST_CASE("any thread count and schedule gives bitwise the serial result") {
    testing::rng rng(testing::base_seed() + 70);
    const inputs x = random_inputs(rng, 300, 4, 2, 40);
    for (const fam::mask_spec& spec : {fam::mask_spec::full(), fam::mask_spec::sliding_window(37),
                                       fam::mask_spec::bswa(64, 2)}) {
      const std::vector<float> serial = run_attention(x, spec, {});
      for (int threads : {1, 2, 3, 7}) {
        shuffled_hook h{threads, testing::base_seed() + std::uint64_t(threads)};
        fam::simd_backend<> be;
        be.parallel = h.hook();
        INFO("threads ", threads, " variant ", int(spec.kind));
        CHECK(testing::bitwise_equal(run_attention(x, spec, be), serial));
      }
      fam::thread_pool pool(2);
      fam::simd_backend<> be;
      be.parallel = pool.hook();
      CHECK(testing::bitwise_equal(run_attention(x, spec, be), serial));
    }
  }

  TEST_CASE("streaming with threads gives bitwise the serial stream") {
    testing::rng rng(testing::base_seed() + 71);
    const index_t B = 16, M = 2, F = 3, D = 24, H = 4, L = 7 * B + 5;
    fam::attention_config<> cfg(D, B, M, F);
    cfg.set_heads(H, H);
    const inputs x = random_inputs(rng, L, H, H, D);
    const std::vector<float> phi = rng.floats(F * H * D);
    auto stream = [&](const fam::simd_backend<>& be, index_t chunk) {
      fam::layer_state<fam::attention_config<>> st;
      REQUIRE(st.init(cfg) == fam::status::ok);
      const auto pv = fam::make_view(phi.data(), F, H, D);
      REQUIRE(fam::begin_fam(st, pv, pv, pv) == fam::status::ok);
      std::vector<float> out(L * H * D);
      for (index_t done = 0, n = 0; done < L; done += n) {
        const index_t c = std::min(chunk, L - done);
        REQUIRE(fam::attend(st, fam::make_view(x.q.data(), L, H, D).rows_from(done, c),
                            fam::make_view(x.k.data(), L, H, D).rows_from(done, c),
                            fam::make_view(x.v.data(), L, H, D).rows_from(done, c),
                            fam::make_view(out.data(), L, H, D).rows_from(done, c), {}, &n,
                            be) == fam::status::ok);
        if (st.phase() == fam::fam_phase::pending) {
          const auto uf = st.fam_output();  // weight-free update (SPEC §6)
          REQUIRE(fam::update_fam(st, uf, uf, uf) == fam::status::ok);
        }
      }
      return out;
    };
    const std::vector<float> serial = stream({}, L);
    for (int threads : {2, 3, 7}) {
      shuffled_hook h{threads, 5};
      fam::simd_backend<> be;
      be.parallel = h.hook();
      for (index_t chunk : {index_t(1), B - 1, L}) {
        INFO("threads ", threads, " chunk ", chunk);
        CHECK(testing::bitwise_equal(stream(be, chunk), serial));
      }
    }
  }

  // Brute force from the public mask: for every (row chunk of a block, key tile aligned to a
  // block) pair, the tile is computed iff some row sees some key of it, and masked iff it is
  // computed and not every row sees every key. Tiles outside the window are skipped. A row
  // chunk is a block, cut into work items of at most rows_per_item rows.
  TEST_CASE(
      "tiles computed and masked match a brute-force count and skipped tiles are not computed") {
    for (index_t B : {64, 128, 192, 300})
      for (index_t M : {0, 1, 3})
        for (index_t L : {B, 3 * B + 70, 6 * B}) {
          const index_t D = 8, KT = fam::simd_backend<>::key_tile;
          testing::rng rng(testing::base_seed() + 72);
          const inputs x = random_inputs(rng, L, 1, 1, D);
          fam::attention_stats stats;
          fam::simd_backend<> be;
          be.stats = &stats;
          const fam::mask_spec spec = fam::mask_spec::bswa(B, M);
          (void)run_attention(x, spec, be);
          index_t computed = 0, masked = 0, causal_tiles = 0;
          const index_t item = fam::detail::rows_per_item;
          for (index_t r0 = 0; r0 < L; r0 = std::min(r0 + item, (r0 / B + 1) * B)) {
            const index_t r1 = std::min({r0 + item, (r0 / B + 1) * B, L});
            // key tiles of the causal rectangle, aligned to block starts
            for (index_t k0 = 0; k0 < r1; k0 = std::min(k0 + KT, (k0 / B + 1) * B)) {
              const index_t k1 = std::min({k0 + KT, (k0 / B + 1) * B, r1});
              ++causal_tiles;
              bool any = false, all = true;
              for (index_t n = r0; n < r1; ++n)
                for (index_t m = k0; m < k1; ++m) {
                  const bool vis = fam::visible(spec, n, m);
                  any = any || vis;
                  all = all && vis;
                }
              computed += any ? 1 : 0;
              masked += any && !all ? 1 : 0;
            }
          }
          INFO("B=", B, " M=", M, " L=", L);
          CHECK(stats.key_tiles.load() == computed);
          CHECK(stats.masked_tiles.load() == masked);
          MESSAGE("B=", B, " M=", M, " L=", L, ": ", computed, " tiles computed, ",
                  causal_tiles - computed, " skipped, ", masked, " masked");
        }
  }

  TEST_CASE("bf16 and fp16 storage err at most twice a naive implementation in that precision") {
    testing::rng rng(testing::base_seed() + 73);
    const index_t L = 200, H = 4, Hkv = 2, D = 64, B = 32, M = 2;
    const inputs x = random_inputs(rng, L, H, Hkv, D);
    const fam::mask_spec spec = fam::mask_spec::bswa(B, M);
    fam::attention_config<> cfg(D, B, M, 0);
    cfg.set_heads(H, Hkv);
    const oracle::attn_result exact = oracle::token_attention(
        oracle::mask::bswa, 0, B, M, L, int(H), int(Hkv), int(D), cfg.scale(),
        testing::to_double(x.q), testing::to_double(x.k), testing::to_double(x.v));
    auto max_err = [&](const std::vector<float>& got) {
      double e = 0;
      for (std::size_t i = 0; i < got.size(); ++i)
        e = std::max(e, std::fabs(got[i] - exact.out[i]));
      return e;
    };
    auto check_type = [&](auto tag, const char* name) {
      using T = decltype(tag);
      auto convert = [](const std::vector<float>& v) {
        std::vector<T> r(v.size());
        for (std::size_t i = 0; i < v.size(); ++i) r[i] = fam::from_float<T>(v[i]);
        return r;
      };
      const std::vector<T> q = convert(x.q), k = convert(x.k), v = convert(x.v);
      std::vector<float> out(L * H * D);
      REQUIRE(fam::attention(
                  cfg, spec, fam::make_view(q.data(), L, H, D), fam::make_view(k.data(), L, Hkv, D),
                  fam::make_view(v.data(), L, Hkv, D), fam::make_view(out.data(), L, H, D), {},
                  fam::simd_backend<>{}) == fam::status::ok);
      // the naive implementation in the same precision: inputs rounded to T, math in fp32
      std::vector<float> qr(q.size()), kr(k.size()), vr(v.size()), naive(L * H * D);
      for (std::size_t i = 0; i < q.size(); ++i) qr[i] = fam::to_float(q[i]);
      for (std::size_t i = 0; i < k.size(); ++i)
        kr[i] = fam::to_float(k[i]), vr[i] = fam::to_float(v[i]);
      fam::naive::attention(spec, cfg.scale(), fam::make_view<const float>(qr.data(), L, H, D),
                            fam::make_view<const float>(kr.data(), L, Hkv, D),
                            fam::make_view<const float>(vr.data(), L, Hkv, D),
                            fam::make_view(naive.data(), L, H, D));
      const double ours = max_err(out), base = max_err(naive);
      MESSAGE(std::string(name), ": max|err| ", ours, " vs naive in the same precision ", base);
      CHECK(ours <= 2.0 * base);
      // and a streaming state that stores its ring in T gives the same numbers as the call
      fam::layer_state<fam::attention_config<>, T> st;
      REQUIRE(st.init(cfg) == fam::status::ok);
      std::vector<float> streamed(L * H * D);
      for (index_t n = 0; n < L; ++n)
        REQUIRE(fam::attend(st, fam::make_view(q.data(), L, H, D).rows_from(n, 1),
                            fam::make_view(k.data(), L, Hkv, D).rows_from(n, 1),
                            fam::make_view(v.data(), L, Hkv, D).rows_from(n, 1),
                            fam::make_view(streamed.data(), L, H, D).rows_from(n, 1), {}, nullptr,
                            fam::simd_backend<>{}) == fam::status::ok);
      CHECK(testing::bitwise_equal(streamed, out));
    };
    check_type(fam::bf16{}, "bf16");
    check_type(fam::fp16{}, "fp16");
  }

  // bf16 queries, keys and values take the vdpbf16ps kernels where the ISA has them: Q K^T on
  // dim pairs by default, and P V on key pairs with probabilities rounded to bf16 when the
  // caller opts in. Odd tiles (B not a multiple of 32, odd visible counts), dims that are not a
  // multiple of 32 and every head grouping must keep, in both modes, the error of a naive bf16
  // implementation and the bitwise agreement of prefill and streaming.
  TEST_CASE("bf16 storage: odd tiles, partial dims and head groupings keep the bf16 error bound") {
    testing::rng rng(testing::base_seed() + 74);
    for (bool round_p : {false, true})
      for (index_t D : {16, 48, 80, 128})
        for (index_t B : {7, 33, 64})
          for (index_t Hkv : {1, 2, 4}) {
            const index_t H = 4, M = B == 64 ? 1 : 2, L = 3 * B + 5;
            const inputs x = random_inputs(rng, L, H, Hkv, D);
            fam::attention_config<> cfg(D, B, M, 0);
            cfg.set_heads(H, Hkv);
            const fam::mask_spec spec = fam::mask_spec::bswa(B, M);
            const oracle::attn_result exact = oracle::token_attention(
                oracle::mask::bswa, 0, B, M, L, int(H), int(Hkv), int(D), cfg.scale(),
                testing::to_double(x.q), testing::to_double(x.k), testing::to_double(x.v));
            auto round = [](const std::vector<float>& v) {
              std::vector<fam::bf16> r(v.size());
              for (std::size_t i = 0; i < v.size(); ++i) r[i] = fam::from_float<fam::bf16>(v[i]);
              return r;
            };
            const std::vector<fam::bf16> q = round(x.q), k = round(x.k), v = round(x.v);
            const auto Q = fam::make_view(q.data(), L, H, D);
            const auto K = fam::make_view(k.data(), L, Hkv, D),
                       V = fam::make_view(v.data(), L, Hkv, D);
            std::vector<float> out(L * H * D), naive(L * H * D), streamed(L * H * D);
            fam::simd_backend<> be;
            be.round_probabilities_to_bf16 = round_p;
            REQUIRE(fam::attention(cfg, spec, Q, K, V, fam::make_view(out.data(), L, H, D), {},
                                   be) == fam::status::ok);
            std::vector<float> qr(q.size()), kr(k.size()), vr(v.size());
            for (std::size_t i = 0; i < q.size(); ++i) qr[i] = fam::to_float(q[i]);
            for (std::size_t i = 0; i < k.size(); ++i)
              kr[i] = fam::to_float(k[i]), vr[i] = fam::to_float(v[i]);
            fam::naive::attention(spec, cfg.scale(),
                                  fam::make_view<const float>(qr.data(), L, H, D),
                                  fam::make_view<const float>(kr.data(), L, Hkv, D),
                                  fam::make_view<const float>(vr.data(), L, Hkv, D),
                                  fam::make_view(naive.data(), L, H, D));
            double ours = 0, base = 0;
            for (std::size_t i = 0; i < out.size(); ++i) {
              ours = std::max(ours, std::fabs(out[i] - exact.out[i]));
              base = std::max(base, std::fabs(naive[i] - exact.out[i]));
            }
            INFO("D=", D, " B=", B, " Hkv=", Hkv, " rounded P: ", round_p, ": max|err| ", ours,
                 " naive bf16 ", base);
            CHECK(ours <= 2.0 * base);
            fam::layer_state<fam::attention_config<>, fam::bf16> st;
            REQUIRE(st.init(cfg) == fam::status::ok);
            for (index_t n = 0; n < L; ++n)
              REQUIRE(fam::attend(st, Q.rows_from(n, 1), K.rows_from(n, 1), V.rows_from(n, 1),
                                  fam::make_view(streamed.data(), L, H, D).rows_from(n, 1), {},
                                  nullptr, be) == fam::status::ok);
            CHECK(testing::bitwise_equal(streamed, out));
          }
  }

  TEST_CASE("bf16 storage: a non-finite value poisons exactly the rows that see it") {
    // keys are paired in the bf16 kernels: the partner of a row's last visible key must not
    // reach the row, even when it is NaN
    const index_t L = 40, H = 2, D = 32, B = 40;
    testing::rng rng(testing::base_seed() + 75);
    const inputs x = random_inputs(rng, L, H, H, D);
    std::vector<fam::bf16> q(x.q.size()), k(x.k.size()), v(x.v.size());
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = fam::from_float<fam::bf16>(x.q[i]);
    for (std::size_t i = 0; i < k.size(); ++i)
      k[i] = fam::from_float<fam::bf16>(x.k[i]), v[i] = fam::from_float<fam::bf16>(x.v[i]);
    for (bool round_p : {false, true})
      for (index_t bad : {5, 6, 33}) {
        fam::simd_backend<> be;
        be.round_probabilities_to_bf16 = round_p;
        std::vector<fam::bf16> vb = v;
        vb[std::size_t(bad * H * D + 3)] = fam::from_float<fam::bf16>(NAN);  // head 0, dim 3
        fam::attention_config<> cfg(D, B, 0, 0);
        cfg.set_heads(H, H);
        std::vector<float> out(L * H * D);
        REQUIRE(fam::attention(cfg, fam::mask_spec::full(), fam::make_view(q.data(), L, H, D),
                               fam::make_view(k.data(), L, H, D),
                               fam::make_view(vb.data(), L, H, D),
                               fam::make_view(out.data(), L, H, D), {}, be) == fam::status::ok);
        for (index_t n = 0; n < L; ++n) {
          INFO("NaN value at key ", bad, ", row ", n);
          CHECK(std::isnan(out[std::size_t(n * H * D + 3)]) == (n >= bad));
          CHECK(std::isfinite(out[std::size_t(n * H * D + D + 3)]));  // head 1 never sees it
        }
      }
  }

  // A sliding window hands the kernel many rows whose lower edges move by one key per row, so
  // the bf16 pair kernels meet rows whose first key is the odd one of a pair: its partner must
  // be masked like the partner of an odd last key.
  TEST_CASE("bf16 storage: sliding-window rows keep the bf16 error bound and hide NaN values") {
    const index_t L = 600, H = 2, Hkv = 1, D = 32;
    testing::rng rng(testing::base_seed() + 76);
    const inputs x = random_inputs(rng, L, H, Hkv, D);
    auto round = [](const std::vector<float>& v) {
      std::vector<fam::bf16> r(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) r[i] = fam::from_float<fam::bf16>(v[i]);
      return r;
    };
    auto widen = [](const std::vector<fam::bf16>& v) {
      std::vector<float> r(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) r[i] = fam::to_float(v[i]);
      return r;
    };
    const std::vector<fam::bf16> q = round(x.q), k = round(x.k), v = round(x.v);
    fam::attention_config<> cfg(D, 1, 0, 0);
    cfg.set_heads(H, Hkv);
    auto run_bf16 = [&](const fam::mask_spec& spec, const std::vector<fam::bf16>& values,
                        bool round_p) {
      fam::simd_backend<> be;
      be.round_probabilities_to_bf16 = round_p;
      std::vector<float> out(L * H * D);
      REQUIRE(fam::attention(cfg, spec, fam::make_view(q.data(), L, H, D),
                             fam::make_view(k.data(), L, Hkv, D),
                             fam::make_view(values.data(), L, Hkv, D),
                             fam::make_view(out.data(), L, H, D), {}, be) == fam::status::ok);
      return out;
    };
    for (bool round_p : {false, true})
      for (index_t W : {37, 256, 300}) {
        const fam::mask_spec spec = fam::mask_spec::sliding_window(W);
        const oracle::attn_result exact = oracle::token_attention(
            oracle::mask::window, W, 1, 0, L, int(H), int(Hkv), int(D), cfg.scale(),
            testing::to_double(x.q), testing::to_double(x.k), testing::to_double(x.v));
        const std::vector<float> qr = widen(q), kr = widen(k), vr = widen(v);
        std::vector<float> naive(L * H * D);
        fam::naive::attention(spec, cfg.scale(), fam::make_view<const float>(qr.data(), L, H, D),
                              fam::make_view<const float>(kr.data(), L, Hkv, D),
                              fam::make_view<const float>(vr.data(), L, Hkv, D),
                              fam::make_view(naive.data(), L, H, D));
        const std::vector<float> out = run_bf16(spec, v, round_p);
        double ours = 0, base = 0;
        for (std::size_t i = 0; i < out.size(); ++i) {
          ours = std::max(ours, std::fabs(out[i] - exact.out[i]));
          base = std::max(base, std::fabs(naive[i] - exact.out[i]));
        }
        INFO("W=", W, " rounded P: ", round_p, ": max|err| ", ours, " naive bf16 ", base);
        CHECK(ours <= 2.0 * base);
        for (index_t bad : {0, 1, 40, 41, 255, 256, 257}) {
          std::vector<fam::bf16> vb = v;
          vb[std::size_t(bad * Hkv * D + 3)] = fam::from_float<fam::bf16>(NAN);
          const std::vector<float> o = run_bf16(spec, vb, round_p);
          for (index_t n = 0; n < L; ++n)
            for (index_t h = 0; h < H; ++h) {
              INFO("NaN value at key ", bad, ", row ", n, ", head ", h);
              CHECK(std::isnan(o[std::size_t((n * H + h) * D + 3)]) == (n >= bad && n - W < bad));
            }
        }
      }
  }

  // Decode (one query row per head, so one row group per call) reads bf16/fp16 tiles of the
  // ring and of the FAM keys in place and widens or interleaves them in registers, and either
  // streams value rows whole (32 registers: rows in pairs over 8 vectors of dims when D is a
  // multiple of 8 vectors) or prefetches the next tile (16 registers: blocks of B = 100 keys
  // have tiles followed by a whole one, B = 40 none); a block at a time packs each tile once for
  // all its rows and runs 6-row value kernels. Both must give the same bits, for head dims on
  // and off the vector width, row groups of 2, 3 and 4 heads, FAM tiles whole (F = 32, 64) and
  // partial.
  TEST_CASE("decode reading tiles in place gives bitwise the block-at-a-time run") {
    testing::rng rng(testing::base_seed() + 76);
    const index_t heads[][2] = {{4, 1}, {4, 2}, {3, 1}};  // row groups of 4, 2 and 3 rows
    auto check_type = [&](auto tag, const char* name) {
      using T = decltype(tag);
      for (index_t B : {40, 100})
        for (index_t D : {8, 20, 64, 80, 128})
          for (index_t F : {0, 33, 64})
            for (const auto& hh : heads) {
              const index_t M = 2, H = hh[0], Hkv = hh[1], L = 5 * B + 7;
              fam::attention_config<> cfg(D, B, M, F);
              cfg.set_heads(H, Hkv);
              auto convert = [](const std::vector<float>& v) {
                std::vector<T> r(v.size());
                for (std::size_t i = 0; i < v.size(); ++i) r[i] = fam::from_float<T>(v[i]);
                return r;
              };
              const std::vector<T> q = convert(rng.floats(L * H * D)),
                                   k = convert(rng.floats(L * Hkv * D)),
                                   v = convert(rng.floats(L * Hkv * D)),
                                   phi = convert(rng.floats(std::max<index_t>(F, 1) * H * D));
              auto stream = [&](index_t chunk) {
                fam::layer_state<fam::attention_config<>, T> st;
                REQUIRE(st.init(cfg) == fam::status::ok);
                if (F > 0) {
                  const auto pq = fam::make_view(phi.data(), F, H, D);
                  const auto pkv = fam::make_view(phi.data(), F, Hkv, D);
                  REQUIRE(fam::begin_fam(st, pq, pkv, pkv) == fam::status::ok);
                }
                std::vector<float> out(L * H * D);
                for (index_t done = 0, n = 0; done < L; done += n) {
                  const index_t c = std::min(chunk, L - done);
                  REQUIRE(fam::attend(st, fam::make_view(q.data(), L, H, D).rows_from(done, c),
                                      fam::make_view(k.data(), L, Hkv, D).rows_from(done, c),
                                      fam::make_view(v.data(), L, Hkv, D).rows_from(done, c),
                                      fam::make_view(out.data(), L, H, D).rows_from(done, c), {},
                                      &n, fam::simd_backend<>{}) == fam::status::ok);
                  if (st.phase() == fam::fam_phase::pending) {
                    const auto uf = st.fam_output();  // weight-free update (SPEC §6)
                    const fam::tensor_view<const float> ukv{uf.data,       F, Hkv, D, uf.row_stride,
                                                            uf.head_stride};
                    REQUIRE(fam::update_fam(st, uf, ukv, ukv) == fam::status::ok);
                  }
                }
                return out;
              };
              INFO(name, " B=", B, " D=", D, " F=", F, " H=", H, " Hkv=", Hkv);
              CHECK(testing::bitwise_equal(stream(1), stream(L)));
            }
    };
    check_type(float{}, "fp32");
    check_type(fam::bf16{}, "bf16");
    check_type(fam::fp16{}, "fp16");
  }
}
