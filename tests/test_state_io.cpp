// test_state_io.cpp: save_state / restore_state / serialized_size of fam::layer_state, plus
// reset() and copy_state() (research/ecosystem.md T11, SPEC §5 "the whole state can be saved and
// restored; a restored stream continues with identical outputs").
//
// Every continuation is compared BITWISE with an uninterrupted run: the CPU backend promises
// that any chunking, and any save/restore point, gives the same numbers bit for bit.
// With F > 0 the tests drive the FAM protocol of stream.hpp: begin_fam at token 0 and, whenever
// phase() == pending, a deterministic stand-in for the model's update (fam_updater below).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fam/fam.hpp"
#include "support/util.hpp"

namespace {

using fam::fam_phase;
using fam::index_t;
using fam::status;
using cfg_t = fam::dynamic_config;
using state_t = fam::layer_state<cfg_t>;
using bytes = std::vector<unsigned char>;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::size_t sz(index_t n) { return static_cast<std::size_t>(n); }

/// One configuration of the sweep.
struct shape {
  index_t D, B, M, F, H, Hkv, phi;
  double scale = 0.0;  // 0: the default 1/sqrt(D)
  index_t offset = 0;  // position_offset
};

cfg_t make_cfg(const shape& s) {
  cfg_t c(s.D, s.B, s.M, s.F);
  c.set_heads(s.H, s.Hkv);
  c.phi_dim = s.phi;
  c.position_offset = s.offset;
  if (s.scale != 0.0) c.set_scale(s.scale);
  return c;
}

/// The inputs of one sequence (q [L, H, D], k/v [L, Hkv, D]) and its initial FAM Φ[-1]
/// (Qf [F, H, D], Kf/Vf [F, Hkv, D], Φ [F, phi_dim]).
struct sequence {
  index_t L = 0, H = 0, Hkv = 0, D = 0, F = 0, phi = 0;
  std::vector<float> q, k, v, qf0, kf0, vf0, phi0;
};

template <class Config>
sequence make_sequence(const Config& c, index_t L, testing::rng& r) {
  sequence s;
  s.L = L, s.H = c.heads, s.Hkv = c.kv_heads, s.D = c.head_dim(), s.F = c.fam_len();
  s.phi = c.phi_dim;
  s.q = r.floats(sz(L * s.H * s.D), -2.0, 2.0);
  s.k = r.floats(sz(L * s.Hkv * s.D), -2.0, 2.0);
  s.v = r.floats(sz(L * s.Hkv * s.D));
  s.qf0 = r.floats(sz(s.F * s.H * s.D), -2.0, 2.0);
  s.kf0 = r.floats(sz(s.F * s.Hkv * s.D), -2.0, 2.0);
  s.vf0 = r.floats(sz(s.F * s.Hkv * s.D));
  s.phi0 = r.floats(sz(s.F * s.phi));
  return s;
}

/// Token outputs of a run: out [L, H, D] and lse [L, H], NaN where nothing was written.
struct recording {
  std::vector<float> out, lse;
  recording(index_t L, index_t H, index_t D) : out(sz(L * H * D), kNaN), lse(sz(L * H), kNaN) {}
};

/// Bitwise equality of rows [r0, r1) of two [rows, width] buffers.
bool same_rows(const std::vector<float>& a, const std::vector<float>& b, index_t r0, index_t r1,
               index_t width) {
  if (r1 <= r0) return true;
  return std::memcmp(a.data() + r0 * width, b.data() + r0 * width,
                     sz((r1 - r0) * width) * sizeof(float)) == 0;
}

bool same_floats(fam::tensor_view<const float> v, const std::vector<float>& w) {
  const std::size_t n = sz(v.rows * v.heads * v.head_dim);
  return n == w.size() && (n == 0 || std::memcmp(v.data, w.data(), n * sizeof(float)) == 0);
}

std::vector<float> copy_of(fam::tensor_view<const float> v) {
  return std::vector<float>(v.data, v.data + v.rows * v.heads * v.head_dim);
}

/// A deterministic stand-in for the model's FAM update (SPEC §4 step 4): the next Qf is Uf,
/// Kf/Vf are the rows of query head h*(H/Hkv) (Vf reversed along D and halved), Φ is Uf's
/// first head (cyclically to phi_dim) plus one. Every buffer is sized once, here.
struct fam_updater {
  index_t F, H, Hkv, D, phi;
  std::vector<float> qf, kf, vf, ph;
  template <class Config>
  explicit fam_updater(const Config& c)
      : F(c.fam_len()),
        H(c.heads),
        Hkv(c.kv_heads),
        D(c.head_dim()),
        phi(c.phi_dim),
        qf(sz(F * H * D)),
        kf(sz(F * Hkv * D)),
        vf(sz(F * Hkv * D)),
        ph(sz(F * phi)) {}

