// test_errors.cpp: bad input returns its documented status before anything is written
// (research/ecosystem.md T2, T12, T13 and the table of §3.5). Every output buffer is surrounded
// by canary values; a failing call must leave the outputs, the guards and every state bitwise
// as they were. Degenerate but valid shapes (L = 0, one head, B = 1, M = 0, F = 0, empty batch
// members) must work and agree with the float64 oracle.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fam/fam.hpp"
#include "support/oracle.hpp"
#include "support/util.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {

using fam::fam_phase;
using fam::index_t;
using fam::status;
using cfg_t = fam::dynamic_config;
using state_t = fam::layer_state<cfg_t>;
using cview = fam::tensor_view<const float>;
using mview = fam::tensor_view<float>;
using bytes = std::vector<unsigned char>;

std::size_t sz(index_t n) { return static_cast<std::size_t>(n); }

constexpr index_t kBig = std::numeric_limits<index_t>::max();

// A NaN with a payload no computation produces: a canary is recognised by its bits.
constexpr std::uint32_t kCanaryBits = 0x7fa5c3e1u;
float canary() {
  float f;
  std::memcpy(&f, &kCanaryBits, sizeof f);
  return f;
}
bool is_canary(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u == kCanaryBits;
}

/// n floats with `pad` canaries on each side.
struct guarded {
  std::vector<float> buf;
  std::size_t pad, n;
  explicit guarded(index_t count, std::size_t guard = 64)
      : buf(sz(count) + 2 * guard, canary()), pad(guard), n(sz(count)) {}
  float* data() { return buf.data() + pad; }
  bool guards_intact() const {
    for (std::size_t i = 0; i < pad; ++i)
      if (!is_canary(buf[i]) || !is_canary(buf[pad + n + i])) return false;
    return true;
  }
  bool untouched() const {
    return std::all_of(buf.begin(), buf.end(), [](float f) { return is_canary(f); });
  }
  bool all_written() const {
    for (std::size_t i = 0; i < n; ++i)
      if (is_canary(buf[pad + i])) return false;
    return true;
  }
  std::vector<float> inner() const {
    return std::vector<float>(buf.begin() + static_cast<std::ptrdiff_t>(pad),
                              buf.begin() + static_cast<std::ptrdiff_t>(pad + n));
  }
  void reset() { std::fill(buf.begin(), buf.end(), canary()); }
};

cfg_t make_cfg(index_t D, index_t B, index_t M, index_t F, index_t H = 1, index_t Hkv = 1,
               index_t phi = 0) {
  cfg_t c(D, B, M, F);
  c.set_heads(H, Hkv);
  c.phi_dim = phi;
  return c;
}

template <class Config>
bytes blob_of(const fam::layer_state<Config>& st) {
  bytes b(fam::serialized_size(st));
  if (fam::save_state(st, b.data(), b.size()) != status::ok) FAIL_CHECK("save_state failed");
  return b;
}

/// Token inputs [L, H|Hkv, D] and guarded outputs [L, H, D] + lse [L, H].
struct io {
  index_t L, H, Hkv, D;
  std::vector<float> q, k, v;
  guarded out, lse;
  io(index_t L_, index_t H_, index_t Hkv_, index_t D_, testing::rng& r)
      : L(L_),
        H(H_),
        Hkv(Hkv_),
        D(D_),
        q(r.floats(sz(L_ * H_ * D_), -2.0, 2.0)),
        k(r.floats(sz(L_ * Hkv_ * D_), -2.0, 2.0)),
        v(r.floats(sz(L_ * Hkv_ * D_))),
        out(L_ * H_ * D_),
        lse(L_ * H_) {}
  cview qv() const { return fam::make_view<const float>(q.data(), L, H, D); }
  cview kv() const { return fam::make_view<const float>(k.data(), L, Hkv, D); }
  cview vv() const { return fam::make_view<const float>(v.data(), L, Hkv, D); }
  mview ov() { return fam::make_view(out.data(), L, H, D); }
  fam::lse_view lv() { return fam::make_lse_view(lse.data(), H); }
  bool untouched() const { return out.untouched() && lse.untouched(); }
};

/// A configuration that validate() must refuse, with the status it must give.
struct bad_config {
  const char* what;
  cfg_t cfg;
  status want;
};

cfg_t with_scale(cfg_t c, double s) {
  c.set_scale(s);
  return c;
}

/// Inputs of one fused FAM block (SPEC §3), all contiguous, outputs guarded.
struct block_io {
  index_t Lm, F, b, H, Hkv, D;
  std::vector<float> mk, mv, qf, kf, vf, q, k, v;
  guarded ut, uf, lse_t, lse_f;
  block_io(index_t Lm_, index_t F_, index_t b_, index_t H_, index_t Hkv_, index_t D_,
           testing::rng& r)
      : Lm(Lm_),
        F(F_),
        b(b_),
        H(H_),
        Hkv(Hkv_),
        D(D_),
        mk(r.floats(sz(Lm * Hkv * D), -2.0, 2.0)),
        mv(r.floats(sz(Lm * Hkv * D))),
        qf(r.floats(sz(F * H * D), -2.0, 2.0)),
        kf(r.floats(sz(F * Hkv * D), -2.0, 2.0)),
        vf(r.floats(sz(F * Hkv * D))),
        q(r.floats(sz(b * H * D), -2.0, 2.0)),
        k(r.floats(sz(b * Hkv * D), -2.0, 2.0)),
        v(r.floats(sz(b * Hkv * D))),
        ut(b * H * D),
        uf(F * H * D),
        lse_t(b * H),
        lse_f(F * H) {}
  fam::fam_block_args<> args() {
    fam::fam_block_args<> a;
    a.mem_k = fam::make_view<const float>(mk.data(), Lm, Hkv, D);
    a.mem_v = fam::make_view<const float>(mv.data(), Lm, Hkv, D);
    a.qf = fam::make_view<const float>(qf.data(), F, H, D);
    a.kf = fam::make_view<const float>(kf.data(), F, Hkv, D);
    a.vf = fam::make_view<const float>(vf.data(), F, Hkv, D);
    a.q = fam::make_view<const float>(q.data(), b, H, D);
    a.k = fam::make_view<const float>(k.data(), b, Hkv, D);
    a.v = fam::make_view<const float>(v.data(), b, Hkv, D);
    a.ut = fam::make_view(ut.data(), b, H, D);
    a.uf = fam::make_view(uf.data(), F, H, D);
    a.lse_t = fam::make_lse_view(lse_t.data(), H);
    a.lse_f = fam::make_lse_view(lse_f.data(), H);
    return a;
  }
  bool untouched() const {
    return ut.untouched() && uf.untouched() && lse_t.untouched() && lse_f.untouched();
  }
};

}  // namespace

