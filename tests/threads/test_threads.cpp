// test_threads.cpp: the multi-threaded paths, written to run under ThreadSanitizer
// (scripts/ci-trust builds this binary with clang -fsanitize=thread) and as ordinary tests.
//  - fam::thread_pool: every item exactly once, runs from several threads at once, pools made
//    and destroyed while idle or busy;
//  - the backends with a parallel hook (the pool, or a hook that runs the items in a shuffled
//    order on fresh threads): whole sequences, FAM streams, attend_batch, bitwise equal to the
//    serial run;
//  - several sequences streamed from their own threads through one shared pool;
//  - const access to one state from many threads (save_state, copy_state out of it);
//  - the SIMD backend's tile counters, updated from every worker.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "fam/fam.hpp"
#if defined(FAM_THREADS_SIMD)
#include "fam/backend/simd.hpp"
#endif
#include "fam/thread_pool.hpp"
#include "support/shuffled_hook.hpp"

namespace {

using fam::index_t;
using fam::status;
using cfg_t = fam::dynamic_config;

using testing::shuffled_hook;

std::vector<float> values(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> x(n);
  for (float& f : x) f = d(g);
  return x;
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct sequence {
  index_t L, H, Hkv, D;
  std::vector<float> q, k, v;
  sequence(index_t L_, index_t H_, index_t Hkv_, index_t D_, std::uint64_t seed)
      : L(L_),
        H(H_),
        Hkv(Hkv_),
        D(D_),
        q(values(std::size_t(L * H * D), seed)),
        k(values(std::size_t(L * Hkv * D), seed + 1)),
        v(values(std::size_t(L * Hkv * D), seed + 2)) {}
};

template <class Backend>
std::vector<float> whole(const sequence& s, const fam::mask_spec& m, const Backend& be) {
  cfg_t c(s.D, 1, 0, 0);
  c.set_heads(s.H, s.Hkv);
  std::vector<float> out(std::size_t(s.L * s.H * s.D));
  REQUIRE(fam::attention(c, m, fam::make_view(s.q.data(), s.L, s.H, s.D),
                         fam::make_view(s.k.data(), s.L, s.Hkv, s.D),
                         fam::make_view(s.v.data(), s.L, s.Hkv, s.D),
                         fam::make_view(out.data(), s.L, s.H, s.D), {}, be) == status::ok);
  return out;
}

/// A FAM stream (weight-free updates, SPEC §6) in chunks of `chunk`; outputs and final Uf.
template <class Backend>
std::vector<float> stream(const sequence& s, index_t B, index_t M, index_t F, index_t chunk,
                          const Backend& be) {
  cfg_t c(s.D, B, M, F);
  c.set_heads(s.H, s.Hkv);
  fam::layer_state<cfg_t> st;
  REQUIRE(st.init(c) == status::ok);
  const std::vector<float> phi = values(std::size_t(F * s.H * s.D), 99);
  const auto pv = fam::make_view(phi.data(), F, s.H, s.D);
  REQUIRE(fam::begin_fam(st, pv, pv, pv) == status::ok);
  std::vector<float> out(std::size_t(s.L * s.H * s.D));
  for (index_t done = 0, n = 0; done < s.L; done += n) {
    const index_t cnt = std::min(chunk, s.L - done);
    REQUIRE(fam::attend(st, fam::make_view(s.q.data(), s.L, s.H, s.D).rows_from(done, cnt),
                        fam::make_view(s.k.data(), s.L, s.Hkv, s.D).rows_from(done, cnt),
                        fam::make_view(s.v.data(), s.L, s.Hkv, s.D).rows_from(done, cnt),
                        fam::make_view(out.data(), s.L, s.H, s.D).rows_from(done, cnt), {}, &n,
                        be) == status::ok);
    if (st.phase() == fam::fam_phase::pending) {
      const auto uf = st.fam_output();
      REQUIRE(fam::update_fam(st, uf, uf, uf) == status::ok);
    }
  }
  const auto uf = st.fam_output();
  out.insert(out.end(), uf.data, uf.data + F * s.H * s.D);
  return out;
}

template <class Backend>
void backend_with_threads(const char* name) {
  INFO("backend ", name);
  const sequence s(150, 4, 2, 24, 7);
  fam::thread_pool pool(3);
  for (const fam::mask_spec& m :
       {fam::mask_spec::full(), fam::mask_spec::sliding_window(37), fam::mask_spec::bswa(16, 2)}) {
    const std::vector<float> serial = whole(s, m, Backend{});
    Backend be;
    be.parallel = pool.hook();
    CHECK(same(whole(s, m, be), serial));
    shuffled_hook h{3, 11};
    be.parallel = h.hook();
    CHECK(same(whole(s, m, be), serial));
  }
  const sequence sm(70, 4, 4, 16, 8);
  const std::vector<float> serial = stream(sm, 8, 2, 3, sm.L, Backend{});
  for (index_t chunk : {index_t(1), index_t(5), sm.L}) {
    Backend be;
    be.parallel = pool.hook();
    CHECK(same(stream(sm, 8, 2, 3, chunk, be), serial));
    shuffled_hook h{2, 5};
    be.parallel = h.hook();
    CHECK(same(stream(sm, 8, 2, 3, chunk, be), serial));
  }
}

}  // namespace

TEST_SUITE("threads") {
  TEST_CASE("thread_pool runs every item exactly once for any count") {
    for (int threads : {1, 2, 4, 8}) {
      fam::thread_pool pool(threads);
      CHECK(pool.threads() == threads);
      const fam::parallel_hook hook = pool.hook();
      for (index_t n : {index_t(0), index_t(1), index_t(2), index_t(7), index_t(1000)}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        for (auto& h : hits) h = 0;
        hook.run(
            hook.context, n,
            [](void* arg, index_t i) {
              (*static_cast<std::vector<std::atomic<int>>*>(arg))[std::size_t(i)].fetch_add(1);
            },
            &hits);
        bool once = true;
        for (auto& h : hits) once = once && h.load() == 1;
        CHECK(once);
      }
    }
  }

  TEST_CASE("thread_pool serves runs from several threads at once") {
    fam::thread_pool pool(3);
    const fam::parallel_hook hook = pool.hook();
    constexpr int kCallers = 4, kRuns = 50;
    std::vector<std::int64_t> sums(kCallers, 0);
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c)
      callers.emplace_back([&, c] {
        for (int r = 0; r < kRuns; ++r) {
          std::vector<std::int64_t> part(64, 0);  // one slot per item: no sharing
          hook.run(
              hook.context, 64,
              [](void* arg, index_t i) {
                (*static_cast<std::vector<std::int64_t>*>(arg))[std::size_t(i)] = i;
              },
              &part);
          for (std::int64_t x : part) sums[std::size_t(c)] += x;
        }
      });
    for (std::thread& t : callers) t.join();
    for (std::int64_t s : sums) CHECK(s == std::int64_t(kRuns) * (63 * 64 / 2));
  }