  template <class Config>
  status operator()(fam::layer_state<Config>& st) {
    const fam::tensor_view<const float> uf = st.fam_output();
    const index_t group = H / Hkv;
    for (index_t r = 0; r < F; ++r) {
      for (index_t h = 0; h < H; ++h)
        for (index_t d = 0; d < D; ++d) qf[sz((r * H + h) * D + d)] = uf.at(r, h)[d];
      for (index_t g = 0; g < Hkv; ++g)
        for (index_t d = 0; d < D; ++d) {
          kf[sz((r * Hkv + g) * D + d)] = uf.at(r, g * group)[d];
          vf[sz((r * Hkv + g) * D + d)] = 0.5f * uf.at(r, g * group)[D - 1 - d];
        }
      for (index_t j = 0; j < phi; ++j) ph[sz(r * phi + j)] = uf.at(r, 0)[j % D] + 1.0f;
    }
    return fam::update_fam(st, fam::make_view<const float>(qf.data(), F, H, D),
                           fam::make_view<const float>(kf.data(), F, Hkv, D),
                           fam::make_view<const float>(vf.data(), F, Hkv, D), phi_view());
  }

  fam::tensor_view<const float> phi_view() const {
    if (phi == 0) return {};
    return fam::make_view<const float>(ph.data(), F, 1, phi);
  }
};

template <class Config>
status begin(fam::layer_state<Config>& st, const sequence& s) {
  const fam::tensor_view<const float> phi =
      s.phi == 0 ? fam::tensor_view<const float>{}
                 : fam::make_view<const float>(s.phi0.data(), s.F, 1, s.phi);
  return fam::begin_fam(st, fam::make_view<const float>(s.qf0.data(), s.F, s.H, s.D),
                        fam::make_view<const float>(s.kf0.data(), s.F, s.Hkv, s.D),
                        fam::make_view<const float>(s.vf0.data(), s.F, s.Hkv, s.D), phi, true);
}

/// Brings a state to where tokens can be attended: begin_fam on a state without FAM (token 0),
/// update_fam on a pending one.
template <class Config>
bool settle(fam::layer_state<Config>& st, const sequence& s, fam_updater& up) {
  if (st.phase() == fam_phase::none) {
    const status e = begin(st, s);
    if (e != status::ok) {
      FAIL_CHECK("begin_fam: ", fam::to_string(e));
      return false;
    }
  } else if (st.phase() == fam_phase::pending) {
    const status e = up(st);
    if (e != status::ok) {
      FAIL_CHECK("update_fam: ", fam::to_string(e));
      return false;
    }
  }
  return true;
}

/// Feeds tokens [st.tokens(), to) of `s` in chunks of chunk() tokens (a call may stop early at
/// a FAM block end), recording outputs. Leaves a pending update pending unless `finish`.
template <class Config, class Chunk>
bool feed(fam::layer_state<Config>& st, const sequence& s, index_t to, Chunk&& chunk,
          recording& rec, fam_updater& up, bool finish) {
  const auto q = fam::make_view<const float>(s.q.data(), s.L, s.H, s.D);
  const auto k = fam::make_view<const float>(s.k.data(), s.L, s.Hkv, s.D);
  const auto v = fam::make_view<const float>(s.v.data(), s.L, s.Hkv, s.D);
  const auto out = fam::make_view(rec.out.data(), s.L, s.H, s.D);
  const auto lse = fam::make_lse_view(rec.lse.data(), s.H);
  while (st.tokens() < to) {
    if (!settle(st, s, up)) return false;
    const index_t n = st.tokens();
    const index_t len = std::min<index_t>(chunk(), to - n);
    index_t consumed = -1;
    const status e = fam::attend(st, q.rows_from(n, len), k.rows_from(n, len), v.rows_from(n, len),
                                 out.rows_from(n, len), lse.rows_from(n), &consumed);
    if (e != status::ok || consumed < 1 || consumed > len || st.tokens() != n + consumed) {
      FAIL_CHECK("attend at token ", n, " (", len, " tokens): ", fam::to_string(e), ", consumed ",
                 consumed);
      return false;
    }
  }
  return !finish || settle(st, s, up);
}

template <class Config>
bytes save(const fam::layer_state<Config>& st) {
  bytes b(fam::serialized_size(st));
  std::size_t written = 0;
  const status e = fam::save_state(st, b.data(), b.size(), &written);
  if (e != status::ok || written != b.size()) {
    FAIL_CHECK("save_state: ", fam::to_string(e), ", wrote ", written, " of ", b.size());
  }
  return b;
}

/// A saved state and what it must restore to.
struct snapshot {
  index_t tokens;
  fam_phase phase;
  bool fresh;
  bytes blob;
  std::vector<float> uf;  // fam_output() when pending
};

snapshot take(const state_t& st) {
  snapshot s{st.tokens(), st.phase(), st.fresh(), save(st), {}};
  if (st.phase() == fam_phase::pending) s.uf = copy_of(st.fam_output());
  return s;
}

/// Chunk sizes drawn uniformly from [1, hi].
struct random_chunks {
  testing::rng* r;
  index_t hi;
  index_t operator()() { return r->integer(1, hi); }
};

/// Save at every block boundary (pending and after the update), at the T11 points and at a few
/// mid-block points; restore each blob into a fresh state and into a used one; continue
/// 3(M+1)B tokens; compare bitwise with the uninterrupted run.
void round_trip_sweep(const shape& sh, std::uint64_t seed) {
  const cfg_t cfg = make_cfg(sh);
  REQUIRE(cfg.validate() == status::ok);
  const index_t B = sh.B, M = sh.M, W = (M + 1) * B;
  const index_t cont = 3 * W, last_save = 7 * W + 3, total = last_save + cont;
  INFO("seed ", seed, ": D ", sh.D, " B ", B, " M ", M, " F ", sh.F, " H ", sh.H, " Hkv ", sh.Hkv,
       " phi ", sh.phi);
  testing::rng r(seed);
  const sequence seq = make_sequence(cfg, total, r);
  const sequence other = make_sequence(cfg, 4 * B + 1, r);
  fam_updater up(cfg);

  // The uninterrupted run: one call per FAM block (as long a chunk as the protocol allows).
  recording whole(total, sh.H, sh.D);
  {
    state_t st;
    REQUIRE(st.init(cfg) == status::ok);
    REQUIRE(feed(
        st, seq, total, [&] { return total; }, whole, up, true));
  }

  // The run that saves: ragged chunks, stopping at every save point.
  std::vector<index_t> points = {0, 1, B - 1, B, W - 1, W, W + 1, last_save};
  for (index_t t = 0; t * B <= last_save; ++t) points.push_back(t * B);
  for (int i = 0; i < 3; ++i) points.push_back(r.integer(0, last_save));
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());