TEST_SUITE("errors") {
  TEST_CASE("invalid configurations are refused everywhere") {
    const cfg_t ok = make_cfg(4, 2, 1, 1, 2, 2);
    std::vector<bad_config> bad = {
        {"H % Hkv != 0", make_cfg(4, 2, 1, 1, 3, 2), status::invalid_argument},
        {"Hkv > H", make_cfg(4, 2, 1, 1, 2, 4), status::invalid_argument},
        {"H = 0", make_cfg(4, 2, 1, 1, 0, 1), status::invalid_argument},
        {"H < 0", make_cfg(4, 2, 1, 1, -2, 1), status::invalid_argument},
        {"Hkv = 0", make_cfg(4, 2, 1, 1, 2, 0), status::invalid_argument},
        {"Hkv < 0", make_cfg(4, 2, 1, 1, 2, -1), status::invalid_argument},
        {"H and Hkv < 0", make_cfg(4, 2, 1, 1, -2, -1), status::invalid_argument},
        {"D = 0", make_cfg(0, 2, 1, 1), status::invalid_argument},
        {"D < 0", make_cfg(-4, 2, 1, 1), status::invalid_argument},
        {"B = 0", make_cfg(4, 0, 1, 1), status::invalid_argument},
        {"B < 0", make_cfg(4, -3, 1, 1), status::invalid_argument},
        {"M < 0", make_cfg(4, 2, -1, 1), status::invalid_argument},
        {"M lowest", make_cfg(4, 2, std::numeric_limits<index_t>::min(), 1),
         status::invalid_argument},
        {"F < 0", make_cfg(4, 2, 1, -1), status::invalid_argument},
        {"phi_dim < 0", make_cfg(4, 2, 1, 1, 1, 1, -1), status::invalid_argument},
        {"scale NaN", with_scale(ok, std::nan("")), status::invalid_argument},
        {"scale +inf", with_scale(ok, std::numeric_limits<double>::infinity()),
         status::invalid_argument},
        {"scale -inf", with_scale(ok, -std::numeric_limits<double>::infinity()),
         status::invalid_argument},
        {"scale 0", with_scale(ok, 0.0), status::invalid_argument},
        {"scale -0", with_scale(ok, -0.0), status::invalid_argument},
        {"scale < 0", with_scale(ok, -0.125), status::invalid_argument},
        {"scale -denormal", with_scale(ok, -std::numeric_limits<double>::denorm_min()),
         status::invalid_argument},
        {"unset dynamic config", cfg_t(), status::invalid_argument},
        // sizes whose buffers cannot be addressed with 64-bit offsets (T13)
        {"ring 2^65",
         make_cfg(index_t(1) << 20, index_t(1) << 20, (index_t(1) << 20) - 1, 0, 32, 32),
         status::too_large},
        {"ring 2^62",
         make_cfg(index_t(1) << 16, index_t(1) << 16, (index_t(1) << 16) - 1, 0, index_t(1) << 14,
                  index_t(1) << 14),
         status::too_large},
        {"ring with Hkv 1",
         make_cfg(index_t(1) << 21, index_t(1) << 21, (index_t(1) << 21) - 1, 0, 1, 1),
         status::too_large},
        {"B = max", make_cfg(4, kBig, 0, 0), status::too_large},
        {"D = max", make_cfg(kBig, 1, 0, 0), status::too_large},
        {"H = max", make_cfg(4, 1, 0, 0, kBig, 1), status::too_large},
        {"FAM 2^63", make_cfg(index_t(1) << 21, 1, 0, index_t(1) << 21, index_t(1) << 21, 1),
         status::too_large},
        {"F = max", make_cfg(4, 1, 0, kBig), status::too_large},
        {"Phi 2^62", make_cfg(4, 1, 0, index_t(1) << 31, 1, 1, index_t(1) << 31),
         status::too_large},
        {"phi_dim = max", make_cfg(4, 1, 0, 2, 1, 1, kBig), status::too_large},
    };
    testing::rng r(testing::base_seed());
    for (const bad_config& b : bad) {
      CAPTURE(b.what);
      CHECK(b.cfg.validate() == b.want);
      CHECK(state_t::storage_bytes(b.cfg) == 0);
      state_t st;
      CHECK(st.init(b.cfg) == b.want);
      CHECK_FALSE(st.initialized());
      alignas(64) float storage[64];
      CHECK(st.init(b.cfg, storage, sizeof storage) == b.want);
      CHECK_FALSE(st.initialized());
      // the stateless calls validate the configuration first, whatever the views
      io x(3, 1, 1, 4, r);
      CHECK(fam::attention(b.cfg, fam::mask_spec::full(), x.qv(), x.kv(), x.vv(), x.ov(), x.lv()) ==
            b.want);
      CHECK(x.untouched());
      block_io bx(0, 0, 2, 1, 1, 4, r);
      CHECK(fam::fam_attention(b.cfg, bx.args()) == b.want);
      CHECK(bx.untouched());
    }
  }

  TEST_CASE("a static parameter given another value is invalid") {
    using fixed = fam::attention_config<4, 2, 1, 1>;
    CHECK(fixed().validate() == status::ok);
    CHECK(fixed(4, 2, 1, 1).validate() == status::ok);
    CHECK(fixed(5, 2, 1, 1).validate() == status::invalid_argument);
    CHECK(fixed(4, 3, 1, 1).validate() == status::invalid_argument);
    CHECK(fixed(4, 2, 0, 1).validate() == status::invalid_argument);
    CHECK(fixed(4, 2, 1, 0).validate() == status::invalid_argument);
    using half = fam::attention_config<8, fam::dynamic, 2, fam::dynamic>;
    CHECK(half(8, 3, 2, 0).validate() == status::ok);
    CHECK(half(8, 3, 3, 0).validate() == status::invalid_argument);
    CHECK(half().validate() == status::invalid_argument);  // B and F left unset
    fam::layer_state<fixed> st;
    CHECK(st.init(fixed(4, 2, 1, 2)) == status::invalid_argument);
    CHECK_FALSE(st.initialized());
    CHECK(fam::layer_state<fixed>::storage_bytes(fixed(4, 2, 2, 1)) == 0);
  }

  TEST_CASE("valid edge configurations are accepted") {
    CHECK(make_cfg(1, 1, 0, 0).validate() == status::ok);
    CHECK(with_scale(make_cfg(4, 2, 1, 1), std::numeric_limits<double>::denorm_min()).validate() ==
          status::ok);
    CHECK(with_scale(make_cfg(4, 2, 1, 1), 1e300).validate() == status::ok);
    cfg_t c = make_cfg(4, 2, 1, 1, 12, 4, 3);
    c.position_offset = std::numeric_limits<index_t>::min() / 2;
    CHECK(c.validate() == status::ok);
    // large but addressable: validate() accepts it (init would have to allocate it)
    CHECK(make_cfg(1024, 1 << 16, 3, 64, 64, 8, 4096).validate() == status::ok);
    CHECK(make_cfg(1, index_t(1) << 40, 0, 0).validate() == status::ok);
  }

  TEST_CASE("mask specifications outside their range are refused") {
    testing::rng r(testing::base_seed() + 1);
    const cfg_t cfg = make_cfg(4, 2, 1, 0, 2, 1);
    fam::mask_spec weird;
    weird.kind = static_cast<fam::variant>(17);
    const fam::mask_spec bad[] = {
        fam::mask_spec::sliding_window(0),
        fam::mask_spec::sliding_window(-1),
        fam::mask_spec::sliding_window(std::numeric_limits<index_t>::min()),
        fam::mask_spec::bswa(0, 1),
        fam::mask_spec::bswa(-2, 1),
        fam::mask_spec::bswa(2, -1),
        fam::mask_spec::fam(0, 1, 1),
        fam::mask_spec::fam(2, -1, 1),
        fam::mask_spec::fam(2, 1, -1),
        weird};
    for (const fam::mask_spec& m : bad) {
      CAPTURE(static_cast<int>(m.kind));
      CAPTURE(m.window);
      CAPTURE(m.block);
      CAPTURE(m.memory);
      CAPTURE(m.fam_len);
      CHECK(m.validate() == status::invalid_argument);
      io x(5, 2, 1, 4, r);
      CHECK(fam::attention(cfg, m, x.qv(), x.kv(), x.vv(), x.ov(), x.lv()) ==
            status::invalid_argument);
      CHECK(x.untouched());
    }
    // a valid FAM mask is still refused by the stateless call: FAM needs its state
    CHECK(fam::mask_spec::fam(2, 1, 1).validate() == status::ok);
    CHECK(fam::mask_spec::fam(2, 1, 0).validate() == status::ok);
    for (const fam::mask_spec& m : {fam::mask_spec::fam(2, 1, 1), fam::mask_spec::fam(2, 1, 0)}) {
      io x(5, 2, 1, 4, r);
      CHECK(fam::attention(cfg, m, x.qv(), x.kv(), x.vv(), x.ov(), x.lv()) ==
            status::invalid_argument);
      CHECK(x.untouched());
    }
    // the valid ones work, including W = 1, B = 1 and M = 0
    for (const fam::mask_spec& m : {fam::mask_spec::sliding_window(1), fam::mask_spec::bswa(1, 0),
                                    fam::mask_spec::bswa(3, 0), fam::mask_spec::full()}) {
      io x(5, 2, 1, 4, r);
      CHECK(fam::attention(cfg, m, x.qv(), x.kv(), x.vv(), x.ov(), x.lv()) == status::ok);
      CHECK(x.out.all_written());
      CHECK(x.out.guards_intact());
      CHECK(x.lse.all_written());
      CHECK(x.lse.guards_intact());
    }
  }

  TEST_CASE("bad views are refused by attention with nothing written") {
    const std::uint64_t seed = testing::base_seed() + 2;
    INFO("seed ", seed);
    testing::rng r(seed);
    const index_t L = 5, H = 4, Hkv = 2, D = 3;
    const cfg_t cfg = make_cfg(D, 2, 1, 0, H, Hkv);
    const fam::mask_spec mask = fam::mask_spec::bswa(2, 1);

    // a reference result from contiguous views
    io ref(L, H, Hkv, D, r);
    REQUIRE(fam::attention(cfg, mask, ref.qv(), ref.kv(), ref.vv(), ref.ov(), ref.lv()) ==
            status::ok);

    struct mutation {
      const char* what;
      int which;  // 0 q, 1 k, 2 v, 3 out
      status want;
      void (*apply)(fam::tensor_view<float>&);
    };
    const mutation muts[] = {
        {"null q", 0, status::null_pointer, [](mview& v) { v.data = nullptr; }},
        {"null k", 1, status::null_pointer, [](mview& v) { v.data = nullptr; }},
        {"null v", 2, status::null_pointer, [](mview& v) { v.data = nullptr; }},
        {"null out", 3, status::null_pointer, [](mview& v) { v.data = nullptr; }},
        {"negative row stride", 0, status::invalid_layout,
         [](mview& v) { v.row_stride = -v.row_stride; }},
        {"negative head stride", 1, status::invalid_layout,
         [](mview& v) { v.head_stride = -v.head_stride; }},
        {"negative out stride", 3, status::invalid_layout,
         [](mview& v) { v.row_stride = -v.row_stride; }},
        {"heads overlap", 0, status::invalid_layout,
         [](mview& v) { v.head_stride = v.head_dim - 1; }},
        {"zero head stride", 3, status::invalid_layout, [](mview& v) { v.head_stride = 0; }},
        {"rows overlap heads", 2, status::invalid_layout,
         [](mview& v) { v.row_stride = v.heads * v.head_dim - 1; }},
        {"zero row stride", 1, status::invalid_layout, [](mview& v) { v.row_stride = 0; }},
        {"rows overlap out", 3, status::invalid_layout,
         [](mview& v) { v.row_stride = v.heads * v.head_dim - 1; }},
        {"head-major, heads overlap rows", 0, status::invalid_layout,
         [](mview& v) {
           v.row_stride = v.head_dim;
           v.head_stride = (v.rows - 1) * v.head_dim;  // one row short
         }},
        {"head-major, rows overlap", 3, status::invalid_layout,
         [](mview& v) {
           v.row_stride = v.head_dim - 1;
           v.head_stride = v.rows * v.head_dim;
         }},
        {"q rows", 0, status::shape_mismatch, [](mview& v) { v.rows -= 1; }},
        {"k rows", 1, status::shape_mismatch, [](mview& v) { v.rows += 1; }},
        {"v rows", 2, status::shape_mismatch, [](mview& v) { v.rows -= 1; }},
        {"out rows", 3, status::shape_mismatch, [](mview& v) { v.rows += 1; }},
        {"q heads", 0, status::shape_mismatch, [](mview& v) { v.heads = 2; }},
        {"k heads", 1, status::shape_mismatch, [](mview& v) { v.heads = 4; }},
        {"v heads", 2, status::shape_mismatch, [](mview& v) { v.heads = 1; }},
        {"out heads", 3, status::shape_mismatch, [](mview& v) { v.heads = 2; }},
        {"q head dim", 0, status::shape_mismatch, [](mview& v) { v.head_dim += 1; }},
        {"k head dim", 1, status::shape_mismatch, [](mview& v) { v.head_dim -= 1; }},
        {"v head dim", 2, status::shape_mismatch, [](mview& v) { v.head_dim += 1; }},
        {"out head dim", 3, status::shape_mismatch, [](mview& v) { v.head_dim -= 1; }},
        {"k stride too large for int64", 1, status::too_large,
         [](mview& v) { v.row_stride = index_t(1) << 62; }},
        {"out head stride too large", 3, status::too_large,
         [](mview& v) {
           v.row_stride = v.head_dim;  // head-major
           v.head_stride = kBig / 2;
         }},
    };
    for (const mutation& m : muts) {
      CAPTURE(m.what);
      io x(L, H, Hkv, D, r);
      mview views[4] = {{x.q.data(), L, H, D, H * D, D},
                        {x.k.data(), L, Hkv, D, Hkv * D, D},
                        {x.v.data(), L, Hkv, D, Hkv * D, D},
                        x.ov()};
      m.apply(views[m.which]);
      CHECK(fam::attention(cfg, mask, views[0], views[1], views[2], views[3], x.lv()) == m.want);
      CHECK(x.untouched());
    }

    // lse layouts: negative strides, or rows and heads on the same element
    for (int i = 0; i < 3; ++i) {
      io x(L, H, Hkv, D, r);
      fam::lse_view l = x.lv();
      if (i == 0) l.row_stride = -H;
      if (i == 1) l.head_stride = -1;
      if (i == 2) l.row_stride = l.head_stride = 1;
      CAPTURE(i);
      CHECK(fam::attention(cfg, mask, x.qv(), x.kv(), x.vv(), x.ov(), l) == status::invalid_layout);
      CHECK(x.untouched());
    }

    // valid strided layouts give the contiguous result bitwise: head-major, padded rows,
    // padded heads
    const index_t pad = 7;
    std::vector<float> qh(sz(H * (L * D + pad))), kh(sz(Hkv * (L * D + pad))),
        vh(sz(Hkv * (L * D + pad)));
    guarded oh(L * (H * D + pad));
    const cview q_hm{qh.data(), L, H, D, D, L * D + pad};
    const cview k_hm{kh.data(), L, Hkv, D, D, L * D + pad};
    const cview v_hm{vh.data(), L, Hkv, D, D, L * D + pad};
    const mview o_pad{oh.data(), L, H, D, H * D + pad, D};
    for (index_t n = 0; n < L; ++n) {
      for (index_t h = 0; h < H; ++h)
        std::memcpy(const_cast<float*>(q_hm.at(n, h)), ref.qv().at(n, h), sizeof(float) * D);
      for (index_t h = 0; h < Hkv; ++h) {
        std::memcpy(const_cast<float*>(k_hm.at(n, h)), ref.kv().at(n, h), sizeof(float) * D);
        std::memcpy(const_cast<float*>(v_hm.at(n, h)), ref.vv().at(n, h), sizeof(float) * D);
      }
    }
    guarded lse_hm(H * L);
    const fam::lse_view l_hm{lse_hm.data(), 1, L};  // head-major lse
    REQUIRE(fam::attention(cfg, mask, q_hm, k_hm, v_hm, o_pad, l_hm) == status::ok);
    CHECK(oh.guards_intact());
    CHECK(lse_hm.guards_intact());
    bool same = true;
    for (index_t n = 0; n < L; ++n)
      for (index_t h = 0; h < H; ++h) {
        same = same && std::memcmp(o_pad.at(n, h), ref.ov().at(n, h), sizeof(float) * D) == 0;
        same = same && std::memcmp(l_hm.at(n, h), ref.lv().at(n, h), sizeof(float)) == 0;
      }
    CHECK(same);
    // the padding between rows is never written
    for (index_t n = 0; n < L; ++n)
      for (index_t j = H * D; j < H * D + pad; ++j)
        CHECK(is_canary(oh.data()[n * (H * D + pad) + j]));
  }

  TEST_CASE("fam_attention refuses bad block shapes") {
    const std::uint64_t seed = testing::base_seed() + 3;
    INFO("seed ", seed);
    testing::rng r(seed);
    const index_t B = 3, M = 2, F = 2, H = 2, Hkv = 1, D = 4;
    const cfg_t cfg = make_cfg(D, B, M, F, H, Hkv);
    struct shape_case {
      const char* what;
      index_t Lm, F, b;
      status want;
    };
    const shape_case cases[] = {
        {"memory not a multiple of B", 4, F, B, status::shape_mismatch},
        {"memory of one row", 1, F, B, status::shape_mismatch},
        {"memory > M*B", (M + 1) * B, F, B, status::shape_mismatch},
        {"block > B", B, F, B + 1, status::shape_mismatch},
        {"FAM rows != F", B, F + 1, B, status::shape_mismatch},
        {"FAM rows < F", B, F - 1, B, status::shape_mismatch},
    };
    for (const shape_case& c : cases) {
      CAPTURE(c.what);
      block_io x(c.Lm, c.F, c.b, H, Hkv, D, r);
      CHECK(fam::fam_attention(cfg, x.args()) == c.want);
      CHECK(x.untouched());
    }
    // negative row counts
    {
      block_io x(B, F, B, H, Hkv, D, r);
      fam::fam_block_args<> a = x.args();
      a.q.rows = -1;
      CHECK(fam::fam_attention(cfg, a) == status::shape_mismatch);
      a = x.args();
      a.mem_k.rows = a.mem_v.rows = -B;
      CHECK(fam::fam_attention(cfg, a) == status::shape_mismatch);
      CHECK(x.untouched());
    }
    // per-view mistakes
    using field = cview fam::fam_block_args<>::*;
    const field inputs[] = {&fam::fam_block_args<>::mem_k, &fam::fam_block_args<>::mem_v,
                            &fam::fam_block_args<>::qf,    &fam::fam_block_args<>::kf,
                            &fam::fam_block_args<>::vf,    &fam::fam_block_args<>::q,
                            &fam::fam_block_args<>::k,     &fam::fam_block_args<>::v};
    for (std::size_t i = 0; i < 8; ++i) {
      CAPTURE(i);
      for (int kind = 0; kind < 4; ++kind) {
        CAPTURE(kind);
        block_io x(B, F, B, H, Hkv, D, r);
        fam::fam_block_args<> a = x.args();
        cview& v = a.*inputs[i];
        status want = status::ok;
        if (kind == 0) v.data = nullptr, want = status::null_pointer;
        if (kind == 1) v.heads += 1, want = status::shape_mismatch;
        if (kind == 2) v.head_dim -= 1, want = status::shape_mismatch;
        if (kind == 3) v.row_stride = -v.row_stride, want = status::invalid_layout;
        CHECK(fam::fam_attention(cfg, a) == want);
        CHECK(x.untouched());
      }
    }
    for (int kind = 0; kind < 4; ++kind) {
      CAPTURE(kind);
      block_io x(B, F, B, H, Hkv, D, r);
      fam::fam_block_args<> a = x.args();
      status want = status::ok;
      if (kind == 0) a.ut.data = nullptr, want = status::null_pointer;
      if (kind == 1) a.uf.heads = 1, want = status::shape_mismatch;
      if (kind == 2) a.lse_f.head_stride = -1, want = status::invalid_layout;
      if (kind == 3) a.uf.head_stride = 1, want = status::invalid_layout;
      CHECK(fam::fam_attention(cfg, a) == want);
      CHECK(x.untouched());
    }
    // the valid one writes all of ut, uf and the lse, nothing around them
    block_io x(M * B, F, B, H, Hkv, D, r);
    REQUIRE(fam::fam_attention(cfg, x.args()) == status::ok);
    CHECK(x.ut.all_written());
    CHECK(x.uf.all_written());
    CHECK(x.lse_t.all_written());
    CHECK(x.lse_f.all_written());
    CHECK((x.ut.guards_intact() && x.uf.guards_intact() && x.lse_t.guards_intact() &&
           x.lse_f.guards_intact()));
  }

  TEST_CASE("a head dim above the backend maximum is unsupported") {
    testing::rng r(testing::base_seed() + 4);
    const index_t D = FAM_DEFAULT_BACKEND::max_head_dim + 1;
    const cfg_t cfg = make_cfg(D, 2, 1, 0, 2, 1);
    REQUIRE(cfg.validate() == status::ok);
    io x(2, 2, 1, D, r);
    CHECK(fam::attention(cfg, fam::mask_spec::full(), x.qv(), x.kv(), x.vv(), x.ov(), x.lv()) ==
          status::unsupported);
    CHECK(x.untouched());
    block_io bx(2, 0, 2, 2, 1, D, r);
    CHECK(fam::fam_attention(cfg, bx.args()) == status::unsupported);
    CHECK(bx.untouched());

    state_t st;
    REQUIRE(st.init(cfg) == status::ok);  // the state does not know the backend
    const bytes before = blob_of(st);
    index_t consumed = -3;
    CHECK(fam::attend(st, x.qv(), x.kv(), x.vv(), x.ov(), x.lv(), &consumed) ==
          status::unsupported);
    CHECK(consumed == -3);
    fam::sequence_step<cfg_t> step{&st, x.qv(), x.kv(), x.vv(), x.ov(), x.lv(), -3};
    CHECK(fam::attend_batch(&step, 1) == status::unsupported);
    CHECK(step.consumed == -3);
    CHECK(blob_of(st) == before);
    CHECK(x.untouched());

    // the maximum itself works
    const index_t Dmax = FAM_DEFAULT_BACKEND::max_head_dim;
    io y(2, 2, 1, Dmax, r);
    CHECK(fam::attention(make_cfg(Dmax, 2, 1, 0, 2, 1), fam::mask_spec::full(), y.qv(), y.kv(),
                         y.vv(), y.ov(), y.lv()) == status::ok);
    CHECK(y.out.all_written());
    CHECK(y.out.guards_intact());
  }
}

