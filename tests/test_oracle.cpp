// test_oracle.cpp: checks of the float64 oracle itself (tests/support/oracle.hpp) on facts that
// can be computed by hand or follow directly from SPEC.md. The library's own tests compare
// against this oracle, so the oracle must be right first.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "support/oracle.hpp"

namespace {

using oracle::mask;
using vec = std::vector<double>;

const double kInf = std::numeric_limits<double>::infinity();

vec random_vec(std::size_t n, std::mt19937_64& rng, double amp = 1.0) {
  std::uniform_real_distribution<double> u(-amp, amp);
  vec x(n);
  for (double& xi : x) xi = u(rng);
  return x;
}

// Largest |a_i - b_i|; equal entries (including equal infinities) count as 0.
double max_diff(const vec& a, const vec& b) {
  if (a.size() != b.size()) return kInf;
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    const double d = std::fabs(a[i] - b[i]);
    m = std::isnan(d) ? kInf : std::max(m, d);
  }
  return m;
}

bool all_finite(const vec& x) {
  for (double xi : x)
    if (!std::isfinite(xi)) return false;
  return true;
}

// [L, Hkv, D] -> [L, H, D]: query head h gets kv head h / (H/Hkv) (SPEC §1).
vec repeat_kv(const vec& k, int64_t L, int Hkv, int H, int D) {
  vec out;
  for (int64_t n = 0; n < L; ++n)
    for (int h = 0; h < H; ++h)
      for (int d = 0; d < D; ++d) out.push_back(k[oracle::at(n, h / (H / Hkv), d, Hkv, D)]);
  return out;
}

std::vector<oracle::layer_weights> random_layers(const oracle::model_shape& s, int n_layers,
                                                 std::mt19937_64& rng) {
  const std::size_t dim = static_cast<std::size_t>(s.dim), hid = static_cast<std::size_t>(s.hidden);
  const std::size_t qw = static_cast<std::size_t>(s.H * s.head_dim);
  const std::size_t kw = static_cast<std::size_t>(s.Hkv * s.head_dim);
  std::vector<oracle::layer_weights> layers;
  for (int l = 0; l < n_layers; ++l) {
    oracle::layer_weights w;
    w.ln1 = random_vec(dim, rng, 0.5);
    for (double& x : w.ln1) x += 1.0;
    w.ln2 = random_vec(dim, rng, 0.5);
    for (double& x : w.ln2) x += 1.0;
    w.wq = random_vec(qw * dim, rng, 0.6);
    w.wk = random_vec(kw * dim, rng, 0.6);
    w.wv = random_vec(kw * dim, rng, 0.6);
    w.wo = random_vec(dim * qw, rng, 0.4);
    w.w1 = random_vec(hid * dim, rng, 0.4);
    w.w3 = random_vec(hid * dim, rng, 0.4);
    w.w2 = random_vec(dim * hid, rng, 0.4);
    layers.push_back(w);
  }
  return layers;
}

std::vector<vec> random_phis(const oracle::model_shape& s, int n_layers, std::mt19937_64& rng) {
  std::vector<vec> phis;
  for (int l = 0; l < n_layers; ++l)
    phis.push_back(random_vec(static_cast<std::size_t>(s.F * s.dim), rng));
  return phis;
}

// Rows [r0, r1) of a [rows, width] tensor.
vec rows(const vec& x, int64_t r0, int64_t r1, int64_t width) {
  return oracle::slice_rows(x, r0, r1, width);
}

}  // namespace