  std::vector<snapshot> snaps;
  recording saving(total, sh.H, sh.D);
  state_t ref;
  REQUIRE(ref.init(cfg) == status::ok);
  random_chunks chunks{&r, 2 * B + 1};
  for (index_t p : points) {
    REQUIRE(feed(ref, seq, p, chunks, saving, up, false));
    snaps.push_back(take(ref));
    if (ref.phase() != fam_phase::installed) {  // pending, or no FAM yet at token 0
      REQUIRE(settle(ref, seq, up));
      snaps.push_back(take(ref));
    }
  }
  REQUIRE(feed(ref, seq, total, chunks, saving, up, true));
  CHECK(testing::bitwise_equal(saving.out, whole.out));
  CHECK(testing::bitwise_equal(saving.lse, whole.lse));
  if (sh.F > 0) {
    bool saw_pending = false;
    for (const snapshot& s : snaps) saw_pending = saw_pending || s.phase == fam_phase::pending;
    CHECK(saw_pending);
  }

  // A state that served another sequence, in caller storage: left pending (F > 0) at 2B tokens,
  // or mid-block at 2B + 1.
  testing::aligned_bytes used_storage(state_t::storage_bytes(cfg));
  state_t used;
  REQUIRE(used.init(cfg, used_storage.data, used_storage.size) ==
          status::ok);
  {
    recording junk(other.L, sh.H, sh.D);
    REQUIRE(feed(used, other, 2 * B + r.integer(0, 1), chunks, junk, up, false));
  }

  int restored = 0;
  for (std::size_t i = 0; i < snaps.size(); ++i) {
    const snapshot& snap = snaps[i];
    for (int target = 0; target < 2; ++target) {
      CAPTURE(i);
      CAPTURE(target);
      CAPTURE(snap.tokens);
      state_t fresh_state;
      if (target == 0) REQUIRE(fresh_state.init(cfg) == status::ok);
      state_t& st = target == 0 ? fresh_state : used;
      REQUIRE(fam::restore_state(st, snap.blob.data(), snap.blob.size()) == status::ok);
      ++restored;
      CHECK(st.tokens() == snap.tokens);
      CHECK(st.phase() == snap.phase);
      CHECK(st.fresh() == snap.fresh);
      if (snap.phase == fam_phase::pending) CHECK(same_floats(st.fam_output(), snap.uf));
      CHECK(save(st) == snap.blob);  // the round trip is bitwise

      recording cont_rec(total, sh.H, sh.D);
      index_t step = 0;
      const auto pattern = [&] { return 1 + (step++ + static_cast<index_t>(i)) % (B + 2); };
      const index_t end = snap.tokens + cont;
      REQUIRE(feed(st, seq, end, pattern, cont_rec, up, false));
      CHECK(same_rows(cont_rec.out, whole.out, snap.tokens, end, sh.H * sh.D));
      CHECK(same_rows(cont_rec.lse, whole.lse, snap.tokens, end, sh.H));
    }
  }
  CHECK(restored == static_cast<int>(2 * snaps.size()));
}

}  // namespace