// ---------------------------------------------------------------------------------------------
// Streaming protocol errors
// ---------------------------------------------------------------------------------------------

namespace {

/// FAM projections for one install: Qf [F, H, D], Kf/Vf [F, Hkv, D], Φ [F, phi].
struct fam_rows {
  index_t F, H, Hkv, D, phi;
  std::vector<float> qf, kf, vf, ph;
  fam_rows(const cfg_t& c, testing::rng& r)
      : F(c.fam_len()),
        H(c.heads),
        Hkv(c.kv_heads),
        D(c.head_dim()),
        phi(c.phi_dim),
        qf(r.floats(sz(F * H * D))),
        kf(r.floats(sz(F * Hkv * D))),
        vf(r.floats(sz(F * Hkv * D))),
        ph(r.floats(sz(F * phi))) {}
  cview q() const { return fam::make_view<const float>(qf.data(), F, H, D); }
  cview k() const { return fam::make_view<const float>(kf.data(), F, Hkv, D); }
  cview v() const { return fam::make_view<const float>(vf.data(), F, Hkv, D); }
  cview p() const { return fam::make_view<const float>(ph.data(), F, 1, phi); }
};

/// The state's observable metadata plus its bytes.
struct state_print {
  index_t tokens;
  fam_phase phase;
  bool fresh;
  bytes blob;
  bool operator==(const state_print& o) const {
    return tokens == o.tokens && phase == o.phase && fresh == o.fresh && blob == o.blob;
  }
};
state_print print_of(const state_t& st) {
  return {st.tokens(), st.phase(), st.fresh(), blob_of(st)};
}

}  // namespace

