// fam benchmarks: full, sliding window, BSWA and FAM side by side, prefill and decode, next to
// same-run references (register FMA and bf16 dot peaks, Eigen sgemm, a STREAM-like triad, a
// dense masked Eigen attention), so every figure prints as a fraction of its roofline.
//
//   prefill/<variant>/<dtype>/D../B../M../F../H../Hkv../T..   one block of B queries after M
//       blocks of history, through a streaming layer_state (K^T in place, the engine path);
//       full and swa through the whole-sequence call on (M+1)*B tokens
//   decode/<variant>/<dtype>/...   one token per layer over enough layers that the K/V read
//       per step is >= 256 MiB (cache-cold, as in an engine), bytes/s counted from visible rows;
//       FAM_BENCH_DECODE_MIB=n sets that size (1: one layer, read from cache: the compute bound)
//   ref/...                        the references
//
// Counters: useful GFLOP/s (4*D per visible query-key pair, fam::visible_pairs), tokens/s,
// bytes/s for decode, and pct_fma_peak / pct_triad: the same rate divided by this run's peak.
// Shapes can also be given at run time: FAM_BENCH_SHAPE="variant,dtype,D,B,M,F,H,Hkv,threads".
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "fam/backend/simd.hpp"
#include "fam/fam.hpp"
#include "fam/thread_pool.hpp"
#include "fam_bench_commit.h"  // FAM_BENCH_COMMIT, written at build time

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace {

using fam::index_t;
using config = fam::attention_config<>;

struct shape {
  std::string variant;  // full, swa, bswa, fam
  std::string dtype;    // fp32, bf16, bf16p (bf16 with P rounded to bf16)
  index_t D, B, M, F, H, Hkv;
  int threads;
  std::string name() const {
    std::ostringstream s;
    s << variant << "/" << dtype << "/D" << D << "_B" << B << "_M" << M << "_F" << F << "_H" << H
      << "_Hkv" << Hkv << "_T" << threads;
    return s.str();
  }
};

double g_fma_peak = 0.0;     // FLOP/s of one core, this run
double g_triad_bytes = 0.0;  // bytes/s of the triad, this run

// ---------------------------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------------------------

/// Register-only FMA loop: 12 independent accumulators, the ISA of the build flags.
double fma_flops_per_iteration(index_t reps) {
  using b = xsimd::batch<float>;
  b acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = b(0.001f * float(i));
  const b x(0.999f), y(0.0001f);
  for (index_t r = 0; r < reps; ++r)
    for (int i = 0; i < 12; ++i) acc[i] = xsimd::fma(acc[i], x, y);
  for (int i = 0; i < 12; ++i) benchmark::DoNotOptimize(acc[i]);
  return 2.0 * 12 * double(b::size) * double(reps);
}

void BM_fma_peak(benchmark::State& state) {
  const index_t reps = 1 << 16;
  double flops = 0;
  for (auto _ : state) flops = fma_flops_per_iteration(reps);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(xsimd::default_arch::name());
}

#if defined(__AVX512BF16__)
void BM_bf16_dot_peak(benchmark::State& state) {
  const index_t reps = 1 << 16;
  for (auto _ : state) {
    // distinct starting values: twelve identical chains were folded into one by g++, which then
    // timed one dependent chain and reported it as twelve (a "peak" of 4x the FMA's)
    __m512 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * float(i));
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), c = (__m512bh)_mm512_set1_epi16(0x3c00);
    for (index_t r = 0; r < reps; ++r)
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, c);
    for (int i = 0; i < 12; ++i) benchmark::DoNotOptimize(acc[i]);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 12 * 32 * double(reps) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("avx512_bf16 vdpbf16ps");
}
#endif