TEST_SUITE("state_io") {
  TEST_CASE("save and restore at every block boundary continue bitwise identically") {
    const std::uint64_t base = testing::base_seed();
    MESSAGE("state_io round trip sweep, base seed ", base);
    const index_t heads[3][2] = {{1, 1}, {4, 2}, {3, 1}};  // MHA, GQA, MQA
    std::uint64_t n = 0;
    for (index_t F : {0, 1, 3})
      for (index_t B : {1, 3, 4})
        for (index_t M : {0, 1, 2})
          for (int hc = 0; hc < 3; ++hc) {
            shape sh{3 + static_cast<index_t>(n % 3),
                     B,
                     M,
                     F,
                     heads[hc][0],
                     heads[hc][1],
                     hc == 1 ? 0 : 2};
            if (hc == 2) sh.scale = 0.37, sh.offset = -5;
            round_trip_sweep(sh, base + 1000 * n++);
          }
  }

  TEST_CASE("a blob of a static configuration restores into a dynamic one and back") {
    using static_cfg = fam::attention_config<4, 3, 1, 2>;
    static_cfg sc;
    sc.set_heads(4, 2);
    sc.phi_dim = 3;
    cfg_t dc(4, 3, 1, 2);
    dc.set_heads(4, 2);
    dc.phi_dim = 3;
    const std::uint64_t seed = testing::base_seed() + 17;
    INFO("seed ", seed);
    testing::rng r(seed);
    const sequence seq = make_sequence(dc, 40, r);
    fam_updater up(dc);
    recording a(seq.L, 4, 4), b(seq.L, 4, 4), c(seq.L, 4, 4);

    fam::layer_state<static_cfg> s1;
    state_t d1;
    REQUIRE(s1.init(sc) == status::ok);
    REQUIRE(d1.init(dc) == status::ok);
    REQUIRE(feed(
        s1, seq, 13, [] { return 2; }, a, up, false));
    const bytes blob = save(s1);
    REQUIRE(fam::restore_state(d1, blob.data(), blob.size()) == status::ok);
    CHECK(save(d1) == blob);
    REQUIRE(feed(
        s1, seq, seq.L, [] { return 5; }, a, up, false));
    REQUIRE(feed(
        d1, seq, seq.L, [] { return 1; }, b, up, false));
    CHECK(same_rows(a.out, b.out, 13, seq.L, 16));

    // and back: dynamic -> static
    fam::layer_state<static_cfg> s2;
    REQUIRE(s2.init(sc) == status::ok);
    const bytes blob2 = save(d1);
    REQUIRE(fam::restore_state(s2, blob2.data(), blob2.size()) == status::ok);
    CHECK(save(s2) == blob2);
  }

  TEST_CASE("a pending update survives save and restore") {
    const cfg_t cfg = make_cfg({4, 3, 1, 2, 4, 2, 3});
    const std::uint64_t seed = testing::base_seed() + 23;
    INFO("seed ", seed);
    testing::rng r(seed);
    const sequence seq = make_sequence(cfg, 30, r);
    fam_updater up(cfg);
    recording rec(seq.L, 4, 4);
    state_t st, back;
    REQUIRE(st.init(cfg) == status::ok);
    REQUIRE(back.init(cfg) == status::ok);
    REQUIRE(feed(
        st, seq, 6, [] { return 4; }, rec, up, false));  // two blocks: pending
    REQUIRE(st.phase() == fam_phase::pending);
    CHECK_FALSE(st.fresh());  // the first update already cleared it
    const bytes blob = save(st);
    REQUIRE(fam::restore_state(back, blob.data(), blob.size()) == status::ok);
    CHECK(back.phase() == fam_phase::pending);
    CHECK(back.tokens() == 6);
    CHECK(same_floats(back.fam_output(), copy_of(st.fam_output())));
    CHECK(std::memcmp(back.fam_output_lse(), st.fam_output_lse(), 4 * 2 * sizeof(float)) == 0);
    CHECK(same_floats(back.fam_q(), copy_of(st.fam_q())));
    CHECK(same_floats(back.phi(), copy_of(st.phi())));
    // still pending: more tokens are refused until the update
    float one[16] = {};
    const auto q1 = fam::make_view<const float>(one, 1, 4, 4);
    const auto k1 = fam::make_view<const float>(one, 1, 2, 4);
    float out[16];
    CHECK(fam::attend(back, q1, k1, k1, fam::make_view(out, 1, 4, 4)) ==
          status::fam_update_pending);

    // fresh survives too: a state saved before its first update is still fresh
    state_t s2, b2;
    REQUIRE(s2.init(cfg) == status::ok);
    REQUIRE(b2.init(cfg) == status::ok);
    REQUIRE(feed(
        s2, seq, 3, [] { return 3; }, rec, up, false));
    REQUIRE(s2.phase() == fam_phase::pending);
    CHECK(s2.fresh());
    const bytes blob2 = save(s2);
    REQUIRE(fam::restore_state(b2, blob2.data(), blob2.size()) == status::ok);
    CHECK(b2.fresh());
    CHECK(b2.phase() == fam_phase::pending);
  }

  TEST_CASE("reset is bitwise equivalent to a fresh state") {
    const std::uint64_t base = testing::base_seed() + 31;
    MESSAGE("reset sweep, seed ", base);
    const shape shapes[] = {{4, 3, 1, 0, 2, 1, 0}, {4, 3, 2, 2, 4, 2, 3}, {2, 1, 0, 1, 1, 1, 1}};
    std::uint64_t n = 0;
    for (const shape& sh : shapes)
      for (index_t stop : {sh.B, 2 * sh.B + 1, 5 * sh.B}) {
        const cfg_t cfg = make_cfg(sh);
        const std::uint64_t seed = base + n++;
        INFO("seed ", seed, " F ", sh.F, " stop ", stop);
        testing::rng r(seed);
        const sequence seq = make_sequence(cfg, 8 * sh.B + 2, r);
        const sequence other = make_sequence(cfg, 8 * sh.B + 2, r);
        fam_updater up(cfg);
        state_t fresh_state, reused;
        REQUIRE(fresh_state.init(cfg) == status::ok);
        REQUIRE(reused.init(cfg) == status::ok);
        const bytes pristine = save(fresh_state);
        recording junk(other.L, sh.H, sh.D), a(seq.L, sh.H, sh.D), b(seq.L, sh.H, sh.D);
        REQUIRE(feed(
            reused, other, stop, [] { return 2; }, junk, up, false));
        fam::reset(reused);
        CHECK(reused.tokens() == 0);
        CHECK(reused.phase() == (sh.F > 0 ? fam_phase::none : fam_phase::installed));
        CHECK_FALSE(reused.fresh());
        CHECK(save(reused) == pristine);
        REQUIRE(feed(
            fresh_state, seq, seq.L, [] { return 3; }, a, up, true));
        REQUIRE(feed(
            reused, seq, seq.L, [] { return 3; }, b, up, true));
        CHECK(testing::bitwise_equal(a.out, b.out));
        CHECK(testing::bitwise_equal(a.lse, b.lse));
        CHECK(save(reused) == save(fresh_state));
      }
    // reset of an uninitialized state is a no-op
    state_t none;
    fam::reset(none);
    CHECK_FALSE(none.initialized());
  }

  TEST_CASE("copy_state forks a sequence") {
    const shape sh{4, 3, 1, 2, 4, 2, 3};
    const cfg_t cfg = make_cfg(sh);
    const std::uint64_t seed = testing::base_seed() + 41;
    INFO("seed ", seed);
    testing::rng r(seed);
    const sequence seq = make_sequence(cfg, 40, r);
    const sequence other = make_sequence(cfg, 40, r);
    fam_updater up(cfg);
    recording whole(seq.L, sh.H, sh.D), junk(other.L, sh.H, sh.D);
    {
      state_t st;
      REQUIRE(st.init(cfg) == status::ok);
      REQUIRE(feed(
          st, seq, seq.L, [] { return 40; }, whole, up, false));
    }
    for (index_t at : {0, 1, 3, 7, 9}) {  // 3, 9: pending; 0: no FAM yet
      CAPTURE(at);
      state_t src, dst;
      REQUIRE(src.init(cfg) == status::ok);
      REQUIRE(dst.init(cfg) == status::ok);
      REQUIRE(feed(
          dst, other, 5, [] { return 2; }, junk, up, false));
      recording a(seq.L, sh.H, sh.D), b(seq.L, sh.H, sh.D);
      REQUIRE(feed(
          src, seq, at, [] { return 2; }, a, up, false));
      REQUIRE(fam::copy_state(dst, src) == status::ok);
      CHECK(dst.tokens() == src.tokens());
      CHECK(dst.phase() == src.phase());
      CHECK(dst.fresh() == src.fresh());
      CHECK(save(dst) == save(src));
      REQUIRE(feed(
          src, seq, seq.L, [] { return 4; }, a, up, false));
      REQUIRE(feed(
          dst, seq, seq.L, [] { return 1; }, b, up, false));
      CHECK(same_rows(a.out, whole.out, at, seq.L, sh.H * sh.D));
      CHECK(same_rows(b.out, whole.out, at, seq.L, sh.H * sh.D));
      CHECK(save(dst) == save(src));
    }

    // into a different configuration: shape_mismatch, dst unchanged
    state_t src;
    REQUIRE(src.init(cfg) == status::ok);
    recording a(seq.L, sh.H, sh.D);
    REQUIRE(feed(
        src, seq, 5, [] { return 5; }, a, up, false));
    shape others[] = {sh, sh, sh, sh, sh, sh, sh, sh, sh};
    others[0].D = 5;
    others[1].B = 4;
    others[2].M = 2;
    others[3].F = 1;
    others[4].H = 2;
    others[5].Hkv = 1;
    others[6].phi = 2;
    others[7].scale = 0.25;
    others[8].offset = 9;
    for (const shape& o : others) {
      const cfg_t oc = make_cfg(o);
      state_t dst;
      REQUIRE(dst.init(oc) == status::ok);
      const sequence os = make_sequence(oc, 8, r);
      fam_updater oup(oc);
      recording oj(os.L, o.H, o.D);
      REQUIRE(feed(
          dst, os, 4, [] { return 1; }, oj, oup, false));
      const bytes before = save(dst);
      const index_t tokens = dst.tokens();
      CHECK(fam::copy_state(dst, src) == status::shape_mismatch);
      CHECK(save(dst) == before);
      CHECK(dst.tokens() == tokens);
    }

    // not initialized on either side; copying onto itself is a no-op
    state_t blank;
    const bytes before = save(src);
    CHECK(fam::copy_state(blank, src) == status::not_initialized);
    CHECK(fam::copy_state(src, blank) == status::not_initialized);
    CHECK(save(src) == before);
    CHECK(fam::copy_state(src, src) == status::ok);
    CHECK(save(src) == before);
  }
}