TEST_SUITE("oracle") {
  // ---------------------------------------------------------------------------------------------
  // SPEC §2: token attention
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("a single visible key gives out = v and lse = scale * q.k") {
    std::mt19937_64 rng(1);
    const int H = 2, D = 3;
    const double scale = 0.7;
    SUBCASE("L = 1, full causal") {
      const vec q = random_vec(H * D, rng), k = random_vec(H * D, rng), v = random_vec(H * D, rng);
      const auto r = oracle::token_attention(mask::full, 0, 1, 0, 1, H, H, D, scale, q, k, v);
      CHECK(max_diff(r.out, v) <= 1e-15);
      for (int h = 0; h < H; ++h)
        CHECK(r.lse[h] == doctest::Approx(scale * oracle::dot(&q[h * D], &k[h * D], D)));
    }
    SUBCASE("window W = 1: every token sees only itself") {
      const int64_t L = 5;
      const vec q = random_vec(L * H * D, rng), k = random_vec(L * H * D, rng);
      const vec v = random_vec(L * H * D, rng);
      const auto r = oracle::token_attention(mask::window, 1, 1, 0, L, H, H, D, scale, q, k, v);
      CHECK(max_diff(r.out, v) <= 1e-15);
      for (int64_t n = 0; n < L; ++n)
        for (int h = 0; h < H; ++h) {
          const std::size_t o = oracle::at(n, h, 0, H, D);
          CHECK(r.lse[n * H + h] == doctest::Approx(scale * oracle::dot(&q[o], &k[o], D)));
        }
    }
  }

  TEST_CASE("equal logits give the mean of the visible values and lse = log(count)") {
    // scale = 0 makes every logit 0. D = 1 and v[n] = n + 1, so the means are easy to write.
    const int64_t L = 8;
    vec q(L, 1.0), k(L, 1.0), v(L);
    for (int64_t n = 0; n < L; ++n) v[n] = static_cast<double>(n + 1);
    auto check_first = [&](mask kind, int64_t W, int64_t B, int64_t M, const int64_t* first) {
      const auto r = oracle::token_attention(kind, W, B, M, L, 1, 1, 1, 0.0, q, k, v);
      for (int64_t n = 0; n < L; ++n) {
        // keys first..n visible: mean of (first+1 .. n+1) = (first + n + 2) / 2
        CHECK(r.out[n] == doctest::Approx((first[n] + n + 2) / 2.0));
        CHECK(r.lse[n] == doctest::Approx(std::log(static_cast<double>(n - first[n] + 1))));
      }
    };
    const int64_t full[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    check_first(mask::full, 0, 1, 0, full);
    const int64_t window2[8] = {0, 0, 1, 2, 3, 4, 5, 6};  // n - 2 < m <= n
    check_first(mask::window, 2, 1, 0, window2);
    const int64_t bswa_b3_m1[8] = {0, 0, 0, 0, 0, 0, 3, 3};  // blocks {0,1,2} {3,4,5} {6,7}
    check_first(mask::bswa, 0, 3, 1, bswa_b3_m1);
    const int64_t bswa_b3_m0[8] = {0, 0, 0, 3, 3, 3, 6, 6};
    check_first(mask::bswa, 0, 3, 0, bswa_b3_m0);
  }

  TEST_CASE("no visible key gives out = 0 and lse = -inf; L = 0 gives empty results") {
    const vec q = {1.0, 2.0};
    const auto r = oracle::attend_row(q.data(), {}, {}, 2, 1.0);
    CHECK(r.out == vec{0.0, 0.0});
    CHECK(r.lse == -kInf);
    const auto e = oracle::token_attention(mask::bswa, 0, 4, 1, 0, 2, 1, 3, 1.0, {}, {}, {});
    CHECK(e.out.empty());
    CHECK(e.lse.empty());
  }

  TEST_CASE("mask reductions: bswa M >= nblocks-1 = full, B = 1 = window M+1, W >= L = full") {
    std::mt19937_64 rng(2);
    const int64_t L = 10;
    const int H = 2, D = 4;
    const double scale = 0.5;
    const vec q = random_vec(L * H * D, rng), k = random_vec(L * H * D, rng);
    const vec v = random_vec(L * H * D, rng);
    const auto full = oracle::token_attention(mask::full, 0, 1, 0, L, H, H, D, scale, q, k, v);
    for (int64_t M : {3, 7}) {  // B = 3: 4 blocks
      const auto b = oracle::token_attention(mask::bswa, 0, 3, M, L, H, H, D, scale, q, k, v);
      CHECK(max_diff(b.out, full.out) <= 1e-14);
      CHECK(max_diff(b.lse, full.lse) <= 1e-14);
    }
    for (int64_t M : {0, 1, 3}) {
      const auto b = oracle::token_attention(mask::bswa, 0, 1, M, L, H, H, D, scale, q, k, v);
      const auto w = oracle::token_attention(mask::window, M + 1, 1, 0, L, H, H, D, scale, q, k, v);
      CHECK(max_diff(b.out, w.out) <= 1e-14);
      CHECK(max_diff(b.lse, w.lse) <= 1e-14);
    }
    for (int64_t W : {L, L + 5}) {
      const auto w = oracle::token_attention(mask::window, W, 1, 0, L, H, H, D, scale, q, k, v);
      CHECK(max_diff(w.out, full.out) <= 1e-14);
      CHECK(max_diff(w.lse, full.lse) <= 1e-14);
    }
    // The masks really differ when they should.
    const auto w3 = oracle::token_attention(mask::window, 3, 1, 0, L, H, H, D, scale, q, k, v);
    CHECK(max_diff(w3.out, full.out) > 1e-6);
  }

  TEST_CASE("bswa with M = 0 is block-local causal attention") {
    std::mt19937_64 rng(3);
    const int64_t L = 7, B = 3, row = 2 * 3;  // H = 2, D = 3
    const vec q = random_vec(L * row, rng), k = random_vec(L * row, rng);
    const vec v = random_vec(L * row, rng);
    const auto b = oracle::token_attention(mask::bswa, 0, B, 0, L, 2, 2, 3, 0.8, q, k, v);
    for (int64_t n0 = 0; n0 < L; n0 += B) {
      const int64_t n1 = std::min(L, n0 + B);
      const auto f =
          oracle::token_attention(mask::full, 0, 1, 0, n1 - n0, 2, 2, 3, 0.8, rows(q, n0, n1, row),
                                  rows(k, n0, n1, row), rows(v, n0, n1, row));
      CHECK(max_diff(rows(b.out, n0, n1, row), f.out) <= 1e-14);
    }
  }

  TEST_CASE("GQA and MQA equal MHA with kv heads repeated") {
    std::mt19937_64 rng(4);
    const int64_t L = 9;
    const int H = 4, D = 3;
    for (int Hkv : {1, 2}) {
      const vec q = random_vec(L * H * D, rng), k = random_vec(L * Hkv * D, rng);
      const vec v = random_vec(L * Hkv * D, rng);
      const vec kr = repeat_kv(k, L, Hkv, H, D), vr = repeat_kv(v, L, Hkv, H, D);
      for (mask kind : {mask::full, mask::window, mask::bswa}) {
        const auto g = oracle::token_attention(kind, 3, 2, 1, L, H, Hkv, D, 0.6, q, k, v);
        const auto m = oracle::token_attention(kind, 3, 2, 1, L, H, H, D, 0.6, q, kr, vr);
        CHECK(max_diff(g.out, m.out) <= 1e-15);
        CHECK(max_diff(g.lse, m.lse) <= 1e-15);
      }
      // fam_block: Lm = 4 memory rows, F = 2, b = 3.
      const vec km = random_vec(4 * Hkv * D, rng), vm = random_vec(4 * Hkv * D, rng);
      const vec qf = random_vec(2 * H * D, rng), kf = random_vec(2 * Hkv * D, rng);
      const vec vf = random_vec(2 * Hkv * D, rng);
      const vec kb = rows(k, 0, 3, Hkv * D), vb = rows(v, 0, 3, Hkv * D);
      const vec qb = rows(q, 0, 3, H * D);
      const auto g = oracle::fam_block(4, 2, 3, H, Hkv, D, 0.6, km, vm, qf, kf, vf, qb, kb, vb);
      const auto m = oracle::fam_block(4, 2, 3, H, H, D, 0.6, repeat_kv(km, 4, Hkv, H, D),
                                       repeat_kv(vm, 4, Hkv, H, D), qf, repeat_kv(kf, 2, Hkv, H, D),
                                       repeat_kv(vf, 2, Hkv, H, D), qb, repeat_kv(kb, 3, Hkv, H, D),
                                       repeat_kv(vb, 3, Hkv, H, D));
      CHECK(max_diff(g.ut, m.ut) <= 1e-15);
      CHECK(max_diff(g.uf, m.uf) <= 1e-15);
      CHECK(max_diff(g.lse_t, m.lse_t) <= 1e-15);
      CHECK(max_diff(g.lse_f, m.lse_f) <= 1e-15);
    }
  }

  TEST_CASE("logits of magnitude 1e4 stay finite and correct") {
    // D = 1, scale = 1: q = s*100, k = {100, 99.99} gives logits s*1e4 and s*9999 for token 1.
    for (double sign : {1.0, -1.0}) {
      const vec q = {sign * 100.0, sign * 100.0}, k = {100.0, 99.99}, v = {2.0, -3.0};
      const auto r = oracle::token_attention(mask::full, 0, 1, 0, 2, 1, 1, 1, 1.0, q, k, v);
      REQUIRE(all_finite(r.out));
      REQUIRE(all_finite(r.lse));
      const double l0 = sign * 100.0 * 100.0, l1 = sign * 100.0 * 99.99;
      CHECK(r.out[0] == doctest::Approx(2.0));
      CHECK(r.lse[0] == doctest::Approx(l0).epsilon(1e-14));
      const double p1 = 1.0 / (1.0 + std::exp(l0 - l1));  // weight of key 1
      CHECK(r.out[1] == doctest::Approx((1.0 - p1) * 2.0 + p1 * -3.0).epsilon(1e-9));
      const double hi = std::max(l0, l1), lo = std::min(l0, l1);
      CHECK(r.lse[1] == doctest::Approx(hi + std::log1p(std::exp(lo - hi))).epsilon(1e-14));
    }
    // Same through the FAM path: FAM rows and token rows with huge logits.
    const vec big = {100.0}, kb = {100.0}, vb = {1.0}, kf = {-100.0}, vf = {5.0};
    const auto f = oracle::fam_block(0, 1, 1, 1, 1, 1, 1.0, {}, {}, big, kf, vf, big, kb, vb);
    CHECK(all_finite(f.ut));
    CHECK(all_finite(f.uf));
    CHECK(f.ut[0] == doctest::Approx(1.0));  // exp(-2e4) weight on the FAM value
    CHECK(f.lse_t[0] == doctest::Approx(1e4));
  }

  // ---------------------------------------------------------------------------------------------
  // SPEC §3: fam_block
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("fam_block with scale 0 averages exactly the visible values") {
    // H = D = 1. memory values {1, 2}, FAM values {10, 20}, block values {100, 200, 300}.
    const vec km(2, 1.0), vm = {1.0, 2.0}, qf(2, 1.0), kf(2, 1.0), vf = {10.0, 20.0};
    const vec q(3, 1.0), k(3, 1.0), v = {100.0, 200.0, 300.0};
    const auto r = oracle::fam_block(2, 2, 3, 1, 1, 1, 0.0, km, vm, qf, kf, vf, q, k, v);
    // token i: memory + FAM + block 0..i
    CHECK(r.ut[0] == doctest::Approx((1 + 2 + 10 + 20 + 100) / 5.0));
    CHECK(r.ut[1] == doctest::Approx((1 + 2 + 10 + 20 + 100 + 200) / 6.0));
    CHECK(r.ut[2] == doctest::Approx((1 + 2 + 10 + 20 + 100 + 200 + 300) / 7.0));
    CHECK(r.lse_t[2] == doctest::Approx(std::log(7.0)));
    // FAM row: all FAM + the whole block, no memory
    for (int r2 = 0; r2 < 2; ++r2) {
      CHECK(r.uf[r2] == doctest::Approx((10 + 20 + 100 + 200 + 300) / 5.0));
      CHECK(r.lse_f[r2] == doctest::Approx(std::log(5.0)));
    }
  }

  TEST_CASE("fam_block with F = 0 equals full causal (Lm = 0) and bswa (memory = past blocks)") {
    std::mt19937_64 rng(5);
    const int H = 2, D = 3;
    const int64_t row = H * D, L = 8, B = 3, M = 1;
    const vec q = random_vec(L * row, rng), k = random_vec(L * row, rng);
    const vec v = random_vec(L * row, rng);
    SUBCASE("Lm = 0") {
      const auto f =
          oracle::token_attention(mask::full, 0, 1, 0, 4, H, H, D, 0.5, rows(q, 0, 4, row),
                                  rows(k, 0, 4, row), rows(v, 0, 4, row));
      const auto b = oracle::fam_block(0, 0, 4, H, H, D, 0.5, {}, {}, {}, {}, {},
                                       rows(q, 0, 4, row), rows(k, 0, 4, row), rows(v, 0, 4, row));
      CHECK(max_diff(b.ut, f.out) <= 1e-15);
      CHECK(max_diff(b.lse_t, f.lse) <= 1e-15);
      CHECK(b.uf.empty());
    }
    SUBCASE("memory = block 1 for the last (partial) block 2") {
      const auto s = oracle::token_attention(mask::bswa, 0, B, M, L, H, H, D, 0.5, q, k, v);
      const auto b =
          oracle::fam_block(3, 0, 2, H, H, D, 0.5, rows(k, 3, 6, row), rows(v, 3, 6, row), {}, {},
                            {}, rows(q, 6, 8, row), rows(k, 6, 8, row), rows(v, 6, 8, row));
      CHECK(max_diff(b.ut, rows(s.out, 6, 8, row)) <= 1e-15);
      CHECK(max_diff(b.lse_t, rows(s.lse, 6, 8, H)) <= 1e-15);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // SPEC §6: weight-free FAM loop
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("fam_weight_free with F = 0 equals bswa") {
    std::mt19937_64 rng(6);
    const int H = 2, D = 4;
    for (int64_t L : {0, 1, 6, 11}) {
      const vec q = random_vec(L * H * D, rng), k = random_vec(L * H * D, rng);
      const vec v = random_vec(L * H * D, rng);
      for (int64_t M : {0, 1, 2}) {
        const auto f = oracle::fam_weight_free(3, M, 0, L, H, D, 0.5, q, k, v, {});
        const auto b = oracle::token_attention(mask::bswa, 0, 3, M, L, H, H, D, 0.5, q, k, v);
        CHECK(max_diff(f.out, b.out) <= 1e-14);
        CHECK(max_diff(f.lse, b.lse) <= 1e-14);
        CHECK(f.phi.empty());
      }
    }
  }

  TEST_CASE("fam_weight_free by hand with scale 0: which state, when it updates") {
    // B = 2, M = 1, F = 1, H = D = 1, L = 5 (blocks {0,1} {2,3} {4}); v = 1..5, Phi[-1] = 10.
    const vec q(5, 1.0), k(5, 1.0), v = {1, 2, 3, 4, 5}, phi0 = {10.0};
    const auto r = oracle::fam_weight_free(2, 1, 1, 5, 1, 1, 0.0, q, k, v, phi0);
    const double phi_0 = (10.0 + 1 + 2) / 3;   // Phi[0]: Phi[-1] and the whole block 0
    const double phi_1 = (phi_0 + 3 + 4) / 3;  // Phi[1]: Phi[0] and the whole block 1
    CHECK(r.out[0] == doctest::Approx((10.0 + 1) / 2));
    CHECK(r.out[1] == doctest::Approx((10.0 + 1 + 2) / 3));
    CHECK(r.out[2] == doctest::Approx((1 + 2 + phi_0 + 3) / 4));  // memory block 0, Phi[0]
    CHECK(r.out[3] == doctest::Approx((1 + 2 + phi_0 + 3 + 4) / 5));
    CHECK(r.out[4] == doctest::Approx((3 + 4 + phi_1 + 5) / 4));  // memory block 1 only (M = 1)
    CHECK(r.lse[4] == doctest::Approx(std::log(4.0)));
    CHECK(r.phi[0] == doctest::Approx(phi_1));  // the partial block 2 did not update Phi
  }

  TEST_CASE("fam_weight_free: partial blocks keep Phi; restarting at a block boundary (M = 0)") {
    std::mt19937_64 rng(7);
    const int H = 2, D = 3;
    const int64_t B = 3, F = 2, row = H * D, L = 2 * B + 2;
    const vec q = random_vec(L * row, rng), k = random_vec(L * row, rng);
    const vec v = random_vec(L * row, rng), phi0 = random_vec(F * row, rng);
    const auto whole = oracle::fam_weight_free(B, 0, F, L, H, D, 0.5, q, k, v, phi0);
    const auto two = oracle::fam_weight_free(B, 0, F, 2 * B, H, D, 0.5, rows(q, 0, 2 * B, row),
                                             rows(k, 0, 2 * B, row), rows(v, 0, 2 * B, row), phi0);
    CHECK(max_diff(whole.phi, two.phi) == 0.0);
    CHECK(max_diff(rows(whole.out, 0, 2 * B, row), two.out) == 0.0);
    CHECK(max_diff(whole.phi, phi0) > 1e-6);
    // With M = 0 nothing but Phi crosses a block boundary: restart at block 1 from Phi[0].
    const auto one = oracle::fam_weight_free(B, 0, F, B, H, D, 0.5, rows(q, 0, B, row),
                                             rows(k, 0, B, row), rows(v, 0, B, row), phi0);
    const auto rest = oracle::fam_weight_free(B, 0, F, L - B, H, D, 0.5, rows(q, B, L, row),
                                              rows(k, B, L, row), rows(v, B, L, row), one.phi);
    CHECK(max_diff(rest.out, rows(whole.out, B, L, row)) <= 1e-15);
    CHECK(max_diff(rest.phi, whole.phi) <= 1e-15);
  }

  // ---------------------------------------------------------------------------------------------
  // SPEC §4: the dense model
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("model helpers by hand: rmsnorm, matvec, silu, rope, positions") {
    const vec y = oracle::rmsnorm({3.0, 4.0}, {1.0, 2.0});
    const double inv = 1.0 / std::sqrt(12.5 + 1e-5);
    CHECK(y[0] == doctest::Approx(3.0 * inv));
    CHECK(y[1] == doctest::Approx(8.0 * inv));

    CHECK(oracle::matvec({1, 2, 3, 4, 5, 6}, {1, 1}, 3, 2) == vec{3, 7, 11});  // W is [out, in]
    CHECK(oracle::silu(0.0) == 0.0);
    CHECK(oracle::silu(1.0) == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))));

    // hd = 4: pair 0 turns by pos, pair 1 by pos * 10000^(-1/2) = pos / 100.
    vec x = {1.0, 0.0, 0.0, 1.0, /* head 1 */ 2.0, 0.0, 0.0, 0.0};
    oracle::rope(x, 2, 4, 2);
    CHECK(x[0] == doctest::Approx(std::cos(2.0)));
    CHECK(x[1] == doctest::Approx(std::sin(2.0)));
    CHECK(x[2] == doctest::Approx(-std::sin(0.02)));
    CHECK(x[3] == doctest::Approx(std::cos(0.02)));
    CHECK(x[4] == doctest::Approx(2.0 * std::cos(2.0)));
    CHECK(x[5] == doctest::Approx(2.0 * std::sin(2.0)));
    vec z = {0.3, -0.2, 0.5, 0.7};
    const vec z0 = z;
    oracle::rope(z, 1, 4, 0);
    CHECK(z == z0);
    oracle::rope(z, 1, 4, -5);  // negative positions turn backwards
    oracle::rope(z, 1, 4, 5);
    CHECK(max_diff(z, z0) <= 1e-15);

    // SPEC §4: Phi[t-1] row r sits at t*B - F + r (+ offset).
    CHECK(oracle::fam_position(0, 4, 2, 0, 0) == -2);
    CHECK(oracle::fam_position(0, 4, 2, 1, 0) == -1);
    CHECK(oracle::fam_position(1, 4, 2, 0, 0) == 2);
    CHECK(oracle::fam_position(2, 4, 6, 0, 10) == 12);  // F > B reaches into earlier blocks
    CHECK(oracle::token_position(7, -3) == 4);
  }

  TEST_CASE("fam_model with F = 0 and M >= nblocks-1 equals a dense full-causal model") {
    std::mt19937_64 rng(8);
    const oracle::model_shape s{8, 12, 4, 2, 4, /*B*/ 3, /*M*/ 2, /*F*/ 0};
    const int64_t L = 8, offset = 5;  // 3 blocks, the last one partial
    const auto layers = random_layers(s, 2, rng);
    const vec x = random_vec(L * s.dim, rng);
    const auto r = oracle::fam_model(s, layers, L, x, {{}, {}}, {true, true}, offset);

    vec xin = x;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto& w = layers[l];
      const int qw = s.H * s.head_dim, kw = s.Hkv * s.head_dim;
      vec Q, K, V;  // [L, H|Hkv, hd]
      for (int64_t n = 0; n < L; ++n) {
        const vec xn = oracle::rmsnorm(rows(xin, n, n + 1, s.dim), w.ln1);
        vec qn = oracle::matvec(w.wq, xn, qw, s.dim), kn = oracle::matvec(w.wk, xn, kw, s.dim);
        const vec vn = oracle::matvec(w.wv, xn, kw, s.dim);
        oracle::rope(qn, s.H, s.head_dim, n + offset);
        oracle::rope(kn, s.Hkv, s.head_dim, n + offset);
        Q.insert(Q.end(), qn.begin(), qn.end());
        K.insert(K.end(), kn.begin(), kn.end());
        V.insert(V.end(), vn.begin(), vn.end());
      }
      const auto att = oracle::token_attention(mask::full, 0, 1, 0, L, s.H, s.Hkv, s.head_dim,
                                               1.0 / std::sqrt(s.head_dim), Q, K, V);
      vec out;
      for (int64_t n = 0; n < L; ++n) {
        vec a = oracle::matvec(w.wo, rows(att.out, n, n + 1, qw), s.dim, qw);
        for (int d = 0; d < s.dim; ++d) a[d] += xin[n * s.dim + d];
        const vec f = oracle::ffn(w, oracle::rmsnorm(a, w.ln2), s.dim, s.hidden);
        for (int d = 0; d < s.dim; ++d) out.push_back(f[d] + a[d]);
      }
      CHECK(max_diff(r.layer_out[l], out) <= 1e-12);
      CHECK(r.phi[l].empty());
      CHECK(r.phi_history[l].size() == 2);  // two complete blocks, each an empty [0, dim] state
      xin = out;
    }
  }

  TEST_CASE("fam_model, one layer, equals the per-block recipe of SPEC §4 built on fam_block") {
    std::mt19937_64 rng(9);
    const oracle::model_shape s{6, 10, 2, 1, 4, /*B*/ 3, /*M*/ 1, /*F*/ 2};
    const int64_t L = 8, offset = -4;  // blocks {0,1,2} {3,4,5} {6,7}
    const auto layers = random_layers(s, 1, rng);
    const auto& w = layers[0];
    const vec x = random_vec(L * s.dim, rng);
    const std::vector<vec> phi0 = random_phis(s, 1, rng);
    const auto r = oracle::fam_model(s, layers, L, x, phi0, {true}, offset);

    const int qw = s.H * s.head_dim, kw = s.Hkv * s.head_dim;
    // Project rows of [rows, dim] to RoPE'd q, k and plain v at the given positions.
    auto project = [&](const vec& z, const std::vector<int64_t>& pos, vec& q, vec& k, vec& v) {
      for (std::size_t j = 0; j < pos.size(); ++j) {
        const vec zn = oracle::rmsnorm(rows(z, j, j + 1, s.dim), w.ln1);
        vec qj = oracle::matvec(w.wq, zn, qw, s.dim), kj = oracle::matvec(w.wk, zn, kw, s.dim);
        const vec vj = oracle::matvec(w.wv, zn, kw, s.dim);
        oracle::rope(qj, s.H, s.head_dim, pos[j]);
        oracle::rope(kj, s.Hkv, s.head_dim, pos[j]);
        q.insert(q.end(), qj.begin(), qj.end());
        k.insert(k.end(), kj.begin(), kj.end());
        v.insert(v.end(), vj.begin(), vj.end());
      }
    };
    // out = FFN(LN2(U Wo + resid)) + (U Wo + resid), row by row.
    auto finish = [&](const vec& U, const vec& resid, int64_t n) {
      vec out;
      for (int64_t j = 0; j < n; ++j) {
        vec a = oracle::matvec(w.wo, rows(U, j, j + 1, qw), s.dim, qw);
        for (int d = 0; d < s.dim; ++d) a[d] += resid.empty() ? 0.0 : resid[j * s.dim + d];
        const vec f = oracle::ffn(w, oracle::rmsnorm(a, w.ln2), s.dim, s.hidden);
        for (int d = 0; d < s.dim; ++d) out.push_back(f[d] + a[d]);
      }
      return out;
    };

    vec Kall, Vall, phi = phi0[0], out;  // token keys/values of this layer: [L, Hkv, hd]
    bool fresh = true;
    for (int64_t t = 0; t * s.B < L; ++t) {
      const int64_t n0 = t * s.B, b = std::min(s.B, L - n0);
      std::vector<int64_t> pf, pt;
      for (int64_t rr = 0; rr < s.F; ++rr) pf.push_back(t * s.B - s.F + rr + offset);
      for (int64_t n = n0; n < n0 + b; ++n) pt.push_back(n + offset);
      vec qf, kf, vf, q, k, v;
      project(phi, pf, qf, kf, vf);
      project(rows(x, n0, n0 + b, s.dim), pt, q, k, v);
      const int64_t m0 = std::max<int64_t>(0, t - s.M) * s.B;
      const auto fb =
          oracle::fam_block(n0 - m0, s.F, b, s.H, s.Hkv, s.head_dim, 1.0 / std::sqrt(s.head_dim),
                            rows(Kall, m0, n0, kw), rows(Vall, m0, n0, kw), qf, kf, vf, q, k, v);
      Kall.insert(Kall.end(), k.begin(), k.end());
      Vall.insert(Vall.end(), v.begin(), v.end());
      const vec o = finish(fb.ut, rows(x, n0, n0 + b, s.dim), b);
      out.insert(out.end(), o.begin(), o.end());
      if (b == s.B) {
        phi = finish(fb.uf, fresh ? vec{} : phi, s.F);
        fresh = false;
        CHECK(max_diff(r.phi_history[0][t], phi) <= 1e-12);
      }
    }
    CHECK(max_diff(r.layer_out[0], out) <= 1e-12);
    CHECK(max_diff(r.phi[0], phi) <= 1e-12);
    CHECK(r.phi_history[0].size() == 2);
  }

  TEST_CASE("fam_model, one layer: Phi[-1] reaches block 0 tokens; fresh only touches Phi") {
    std::mt19937_64 rng(10);
    const int64_t L = 6;  // two complete blocks
    SUBCASE("F > 0") {
      const oracle::model_shape s{6, 8, 2, 2, 6, 3, 1, 2};
      const auto layers = random_layers(s, 1, rng);
      const vec x = random_vec(L * s.dim, rng);
      const std::vector<vec> pa = random_phis(s, 1, rng), pb = random_phis(s, 1, rng);
      const auto a = oracle::fam_model(s, layers, L, x, pa, {false}, 0);
      const auto b = oracle::fam_model(s, layers, L, x, pb, {false}, 0);
      for (int64_t n = 0; n < 3; ++n)  // every token of block 0 sees Phi[-1]
        CHECK(max_diff(rows(a.layer_out[0], n, n + 1, s.dim),
                       rows(b.layer_out[0], n, n + 1, s.dim)) > 1e-9);

      const auto f = oracle::fam_model(s, layers, L, x, pa, {true}, 0);
      CHECK(max_diff(rows(f.layer_out[0], 0, 3, s.dim), rows(a.layer_out[0], 0, 3, s.dim)) == 0.0);
      CHECK(max_diff(f.phi_history[0][0], a.phi_history[0][0]) > 1e-9);  // zero vs Phi[-1] residual
      CHECK(max_diff(rows(f.layer_out[0], 3, 6, s.dim), rows(a.layer_out[0], 3, 6, s.dim)) > 1e-9);

      const std::vector<vec> zero = {vec(s.F * s.dim, 0.0)};  // a zero residual is no residual
      const auto z0 = oracle::fam_model(s, layers, L, x, zero, {true}, 0);
      const auto z1 = oracle::fam_model(s, layers, L, x, zero, {false}, 0);
      CHECK(max_diff(z0.layer_out[0], z1.layer_out[0]) == 0.0);
      CHECK(max_diff(z0.phi[0], z1.phi[0]) == 0.0);
    }
    SUBCASE("F = 0: no state, fresh changes nothing") {
      const oracle::model_shape s{6, 8, 2, 1, 4, 3, 1, 0};
      const auto layers = random_layers(s, 1, rng);
      const vec x = random_vec(L * s.dim, rng);
      const auto a = oracle::fam_model(s, layers, L, x, {{}}, {true}, 0);
      const auto b = oracle::fam_model(s, layers, L, x, {{}}, {false}, 0);
      CHECK(max_diff(a.layer_out[0], b.layer_out[0]) == 0.0);
      CHECK(a.phi[0].empty());
    }
  }

  TEST_CASE("fam_model: restarting at a block boundary from the saved Phi (M = 0) continues") {
    std::mt19937_64 rng(11);
    const oracle::model_shape s{8, 12, 4, 2, 4, /*B*/ 3, /*M*/ 0, /*F*/ 2};
    const int64_t L = 7;  // blocks {0,1,2} {3,4,5} {6}
    const auto layers = random_layers(s, 2, rng);
    const vec x = random_vec(L * s.dim, rng);
    const auto whole = oracle::fam_model(s, layers, L, x, random_phis(s, 2, rng), {true, true}, 0);
    // Block 1 onward, from Phi[0], not fresh, positions shifted by B: the same numbers.
    const std::vector<vec> saved = {whole.phi_history[0][0], whole.phi_history[1][0]};
    const auto rest =
        oracle::fam_model(s, layers, L - s.B, rows(x, s.B, L, s.dim), saved, {false, false}, s.B);
    for (int l = 0; l < 2; ++l) {
      CHECK(max_diff(rest.layer_out[l], rows(whole.layer_out[l], s.B, L, s.dim)) <= 1e-13);
      CHECK(max_diff(rest.phi[l], whole.phi[l]) <= 1e-13);
    }
  }

  TEST_CASE("fam_model receptive field (SPEC §7.5): BSWA cuts off bitwise, FAM reaches on") {
    std::mt19937_64 rng(12);
    const int64_t L = 14, B = 2, M = 1, j = 1, N = 2;  // 7 blocks; token 1 is in block 0
    for (int64_t F : {0, 2}) {
      const oracle::model_shape s{6, 8, 2, 1, 4, B, M, F};
      const auto layers = random_layers(s, static_cast<int>(N), rng);
      vec x = random_vec(L * s.dim, rng);
      const std::vector<vec> phi0 = random_phis(s, 2, rng);
      const auto a = oracle::fam_model(s, layers, L, x, phi0, {true, true}, 0);
      x[j * s.dim] += 0.5;
      const auto b = oracle::fam_model(s, layers, L, x, phi0, {true, true}, 0);
      const vec& oa = a.layer_out[N - 1];
      const vec& ob = b.layer_out[N - 1];
      const int64_t edge = (j / B + N * M) * B;  // first token of block block(j) + N*M
      CHECK(max_diff(rows(oa, edge, edge + B, s.dim), rows(ob, edge, edge + B, s.dim)) > 1e-12);
      const double later = max_diff(rows(oa, edge + B, L, s.dim), rows(ob, edge + B, L, s.dim));
      if (F == 0) {
        CHECK(later == 0.0);  // masked keys never enter a row's max or sum
      } else {
        for (int64_t n = edge + B; n < L; ++n)
          CHECK(max_diff(rows(oa, n, n + 1, s.dim), rows(ob, n, n + 1, s.dim)) > 0.0);
      }
    }
  }

  TEST_CASE("fam_model: a common position offset cancels in RoPE (tokens and FAM rows alike)") {
    std::mt19937_64 rng(13);
    const oracle::model_shape s{8, 12, 2, 2, 4, /*B*/ 3, /*M*/ 1, /*F*/ 2};
    const int64_t L = 8;
    const auto layers = random_layers(s, 2, rng);
    const vec x = random_vec(L * s.dim, rng);
    const std::vector<vec> phi0 = random_phis(s, 2, rng);
    const auto a = oracle::fam_model(s, layers, L, x, phi0, {true, false}, 0);
    for (int64_t offset : {-7, 1000}) {
      const auto b = oracle::fam_model(s, layers, L, x, phi0, {true, false}, offset);
      for (int l = 0; l < 2; ++l) {
        CHECK(max_diff(a.layer_out[l], b.layer_out[l]) <= 1e-9);
        CHECK(max_diff(a.phi[l], b.phi[l]) <= 1e-9);
      }
    }
  }

  TEST_CASE("fam_model: F > B, M = 0, partial last block and L = 0") {
    std::mt19937_64 rng(14);
    const oracle::model_shape s{6, 8, 2, 1, 2, /*B*/ 2, /*M*/ 0, /*F*/ 5};
    const auto layers = random_layers(s, 2, rng);
    const std::vector<vec> phi0 = random_phis(s, 2, rng);
    const vec x = random_vec(7 * s.dim, rng);
    const auto r = oracle::fam_model(s, layers, 7, x, phi0, {true, true}, 3);
    for (int l = 0; l < 2; ++l) {
      CHECK(r.layer_out[l].size() == 7u * s.dim);
      CHECK(all_finite(r.layer_out[l]));
      CHECK(all_finite(r.phi[l]));
      REQUIRE(r.phi_history[l].size() == 3);  // blocks 0..2 complete, token 6 is a partial block
      CHECK(r.phi[l] == r.phi_history[l][2]);
    }
    const auto e = oracle::fam_model(s, layers, 0, {}, phi0, {true, true}, 0);
    for (int l = 0; l < 2; ++l) {
      CHECK(e.layer_out[l].empty());
      CHECK(e.phi[l] == phi0[l]);
      CHECK(e.phi_history[l].empty());
    }
  }

  TEST_CASE("oracle rejects inconsistent shapes") {
    CHECK_THROWS_AS(
        oracle::token_attention(mask::full, 0, 1, 0, 2, 3, 2, 1, 1.0, vec(6), vec(4), vec(4)),
        std::invalid_argument);  // H % Hkv != 0
    CHECK_THROWS_AS(oracle::fam_weight_free(2, 1, 1, 2, 1, 1, 1.0, vec(2), vec(2), vec(2), vec(2)),
                    std::invalid_argument);  // phi0 must be [F, H, D]
  }
}
