// Streaming (SPEC §5): chunking invariance (T4), decode == prefill (T5), ring invariants across
// wraparound (T3), poisoned dead slots (T8), rewind, batches (T15), FAM isolation (T16b),
// and the weight-free FAM loop through the public protocol against the float64 oracle.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "fam/fam.hpp"
#include "support/oracle.hpp"
#include "support/stream_driver.hpp"
#include "support/util.hpp"

namespace {

using fam::index_t;
using testing::config;

testing::stream_io random_io(testing::rng& rng, index_t L, index_t H, index_t Hkv, index_t D) {
  return {
      L, H, Hkv, D, rng.floats(L * H * D), rng.floats(L * Hkv * D), rng.floats(L * Hkv * D, -2, 2)};
}

config make_config(index_t D, index_t B, index_t M, index_t F, index_t H, index_t Hkv) {
  config c(D, B, M, F);
  c.set_heads(H, Hkv);
  return c;
}

testing::stream_result stream_fresh(const config& c, const testing::stream_io& io,
                                    const std::vector<float>& phi0, const testing::chunker& ch) {
  fam::layer_state<config> st;
  REQUIRE(st.init(c) == fam::status::ok);
  return testing::stream(st, io, phi0, ch);
}

/// Every chunking of T4 for a block size B and memory M.
std::vector<testing::chunker> all_chunkings(index_t B, index_t M, std::uint64_t seed) {
  std::vector<testing::chunker> v;
  for (index_t c :
       {index_t(1) << 40, index_t(1), B - 1, B, B + 1, M * B, (M + 1) * B, (M + 1) * B + 1})
    if (c >= 1) v.push_back(testing::fixed_chunks(c));
  v.push_back(testing::random_chunks(seed, 2 * (M + 1) * B + 1));
  return v;
}

/// Ring row of token m, written from SPEC §2 / the ring layout, independently of kv_ring.hpp.
index_t ring_row(index_t m, index_t B, index_t M) { return ((m / B) % (M + 1)) * B + m % B; }

/// Tokens whose keys later queries may still read after n tokens: [lo, n).
index_t first_live_token(index_t n, index_t B, index_t M) {
  const index_t t = n / B;
  return t > M ? (t - M) * B : 0;
}

}  // namespace