// ---------------------------------------------------------------------------------------------
// Corrupt, truncated, foreign and malformed blobs
// ---------------------------------------------------------------------------------------------

namespace {

// The documented layout (state_io.hpp) as a naturally aligned C struct: magic at 0, then u32
// version, u32 byte-order mark, u32 header bytes, 4 bytes of padding, eight i64 from offset 24,
// f64 scale, i64 tokens, u32 phase, u32 fresh, u64 payload floats; payload at 120.
constexpr std::size_t kVersion = 8, kByteOrder = 12, kHeaderBytes = 16, kHeadDim = 24,
                      kBlockSize = 32, kFamLen = 48, kPhiDim = 72, kScale = 88, kTokens = 96,
                      kPhase = 104, kFresh = 108, kKvType = 112, kPayloadBytes = 120,
                      kPayload = 128;

template <class T>
T read_at(const bytes& b, std::size_t off) {
  T x;
  std::memcpy(&x, b.data() + off, sizeof(T));
  return x;
}

template <class T>
void write_at(bytes& b, std::size_t off, T x) {
  std::memcpy(b.data() + off, &x, sizeof(T));
}

/// FNV-1a, 64 bit, written here from its definition.
std::uint64_t fnv1a64(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/// Rewrites the trailing checksum after a patch.
void reseal(bytes& b) { write_at<std::uint64_t>(b, b.size() - 8, fnv1a64(b.data(), b.size() - 8)); }

/// A state with some history, saved; and a target that served another sequence, whose blob
/// must never change under a failed restore.
struct io_fixture {
  shape sh;
  cfg_t cfg;
  fam_updater up;
  sequence seq, other;
  state_t src, target;
  bytes blob, target_before;

  io_fixture(const shape& s, index_t src_tokens, std::uint64_t seed)
      : sh(s), cfg(make_cfg(s)), up(cfg) {
    testing::rng r(seed);
    seq = make_sequence(cfg, 4 * s.B + 3, r);
    other = make_sequence(cfg, 4 * s.B + 3, r);
    REQUIRE(src.init(cfg) == status::ok);
    REQUIRE(target.init(cfg) == status::ok);
    recording a(seq.L, s.H, s.D), b(other.L, s.H, s.D);
    REQUIRE(feed(
        src, seq, src_tokens, [] { return 1; }, a, up, false));
    REQUIRE(feed(
        target, other, s.B + 1, [] { return 1; }, b, up, false));
    blob = save(src);
    target_before = save(target);
  }
  bool target_untouched() { return save(target) == target_before; }
};

}  // namespace

TEST_SUITE("state_io") {
  TEST_CASE("the blob follows the documented layout and checksum") {
    io_fixture fx({2, 2, 1, 1, 2, 2, 1}, 3, testing::base_seed() + 51);
    const bytes& b = fx.blob;
    CHECK(b.size() == fam::serialized_size(fx.src));
    CHECK(b.size() == kPayload + state_t::storage_bytes(fx.cfg) + 8);
    CHECK(b.size() < 2048);  // small enough to corrupt byte by byte
    CHECK(std::memcmp(b.data(), "FAMSTATE", 8) == 0);
    CHECK(read_at<std::uint32_t>(b, kVersion) == 1u);
    CHECK(read_at<std::uint32_t>(b, kByteOrder) == 0x01020304u);
    CHECK(read_at<std::uint32_t>(b, kHeaderBytes) == kPayload - 8);
    CHECK(read_at<std::int64_t>(b, kHeadDim) == 2);
    CHECK(read_at<std::int64_t>(b, kBlockSize) == 2);
    CHECK(read_at<std::int64_t>(b, kFamLen) == 1);
    CHECK(read_at<std::int64_t>(b, kPhiDim) == 1);
    CHECK(read_at<double>(b, kScale) == fx.cfg.scale());
    CHECK(read_at<std::int64_t>(b, kTokens) == 3);
    CHECK(read_at<std::uint32_t>(b, kPhase) == static_cast<std::uint32_t>(fam_phase::installed));
    CHECK(read_at<std::uint32_t>(b, kFresh) == 0u);
    CHECK(read_at<std::uint32_t>(b, kKvType) == 0u);  // fp32
    CHECK(read_at<std::uint64_t>(b, kPayloadBytes) ==
          static_cast<std::uint64_t>(state_t::storage_bytes(fx.cfg)));
    CHECK(read_at<std::uint64_t>(b, b.size() - 8) == fnv1a64(b.data(), b.size() - 8));
    // the size does not depend on the history
    CHECK(fam::serialized_size(fx.target) == b.size());
  }

  TEST_CASE("every flipped byte is rejected and leaves the target untouched") {
    const std::uint64_t seed = testing::base_seed() + 61;
    INFO("seed ", seed);
    // a pending blob (tokens at a block end, F = 1) and a mid-block one
    for (index_t tokens : {4, 5}) {
      io_fixture fx({2, 2, 1, 1, 2, 2, 1}, tokens, seed);
      CAPTURE(tokens);
      REQUIRE(fam::restore_state(fx.target, fx.blob.data(), fx.blob.size()) == status::ok);
      REQUIRE(fam::restore_state(fx.target, fx.target_before.data(), fx.target_before.size()) ==
              status::ok);
      int rejected = 0, tried = 0;
      for (std::size_t i = 0; i < fx.blob.size(); ++i)
        for (unsigned char mask : {0xFFu, 0x01u}) {
          bytes bad = fx.blob;
          bad[i] ^= mask;
          ++tried;
          const status e = fam::restore_state(fx.target, bad.data(), bad.size());
          // the version field is read before the checksum: another version is "incompatible"
          const bool in_version = i >= kVersion && i < kVersion + 4;
          const status want = in_version ? status::incompatible_state : status::corrupt_state;
          if (e != want || !fx.target_untouched()) {
            FAIL_CHECK("byte ", i, " ^ ", int(mask), ": ", fam::to_string(e));
            REQUIRE(fam::restore_state(fx.target, fx.target_before.data(),
                                       fx.target_before.size()) == status::ok);
          } else {
            ++rejected;
          }
        }
      CHECK(rejected == tried);
      CHECK(tried == static_cast<int>(2 * fx.blob.size()));
    }
  }

  TEST_CASE("every truncation and an extension are rejected") {
    io_fixture fx({2, 2, 1, 1, 2, 2, 1}, 5, testing::base_seed() + 71);
    int bad = 0;
    for (std::size_t len = 0; len < fx.blob.size(); ++len) {
      // a fresh copy of exactly len bytes, so a read past the end is visible to ASan
      const bytes cut(fx.blob.begin(), fx.blob.begin() + static_cast<std::ptrdiff_t>(len));
      const status e = fam::restore_state(fx.target, len == 0 ? nullptr : cut.data(), len);
      if (e != status::corrupt_state || !fx.target_untouched()) {
        FAIL_CHECK("length ", len, ": ", fam::to_string(e));
        ++bad;
      }
    }
    CHECK(bad == 0);
    // a zero-length restore from a valid pointer is corrupt too
    CHECK(fam::restore_state(fx.target, fx.blob.data(), 0) == status::corrupt_state);
    for (std::size_t extra : {1, 3, 4, 8}) {
      bytes longer = fx.blob;
      longer.resize(longer.size() + extra, 0);
      CAPTURE(extra);
      CHECK(fam::restore_state(fx.target, longer.data(), longer.size()) == status::corrupt_state);
      reseal(longer);  // even with a checksum over the longer blob
      CHECK(fam::restore_state(fx.target, longer.data(), longer.size()) == status::corrupt_state);
    }
    CHECK(fx.target_untouched());
  }

  TEST_CASE("a blob of another configuration is incompatible") {
    const shape base{2, 2, 1, 1, 2, 2, 1};
    io_fixture fx(base, 3, testing::base_seed() + 81);
    shape others[] = {base, base, base, base, base, base, base, base, base};
    const char* what[] = {"D", "B", "M", "F", "H", "Hkv", "phi_dim", "scale", "position_offset"};
    others[0].D = 3;
    others[1].B = 3;
    others[2].M = 2;
    others[3].F = 2;
    others[4].H = 4;
    others[5].Hkv = 1;
    others[6].phi = 2;
    others[7].scale = 0.5;
    others[8].offset = 3;
    for (int i = 0; i < 9; ++i) {
      CAPTURE(what[i]);
      io_fixture o(others[i], 3, testing::base_seed() + 82 + static_cast<std::uint64_t>(i));
      CHECK(fam::restore_state(fx.target, o.blob.data(), o.blob.size()) ==
            status::incompatible_state);
      CHECK(fx.target_untouched());
      CHECK(fam::restore_state(o.target, fx.blob.data(), fx.blob.size()) ==
            status::incompatible_state);
      CHECK(o.target_untouched());
    }
    // the scale is compared by value: an explicit 1/sqrt(D) equals the default
    shape same = base;
    same.scale = 1.0 / std::sqrt(2.0);
    io_fixture s(same, 3, testing::base_seed() + 91);
    CHECK(fam::restore_state(s.target, fx.blob.data(), fx.blob.size()) == status::ok);
    CHECK(save(s.target) == fx.blob);
  }

  TEST_CASE("another format version or byte order is incompatible even with a valid checksum") {
    io_fixture fx({2, 2, 1, 1, 2, 2, 1}, 3, testing::base_seed() + 101);
    struct patch {
      const char* what;
      std::size_t off;
      std::uint32_t value;
      status want;
    };
    const patch patches[] = {
        {"version 2", kVersion, 2u, status::incompatible_state},
        {"version 0", kVersion, 0u, status::incompatible_state},
        {"version 0x01000000", kVersion, 0x01000000u, status::incompatible_state},
        {"byte-swapped byte-order mark", kByteOrder, 0x04030201u, status::incompatible_state},
        {"unknown byte-order mark", kByteOrder, 0u, status::corrupt_state},
        {"header bytes 0", kHeaderBytes, 0u, status::corrupt_state},
        {"header bytes + 8", kHeaderBytes, static_cast<std::uint32_t>(kPayload),
         status::corrupt_state},
    };
    for (const patch& p : patches) {
      CAPTURE(p.what);
      bytes b = fx.blob;
      write_at<std::uint32_t>(b, p.off, p.value);
      reseal(b);
      CHECK(fam::restore_state(fx.target, b.data(), b.size()) == p.want);
      CHECK(fx.target_untouched());
    }
    // a wholly byte-swapped header (a big-endian writer): still incompatible, not corrupt
    bytes swapped = fx.blob;
    for (std::size_t off : {kVersion, kByteOrder, kHeaderBytes})
      std::reverse(swapped.begin() + static_cast<std::ptrdiff_t>(off),
                   swapped.begin() + static_cast<std::ptrdiff_t>(off + 4));
    CHECK(fam::restore_state(fx.target, swapped.data(), swapped.size()) ==
          status::incompatible_state);
    CHECK(fx.target_untouched());
    // a resealed blob with nothing changed is still fine
    bytes same = fx.blob;
    reseal(same);
    CHECK(same == fx.blob);
  }

  TEST_CASE("metadata that no state can have is corrupt") {
    struct patch {
      const char* what;
      std::int64_t tokens;
      std::uint32_t phase, fresh;
    };
    const std::uint32_t none = 0, installed = 1, pending = 2;
    {
      io_fixture fx({2, 2, 1, 1, 2, 2, 1}, 3, testing::base_seed() + 111);  // F = 1
      const patch patches[] = {
          {"negative tokens", -1, installed, 0},
          {"most negative tokens", std::numeric_limits<std::int64_t>::min(), installed, 0},
          {"phase 3", 3, 3, 0},
          {"phase huge", 3, 0xFFFFFFFFu, 0},
          {"fresh 2", 3, installed, 2},
          {"no FAM after tokens", 3, none, 0},
          {"pending mid-block", 3, pending, 0},
          {"pending at token 0", 0, pending, 0},
      };
      for (const patch& p : patches) {
        CAPTURE(p.what);
        bytes b = fx.blob;
        write_at<std::int64_t>(b, kTokens, p.tokens);
        write_at<std::uint32_t>(b, kPhase, p.phase);
        write_at<std::uint32_t>(b, kFresh, p.fresh);
        reseal(b);
        CHECK(fam::restore_state(fx.target, b.data(), b.size()) == status::corrupt_state);
        CHECK(fx.target_untouched());
      }
      // the possible ones are accepted
      const patch fine[] = {{"no FAM at token 0", 0, none, 0},
                            {"pending at a block end", 4, pending, 1},
                            {"installed at a block end", 4, installed, 0}};
      for (const patch& p : fine) {
        CAPTURE(p.what);
        bytes b = fx.blob;
        write_at<std::int64_t>(b, kTokens, p.tokens);
        write_at<std::uint32_t>(b, kPhase, p.phase);
        write_at<std::uint32_t>(b, kFresh, p.fresh);
        reseal(b);
        CHECK(fam::restore_state(fx.target, b.data(), b.size()) == status::ok);
        CHECK(fx.target.tokens() == p.tokens);
        CHECK(static_cast<std::uint32_t>(fx.target.phase()) == p.phase);
        REQUIRE(fam::restore_state(fx.target, fx.target_before.data(), fx.target_before.size()) ==
                status::ok);
      }
    }
    {
      io_fixture fx({2, 2, 1, 0, 2, 1, 0}, 3, testing::base_seed() + 121);  // F = 0
      for (std::uint32_t phase : {none, pending}) {
        CAPTURE(phase);
        bytes b = fx.blob;
        write_at<std::int64_t>(b, kTokens, phase == none ? 0 : 4);
        write_at<std::uint32_t>(b, kPhase, phase);
        reseal(b);
        CHECK(fam::restore_state(fx.target, b.data(), b.size()) == status::corrupt_state);
        CHECK(fx.target_untouched());
      }
    }
  }

  TEST_CASE("save_state and restore_state argument errors") {
    io_fixture fx({2, 2, 1, 1, 2, 2, 1}, 3, testing::base_seed() + 131);
    const std::size_t size = fam::serialized_size(fx.src);
    bytes buf(size + 16, 0xA5);
    std::size_t written = 12345;
    CHECK(fam::save_state(fx.src, nullptr, size, &written) == status::null_pointer);
    CHECK(fam::save_state(fx.src, nullptr, 0) == status::null_pointer);
    CHECK(fam::save_state(fx.src, buf.data(), size - 1, &written) == status::buffer_too_small);
    CHECK(fam::save_state(fx.src, buf.data(), 0, &written) == status::buffer_too_small);
    CHECK(written == 12345u);
    CHECK(std::all_of(buf.begin(), buf.end(), [](unsigned char c) { return c == 0xA5; }));
    // exactly enough, and more than enough: the bytes past the blob are not written
    CHECK(fam::save_state(fx.src, buf.data(), size, &written) == status::ok);
    CHECK(written == size);
    CHECK(bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(size)) == fx.blob);
    std::fill(buf.begin(), buf.end(), 0xA5);
    CHECK(fam::save_state(fx.src, buf.data(), buf.size()) == status::ok);  // written optional
    CHECK(std::all_of(buf.begin() + static_cast<std::ptrdiff_t>(size), buf.end(),
                      [](unsigned char c) { return c == 0xA5; }));

    state_t blank;
    CHECK(fam::save_state(blank, buf.data(), buf.size(), &written) == status::not_initialized);
    CHECK(fam::restore_state(blank, fx.blob.data(), fx.blob.size()) == status::not_initialized);
    CHECK_FALSE(blank.initialized());
    CHECK(fam::restore_state(fx.target, nullptr, fx.blob.size()) == status::null_pointer);
    CHECK(fam::restore_state(fx.target, nullptr, 0) == status::corrupt_state);
    CHECK(fx.target_untouched());
  }
}
