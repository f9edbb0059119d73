// test_alloc.cpp: the streaming and stateless calls allocate nothing after construction
// (research/ecosystem.md §4.5-4.6: hot paths are noexcept and allocation-free; a state
// allocates once, at init()).
//
// This translation unit replaces the global operator new and delete (every C++17 form:
// plain, array, nothrow, aligned, sized) with versions that count calls. The replacement is
// program-wide, which is harmless: it only counts. Every check takes the counter into a local
// before any doctest macro runs, because doctest itself may allocate while it reports.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "fam/fam.hpp"
#include "support/util.hpp"

// ---------------------------------------------------------------------------------------------
// The counting allocator
// ---------------------------------------------------------------------------------------------

namespace {

std::atomic<std::int64_t> g_allocations{0};
std::atomic<std::int64_t> g_deallocations{0};
void* volatile g_sink = nullptr;  // lets a test's allocations escape (no heap elision)

void* counted_malloc(std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}

// Aligned blocks: over-allocate with malloc and keep the original pointer just below the
// aligned address (portable, and always released by the aligned operator delete).
void* counted_aligned(std::size_t n, std::align_val_t al) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  std::size_t align = static_cast<std::size_t>(al);
  if (align < alignof(void*)) align = alignof(void*);
  if (n > static_cast<std::size_t>(-1) - align - sizeof(void*)) return nullptr;
  void* raw = std::malloc(n + align + sizeof(void*));
  if (raw == nullptr) return nullptr;
  const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(raw) + sizeof(void*);
  const std::uintptr_t aligned = (start + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
  void* p = reinterpret_cast<void*>(aligned);
  std::memcpy(static_cast<char*>(p) - sizeof(void*), &raw, sizeof(void*));
  return p;
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  g_deallocations.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}

void counted_aligned_free(void* p) noexcept {
  if (p == nullptr) return;
  g_deallocations.fetch_add(1, std::memory_order_relaxed);
  void* raw;
  std::memcpy(&raw, static_cast<char*>(p) - sizeof(void*), sizeof(void*));
  std::free(raw);
}

void* throwing(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) { return throwing(counted_malloc(n)); }
void* operator new[](std::size_t n) { return throwing(counted_malloc(n)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void* operator new(std::size_t n, std::align_val_t al) { return throwing(counted_aligned(n, al)); }
void* operator new[](std::size_t n, std::align_val_t al) {
  return throwing(counted_aligned(n, al));
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return counted_aligned(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return counted_aligned(n, al);
}

void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_aligned_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_aligned_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_aligned_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_aligned_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_aligned_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_aligned_free(p);
}

// ---------------------------------------------------------------------------------------------
// Fixtures, all built before any measurement
// ---------------------------------------------------------------------------------------------

namespace {

using fam::fam_phase;
using fam::index_t;
using fam::status;
using cfg_t = fam::dynamic_config;
using state_t = fam::layer_state<cfg_t>;
using cview = fam::tensor_view<const float>;

std::size_t sz(index_t n) { return static_cast<std::size_t>(n); }

/// Allocations and deallocations so far.
struct alloc_count {
  std::int64_t news, deletes;
  bool operator==(const alloc_count& o) const { return news == o.news && deletes == o.deletes; }
};
alloc_count now() {
  return {g_allocations.load(std::memory_order_relaxed),
          g_deallocations.load(std::memory_order_relaxed)};
}

/// Remembers the first non-ok status of a measured region (no doctest macro inside it).
struct status_log {
  status first = status::ok;
  int calls = 0;
  void operator()(status s) {
    ++calls;
    if (first == status::ok) first = s;
  }
  /// An expected error counts as success.
  void expect(status got, status want) { (*this)(got == want ? status::ok : got); }
};

cfg_t make_cfg(index_t D, index_t B, index_t M, index_t F, index_t H, index_t Hkv,
               index_t phi = 0) {
  cfg_t c(D, B, M, F);
  c.set_heads(H, Hkv);
  c.phi_dim = phi;
  return c;
}

/// A sequence's inputs, outputs and FAM scratch, sized once.
struct stream_fixture {
  cfg_t cfg;
  index_t L, H, Hkv, D, F, phi;
  std::vector<float> q, k, v, out, lse, qf, kf, vf, ph;
  stream_fixture(const cfg_t& c, index_t length, testing::rng& r)
      : cfg(c),
        L(length),
        H(c.heads),
        Hkv(c.kv_heads),
        D(c.head_dim()),
        F(c.fam_len()),
        phi(c.phi_dim),
        q(r.floats(sz(L * H * D))),
        k(r.floats(sz(L * Hkv * D))),
        v(r.floats(sz(L * Hkv * D))),
        out(sz(L * H * D)),
        lse(sz(L * H)),
        qf(r.floats(sz(F * H * D))),
        kf(r.floats(sz(F * Hkv * D))),
        vf(r.floats(sz(F * Hkv * D))),
        ph(r.floats(sz(F * phi))) {}

  cview qv() const { return fam::make_view<const float>(q.data(), L, H, D); }
  cview kv() const { return fam::make_view<const float>(k.data(), L, Hkv, D); }
  cview vv() const { return fam::make_view<const float>(v.data(), L, Hkv, D); }
  fam::tensor_view<float> ov() { return fam::make_view(out.data(), L, H, D); }
  fam::lse_view lv() { return fam::make_lse_view(lse.data(), H); }
  cview phi_view() const {
    return phi == 0 ? cview{} : fam::make_view<const float>(ph.data(), F, 1, phi);
  }

  status begin(state_t& st) const {
    return fam::begin_fam(st, fam::make_view<const float>(qf.data(), F, H, D),
                          fam::make_view<const float>(kf.data(), F, Hkv, D),
                          fam::make_view<const float>(vf.data(), F, Hkv, D), phi_view());
  }
  /// A deterministic update from fam_output() into the preallocated scratch (no allocation).
  status update(state_t& st) {
    const cview uf = st.fam_output();
    const index_t group = H / Hkv;
    for (index_t r = 0; r < F; ++r) {
      for (index_t h = 0; h < H; ++h)
        std::memcpy(&qf[sz((r * H + h) * D)], uf.at(r, h), sizeof(float) * sz(D));
      for (index_t g = 0; g < Hkv; ++g) {
        std::memcpy(&kf[sz((r * Hkv + g) * D)], uf.at(r, g * group), sizeof(float) * sz(D));
        for (index_t d = 0; d < D; ++d) vf[sz((r * Hkv + g) * D + d)] = -uf.at(r, g * group)[d];
      }
      for (index_t j = 0; j < phi; ++j) ph[sz(r * phi + j)] = uf.at(r, 0)[j % D];
    }
    return fam::update_fam(st, fam::make_view<const float>(qf.data(), F, H, D),
                           fam::make_view<const float>(kf.data(), F, Hkv, D),
                           fam::make_view<const float>(vf.data(), F, Hkv, D), phi_view());
  }

  /// Streams tokens [st.tokens(), to) in chunks of `chunk`, driving the FAM protocol.
  status stream(state_t& st, index_t to, index_t chunk, bool with_lse) {
    const cview qa = qv(), ka = kv(), va = vv();
    const fam::tensor_view<float> oa = ov();
    const fam::lse_view la = with_lse ? lv() : fam::lse_view{};
    while (st.tokens() < to) {
      if (st.phase() == fam_phase::none) FAM_TRY(begin(st));
      if (st.phase() == fam_phase::pending) FAM_TRY(update(st));
      const index_t n = st.tokens(), len = std::min(chunk, to - n);
      index_t consumed = 0;
      FAM_TRY(fam::attend(st, qa.rows_from(n, len), ka.rows_from(n, len), va.rows_from(n, len),
                          oa.rows_from(n, len), la.rows_from(n), &consumed));
      if (consumed < 1) return status::invalid_argument;  // would loop forever
    }
    return status::ok;
  }
};

}  // namespace

TEST_SUITE("alloc") {
  TEST_CASE("the counting allocator sees init and the destructor") {
    const cfg_t cfg = make_cfg(8, 4, 2, 2, 4, 2, 3);
    const alloc_count a = now();
    {
      state_t st;
      const alloc_count b = now();
      const status e = st.init(cfg);
      const alloc_count c = now();
      CHECK(b == a);  // an empty state owns nothing
      CHECK(e == status::ok);
      CHECK(c.news > b.news);
    }
    const alloc_count d = now();
    CHECK(d.deletes > a.deletes);
    // every form of operator new reaches the counter
    const alloc_count e0 = now();
    int* p1 = new int(1);
    int* p2 = new int[3];
    int* p3 = new (std::nothrow) int(2);
    struct alignas(64) wide {
      float x[16];
    };
    wide* p4 = new wide();
    wide* p5 = new wide[2];
    wide* p6 = new (std::nothrow) wide();
    for (void* p : {static_cast<void*>(p1), static_cast<void*>(p2), static_cast<void*>(p3),
                    static_cast<void*>(p4), static_cast<void*>(p5), static_cast<void*>(p6)})
      g_sink = p;
    const bool aligned = reinterpret_cast<std::uintptr_t>(p4) % 64 == 0 &&
                         reinterpret_cast<std::uintptr_t>(p5) % 64 == 0 &&
                         reinterpret_cast<std::uintptr_t>(p6) % 64 == 0;
    delete p1;
    delete[] p2;
    delete p3;
    delete p4;
    delete[] p5;
    delete p6;
    const alloc_count e1 = now();
    CHECK(e1.news - e0.news == 6);
    CHECK(e1.deletes - e0.deletes == 6);
    CHECK(aligned);
  }

  TEST_CASE("init with caller storage or a bad configuration allocates nothing") {
    const cfg_t cfg = make_cfg(8, 4, 2, 2, 4, 2, 3);
    testing::aligned_bytes storage(state_t::storage_bytes(cfg));
    cfg_t huge = make_cfg(index_t(1) << 21, index_t(1) << 21, (index_t(1) << 21) - 1, 0, 4, 4);
    cfg_t bad = make_cfg(8, 4, 2, 2, 3, 2);
    state_t st, st2, st3;
    const alloc_count a = now();
    const status e1 = st.init(cfg, storage.data, storage.size);
    const status e2 = st2.init(huge);
    const status e3 = st3.init(bad);
    const status e4 = huge.validate();
    const std::size_t huge_bytes = state_t::storage_bytes(huge);
    const status e5 = st2.init(huge, storage.data, storage.size);
    const alloc_count b = now();
    CHECK(b == a);
    CHECK(e1 == status::ok);
    CHECK(e2 == status::too_large);
    CHECK(e3 == status::invalid_argument);
    CHECK(e4 == status::too_large);
    CHECK(huge_bytes == 0);
    CHECK(e5 == status::too_large);
    CHECK_FALSE(st2.initialized());
    CHECK_FALSE(st3.initialized());
  }

  TEST_CASE("streaming allocates nothing after init") {
    const std::uint64_t seed = testing::base_seed() + 200;
    MESSAGE("alloc streaming, seed ", seed);
    testing::rng r(seed);
    const index_t L = 41;
    const cfg_t cfgs[] = {make_cfg(8, 4, 2, 0, 4, 2), make_cfg(8, 4, 2, 3, 4, 2, 5),
                          make_cfg(4, 1, 0, 1, 1, 1), make_cfg(6, 3, 1, 2, 6, 3)};
    for (const cfg_t& cfg : cfgs) {
      CAPTURE(cfg.fam_len());
      CAPTURE(cfg.block_size());
      stream_fixture fx(cfg, L, r);
      stream_fixture other(cfg, L, r);
      state_t st, fork;
      REQUIRE(st.init(cfg) == status::ok);
      REQUIRE(fork.init(cfg) == status::ok);
      std::vector<unsigned char> blob(fam::serialized_size(st)), blob2(blob.size());
      status_log log;

      const alloc_count a = now();
      for (index_t chunk : {index_t(1), index_t(2), index_t(3), cfg.block_size(),
                            cfg.block_size() + 1, index_t(7), L}) {
        fam::reset(st);
        log(fx.stream(st, L, chunk, chunk % 2 == 1));
      }
      // save mid-way, fork, rewind, restore, continue
      fam::reset(st);
      log(fx.stream(st, 2 * cfg.block_size() + 1, 1, true));
      std::size_t written = 0;
      log(fam::save_state(st, blob.data(), blob.size(), &written));
      log(fam::copy_state(fork, st));
      log(fx.stream(fork, L, 5, false));
      if (st.block_offset() > 0) log(fam::rewind(st, 1));
      log(fam::rewind(st, 0));
      log(fx.stream(st, 2 * cfg.block_size() + 1, 1, true));
      log(fam::restore_state(fork, blob.data(), written));
      log(fx.stream(fork, L, 2, true));
      log(fam::save_state(fork, blob2.data(), blob2.size()));
      // error paths allocate nothing either
      log.expect(fam::restore_state(fork, blob.data(), written - 1), status::corrupt_state);
      blob[written / 2] ^= 0x10;
      log.expect(fam::restore_state(fork, blob.data(), written), status::corrupt_state);
      log.expect(fam::save_state(fork, blob2.data(), 3), status::buffer_too_small);
      log.expect(fam::rewind(st, cfg.block_size() + 1), status::out_of_range);
      log.expect(fam::attend(st, fx.qv().rows_from(0, 2), fx.kv().rows_from(0, 1),
                             fx.vv().rows_from(0, 2), fx.ov().rows_from(0, 2)),
                 status::shape_mismatch);
      log(fam::attend(fork, other.qv().rows_from(0, 0), other.kv().rows_from(0, 0),
                      other.vv().rows_from(0, 0), other.ov().rows_from(0, 0)));
      (void)fam::serialized_size(st);
      (void)state_t::storage_bytes(cfg);
      (void)cfg.validate();
      const alloc_count b = now();

      CHECK(b == a);
      CHECK(log.first == status::ok);
      CHECK(log.calls > 10);
    }
  }

  TEST_CASE("attend_batch and the stateless calls allocate nothing") {
    const std::uint64_t seed = testing::base_seed() + 201;
    MESSAGE("alloc batch and stateless, seed ", seed);
    testing::rng r(seed);
    const index_t B = 3, M = 1, F = 2, H = 4, Hkv = 2, D = 8, L = 20;
    const cfg_t cfg = make_cfg(D, B, M, F, H, Hkv, 2);
    constexpr int N = 3;
    std::vector<stream_fixture> fx;
    for (int i = 0; i < N; ++i) fx.emplace_back(cfg, L, r);
    state_t states[N];
    for (state_t& s : states) REQUIRE(s.init(cfg) == status::ok);
    std::vector<fam::sequence_step<cfg_t>> steps(N);

    // stateless inputs
    stream_fixture sx(make_cfg(D, B, M, 0, H, Hkv), L, r);
    const cfg_t fcfg = cfg;
    std::vector<float> mk = r.floats(sz(M * B * Hkv * D)), mv = r.floats(sz(M * B * Hkv * D));
    std::vector<float> ut(sz(B * H * D)), uf(sz(F * H * D)), lt(sz(B * H)), lf(sz(F * H));
    fam::fam_block_args<> args;
    args.mem_k = fam::make_view<const float>(mk.data(), M * B, Hkv, D);
    args.mem_v = fam::make_view<const float>(mv.data(), M * B, Hkv, D);
    args.qf = fam::make_view<const float>(fx[0].qf.data(), F, H, D);
    args.kf = fam::make_view<const float>(fx[0].kf.data(), F, Hkv, D);
    args.vf = fam::make_view<const float>(fx[0].vf.data(), F, Hkv, D);
    args.q = sx.qv().rows_from(0, B);
    args.k = sx.kv().rows_from(0, B);
    args.v = sx.vv().rows_from(0, B);
    args.ut = fam::make_view(ut.data(), B, H, D);
    args.uf = fam::make_view(uf.data(), F, H, D);
    args.lse_t = fam::make_lse_view(lt.data(), H);
    args.lse_f = fam::make_lse_view(lf.data(), H);
    status_log log;

    const alloc_count a = now();
    // the batch: members of lengths 0, 2 and 5 per round, until every sequence is done
    const index_t want[N] = {0, 2, 5};
    for (int round = 0; round < 40; ++round) {
      for (int i = 0; i < N; ++i) {
        state_t& s = states[i];
        if (s.phase() == fam_phase::none) log(fx[sz(i)].begin(s));
        if (s.phase() == fam_phase::pending) log(fx[sz(i)].update(s));
        const index_t n = s.tokens(), len = std::min(want[i] + round % 2, L - n);
        steps[sz(i)] = {&s,
                        fx[sz(i)].qv().rows_from(n, len),
                        fx[sz(i)].kv().rows_from(n, len),
                        fx[sz(i)].vv().rows_from(n, len),
                        fx[sz(i)].ov().rows_from(n, len),
                        fx[sz(i)].lv().rows_from(n),
                        0};
      }
      log(fam::attend_batch(steps.data(), N));
    }
    steps[2].state = steps[0].state;
    log.expect(fam::attend_batch(steps.data(), N), status::invalid_argument);
    // stateless
    for (const fam::mask_spec& m :
         {fam::mask_spec::full(), fam::mask_spec::sliding_window(3), fam::mask_spec::bswa(B, M)})
      log(fam::attention(sx.cfg, m, sx.qv(), sx.kv(), sx.vv(), sx.ov(), sx.lv()));
    log.expect(
        fam::attention(sx.cfg, fam::mask_spec::fam(B, M, F), sx.qv(), sx.kv(), sx.vv(), sx.ov()),
        status::invalid_argument);
    log(fam::fam_attention(fcfg, args));
    args.mem_k.rows = args.mem_v.rows = 0;
    args.q = args.q.rows_from(0, 1);
    args.k = args.k.rows_from(0, 1);
    args.v = args.v.rows_from(0, 1);
    args.ut = args.ut.rows_from(0, 1);
    log(fam::fam_attention(fcfg, args));
    const alloc_count b = now();

    CHECK(b == a);
    CHECK(log.first == status::ok);
    for (int i = 0; i < N; ++i) CHECK(states[i].tokens() == L);
  }
}