TEST_SUITE("stream") {
  TEST_CASE("streaming BSWA equals whole-sequence attention bitwise for every chunking") {
    testing::rng rng(testing::base_seed() + 20);
    MESSAGE("seed ", testing::base_seed() + 20);
    for (int trial = 0; trial < 25; ++trial) {
      const index_t B = rng.integer(1, 7), M = rng.integer(0, 3), D = rng.integer(1, 12);
      const index_t Hkv = rng.integer(1, 3), H = Hkv * rng.integer(1, 3);
      const index_t L = 6 * (M + 1) * B + 5;
      INFO("trial ", trial, " B=", B, " M=", M, " D=", D, " H=", H, " Hkv=", Hkv);
      const config c = make_config(D, B, M, 0, H, Hkv);
      const testing::stream_io io = random_io(rng, L, H, Hkv, D);
      std::vector<float> out(L * H * D), lse(L * H);
      REQUIRE(fam::attention(c, fam::mask_spec::bswa(B, M), fam::make_view(io.q.data(), L, H, D),
                             fam::make_view(io.k.data(), L, Hkv, D),
                             fam::make_view(io.v.data(), L, Hkv, D),
                             fam::make_view(out.data(), L, H, D),
                             fam::make_lse_view(lse.data(), H)) == fam::status::ok);
      for (const auto& ch : all_chunkings(B, M, rng.integer(0, 1 << 30))) {
        const testing::stream_result r = stream_fresh(c, io, {}, ch);
        CHECK(testing::bitwise_equal(r.out, out));
        CHECK(testing::bitwise_equal(r.lse, lse));
      }
    }
  }

  TEST_CASE("weight-free FAM through the protocol matches the oracle for every chunking") {
    testing::rng rng(testing::base_seed() + 21);
    MESSAGE("seed ", testing::base_seed() + 21);
    for (int trial = 0; trial < 30; ++trial) {
      const index_t B = rng.integer(1, 6), M = rng.integer(0, 2), F = rng.integer(0, 5);
      const index_t D = rng.integer(1, 10), H = rng.integer(1, 3);
      const index_t updates = rng.integer(0, 12);  // SPEC §6: compare for at most ~32 updates
      const index_t L = updates * B + rng.integer(0, B - 1);
      INFO("trial ", trial, " B=", B, " M=", M, " F=", F, " D=", D, " H=", H, " L=", L);
      const config c = make_config(D, B, M, F, H, H);
      const testing::stream_io io = random_io(rng, L, H, H, D);
      const std::vector<float> phi0 = rng.floats(F * H * D);
      const oracle::fam_seq_result want = oracle::fam_weight_free(
          B, M, F, L, int(H), int(D), c.scale(), testing::to_double(io.q), testing::to_double(io.k),
          testing::to_double(io.v), testing::to_double(phi0));
      const testing::stream_result whole = stream_fresh(c, io, phi0, testing::fixed_chunks(L + 1));
      const double vmax = std::max(testing::max_abs(io.v), testing::max_abs(phi0));
      CHECK(testing::close_to_oracle(whole.out, want.out, vmax));
      CHECK(testing::close_to_oracle(whole.lse, want.lse, 0.0, 1e-4));
      CHECK(testing::close_to_oracle(whole.phi, want.phi, vmax));
      for (const auto& ch : all_chunkings(B, M, rng.integer(0, 1 << 30))) {
        const testing::stream_result r = stream_fresh(c, io, phi0, ch);
        CHECK(testing::bitwise_equal(r.out, whole.out));
        CHECK(testing::bitwise_equal(r.phi, whole.phi));
      }
    }
  }

  TEST_CASE("FAM with F 0 equals BSWA bitwise") {
    testing::rng rng(testing::base_seed() + 22);
    const index_t B = 3, M = 1, D = 5, H = 2, L = 20;
    const testing::stream_io io = random_io(rng, L, H, H, D);
    const auto fam0 = stream_fresh(make_config(D, B, M, 0, H, H), io, {}, testing::fixed_chunks(2));
    std::vector<float> out(L * H * D);
    REQUIRE(fam::attention(make_config(D, B, M, 0, H, H), fam::mask_spec::bswa(B, M),
                           fam::make_view(io.q.data(), L, H, D),
                           fam::make_view(io.k.data(), L, H, D),
                           fam::make_view(io.v.data(), L, H, D),
                           fam::make_view(out.data(), L, H, D)) == fam::status::ok);
    CHECK(testing::bitwise_equal(fam0.out, out));
  }

  TEST_CASE("ring holds exactly the live tokens at their slots across wraparound T3") {
    testing::rng rng(testing::base_seed() + 23);
    for (index_t B : {1, 2, 3}) {
      for (index_t M : {0, 1, 2}) {
        const index_t W = (M + 1) * B, D = 3, Hkv = 2;
        for (index_t L :
             {index_t(1), B - 1, B, B + 1, W - 1, W, W + 1, 2 * W - 1, 2 * W + 1, 5 * W + 1}) {
          if (L < 1) continue;
          INFO("B=", B, " M=", M, " L=", L);
          const config c = make_config(D, B, M, 0, Hkv, Hkv);
          const testing::stream_io io = random_io(rng, L, Hkv, Hkv, D);
          fam::layer_state<config> st;
          REQUIRE(st.init(c) == fam::status::ok);
          index_t n = 0;
          auto check_ring = [&](fam::layer_state<config>& s) {
            ++n;
            REQUIRE(s.tokens() == n);
            CHECK(s.current_block() == n / B);
            const auto ring = s.ring();
            for (index_t m = first_live_token(n, B, M); m < n; ++m)
              for (index_t h = 0; h < Hkv; ++h) {
                const index_t row = ring_row(m, B, M);
                for (index_t d = 0; d < D; ++d) {
                  CHECK(ring.k_at(h, row, d) == io.k[(m * Hkv + h) * D + d]);
                  CHECK(ring.v_row(h, row)[d] == io.v[(m * Hkv + h) * D + d]);
                }
              }
          };
          testing::stream(st, io, {}, testing::fixed_chunks(1), check_ring);
        }
      }
    }
  }

  TEST_CASE("NaN and Inf and huge values in dead ring rows change nothing T8") {
    testing::rng rng(testing::base_seed() + 24);
    const float poisons[] = {std::numeric_limits<float>::quiet_NaN(),
                             std::numeric_limits<float>::infinity(),
                             -std::numeric_limits<float>::infinity(), 1e30f};
    for (index_t F : {0, 2}) {
      const index_t B = 3, M = 2, D = 4, H = 2, W = (M + 1) * B, L = 5 * W + 2;
      const config c = make_config(D, B, M, F, H, H);
      const testing::stream_io io = random_io(rng, L, H, H, D);
      const std::vector<float> phi0 = rng.floats(F * H * D);
      for (index_t chunk : {index_t(1), B + 1}) {
        INFO("F=", F, " chunk=", chunk);
        const auto clean = stream_fresh(c, io, phi0, testing::fixed_chunks(chunk));
        // caller storage, poisoned everywhere before the first token
        testing::aligned_bytes storage(fam::layer_state<config>::storage_bytes(c));
        fam::layer_state<config> st;
        REQUIRE(st.init(c, storage.data, storage.size) == fam::status::ok);
        const auto ring = st.ring();
        std::fill(ring.k, ring.k + H * W * D, poisons[0]);
        std::fill(ring.v, ring.v + H * W * D, poisons[0]);
        int call = 0;
        // after every call: poison every ring row that no later query may read
        auto poison_dead_rows = [&](fam::layer_state<config>& s) {
          const float p = poisons[++call % 4];
          const index_t n = s.tokens();
          std::vector<bool> live(W, false);
          for (index_t m = first_live_token(n, B, M); m < n; ++m) live[ring_row(m, B, M)] = true;
          for (index_t h = 0; h < H; ++h)
            for (index_t row = 0; row < W; ++row)
              if (!live[row]) {
                for (index_t d = 0; d < D; ++d) ring.k_at(h, row, d) = p;
                std::fill_n(ring.v_row(h, row), D, p);
              }
        };
        const auto poisoned =
            testing::stream(st, io, phi0, testing::fixed_chunks(chunk), poison_dead_rows);
        CHECK(testing::bitwise_equal(poisoned.out, clean.out));
        CHECK(testing::bitwise_equal(poisoned.phi, clean.phi));
      }
    }
  }

  TEST_CASE("rewind inside the current block continues as if the tokens were never sent") {
    testing::rng rng(testing::base_seed() + 25);
    for (index_t F : {0, 2}) {
      const index_t B = 5, M = 1, D = 4, H = 2, L = 23;
      const config c = make_config(D, B, M, F, H, H);
      const testing::stream_io io = random_io(rng, L, H, H, D);
      const std::vector<float> phi0 = rng.floats(F * H * D);
      const auto straight = stream_fresh(c, io, phi0, testing::fixed_chunks(1));
      for (index_t cut : {index_t(0), index_t(6), index_t(12), index_t(21)}) {
        const index_t room = B - 1 - cut % B;  // draft tokens that fit before the block end
        for (index_t draft = 0; draft <= room; ++draft) {
          INFO("F=", F, " cut=", cut, " draft=", draft);
          fam::layer_state<config> st;
          REQUIRE(st.init(c) == fam::status::ok);
          testing::stream_io head{cut,
                                  H,
                                  H,
                                  D,
                                  std::vector<float>(io.q.begin(), io.q.begin() + cut * H * D),
                                  std::vector<float>(io.k.begin(), io.k.begin() + cut * H * D),
                                  std::vector<float>(io.v.begin(), io.v.begin() + cut * H * D)};
          const auto first = testing::stream(st, head, phi0, testing::fixed_chunks(3));
          // speculative tokens, then rewind them
          const testing::stream_io junk = random_io(rng, draft, H, H, D);
          std::vector<float> junk_out(draft * H * D);
          REQUIRE(fam::attend(st, fam::make_view(junk.q.data(), draft, H, D),
                              fam::make_view(junk.k.data(), draft, H, D),
                              fam::make_view(junk.v.data(), draft, H, D),
                              fam::make_view(junk_out.data(), draft, H, D)) == fam::status::ok);
          REQUIRE(fam::rewind(st, draft) == fam::status::ok);
          CHECK(fam::rewind(st, st.block_offset() + 1) == fam::status::out_of_range);
          // continue with the real tokens from `cut`, FAM already begun: feed them by hand
          testing::stream_io tail{L - cut,
                                  H,
                                  H,
                                  D,
                                  std::vector<float>(io.q.begin() + cut * H * D, io.q.end()),
                                  std::vector<float>(io.k.begin() + cut * H * D, io.k.end()),
                                  std::vector<float>(io.v.begin() + cut * H * D, io.v.end())};
          std::vector<float> phi = first.phi;
          std::vector<float> out(tail.L * H * D);
          for (index_t done = 0, got = 0; done < tail.L; done += got) {
            REQUIRE(fam::attend(st, fam::make_view(tail.q.data(), tail.L, H, D).rows_from(done, 1),
                                fam::make_view(tail.k.data(), tail.L, H, D).rows_from(done, 1),
                                fam::make_view(tail.v.data(), tail.L, H, D).rows_from(done, 1),
                                fam::make_view(out.data(), tail.L, H, D).rows_from(done, 1), {},
                                &got) == fam::status::ok);
            if (st.phase() == fam::fam_phase::pending) {
              const auto uf = st.fam_output();
              for (index_t i = 0; i < F; ++i)
                for (index_t h = 0; h < H; ++h) std::copy_n(uf.at(i, h), D, &phi[(i * H + h) * D]);
              REQUIRE(testing::install_weight_free(st, phi, false) == fam::status::ok);
            }
          }
          CHECK(testing::bitwise_equal(
              out, std::vector<float>(straight.out.begin() + cut * H * D, straight.out.end())));
        }
      }
    }
  }

  TEST_CASE("batch members equal the same sequences run alone T15") {
    testing::rng rng(testing::base_seed() + 26);
    for (index_t F : {0, 2}) {
      const index_t B = 4, M = 1, D = 3, H = 2;
      const config c = make_config(D, B, M, F, H, H);
      const index_t lengths[] = {0, 9, 0, 17, 1, 0};
      const int S = 6;
      std::vector<testing::stream_io> ios;
      std::vector<std::vector<float>> phis;
      std::vector<testing::stream_result> alone;
      for (index_t L : lengths) {
        ios.push_back(random_io(rng, L, H, H, D));
        phis.push_back(rng.floats(F * H * D));
        alone.push_back(stream_fresh(c, ios.back(), phis.back(), testing::fixed_chunks(1)));
      }
      std::vector<fam::layer_state<config>> states(S);
      std::vector<std::vector<float>> outs(S);
      std::vector<index_t> done(S, 0);
      for (int s = 0; s < S; ++s) {
        REQUIRE(states[s].init(c) == fam::status::ok);
        if (F > 0)
          REQUIRE(testing::install_weight_free(states[s], phis[s], true) == fam::status::ok);
        outs[s].assign(lengths[s] * H * D, 0.0f);
      }
      for (int round = 0; round < 40; ++round) {
        std::vector<fam::sequence_step<config>> steps(S);
        for (int s = 0; s < S; ++s) {
          const index_t L = lengths[s], n = std::min<index_t>(3, L - done[s]);
          steps[s].state = &states[s];
          steps[s].q = fam::make_view<const float>(ios[s].q.data(), L, H, D).rows_from(done[s], n);
          steps[s].k = fam::make_view<const float>(ios[s].k.data(), L, H, D).rows_from(done[s], n);
          steps[s].v = fam::make_view<const float>(ios[s].v.data(), L, H, D).rows_from(done[s], n);
          steps[s].out = fam::make_view(outs[s].data(), L, H, D).rows_from(done[s], n);
        }
        REQUIRE(fam::attend_batch(steps.data(), S) == fam::status::ok);
        for (int s = 0; s < S; ++s) {
          done[s] += steps[s].consumed;
          if (states[s].phase() == fam::fam_phase::pending) {
            const auto uf = states[s].fam_output();
            for (index_t i = 0; i < F; ++i)
              for (index_t h = 0; h < H; ++h)
                std::copy_n(uf.at(i, h), D, &phis[s][(i * H + h) * D]);
            REQUIRE(testing::install_weight_free(states[s], phis[s], false) == fam::status::ok);
          }
        }
      }
      for (int s = 0; s < S; ++s) {
        INFO("F=", F, " member ", s);
        CHECK(done[s] == lengths[s]);
        CHECK(testing::bitwise_equal(outs[s], alone[s].out));
      }
    }
  }

  TEST_CASE("FAM update sees neither memory blocks nor later tokens T16b") {
    testing::rng rng(testing::base_seed() + 27);
    const index_t B = 3, M = 2, F = 2, D = 4, H = 2, L = 4 * B;
    const config c = make_config(D, B, M, F, H, H);
    const testing::stream_io base = random_io(rng, L, H, H, D);
    const std::vector<float> phi = rng.floats(F * H * D);
    // FAM kept fixed (the same projections installed at every update), so Uf of block t is a
    // function of that FAM and block t alone.
    auto run = [&](const testing::stream_io& io) {
      fam::layer_state<config> st;
      REQUIRE(st.init(c) == fam::status::ok);
      REQUIRE(testing::install_weight_free(st, phi, true) == fam::status::ok);
      std::vector<float> out(L * H * D), ufs;
      for (index_t t = 0; t < L / B; ++t) {
        const auto rows = [&](const std::vector<float>& x) {
          return fam::make_view<const float>(x.data(), L, H, D).rows_from(t * B, B);
        };
        REQUIRE(fam::attend(st, rows(io.q), rows(io.k), rows(io.v),
                            fam::make_view(out.data(), L, H, D).rows_from(t * B, B)) ==
                fam::status::ok);
        REQUIRE(st.phase() == fam::fam_phase::pending);
        const auto uf = st.fam_output();
        for (index_t i = 0; i < F; ++i)
          for (index_t h = 0; h < H; ++h) ufs.insert(ufs.end(), uf.at(i, h), uf.at(i, h) + D);
        REQUIRE(testing::install_weight_free(st, phi, false) == fam::status::ok);
      }
      return std::make_pair(out, ufs);
    };
    const auto clean = run(base);
    testing::stream_io marked = base;  // markers in block 1: memory for blocks 2 and 3
    for (index_t i = B * H * D; i < 2 * B * H * D; ++i) marked.k[i] = 5.0f, marked.v[i] = 100.0f;
    const auto probe = run(marked);
    const index_t per_block = F * H * D;
    for (index_t t = 0; t < L / B; ++t) {
      INFO("block ", t);
      const std::vector<float> a(clean.second.begin() + t * per_block,
                                 clean.second.begin() + (t + 1) * per_block);
      const std::vector<float> b(probe.second.begin() + t * per_block,
                                 probe.second.begin() + (t + 1) * per_block);
      CHECK(testing::bitwise_equal(a, b) == (t != 1));  // only block 1's own update changes
      const std::vector<float> ta(clean.first.begin() + t * B * H * D,
                                  clean.first.begin() + (t + 1) * B * H * D);
      const std::vector<float> tb(probe.first.begin() + t * B * H * D,
                                  probe.first.begin() + (t + 1) * B * H * D);
      CHECK(testing::bitwise_equal(ta, tb) == (t == 0));  // tokens of blocks 1..3 see block 1
    }
  }

  TEST_CASE("positions and the fresh flag follow SPEC section 4") {
    config c = make_config(2, 4, 1, 2, 1, 1);
    c.position_offset = 10;
    fam::layer_state<config> st;
    REQUIRE(st.init(c) == fam::status::ok);
    CHECK(st.phase() == fam::fam_phase::none);
    CHECK(st.token_position(0) == 10);
    CHECK(st.fam_position(0) == 8);  // Φ[-1] rows sit at -F..-1 (+ offset)
    CHECK(st.fam_position(1) == 9);
    const std::vector<float> phi(4, 0.25f), x(2 * 5, 0.5f);
    std::vector<float> out(10);
    REQUIRE(testing::install_weight_free(st, phi, true) == fam::status::ok);
    CHECK(st.fresh());
    const auto xv = fam::make_view<const float>(x.data(), 5, 1, 2);
    index_t got = 0;
    REQUIRE(fam::attend(st, xv.rows_from(0, 3), xv.rows_from(0, 3), xv.rows_from(0, 3),
                        fam::make_view(out.data(), 5, 1, 2).rows_from(0, 3), {},
                        &got) == fam::status::ok);
    CHECK(st.fresh());  // a partial block keeps it
    CHECK(st.token_position(0) == 13);
    CHECK(st.fam_position(0) == 8);
    REQUIRE(fam::attend(st, xv.rows_from(3, 2), xv.rows_from(3, 2), xv.rows_from(3, 2),
                        fam::make_view(out.data(), 5, 1, 2).rows_from(3, 2), {},
                        &got) == fam::status::ok);
    CHECK(got == 1);  // stopped after the block's 4th token
    CHECK(st.phase() == fam::fam_phase::pending);
    CHECK(st.fresh());                // the update being computed now uses the zero residual
    CHECK(st.fam_position(0) == 12);  // Φ[0] rows: 1*4 - 2 + r + 10
    CHECK(st.fam_position(1) == 13);
    REQUIRE(testing::install_weight_free(st, phi, false) == fam::status::ok);
    CHECK_FALSE(st.fresh());
    st.set_fresh(true);
    CHECK(st.fresh());
  }
}
