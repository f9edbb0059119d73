// test_findings.cpp: every library bug the fuzz targets found, as a named test (the minimized
// input also stays in tests/fuzz/corpus/<target>/finding-*). A finding not fixed yet is a
// skipped test whose name starts with "known issue": docs/bad-inputs.md lists them.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fam/fam.hpp"
#if defined(FAM_TRUST_SIMD)
#include "fam/backend/simd.hpp"
#endif

namespace {

using fam::index_t;
using fam::status;
using cfg_t = fam::dynamic_config;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

/// Full causal attention of one head over L tokens of head dim D; returns out [L, D].
template <class Backend>
std::vector<float> full_attention(const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, index_t L, index_t D, double scale,
                                  const Backend& be) {
  cfg_t c(D, 1, 0, 0);
  c.set_scale(scale);
  std::vector<float> out(static_cast<std::size_t>(L * D), -7.0f);
  REQUIRE(fam::attention(c, fam::mask_spec::full(), fam::make_view(q.data(), L, 1, D),
                         fam::make_view(k.data(), L, 1, D), fam::make_view(v.data(), L, 1, D),
                         fam::make_view(out.data(), L, 1, D), {}, be) == status::ok);
  return out;
}

template <class Backend>
void nan_key_poisons_every_row_that_sees_it(const Backend& be) {
  // 40 keys (more than one SIMD tile), a NaN in key 5: rows 5.. see it, rows 0..4 do not
  const index_t L = 40, D = 4;
  std::vector<float> q(L * D), k(L * D), v(L * D);
  for (std::size_t i = 0; i < q.size(); ++i) {
    q[i] = 0.25f * float(int(i % 5) - 2);
    k[i] = 0.5f * float(int(i % 3) - 1);
    v[i] = float(i % 7);
  }
  k[5 * D + 1] = kNaN;
  const std::vector<float> out = full_attention(q, k, v, L, D, 0.5, be);
  for (index_t n = 0; n < L; ++n)
    for (index_t d = 0; d < D; ++d) {
      CAPTURE(n);
      CHECK(std::isnan(out[static_cast<std::size_t>(n * D + d)]) == (n >= 5));
    }
}

}  // namespace