  TEST_CASE("thread_pools made and destroyed idle and after work") {
    for (int round = 0; round < 20; ++round) {
      fam::thread_pool idle(1 + round % 5);
      fam::thread_pool busy(1 + round % 3);
      std::atomic<index_t> total{0};
      const fam::parallel_hook hook = busy.hook();
      hook.run(
          hook.context, 33,
          [](void* arg, index_t i) { static_cast<std::atomic<index_t>*>(arg)->fetch_add(i); },
          &total);
      CHECK(total.load() == 32 * 33 / 2);
    }
  }

  TEST_CASE("the reference backend with a pool or shuffled threads gives the serial bits") {
    backend_with_threads<fam::reference_backend>("reference");
  }

#if defined(FAM_THREADS_SIMD)
  TEST_CASE("the SIMD backend with a pool or shuffled threads gives the serial bits") {
    backend_with_threads<fam::simd_backend<>>("simd");
  }

  TEST_CASE("tile counters add up from every worker") {
    const sequence s(300, 4, 2, 8, 21);
    fam::attention_stats serial_stats, threaded_stats;
    fam::simd_backend<> be;
    be.stats = &serial_stats;
    (void)whole(s, fam::mask_spec::bswa(64, 1), be);
    fam::thread_pool pool(4);
    be.stats = &threaded_stats;
    be.parallel = pool.hook();
    (void)whole(s, fam::mask_spec::bswa(64, 1), be);
    CHECK(threaded_stats.key_tiles.load() == serial_stats.key_tiles.load());
    CHECK(threaded_stats.masked_tiles.load() == serial_stats.masked_tiles.load());
    CHECK(threaded_stats.packed_tiles.load() == serial_stats.packed_tiles.load());
  }
#endif