/// STREAM-like triad a = b + s*c over 3 x 128 MiB of doubles (bytes: 3 x 8 per element).
void BM_triad(benchmark::State& state) {
  const std::size_t n = (std::size_t(128) << 20) / sizeof(double);
  std::vector<double> a(n, 0.0), b(n, 1.0), c(n, 2.0);
  for (auto _ : state) {
    for (std::size_t i = 0; i < n; ++i) a[i] = b[i] + 3.0 * c[i];
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(3.0 * 8.0 * double(n) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Eigen sgemm of the BSWA score shape: [B, D] x [D, (M+1)B], 1 thread.
void BM_eigen_sgemm(benchmark::State& state) {
  const index_t B = state.range(0), D = state.range(1), N = 4 * B;
  Eigen::setNbThreads(1);
  row_matrix q = row_matrix::Random(B, D), k = row_matrix::Random(N, D), s(B, N);
  for (auto _ : state) {
    s.noalias() = q * k.transpose();
    benchmark::DoNotOptimize(s.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(B * D * N) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pct_fma_peak"] = benchmark::Counter(
      2.0 * double(B * D * N) / g_fma_peak, benchmark::Counter::kIsIterationInvariantRate);
}

/// The easy baseline: a dense masked attention with Eigen and preallocated buffers
/// (GEMM, masked softmax, GEMM) for one head of one BSWA block, times H heads.
void BM_dense_masked_eigen(benchmark::State& state) {
  const index_t B = state.range(0), D = state.range(1), M = 3, H = 8, N = (M + 1) * B;
  Eigen::setNbThreads(1);
  row_matrix q = row_matrix::Random(B, D), k = row_matrix::Random(N, D),
             v = row_matrix::Random(N, D);
  row_matrix s(B, N), o(B, D);
  const float scale = 1.0f / std::sqrt(float(D));
  for (auto _ : state) {
    for (index_t h = 0; h < H; ++h) {
      s.noalias() = (q * k.transpose()) * scale;
      for (index_t i = 0; i < B; ++i) {  // causal inside the last block
        auto row = s.row(i);
        for (index_t j = M * B + i + 1; j < N; ++j) row(j) = -INFINITY;
        const float mx = row.maxCoeff();
        row = (row.array() - mx).exp();
        row /= row.sum();
      }
      o.noalias() = s * v;
      benchmark::DoNotOptimize(o.data());
    }
  }
  const double useful = 4.0 * double(D) * double(H) * double(B * M * B + B * (B + 1) / 2);
  state.counters["GFLOP/s"] =
      benchmark::Counter(useful * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pct_fma_peak"] =
      benchmark::Counter(useful / g_fma_peak, benchmark::Counter::kIsIterationInvariantRate);
}

// ---------------------------------------------------------------------------------------------
// fam
// ---------------------------------------------------------------------------------------------

template <class T>
std::vector<T> random_values(std::size_t n, unsigned seed) {
  std::vector<T> v(n);
  unsigned s = seed;
  for (T& x : v) {
    s = s * 1664525u + 1013904223u;
    x = fam::from_float<T>(float(s >> 8) / float(1u << 24) - 0.5f);
  }
  return v;
}

config make_config(const shape& s) {
  config c(s.D, s.B, s.M, s.variant == "fam" ? s.F : 0);
  c.set_heads(s.H, s.Hkv);
  return c;
}

void set_counters(benchmark::State& state, double useful_flops, double tokens) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(useful_flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pct_fma_peak"] =
      benchmark::Counter(useful_flops / (g_fma_peak * double(state.threads())),
                         benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] =
      benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
}

/// Prefill: one block of B queries after M blocks of history, streamed (bswa, fam), or the
/// whole-sequence call over (M+1)*B tokens (full, swa: W = M*B).
template <class T>
void BM_prefill(benchmark::State& state, shape s) {
  const config cfg = make_config(s);
  fam::thread_pool pool(s.threads);
  fam::simd_backend<> be;
  be.round_probabilities_to_bf16 = s.dtype == "bf16p";  // the opt-in bf16 P V
  if (s.threads > 1) be.parallel = pool.hook();
  const index_t L = (s.M + 1) * s.B, F = cfg.fam_len();
  const std::vector<T> q = random_values<T>(L * s.H * s.D, 1),
                       k = random_values<T>(L * s.Hkv * s.D, 2),
                       v = random_values<T>(L * s.Hkv * s.D, 3);
  std::vector<float> out(L * s.H * s.D);
  const auto Q = fam::make_view(q.data(), L, s.H, s.D);
  const auto K = fam::make_view(k.data(), L, s.Hkv, s.D);
  const auto V = fam::make_view(v.data(), L, s.Hkv, s.D);
  const auto O = fam::make_view(out.data(), L, s.H, s.D);
  double flops = 0, tokens = 0;
  if (s.variant == "full" || s.variant == "swa") {
    const fam::mask_spec mask =
        s.variant == "full" ? fam::mask_spec::full() : fam::mask_spec::sliding_window(s.M * s.B);
    for (auto _ : state) {
      if (fam::attention(cfg, mask, Q, K, V, O, {}, be) != fam::status::ok)
        state.SkipWithError("attention");
      benchmark::DoNotOptimize(out.data());
      benchmark::ClobberMemory();
    }
    flops = 4.0 * double(s.D * s.H) * double(fam::visible_pairs(mask, L));
    tokens = double(L);
  } else {
    fam::layer_state<config, T> st;
    if (st.init(cfg) != fam::status::ok) return state.SkipWithError("init");
    const std::vector<T> fam_rows = random_values<T>(F * s.H * s.D, 4);
    const auto fq = fam::make_view(fam_rows.data(), F, s.H, s.D);
    const auto fkv = fam::make_view(fam_rows.data(), F, s.Hkv, s.D);
    if (F > 0 && fam::begin_fam(st, fq, fkv, fkv) != fam::status::ok)
      return state.SkipWithError("fam");
    index_t n = 0;
    auto block = [&](index_t first) {  // B tokens; the FAM update (if any) is part of the work
      if (fam::attend(st, Q.rows_from(first, s.B), K.rows_from(first, s.B), V.rows_from(first, s.B),
                      O.rows_from(first, s.B), {}, &n, be) != fam::status::ok)
        state.SkipWithError("attend");
      if (st.phase() == fam::fam_phase::pending) (void)fam::update_fam(st, fq, fkv, fkv);
    };
    for (index_t b = 0; b < s.M; ++b) block(b * s.B);  // history
    for (auto _ : state) {
      block(s.M * s.B);
      benchmark::DoNotOptimize(out.data());
      benchmark::ClobberMemory();
    }
    const double pairs = double(s.B) * double(s.M * s.B) + double(s.B * (s.B + 1) / 2);
    const double fam_pairs =
        double(s.B * F) + double(F) * double(F + s.B);  // tokens->FAM, FAM rows
    flops = 4.0 * double(s.D * s.H) * (pairs + fam_pairs);
    tokens = double(s.B);
  }
  set_counters(state, flops, tokens);
}

/// MiB of rings the decode benchmarks read per step (FAM_BENCH_DECODE_MIB, default 256).
std::size_t decode_mib() {
  const char* env = std::getenv("FAM_BENCH_DECODE_MIB");
  const long mib = env != nullptr ? std::atol(env) : 256;
  return mib > 0 ? std::size_t(mib) : 256;
}

/// Decode: one token for each of `layers` states whose rings together hold >= decode_mib().
template <class T>
void BM_decode(benchmark::State& state, shape s) {
  const config cfg = make_config(s);
  fam::simd_backend<> be;
  be.round_probabilities_to_bf16 = s.dtype == "bf16p";  // the opt-in bf16 P V
  fam::thread_pool pool(s.threads);
  if (s.threads > 1) be.parallel = pool.hook();
  const std::size_t ring_bytes = std::size_t(2 * s.Hkv * (s.M + 1) * s.B * s.D) * sizeof(T);
  const std::size_t layers = ((decode_mib() << 20) + ring_bytes - 1) / ring_bytes;
  const index_t F = cfg.fam_len(), L = (s.M + 1) * s.B;
  std::vector<fam::layer_state<config, T>> st(layers);
  const std::vector<T> x = random_values<T>(L * s.H * s.D, 5),
                       fam_rows = random_values<T>(F * s.H * s.D, 6);
  std::vector<float> out(s.H * s.D);
  const auto X = fam::make_view(x.data(), L, s.H, s.D);
  const auto KV = fam::make_view(x.data(), L, s.Hkv, s.D);
  const auto O = fam::make_view(out.data(), 1, s.H, s.D);
  const auto fq = fam::make_view(fam_rows.data(), F, s.H, s.D);
  const auto fkv = fam::make_view(fam_rows.data(), F, s.Hkv, s.D);
  auto step = [&](fam::layer_state<config, T>& layer) {
    const index_t i = layer.tokens() % L;
    index_t n = 0;
    if (fam::attend(layer, X.rows_from(i, 1), KV.rows_from(i, 1), KV.rows_from(i, 1), O, {}, &n,
                    be) != fam::status::ok)
      state.SkipWithError("attend");
    if (layer.phase() == fam::fam_phase::pending) (void)fam::update_fam(layer, fq, fkv, fkv);
  };
  // fill the first ring with a prefill, block by block, and copy it into the other layers
  // (each has its own memory; a prefill per layer would make the setup take minutes)
  std::vector<float> block_out(s.B * s.H * s.D);
  for (auto& layer : st)
    if (layer.init(cfg) != fam::status::ok) return state.SkipWithError("init");
  if (F > 0 && fam::begin_fam(st[0], fq, fkv, fkv) != fam::status::ok)
    return state.SkipWithError("fam");
  for (index_t t = 0; t < L; t += s.B) {
    index_t n = 0;
    if (fam::attend(st[0], X.rows_from(t, s.B), KV.rows_from(t, s.B), KV.rows_from(t, s.B),
                    fam::make_view(block_out.data(), s.B, s.H, s.D), {}, &n, be) != fam::status::ok)
      return state.SkipWithError("prefill");
    if (st[0].phase() == fam::fam_phase::pending) (void)fam::update_fam(st[0], fq, fkv, fkv);
  }
  std::vector<unsigned char> blob(fam::serialized_size(st[0]));
  if (fam::save_state(st[0], blob.data(), blob.size()) != fam::status::ok)
    return state.SkipWithError("save_state");
  for (std::size_t i = 1; i < layers; ++i)
    if (fam::restore_state(st[i], blob.data(), blob.size()) != fam::status::ok)
      return state.SkipWithError("restore_state");
  double bytes = 0, flops = 0, steps = 0;
  for (auto _ : state) {
    for (auto& layer : st) {
      const index_t n = layer.tokens();
      const index_t visible =
          std::min<index_t>(n % s.B + 1 + s.M * s.B, n + 1) + F;  // K/V rows read
      bytes += double(visible) * double(2 * s.Hkv * s.D) * double(sizeof(T));
      flops += 4.0 * double(s.D * s.H) * double(visible);
      step(layer);
    }
    steps += 1;
    benchmark::DoNotOptimize(out.data());
  }
  const double iters = double(state.iterations());
  state.counters["GB/s"] =
      benchmark::Counter(bytes / iters * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pct_triad"] = benchmark::Counter(bytes / iters / g_triad_bytes,
                                                   benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops / iters * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  // one iteration = one token through every layer
  state.counters["tokens/s"] =
      benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["layers"] = double(layers);
  (void)steps;
}

void register_shape(const shape& s, bool decode) {
  const std::string name = (decode ? "decode/" : "prefill/") + s.name();
  auto* b = s.dtype == "bf16" || s.dtype == "bf16p"
                ? (decode ? benchmark::RegisterBenchmark(name.c_str(), BM_decode<fam::bf16>, s)
                          : benchmark::RegisterBenchmark(name.c_str(), BM_prefill<fam::bf16>, s))
                : (decode ? benchmark::RegisterBenchmark(name.c_str(), BM_decode<float>, s)
                          : benchmark::RegisterBenchmark(name.c_str(), BM_prefill<float>, s));
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

/// The grid of the issue; FAM_BENCH_GRID=full registers every combination, the default a
/// headline subset (D=128, B=1024, M=3, H=8) plus the variants side by side.
void register_grid() {
  const char* env = std::getenv("FAM_BENCH_GRID");
  const bool full = env != nullptr && std::string(env) == "full";
  const std::vector<index_t> Ds = full ? std::vector<index_t>{64, 128} : std::vector<index_t>{128};
  const std::vector<index_t> Bs =
      full ? std::vector<index_t>{128, 256, 1024} : std::vector<index_t>{1024};
  const std::vector<index_t> Ms = full ? std::vector<index_t>{1, 3} : std::vector<index_t>{3};
  const std::vector<std::pair<index_t, index_t>> heads = {{8, 8}, {8, 2}};
  for (const std::string dtype : {"fp32", "bf16"})
    for (index_t D : Ds)
      for (index_t B : Bs)
        for (index_t M : Ms)
          for (auto [H, Hkv] : heads)
            for (int T : {1, 2}) {
              for (const std::string v : {"full", "swa", "bswa"})
                register_shape({v, dtype, D, B, M, 0, H, Hkv, T}, false);
              for (index_t F : {16, 64})
                register_shape({"fam", dtype, D, B, M, F, H, Hkv, T}, false);
              register_shape({"bswa", dtype, D, B, M, 0, H, Hkv, T}, true);
              register_shape({"fam", dtype, D, B, M, 64, H, Hkv, T}, true);
              // bf16 with the opt-in rounding of P to bf16 (simd_backend's
              // round_probabilities_to_bf16): P V on vdpbf16ps too
              if (dtype == "bf16") {
                register_shape({"bswa", "bf16p", D, B, M, 0, H, Hkv, T}, false);
                register_shape({"fam", "bf16p", D, B, M, 64, H, Hkv, T}, false);
                register_shape({"bswa", "bf16p", D, B, M, 0, H, Hkv, T}, true);
              }
            }
}

/// FAM_BENCH_SHAPE="variant,dtype,D,B,M,F,H,Hkv,threads" adds one shape without rebuilding.
void register_env_shape() {
  const char* env = std::getenv("FAM_BENCH_SHAPE");
  if (env == nullptr) return;
  std::stringstream in(env);
  std::string part;
  std::vector<std::string> p;
  while (std::getline(in, part, ',')) p.push_back(part);
  if (p.size() != 9) {
    std::fprintf(stderr, "FAM_BENCH_SHAPE: want variant,dtype,D,B,M,F,H,Hkv,threads\n");
    std::exit(2);
  }
  const shape s{p[0],
                p[1],
                std::atoll(p[2].c_str()),
                std::atoll(p[3].c_str()),
                std::atoll(p[4].c_str()),
                std::atoll(p[5].c_str()),
                std::atoll(p[6].c_str()),
                std::atoll(p[7].c_str()),
                std::atoi(p[8].c_str())};
  register_shape(s, false);
  register_shape(s, true);
}

/// One quick same-run measurement of the peaks, for the pct_* counters.
void measure_peaks() {
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const double f = fma_flops_per_iteration(1 << 20);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, f / s);
  }
  g_fma_peak = best;
  const std::size_t n = (std::size_t(128) << 20) / sizeof(double);
  std::vector<double> a(n, 0.0), b(n, 1.0), c(n, 2.0);
  double best_bw = 0;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t j = 0; j < n; ++j) a[j] = b[j] + 3.0 * c[j];
    benchmark::DoNotOptimize(a.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best_bw = std::max(best_bw, 24.0 * double(n) / s);
  }
  g_triad_bytes = best_bw;
}

}  // namespace

int main(int argc, char** argv) {
  measure_peaks();
  benchmark::AddCustomContext("fam_commit", FAM_BENCH_COMMIT);
  benchmark::AddCustomContext("fam_flags", FAM_BENCH_FLAGS);
  benchmark::AddCustomContext("fam_isa", xsimd::default_arch::name());
  benchmark::AddCustomContext("fam_fma_peak_gflops", std::to_string(g_fma_peak * 1e-9));
  benchmark::AddCustomContext("fam_triad_gbps", std::to_string(g_triad_bytes * 1e-9));
  benchmark::RegisterBenchmark("ref/fma_peak", BM_fma_peak);
#if defined(__AVX512BF16__)
  benchmark::RegisterBenchmark("ref/bf16_dot_peak", BM_bf16_dot_peak);
#endif
  benchmark::RegisterBenchmark("ref/triad_3x128MiB", BM_triad)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("ref/eigen_sgemm_BxDx4B", BM_eigen_sgemm)
      ->Args({1024, 128})
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("ref/dense_masked_eigen_bswa", BM_dense_masked_eigen)
      ->Args({1024, 128})
      ->Unit(benchmark::kMillisecond);
  register_grid();
  register_env_shape();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