TEST_SUITE("findings") {
#if defined(FAM_TRUST_SIMD)
  TEST_CASE("finding - a NaN key poisons its row on the SIMD backend") {
    // fuzz_attention, corpus/fuzz_attention/finding-simd-nan-key-not-poisoning: the SIMD kernel
    // looked for NaN logits with x != x, which xsimd 8.1 compiles to an ordered compare
    // (_CMP_NEQ_OQ) on AVX and AVX-512, false for NaN; the NaN then vanished in the max and a
    // row that saw it came out finite. It now asks xsimd::isnan.
    nan_key_poisons_every_row_that_sees_it(fam::simd_backend<>{});
    // and a NaN only in FAM keys (the fuzzer's case: a FAM computed from overflowed logits)
    cfg_t c(2, 2, 1, 2);
    fam::layer_state<cfg_t> st;
    REQUIRE(st.init(c) == status::ok);
    const float fam_rows[4] = {kNaN, kNaN, kNaN, kNaN};
    const auto f = fam::make_view(fam_rows, 2, 1, 2);
    REQUIRE(fam::begin_fam(st, f, f, f) == status::ok);
    const float x[4] = {0.5f, 1.0f, -0.5f, 0.25f};
    float out[4];
    index_t n = 0;
    REQUIRE(fam::attend(st, fam::make_view(x, 2, 1, 2), fam::make_view(x, 2, 1, 2),
                        fam::make_view(x, 2, 1, 2), fam::make_view(out, 2, 1, 2), {}, &n,
                        fam::simd_backend<>{}) == status::ok);
    for (float o : out) CHECK(std::isnan(o));
  }
#endif

  TEST_CASE("finding - a NaN logit followed by a -inf logit in one tile still poisons the row") {
    // fuzz_attention, corpus/fuzz_attention/finding-reference-nan-key-dropped-after-neg-inf: the
    // reference kernel's running tile max took std::fmax over the logits, which forgets a NaN
    // as soon as the next logit is a number; when that number was -inf (a key of -inf, or a
    // huge scale) the tile looked empty and was skipped, NaN and all: the row came out 0.
    const index_t L = 2, D = 1;
    const std::vector<float> q = {1.0f, 1.0f}, k = {kNaN, -kInf}, v = {1.0f, 2.0f};
    const std::vector<float> out = full_attention(q, k, v, L, D, 1.0, fam::reference_backend{});
    CHECK(std::isnan(out[0]));
    CHECK(std::isnan(out[1]));  // sees the NaN key 0 and the -inf key 1
    nan_key_poisons_every_row_that_sees_it(fam::reference_backend{});
#if defined(FAM_TRUST_SIMD)
    const std::vector<float> s = full_attention(q, k, v, L, D, 1.0, fam::simd_backend<>{});
    CHECK(std::isnan(s[0]));
    CHECK(std::isnan(s[1]));
#endif
  }

  TEST_CASE("finding - a BSWA block size near INT64_MAX means one block without overflow") {
    // fuzz_attention, corpus/fuzz_attention/finding-huge-bswa-block: attend_sequence counted
    // its granules as (L + B - 1) / B and formed B * row_stride, both signed overflows for a
    // valid B near INT64_MAX (UBSan aborts; a plain build wrapped to zero work items and left
    // the output unwritten). Same for a key stride that is valid because there is one row.
    const index_t L = 5, D = 2;
    std::vector<float> q(L * D), k(L * D), v(L * D);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = k[i] = v[i] = 0.1f * float(i);
    cfg_t c(D, 1, 0, 0);
    std::vector<float> full(L * D), out(L * D, -7.0f);
    const auto qv = fam::make_view<const float>(q.data(), L, 1, D);
    const auto kv = fam::make_view<const float>(k.data(), L, 1, D);
    const auto vv = fam::make_view<const float>(v.data(), L, 1, D);
    REQUIRE(fam::attention(c, fam::mask_spec::full(), qv, kv, vv,
                           fam::make_view(full.data(), L, 1, D)) == status::ok);
    const index_t kMax = std::numeric_limits<index_t>::max();
    for (const fam::mask_spec m : {fam::mask_spec::bswa(kMax, 0), fam::mask_spec::bswa(kMax, kMax),
                                   fam::mask_spec::bswa(kMax - 3, 2)}) {
      CAPTURE(m.block);
      std::fill(out.begin(), out.end(), -7.0f);
      REQUIRE(fam::attention(c, m, qv, kv, vv, fam::make_view(out.data(), L, 1, D)) == status::ok);
      CHECK(std::memcmp(out.data(), full.data(), out.size() * sizeof(float)) == 0);
    }
    // one token whose key rows are "kMax / 2 apart": valid, never formed into an address
    const fam::tensor_view<const float> one{k.data(), 1, 1, D, kMax / 2, D};
    float o1[2] = {-7.0f, -7.0f};
    REQUIRE(fam::attention(c, fam::mask_spec::full(), one, one, one,
                           fam::tensor_view<float>{o1, 1, 1, D, kMax / 2, D}) == status::ok);
    CHECK(o1[0] == k[0]);
    CHECK(o1[1] == k[1]);
  }

  TEST_CASE("finding - B = 1 near the index limit is too_large instead of a wrapped storage size") {
    // test_index_width.cpp: the ring keeps K in tiles of 32 keys, so a block of B = 1 stores 32
    // rows of K; validate() bounded Hkv (M+1) B D only, and layer_state::layout_of() computed
    // the K ring's bytes, up to 2^57 * 32 * 4 = 2^64, in size_t. With (M+1) * 132 bytes just
    // past 2^64 the count wrapped to 128: init() allocated 128 bytes and the first attend()
    // wrote far outside them (a segfault). validate() and supports() now bound the tiled rows.
    const index_t M1 = index_t(~std::uint64_t(0) / 132 + 1);
    cfg_t c(1, 1, M1 - 1, 0);
    CHECK(c.validate() == status::too_large);
    CHECK(fam::layer_state<cfg_t>::storage_bytes(c) == 0);
    CHECK(fam::supports(c).has(fam::support_reason::too_large));
    fam::layer_state<cfg_t> st;
    CHECK(st.init(c) == status::too_large);
  }

  TEST_CASE(
      "regression - a position_offset outside +-2^62 is too_large, and positions at the limit "
      "stay inside int64") {
    // Found while writing the index-width tests: validate() accepted any position_offset, and
    // layer_state::token_position() (n + i + offset) and fam_position() (t B - F + r + offset)
    // then overflowed int64 (undefined behaviour; UBSan aborted). validate() now bounds
    // |offset| by max_position_offset = 2^62 and the stream stays below max_tokens = 2^61 - 1
    // (attend() and restore_state() refuse more), so every position fits.
    const index_t kMax = std::numeric_limits<index_t>::max();
    for (index_t offset : {kMax, std::numeric_limits<index_t>::min(), fam::max_position_offset + 1,
                           -fam::max_position_offset - 1}) {
      CAPTURE(offset);
      cfg_t c(2, 4, 1, 2);
      c.position_offset = offset;
      CHECK(c.validate() == status::too_large);
      fam::layer_state<cfg_t> st;
      CHECK(st.init(c) == status::too_large);
    }
    for (index_t offset : {fam::max_position_offset, -fam::max_position_offset}) {
      CAPTURE(offset);
      cfg_t c(2, 4, 1, 2);  // F = 2: the FAM rows sit before the block's first token
      c.position_offset = offset;
      REQUIRE(c.validate() == status::ok);
      fam::layer_state<cfg_t> st;
      REQUIRE(st.init(c) == status::ok);
      CHECK(st.token_position(0) == offset);
      CHECK(st.fam_position(0) == offset - 2);
    }
  }
}