  TEST_CASE("sequences streamed from their own threads through one shared pool") {
    // each thread owns its state; the pool is shared (its runs are serialized)
    fam::thread_pool pool(2);
    constexpr int kSeqs = 4;
    std::vector<sequence> seqs;
    for (int i = 0; i < kSeqs; ++i) seqs.emplace_back(45 + 7 * i, 2, 2, 8, 100 + std::uint64_t(i));
    std::vector<std::vector<float>> serial, threaded(kSeqs);
    for (const sequence& s : seqs)
      serial.push_back(stream(s, 6, 1, 2, 4, fam::reference_backend{}));
    std::vector<std::thread> ts;
    for (int i = 0; i < kSeqs; ++i)
      ts.emplace_back([&, i] {
        fam::reference_backend be;
        be.parallel = pool.hook();
        // no doctest macros off the main thread: stream() REQUIREs, so call the API directly
        const sequence& s = seqs[std::size_t(i)];
        cfg_t c(s.D, 6, 1, 2);
        c.set_heads(s.H, s.Hkv);
        fam::layer_state<cfg_t> st;
        if (st.init(c) != status::ok) return;
        const std::vector<float> phi = values(std::size_t(2 * s.H * s.D), 99);
        const auto pv = fam::make_view(phi.data(), 2, s.H, s.D);
        if (fam::begin_fam(st, pv, pv, pv) != status::ok) return;
        std::vector<float> out(std::size_t(s.L * s.H * s.D));
        for (index_t done = 0, n = 0; done < s.L; done += n) {
          const index_t cnt = std::min<index_t>(4, s.L - done);
          if (fam::attend(st, fam::make_view(s.q.data(), s.L, s.H, s.D).rows_from(done, cnt),
                          fam::make_view(s.k.data(), s.L, s.Hkv, s.D).rows_from(done, cnt),
                          fam::make_view(s.v.data(), s.L, s.Hkv, s.D).rows_from(done, cnt),
                          fam::make_view(out.data(), s.L, s.H, s.D).rows_from(done, cnt), {}, &n,
                          be) != status::ok)
            return;
          if (st.phase() == fam::fam_phase::pending) {
            const auto uf = st.fam_output();
            if (fam::update_fam(st, uf, uf, uf) != status::ok) return;
          }
        }
        const auto uf = st.fam_output();
        out.insert(out.end(), uf.data, uf.data + 2 * s.H * s.D);
        threaded[std::size_t(i)] = out;
      });
    for (std::thread& t : ts) t.join();
    for (int i = 0; i < kSeqs; ++i) CHECK(same(threaded[std::size_t(i)], serial[std::size_t(i)]));
  }