TEST_SUITE("errors") {
  TEST_CASE("the FAM protocol refuses calls out of order") {
    const std::uint64_t seed = testing::base_seed() + 5;
    INFO("seed ", seed);
    testing::rng r(seed);
    const index_t B = 3, F = 2, H = 4, Hkv = 2, D = 4;
    const cfg_t cfg = make_cfg(D, B, 1, F, H, Hkv, 3);
    io x(8, H, Hkv, D, r);
    fam_rows fr(cfg, r);
    const cview q = x.qv(), k = x.kv(), v = x.vv();
    const mview o = x.ov();
    const fam::lse_view l = x.lv();
    auto attend_n = [&](state_t& st, index_t first, index_t n, index_t* consumed) {
      return fam::attend(st, q.rows_from(first, n), k.rows_from(first, n), v.rows_from(first, n),
                         o.rows_from(first, n), l.rows_from(first), consumed);
    };

    // before init
    state_t st;
    index_t consumed = -9;
    CHECK(attend_n(st, 0, 1, &consumed) == status::not_initialized);
    CHECK(attend_n(st, 0, 0, &consumed) == status::not_initialized);
    CHECK(consumed == -9);
    CHECK(fam::begin_fam(st, fr.q(), fr.k(), fr.v()) == status::not_initialized);
    CHECK(fam::update_fam(st, fr.q(), fr.k(), fr.v()) == status::not_initialized);
    CHECK(fam::rewind(st, 0) == status::not_initialized);
    fam::sequence_step<cfg_t> step{
        &st, q.rows_from(0, 1), k.rows_from(0, 1), v.rows_from(0, 1), o.rows_from(0, 1), {}, -9};
    CHECK(fam::attend_batch(&step, 1) == status::not_initialized);
    CHECK(x.untouched());
    CHECK_FALSE(st.initialized());

    REQUIRE(st.init(cfg) == status::ok);
    CHECK(st.phase() == fam_phase::none);
    state_print p = print_of(st);
    CHECK(attend_n(st, 0, 1, &consumed) == status::fam_not_installed);
    CHECK(attend_n(st, 0, 1, nullptr) == status::fam_not_installed);
    CHECK(fam::update_fam(st, fr.q(), fr.k(), fr.v()) == status::no_update_pending);
    CHECK(consumed == -9);
    CHECK(print_of(st) == p);
    CHECK(x.untouched());

    // begin_fam with bad views: nothing installed
    {
      cview bad = fr.q();
      bad.rows = F - 1;
      CHECK(fam::begin_fam(st, bad, fr.k(), fr.v()) == status::shape_mismatch);
      cview badk = fr.k();
      badk.heads = H;
      CHECK(fam::begin_fam(st, fr.q(), badk, fr.v()) == status::shape_mismatch);
      cview nullv = fr.v();
      nullv.data = nullptr;
      CHECK(fam::begin_fam(st, fr.q(), fr.k(), nullv) == status::null_pointer);
      cview neg = fr.q();
      neg.row_stride = -neg.row_stride;
      CHECK(fam::begin_fam(st, neg, fr.k(), fr.v()) == status::invalid_layout);
      cview badphi = fr.p();
      badphi.head_dim = 2;
      CHECK(fam::begin_fam(st, fr.q(), fr.k(), fr.v(), badphi) == status::shape_mismatch);
      CHECK(print_of(st) == p);
    }

    REQUIRE(fam::begin_fam(st, fr.q(), fr.k(), fr.v(), fr.p(), true) == status::ok);
    CHECK(st.phase() == fam_phase::installed);
    CHECK(st.fresh());
    CHECK(fam::update_fam(st, fr.q(), fr.k(), fr.v()) == status::no_update_pending);
    REQUIRE(attend_n(st, 0, 1, nullptr) == status::ok);  // offset 1 in block 0
    p = print_of(st);
    x.out.reset();
    x.lse.reset();
    CHECK(fam::begin_fam(st, fr.q(), fr.k(), fr.v()) == status::invalid_argument);  // mid-block
    CHECK(attend_n(st, 1, 3, nullptr) == status::invalid_argument);  // crosses the block end
    CHECK(attend_n(st, 1, B, nullptr) == status::invalid_argument);
    CHECK(fam::rewind(st, 2) == status::out_of_range);
    CHECK(fam::rewind(st, -1) == status::out_of_range);
    CHECK(fam::rewind(st, kBig) == status::out_of_range);
    CHECK(fam::update_fam(st, fr.q(), fr.k(), fr.v()) == status::no_update_pending);
    CHECK(print_of(st) == p);
    CHECK(x.untouched());

    REQUIRE(attend_n(st, 1, 2, nullptr) == status::ok);  // exactly to the block end
    CHECK(st.phase() == fam_phase::pending);
    CHECK(st.tokens() == B);
    p = print_of(st);
    x.out.reset();
    x.lse.reset();
    consumed = -9;
    CHECK(attend_n(st, 3, 1, &consumed) == status::fam_update_pending);
    CHECK(attend_n(st, 3, 1, nullptr) == status::fam_update_pending);
    CHECK(consumed == -9);
    CHECK(fam::begin_fam(st, fr.q(), fr.k(), fr.v()) == status::fam_update_pending);
    CHECK(fam::rewind(st, 1) == status::out_of_range);  // a completed block cannot be undone
    CHECK(fam::rewind(st, 0) == status::ok);
    {
      cview bad = fr.k();
      bad.head_dim = D + 1;
      CHECK(fam::update_fam(st, fr.q(), bad, fr.v()) == status::shape_mismatch);
      cview nullq = fr.q();
      nullq.data = nullptr;
      CHECK(fam::update_fam(st, nullq, fr.k(), fr.v()) == status::null_pointer);
    }
    CHECK(print_of(st) == p);
    CHECK(x.untouched());
    // the empty call is fine even now
    CHECK(attend_n(st, 3, 0, &consumed) == status::ok);
    CHECK(consumed == 0);
    CHECK(print_of(st) == p);

    // the state keeps Φ (phi_dim > 0): an update without it would leave a stale residual
    CHECK(fam::update_fam(st, fr.q(), fr.k(), fr.v()) == status::shape_mismatch);
    CHECK(print_of(st) == p);
    REQUIRE(fam::update_fam(st, fr.q(), fr.k(), fr.v(), fr.p()) == status::ok);
    CHECK(st.phase() == fam_phase::installed);
    CHECK_FALSE(st.fresh());
    // a chunk that crosses the block end is fine with `consumed`: it stops there
    REQUIRE(attend_n(st, 3, 5, &consumed) == status::ok);
    CHECK(consumed == B);
    CHECK(st.phase() == fam_phase::pending);
    // rewinding inside the current block works
    REQUIRE(fam::update_fam(st, fr.q(), fr.k(), fr.v(), fr.p()) == status::ok);
    REQUIRE(attend_n(st, 6, 2, nullptr) == status::ok);
    CHECK(fam::rewind(st, 3) == status::out_of_range);
    CHECK(fam::rewind(st, 2) == status::ok);
    CHECK(st.tokens() == 2 * B);
  }

  TEST_CASE("attend refuses bad views and leaves the state alone") {
    const std::uint64_t seed = testing::base_seed() + 6;
    INFO("seed ", seed);
    testing::rng r(seed);
    for (index_t F : {0, 2}) {
      CAPTURE(F);
      const index_t B = 4, H = 2, Hkv = 1, D = 3, L = 3;
      const cfg_t cfg = make_cfg(D, B, 1, F, H, Hkv);
      fam_rows fr(cfg, r);
      state_t st;
      REQUIRE(st.init(cfg) == status::ok);
      REQUIRE(fam::begin_fam(st, fr.q(), fr.k(), fr.v()) == status::ok);
      io warm(B + 1, H, Hkv, D, r);
      REQUIRE(fam::attend(st, warm.qv().rows_from(0, 1), warm.kv().rows_from(0, 1),
                          warm.vv().rows_from(0, 1), warm.ov().rows_from(0, 1)) == status::ok);
      const state_print p = print_of(st);
      for (int kind = 0; kind < 12; ++kind) {
        CAPTURE(kind);
        io x(L, H, Hkv, D, r);
        cview q = x.qv(), k = x.kv(), v = x.vv();
        mview o = x.ov();
        fam::lse_view l = x.lv();
        status want = status::ok;
        switch (kind) {
          case 0:
            q.rows = L - 1, want = status::shape_mismatch;
            break;
          case 1:
            k.heads = H, want = status::shape_mismatch;
            break;
          case 2:
            v.head_dim = D + 1, want = status::shape_mismatch;
            break;
          case 3:
            o.rows = L + 1, want = status::shape_mismatch;
            break;
          case 4:
            q.data = nullptr, want = status::null_pointer;
            break;
          case 5:
            o.data = nullptr, want = status::null_pointer;
            break;
          case 6:
            k.row_stride = -1, want = status::invalid_layout;
            break;
          case 7:
            o.head_stride = 1, want = status::invalid_layout;
            break;
          case 8:
            l.row_stride = l.head_stride = 1, want = status::invalid_layout;
            break;
          case 9:
            l.head_stride = -1, want = status::invalid_layout;
            break;
          case 10:
            q.rows = k.rows = v.rows = o.rows = -1, want = status::invalid_argument;
            break;
          case 11:
            v.row_stride = kBig, want = status::too_large;
            break;
        }
        index_t consumed = -9;
        CHECK(fam::attend(st, q, k, v, o, l, &consumed) == want);
        CHECK(consumed == -9);
        CHECK(x.untouched());
        CHECK(print_of(st) == p);
      }
    }
  }

  TEST_CASE("attend_batch validates every member before processing any") {
    const std::uint64_t seed = testing::base_seed() + 7;
    INFO("seed ", seed);
    testing::rng r(seed);
    const index_t B = 5, F = 1, H = 2, Hkv = 2, D = 4;
    const cfg_t cfg = make_cfg(D, B, 1, F, H, Hkv);
    fam_rows fr(cfg, r);
    constexpr int N = 4;
    state_t states[N];
    for (state_t& s : states) {
      REQUIRE(s.init(cfg) == status::ok);
      REQUIRE(fam::begin_fam(s, fr.q(), fr.k(), fr.v()) == status::ok);
    }
    // a little history, different per member
    for (int i = 0; i < N; ++i) {
      io w(i, H, Hkv, D, r);
      REQUIRE(fam::attend(states[i], w.qv(), w.kv(), w.vv(), w.ov()) == status::ok);
    }
    state_t pending_state, blank;
    REQUIRE(pending_state.init(cfg) == status::ok);
    REQUIRE(fam::begin_fam(pending_state, fr.q(), fr.k(), fr.v()) == status::ok);
    {
      io w(B, H, Hkv, D, r);
      REQUIRE(fam::attend(pending_state, w.qv(), w.kv(), w.vv(), w.ov()) == status::ok);
      REQUIRE(pending_state.phase() == fam_phase::pending);
    }

    for (int kind = 0; kind < 8; ++kind) {
      CAPTURE(kind);
      std::vector<io> xs;
      for (int i = 0; i < N; ++i) xs.emplace_back(2, H, Hkv, D, r);
      std::vector<state_print> before;
      for (const state_t& s : states) before.push_back(print_of(s));
      const state_print pending_before = print_of(pending_state);
      std::vector<fam::sequence_step<cfg_t>> steps;
      for (int i = 0; i < N; ++i)
        steps.push_back({&states[i], xs[sz(i)].qv(), xs[sz(i)].kv(), xs[sz(i)].vv(), xs[sz(i)].ov(),
                         xs[sz(i)].lv(), -9});
      status want = status::ok;
      index_t count = N;
      fam::sequence_step<cfg_t>* data = steps.data();
      switch (kind) {
        case 0:
          steps[2].state = nullptr, want = status::invalid_argument;
          break;
        case 1:
          steps[3].state = &states[1], want = status::invalid_argument;
          break;
        case 2:
          steps[N - 1].k.heads = 1, want = status::shape_mismatch;
          break;
        case 3:
          steps[1].out.data = nullptr, want = status::null_pointer;
          break;
        case 4:
          steps[2].state = &pending_state, want = status::fam_update_pending;
          break;
        case 5:
          steps[3].state = &blank, want = status::not_initialized;
          break;
        case 6:
          count = -1, want = status::invalid_argument;
          break;
        case 7:
          data = nullptr, want = status::null_pointer;
          break;
      }
      CHECK(fam::attend_batch(data, count) == want);
      for (int i = 0; i < N; ++i) {
        CAPTURE(i);
        CHECK(print_of(states[i]) == before[sz(i)]);
        CHECK(states[i].tokens() == i);
        CHECK(steps[sz(i)].consumed == -9);
        CHECK(xs[sz(i)].untouched());
      }
      CHECK(print_of(pending_state) == pending_before);
      CHECK_FALSE(blank.initialized());
    }
    // no members at all, with or without an array
    CHECK(fam::attend_batch<cfg_t, float, float>(nullptr, 0) == status::ok);
  }
}