  TEST_CASE("attend_batch with a pool equals the members run alone") {
    const index_t B = 5, M = 1, F = 2, H = 2, D = 8;
    cfg_t c(D, B, M, F);
    c.set_heads(H, H);
    constexpr int N = 5;
    std::vector<sequence> seqs;
    for (int i = 0; i < N; ++i) seqs.emplace_back(B + i, H, H, D, 300 + std::uint64_t(i));
    const std::vector<float> phi = values(std::size_t(F * H * D), 1);
    const auto pv = fam::make_view(phi.data(), F, H, D);
    fam::layer_state<cfg_t> batch[N], alone[N];
    std::vector<std::vector<float>> out_b(N), out_a(N);
    std::vector<fam::sequence_step<cfg_t>> steps;
    for (int i = 0; i < N; ++i) {
      const sequence& s = seqs[std::size_t(i)];
      REQUIRE(batch[i].init(c) == status::ok);
      REQUIRE(alone[i].init(c) == status::ok);
      REQUIRE(fam::begin_fam(batch[i], pv, pv, pv) == status::ok);
      REQUIRE(fam::begin_fam(alone[i], pv, pv, pv) == status::ok);
      out_b[std::size_t(i)].assign(std::size_t(s.L * H * D), 0.0f);
      out_a[std::size_t(i)].assign(std::size_t(s.L * H * D), 0.0f);
      steps.push_back({&batch[i],
                       fam::make_view<const float>(s.q.data(), s.L, H, D),
                       fam::make_view<const float>(s.k.data(), s.L, H, D),
                       fam::make_view<const float>(s.v.data(), s.L, H, D),
                       fam::make_view(out_b[std::size_t(i)].data(), s.L, H, D),
                       {},
                       0});
    }
    fam::thread_pool pool(3);
    fam::reference_backend be;
    be.parallel = pool.hook();
    REQUIRE(fam::attend_batch(steps.data(), N, be) == status::ok);
    for (int i = 0; i < N; ++i) {
      const sequence& s = seqs[std::size_t(i)];
      index_t n = 0;
      REQUIRE(fam::attend(
                  alone[i], fam::make_view(s.q.data(), s.L, H, D),
                  fam::make_view(s.k.data(), s.L, H, D), fam::make_view(s.v.data(), s.L, H, D),
                  fam::make_view(out_a[std::size_t(i)].data(), s.L, H, D), {}, &n) == status::ok);
      CHECK(n == steps[std::size_t(i)].consumed);
      CHECK(same(out_a[std::size_t(i)], out_b[std::size_t(i)]));
    }
  }

  TEST_CASE("one state read from many threads at once") {
    const index_t B = 4, D = 8, H = 2;
    cfg_t c(D, B, 2, 2);
    c.set_heads(H, H);
    c.phi_dim = 3;
    fam::layer_state<cfg_t> src;
    REQUIRE(src.init(c) == status::ok);
    const std::vector<float> fam_rows = values(std::size_t(2 * H * D), 4), ph = values(6, 5);
    const auto fv = fam::make_view(fam_rows.data(), 2, H, D);
    REQUIRE(fam::begin_fam(src, fv, fv, fv, fam::make_view(ph.data(), 2, 1, 3)) == status::ok);
    const sequence s(B + 3, H, H, D, 6);
    std::vector<float> out(std::size_t(s.L * H * D));
    index_t n = 0;
    REQUIRE(fam::attend(src, fam::make_view(s.q.data(), s.L, H, D),
                        fam::make_view(s.k.data(), s.L, H, D),
                        fam::make_view(s.v.data(), s.L, H, D),
                        fam::make_view(out.data(), s.L, H, D), {}, &n) == status::ok);
    std::vector<unsigned char> ref(fam::serialized_size(src));
    REQUIRE(fam::save_state(src, ref.data(), ref.size()) == status::ok);
    constexpr int kThreads = 6;
    std::vector<std::vector<unsigned char>> blobs(kThreads), copies(kThreads);
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
      ts.emplace_back([&, t] {
        const fam::layer_state<cfg_t>& shared = src;
        std::vector<unsigned char>& b = blobs[std::size_t(t)];
        b.resize(fam::serialized_size(shared));
        if (fam::save_state(shared, b.data(), b.size()) != status::ok) b.clear();
        fam::layer_state<cfg_t> mine;
        if (mine.init(c) != status::ok || fam::copy_state(mine, shared) != status::ok) return;
        std::vector<unsigned char>& cb = copies[std::size_t(t)];
        cb.resize(fam::serialized_size(mine));
        if (fam::save_state(mine, cb.data(), cb.size()) != status::ok) cb.clear();
      });
    for (std::thread& t : ts) t.join();
    for (int t = 0; t < kThreads; ++t) {
      CHECK(blobs[std::size_t(t)] == ref);
      CHECK(copies[std::size_t(t)] == ref);
    }
  }
}