// ---------------------------------------------------------------------------------------------
// Index width (T13): 64-bit offsets everywhere
// ---------------------------------------------------------------------------------------------

TEST_SUITE("errors") {
  TEST_CASE("tensor_view offsets are 64-bit") {
    // Only addresses are computed here, nothing is read: strides whose products pass 2^31 and
    // 2^32 must not wrap. (The addresses lie past the array; they are compared as integers.)
    static float cell[4];
    const index_t rs = (index_t(1) << 33) + 3, hs = (index_t(1) << 31) + 5;
    const fam::tensor_view<float> v{cell, index_t(1) << 20, 3, 8, rs, hs};
    const auto offset = [&](const float* p) {
      return static_cast<index_t>(
          (reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(cell)) /
          sizeof(float));
    };
    CHECK(offset(v.at(0, 0)) == 0);
    CHECK(offset(v.at(0, 2)) == 2 * hs);
    CHECK(offset(v.at(1, 0)) == rs);
    CHECK(offset(v.at(3, 2)) == 3 * rs + 2 * hs);
    CHECK(offset(v.rows_from(5, 2).at(1, 1)) == 6 * rs + hs);
    CHECK(offset(v.rows_from(7, 0).data) == 0);  // an empty slice keeps the base
    const fam::tensor_view<const float> cv = v;  // the read-only view has the same geometry
    CHECK(offset(cv.at(2, 1)) == 2 * rs + hs);
    const fam::lse_view l{cell, (index_t(1) << 32) + 1, index_t(1) << 31};
    CHECK(offset(l.at(2, 1)) == 2 * ((index_t(1) << 32) + 1) + (index_t(1) << 31));
    CHECK(offset(l.rows_from(3).data) == 3 * ((index_t(1) << 32) + 1));
  }

  TEST_CASE("strides whose offsets would overflow int64 are too_large") {
    testing::rng r(testing::base_seed() + 8);
    const cfg_t cfg = make_cfg(2, 2, 1, 0, 2, 2);
    const fam::mask_spec mask = fam::mask_spec::full();
    struct stride_case {
      const char* what;
      index_t rows, row_stride, head_stride;
      status want;
    };
    // [rows, 2 heads, D 2] views of k; q/v/out stay valid and small. None is dereferenced.
    const stride_case cases[] = {
        {"row stride 2^62", 2, index_t(1) << 62, 2, status::too_large},
        {"row stride max", 2, kBig, 2, status::too_large},
        {"head stride 2^62", 1, 4, index_t(1) << 62, status::too_large},
        {"head stride max", 1, 4, kBig, status::too_large},
        {"row stride 2^60 with 9 rows", 9, index_t(1) << 60, 2, status::too_large},
    };
    for (const stride_case& c : cases) {
      CAPTURE(c.what);
      io x(c.rows, 2, 2, 2, r);
      const cview k{x.k.data(), c.rows, 2, 2, c.row_stride, c.head_stride};
      CHECK(fam::attention(cfg, mask, x.qv(), k, x.vv(), x.ov()) == c.want);
      CHECK(x.untouched());
    }
    // Large but addressable strides pass validation (checked through the view validator the
    // public calls share; no memory behind them is touched).
    float cell[4] = {};
    CHECK(fam::detail::check_view(cview{cell, 2, 2, 2, index_t(1) << 40, 2}, 2, 2, 2) ==
          status::ok);
    CHECK(fam::detail::check_view(cview{cell, 2, 2, 2, 2, index_t(1) << 40}, 2, 2, 2) ==
          status::ok);
    CHECK(fam::detail::check_view(cview{cell, index_t(1) << 20, 1, 2, index_t(1) << 33, 2},
                                  index_t(1) << 20, 1, 2) == status::ok);
  }

#if defined(__linux__)
  TEST_CASE("attention and attend work through offsets beyond 2^32 elements") {
    // Reserve 16 GiB of address space (not memory): the views below put rows or heads
    // 2^32 + 16 floats apart, so every offset the kernels compute passes 2^32 elements. Only
    // the few touched pages are ever backed.
    const index_t S = (index_t(1) << 32) + 16;  // stride in floats
    const std::size_t bytes_needed = sz(S + 256) * sizeof(float);
    void* base = mmap(nullptr, bytes_needed, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      MESSAGE("mmap of 16 GiB of address space failed; skipping the 2^32-offset run");
      return;
    }
    float* f = static_cast<float*>(base);
    testing::rng r(testing::base_seed() + 9);
    const index_t L = 2, H = 2, D = 4;
    const cfg_t cfg = make_cfg(D, 1, 1, 0, H, H);
    io ref(L, H, H, D, r);
    REQUIRE(fam::attention(cfg, fam::mask_spec::full(), ref.qv(), ref.kv(), ref.vv(), ref.ov(),
                           ref.lv()) == status::ok);
    // head-major views, heads S apart; rows D apart; q, k, v, out at base offsets 0, 16, 32, 48
    const mview qh{f, L, H, D, D, S}, kh{f + 16, L, H, D, D, S}, vh{f + 32, L, H, D, D, S};
    const mview oh{f + 48, L, H, D, D, S};
    // token-major views, rows S apart
    const mview qt{f + 64, L, H, D, S, D}, kt{f + 80, L, H, D, S, D}, vt{f + 96, L, H, D, S, D};
    const mview ot{f + 112, L, H, D, S, D};
    for (index_t n = 0; n < L; ++n)
      for (index_t h = 0; h < H; ++h) {
        for (const mview& dst : {qh, qt}) std::memcpy(dst.at(n, h), ref.qv().at(n, h), 4 * D);
        for (const mview& dst : {kh, kt}) std::memcpy(dst.at(n, h), ref.kv().at(n, h), 4 * D);
        for (const mview& dst : {vh, vt}) std::memcpy(dst.at(n, h), ref.vv().at(n, h), 4 * D);
      }
    CHECK(fam::attention(cfg, fam::mask_spec::full(), qh, kh, vh, oh) == status::ok);
    CHECK(fam::attention(cfg, fam::mask_spec::full(), qt, kt, vt, ot) == status::ok);
    // what the stream must give: one-shot BSWA (B = 1, M = 1) on contiguous inputs, which
    // visits the same key spans as the ring
    io bswa(L, H, H, D, r);
    bswa.q = ref.q, bswa.k = ref.k, bswa.v = ref.v;
    REQUIRE(fam::attention(cfg, fam::mask_spec::bswa(1, 1), bswa.qv(), bswa.kv(), bswa.vv(),
                           bswa.ov()) == status::ok);
    bool same = true;
    for (index_t n = 0; n < L; ++n)
      for (index_t h = 0; h < H; ++h) {
        same = same && std::memcmp(oh.at(n, h), ref.ov().at(n, h), 4 * D) == 0;
        same = same && std::memcmp(ot.at(n, h), ref.ov().at(n, h), 4 * D) == 0;
      }
    CHECK(same);
    // the streaming path reads the same strided inputs (B = 1, M = 1: full causal for L = 2)
    state_t st;
    REQUIRE(st.init(cfg) == status::ok);
    std::memset(ot.at(0, 0), 0, 4 * D);
    std::memset(ot.at(1, 0), 0, 4 * D);
    index_t consumed = 0;
    CHECK(fam::attend(st, qt, kt, vt, ot, {}, &consumed) == status::ok);
    CHECK(consumed == L);
    same = true;
    for (index_t n = 0; n < L; ++n)
      for (index_t h = 0; h < H; ++h)
        same = same && std::memcmp(ot.at(n, h), bswa.ov().at(n, h), 4 * D) == 0;
    CHECK(same);
    munmap(base, bytes_needed);
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// Degenerate but valid shapes (T12)
// ---------------------------------------------------------------------------------------------

TEST_SUITE("errors") {
  TEST_CASE("zero-length calls are no-ops in every phase") {
    const std::uint64_t seed = testing::base_seed() + 10;
    INFO("seed ", seed);
    testing::rng r(seed);
    const index_t B = 2, H = 2, Hkv = 1, D = 3;
    float* const null = nullptr;
    const cview q0 = fam::make_view<const float>(null, 0, H, D);
    const cview k0 = fam::make_view<const float>(null, 0, Hkv, D);
    const mview o0 = fam::make_view(null, 0, H, D);

    // stateless
    for (index_t F : {0, 2}) {
      const cfg_t cfg = make_cfg(D, B, 1, F, H, Hkv);
      for (const fam::mask_spec& m : {fam::mask_spec::full(), fam::mask_spec::sliding_window(2),
                                      fam::mask_spec::bswa(B, 1)}) {
        CHECK(fam::attention(cfg, m, q0, k0, k0, o0) == status::ok);
        guarded lse(8);
        CHECK(fam::attention(cfg, m, q0, k0, k0, o0, fam::make_lse_view(lse.data(), H)) ==
              status::ok);
        CHECK(lse.untouched());
      }
    }
    {
      // fam_attention with no memory, no block and no FAM: nothing to do
      const cfg_t cfg = make_cfg(D, B, 1, 0, H, Hkv);
      fam::fam_block_args<> a;
      a.mem_k = a.mem_v = a.kf = a.vf = a.k = a.v = k0;
      a.qf = a.q = q0;
      a.ut = a.uf = o0;
      CHECK(fam::fam_attention(cfg, a) == status::ok);
    }

    // streaming: fresh (no FAM yet), installed mid-block, pending
    const cfg_t cfg = make_cfg(D, B, 1, 2, H, Hkv, 2);
    fam_rows fr(cfg, r);
    state_t st;
    REQUIRE(st.init(cfg) == status::ok);
    io x(2 * B, H, Hkv, D, r);
    for (int phase = 0; phase < 3; ++phase) {
      CAPTURE(phase);
      if (phase == 1) {
        REQUIRE(fam::begin_fam(st, fr.q(), fr.k(), fr.v(), fr.p()) == status::ok);
        REQUIRE(fam::attend(st, x.qv().rows_from(0, 1), x.kv().rows_from(0, 1),
                            x.vv().rows_from(0, 1), x.ov().rows_from(0, 1)) == status::ok);
      }
      if (phase == 2) {
        REQUIRE(fam::attend(st, x.qv().rows_from(1, 1), x.kv().rows_from(1, 1),
                            x.vv().rows_from(1, 1), x.ov().rows_from(1, 1)) == status::ok);
        REQUIRE(st.phase() == fam_phase::pending);
      }
      const state_print p = print_of(st);
      index_t consumed = -1;
      CHECK(fam::attend(st, q0, k0, k0, o0, {}, &consumed) == status::ok);
      CHECK(consumed == 0);
      CHECK(fam::attend(st, q0, k0, k0, o0) == status::ok);  // nullptr consumed is fine too
      guarded lse(4);
      CHECK(fam::attend(st, q0, k0, k0, o0, fam::make_lse_view(lse.data(), H)) == status::ok);
      CHECK(lse.untouched());
      // an empty slice of real buffers
      guarded out(H * D);
      CHECK(fam::attend(st, x.qv().rows_from(2, 0), x.kv().rows_from(2, 0), x.vv().rows_from(2, 0),
                        fam::make_view(out.data(), 0, H, D)) == status::ok);
      CHECK(out.untouched());
      fam::sequence_step<cfg_t> step{&st, q0, k0, k0, o0, {}, -1};
      CHECK(fam::attend_batch(&step, 1) == status::ok);
      CHECK(step.consumed == 0);
      CHECK(fam::rewind(st, 0) == status::ok);
      CHECK(print_of(st) == p);
    }
  }

  TEST_CASE("one head and B = 1 and M = 0 and F = 0 match the oracle") {
    const std::uint64_t seed = testing::base_seed() + 11;
    MESSAGE("degenerate shapes vs oracle, seed ", seed);
    testing::rng r(seed);
    const index_t L = 11, D = 5;
    const index_t heads[3][2] = {{1, 1}, {2, 1}, {3, 3}};
    for (const auto& hh : heads)
      for (index_t B : {1, 3})
        for (index_t M : {0, 2}) {
          const index_t H = hh[0], Hkv = hh[1];
          CAPTURE(H);
          CAPTURE(Hkv);
          CAPTURE(B);
          CAPTURE(M);
          const cfg_t cfg = make_cfg(D, B, M, 0, H, Hkv);
          io x(L, H, Hkv, D, r);
          const auto want = oracle::token_attention(
              oracle::mask::bswa, 0, B, M, L, static_cast<int>(H), static_cast<int>(Hkv),
              static_cast<int>(D), cfg.scale(), testing::to_double(x.q), testing::to_double(x.k),
              testing::to_double(x.v));
          // one call
          REQUIRE(fam::attention(cfg, fam::mask_spec::bswa(B, M), x.qv(), x.kv(), x.vv(), x.ov(),
                                 x.lv()) == status::ok);
          CHECK(x.out.guards_intact());
          CHECK(x.lse.guards_intact());
          CHECK(testing::close_to_oracle(x.out.inner(), want.out, testing::max_abs(x.v)));
          CHECK(testing::close_to_oracle(x.lse.inner(), want.lse, 10.0));
          // streaming, one token at a time (F = 0: no FAM protocol at all)
          state_t st;
          REQUIRE(st.init(cfg) == status::ok);
          CHECK(st.phase() == fam_phase::installed);
          guarded out(L * H * D), lse(L * H);
          const mview o = fam::make_view(out.data(), L, H, D);
          const fam::lse_view l = fam::make_lse_view(lse.data(), H);
          for (index_t n = 0; n < L; ++n)
            REQUIRE(fam::attend(st, x.qv().rows_from(n, 1), x.kv().rows_from(n, 1),
                                x.vv().rows_from(n, 1), o.rows_from(n, 1),
                                l.rows_from(n)) == status::ok);
          CHECK(out.guards_intact());
          CHECK(lse.guards_intact());
          CHECK(testing::close_to_oracle(out.inner(), want.out, testing::max_abs(x.v)));
          // and the same bits as the one-shot call (same spans, same order)
          CHECK(testing::bitwise_equal(out.inner(), x.out.inner()));
          CHECK(testing::bitwise_equal(lse.inner(), x.lse.inner()));
          // B = 1, M = 0: every token sees only itself
          if (B == 1 && M == 0) {
            std::vector<float> expect;
            for (index_t n = 0; n < L; ++n)
              for (index_t h = 0; h < H; ++h)
                for (index_t d = 0; d < D; ++d)
                  expect.push_back(x.v[sz((n * Hkv + h / (H / Hkv)) * D + d)]);
            CHECK(testing::bitwise_equal(out.inner(), expect));
          }
        }
  }

  TEST_CASE("FAM with one head and B = 1 and M = 0 matches the weight-free oracle loop") {
    const std::uint64_t seed = testing::base_seed() + 12;
    INFO("seed ", seed);
    testing::rng r(seed);
    for (index_t F : {1, 2}) {
      CAPTURE(F);
      const index_t B = 1, M = 0, H = 1, D = 4, L = 12;
      const cfg_t cfg = make_cfg(D, B, M, F, H, H);
      io x(L, H, H, D, r);
      const std::vector<float> phi0 = r.floats(sz(F * H * D));
      const auto want = oracle::fam_weight_free(B, M, F, L, 1, static_cast<int>(D), cfg.scale(),
                                                testing::to_double(x.q), testing::to_double(x.k),
                                                testing::to_double(x.v), testing::to_double(phi0));
      state_t st;
      REQUIRE(st.init(cfg) == status::ok);
      const cview p0 = fam::make_view<const float>(phi0.data(), F, H, D);
      REQUIRE(fam::begin_fam(st, p0, p0, p0) == status::ok);
      std::vector<float> phi(sz(F * H * D));
      for (index_t n = 0; n < L; ++n) {
        REQUIRE(fam::attend(st, x.qv().rows_from(n, 1), x.kv().rows_from(n, 1),
                            x.vv().rows_from(n, 1), x.ov().rows_from(n, 1)) == status::ok);
        REQUIRE(st.phase() == fam_phase::pending);  // B = 1: every token completes a block
        std::memcpy(phi.data(), st.fam_output().data, phi.size() * sizeof(float));
        const cview pv = fam::make_view<const float>(phi.data(), F, H, D);
        REQUIRE(fam::update_fam(st, pv, pv, pv) == status::ok);
      }
      CHECK(x.out.guards_intact());
      CHECK(testing::close_to_oracle(x.out.inner(), want.out, 1.0));
      CHECK(testing::close_to_oracle(phi, want.phi, 1.0));
    }
  }

  TEST_CASE("fam_attention with an empty block updates only the FAM rows") {
    const std::uint64_t seed = testing::base_seed() + 13;
    INFO("seed ", seed);
    testing::rng r(seed);
    const index_t B = 2, M = 1, F = 2, H = 2, Hkv = 1, D = 3;
    const cfg_t cfg = make_cfg(D, B, M, F, H, Hkv);
    block_io x(B, F, 0, H, Hkv, D, r);
    fam::fam_block_args<> a = x.args();
    a.q.data = nullptr;  // zero rows: null is allowed
    a.k.data = a.v.data = nullptr;
    a.ut.data = nullptr;
    REQUIRE(fam::fam_attention(cfg, a) == status::ok);
    CHECK(x.uf.all_written());
    CHECK(x.uf.guards_intact());
    CHECK(x.ut.untouched());
    const auto want = oracle::fam_block(
        B, F, 0, 2, 1, 3, cfg.scale(), testing::to_double(x.mk), testing::to_double(x.mv),
        testing::to_double(x.qf), testing::to_double(x.kf), testing::to_double(x.vf), {}, {}, {});
    CHECK(testing::close_to_oracle(x.uf.inner(), want.uf, 1.0));
  }

  TEST_CASE("batches with empty members first and middle and last") {
    const std::uint64_t seed = testing::base_seed() + 14;
    INFO("seed ", seed);
    testing::rng r(seed);
    const index_t B = 3, M = 1, F = 2, H = 2, Hkv = 1, D = 3;
    const cfg_t cfg = make_cfg(D, B, M, F, H, Hkv);
    fam_rows fr(cfg, r);
    constexpr int N = 6;
    const index_t lengths[N] = {0, 2, 0, 5, 1, 0};
    state_t batch[N], solo[N];
    for (int i = 0; i < N; ++i) {
      REQUIRE(batch[i].init(cfg) == status::ok);
      REQUIRE(solo[i].init(cfg) == status::ok);
      // member 2 is left without FAM (valid for an empty call), the others installed
      if (i != 2) {
        REQUIRE(fam::begin_fam(batch[i], fr.q(), fr.k(), fr.v()) == status::ok);
        REQUIRE(fam::begin_fam(solo[i], fr.q(), fr.k(), fr.v()) == status::ok);
      }
    }
    // member 5 is pending (valid for an empty call too)
    {
      io w(B, H, Hkv, D, r);
      REQUIRE(fam::attend(batch[5], w.qv(), w.kv(), w.vv(), w.ov()) == status::ok);
      REQUIRE(fam::attend(solo[5], w.qv(), w.kv(), w.vv(), w.ov()) == status::ok);
      REQUIRE(batch[5].phase() == fam_phase::pending);
    }
    std::vector<io> xs, ys;
    for (int i = 0; i < N; ++i) {
      xs.emplace_back(lengths[i], H, Hkv, D, r);
      ys.emplace_back(lengths[i], H, Hkv, D, r);
      ys.back().q = xs.back().q, ys.back().k = xs.back().k, ys.back().v = xs.back().v;
    }
    std::vector<state_print> before;
    for (const state_t& s : batch) before.push_back(print_of(s));
    std::vector<fam::sequence_step<cfg_t>> steps;
    for (int i = 0; i < N; ++i) {
      io& x = xs[sz(i)];
      // empty members pass null data
      if (lengths[i] == 0)
        steps.push_back({&batch[i],
                         fam::make_view<const float>(nullptr, 0, H, D),
                         fam::make_view<const float>(nullptr, 0, Hkv, D),
                         fam::make_view<const float>(nullptr, 0, Hkv, D),
                         fam::make_view<float>(nullptr, 0, H, D),
                         {},
                         -1});
      else
        steps.push_back({&batch[i], x.qv(), x.kv(), x.vv(), x.ov(), x.lv(), -1});
    }
    REQUIRE(fam::attend_batch(steps.data(), N) == status::ok);
    for (int i = 0; i < N; ++i) {
      CAPTURE(i);
      io& y = ys[sz(i)];
      index_t consumed = 0;
      REQUIRE(fam::attend(solo[i], y.qv(), y.kv(), y.vv(), y.ov(), y.lv(), &consumed) ==
              status::ok);
      CHECK(steps[sz(i)].consumed == consumed);
      CHECK(steps[sz(i)].consumed == std::min<index_t>(lengths[i], B));  // stops at a block end
      CHECK(testing::bitwise_equal(xs[sz(i)].out.buf, ys[sz(i)].out.buf));
      CHECK(testing::bitwise_equal(xs[sz(i)].lse.buf, ys[sz(i)].lse.buf));
      CHECK(xs[sz(i)].out.guards_intact());
      CHECK(print_of(batch[i]) == print_of(solo[i]));
      if (lengths[i] == 0) CHECK(print_of(batch[i]) == before[sz(i)]);
    }

    // an all-empty batch: ok, every state as it was
    std::vector<state_print> now;
    for (const state_t& s : batch) now.push_back(print_of(s));
    std::vector<fam::sequence_step<cfg_t>> empty;
    for (int i = 0; i < N; ++i)
      empty.push_back({&batch[i],
                       fam::make_view<const float>(nullptr, 0, H, D),
                       fam::make_view<const float>(nullptr, 0, Hkv, D),
                       fam::make_view<const float>(nullptr, 0, Hkv, D),
                       fam::make_view<float>(nullptr, 0, H, D),
                       {},
                       -1});
    REQUIRE(fam::attend_batch(empty.data(), N) == status::ok);
    for (int i = 0; i < N; ++i) {
      CHECK(empty[sz(i)].consumed == 0);
      CHECK(print_of(batch[i]) == now[sz(i)]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Regressions: library bugs found while writing these tests, each pinned by its contract
// (before the fix they failed, aborted under -fsanitize=undefined, or wrote out of bounds).
// ---------------------------------------------------------------------------------------------

TEST_SUITE("errors") {
  TEST_CASE("regression - lse layouts whose rows and heads overlap are rejected") {
    // check_lse once rejected only row_stride == head_stride: other overlaps passed, so two
    // (row, head) pairs wrote the same float, and no offset was checked for overflow.
    testing::rng r(testing::base_seed() + 300);
    const cfg_t cfg = make_cfg(1, 1, 0, 0, 2, 2);
    io x(3, 2, 2, 1, r);
    // element (r, h) at r + 2h: (2, 0) and (0, 1) share element 2
    CHECK(fam::attention(cfg, fam::mask_spec::full(), x.qv(), x.kv(), x.vv(), x.ov(),
                         fam::lse_view{x.lse.data(), 1, 2}) == status::invalid_layout);
    // one row, two heads on one element
    io y(1, 2, 2, 1, r);
    CHECK(fam::attention(cfg, fam::mask_spec::full(), y.qv(), y.kv(), y.vv(), y.ov(),
                         fam::lse_view{y.lse.data(), 2, 0}) == status::invalid_layout);
    // a row stride whose offsets overflow int64 (today: a wild write)
    io z(3, 2, 2, 1, r);
    CHECK(fam::attention(cfg, fam::mask_spec::full(), z.qv(), z.kv(), z.vv(), z.ov(),
                         fam::lse_view{z.lse.data(), index_t(1) << 62, 1}) == status::too_large);
  }

  TEST_CASE("regression - validate does not overflow on M = INT64_MAX") {
    // validate() once computed M + 1 before any check: signed overflow for M = INT64_MAX.
    CHECK(make_cfg(4, 4, kBig, 1).validate() == status::too_large);
  }

  TEST_CASE("regression - check_view bounds huge strides before multiplying") {
    // check_view() once computed (heads - 1) * head_stride and (rows - 1) * row_stride before
    // its too_large checks, which overflow int64 here.
    float cell[4] = {};
    const index_t s = index_t(1) << 62;
    CHECK(fam::detail::check_view(cview{cell, 2, 3, 1, s + 1, s}, 2, 3, 1) == status::too_large);
    CHECK(fam::detail::check_view(cview{cell, 3, 2, 1, s, s + 1}, 3, 2, 1) == status::too_large);
  }

  TEST_CASE("regression - an empty phi view with a null pointer is never copied") {
    // A Φ view [F, 1, 0] (phi_dim 0) with a null pointer is valid (zero elements); it once
    // reached memcpy(dst, nullptr, 0), which UBSan reports.
    const cfg_t cfg = make_cfg(2, 2, 0, 1, 1, 1, 0);
    state_t st;
    REQUIRE(st.init(cfg) == status::ok);
    float f[2] = {1.0f, 2.0f};
    const cview row = fam::make_view<const float>(f, 1, 1, 2);
    CHECK(fam::begin_fam(st, row, row, row, cview{nullptr, 1, 1, 0, 0, 0}) == status::ok);
  }
}
