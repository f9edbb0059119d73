// A short benchmark of the CUDA adapter (scripts/gpu-check runs it): prefill of full causal,
// sliding-window, BSWA and FAM, and BSWA decode, with TFLOP/s, GB/s and % of the GPU's dense
// bf16 tensor-core peak. FLOPs count the visible query-key pairs only (4·D per pair: Q·K and
// P·V), so a masked variant is not credited with work it skips. GB/s counts the bytes a call
// must move at least (Q, K, V read once, O written once; for decode the visible K/V rows).
// --csv FILE writes the shapes and times for tests/cuda/bench_sdpa.py to compare with PyTorch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fam/cuda/fam_cuda.cuh"

namespace {

namespace fc = fam::cuda;
using fam::index_t;
using cfg_t = fam::dynamic_config;

#define CUDA_OK(call)                                                                    \
  do {                                                                                   \
    const cudaError_t e_ = (call);                                                       \
    if (e_ != cudaSuccess) {                                                             \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorName(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)
#define FAM_OK(expr)                                                         \
  do {                                                                       \
    const fam::status s_ = (expr);                                           \
    if (s_ != fam::status::ok) {                                             \
      std::printf("fam error '%s' (cuda %s) at %s:%d\n", fam::to_string(s_), \
                  cudaGetErrorName(fc::last_error()), __FILE__, __LINE__);   \
      std::exit(1);                                                          \
    }                                                                        \
  } while (0)

struct gpu_peak {
  double tflops = 0.0;  // dense bf16, fp32 accumulation
  const char* source = "";
  double gbps = 0.0;
};

gpu_peak peak_of(const cudaDeviceProp& prop, int dev) {
  gpu_peak p;
  int clock_khz = 0, mem_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev);
  cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, dev);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev);
  p.gbps = 2.0 * mem_khz * 1e3 * bus_bits / 8.0 / 1e9;
  const std::string name = prop.name;
  if (const char* env = std::getenv("FAM_PEAK_TFLOPS")) {
    p.tflops = std::atof(env);
    p.source = "FAM_PEAK_TFLOPS";
    return p;
  }
  struct known {
    const char* key;
    double tflops;
  };
  // Datasheet dense bf16 (no sparsity) of common data-center parts.
  const known table[] = {{"H100 PCIe", 756.0}, {"H100 NVL", 835.0}, {"H200", 989.4},
                         {"H100", 989.4},      {"H800", 989.4},     {"GH200", 989.4},
                         {"A100", 312.0},      {"A800", 312.0},     {"L40S", 362.0},
                         {"B200", 2250.0}};
  for (const known& k : table)
    if (name.find(k.key) != std::string::npos) {
      p.tflops = k.tflops;
      p.source = "datasheet";
      return p;
    }
  // Otherwise: SMs x clock x dense bf16 FLOP per clock per SM of the architecture.
  const double per_sm = prop.major >= 10                       ? 8192
                        : prop.major == 9                      ? 4096
                        : (prop.major == 8 && prop.minor == 0) ? 2048
                                                               : 1024;
  p.tflops = prop.multiProcessorCount * (clock_khz * 1e3) * per_sm / 1e12;
  p.source = "estimated from SMs x clock";
  return p;
}

template <class T>
struct dbuf {
  T* p = nullptr;
  std::size_t n = 0;
  explicit dbuf(std::size_t count) : n(count) {
    CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), (n > 0 ? n : 1) * sizeof(T)));
  }
  dbuf(const dbuf&) = delete;
  dbuf& operator=(const dbuf&) = delete;
  ~dbuf() { cudaFree(p); }
};

template <class T>
void fill_random(dbuf<T>& b, unsigned seed) {
  std::vector<T> h(b.n);
  unsigned x = seed * 2654435761u + 1u;
  for (auto& e : h) {
    x = x * 1664525u + 1013904223u;
    e = fam::from_float<T>(static_cast<float>(x >> 8) / 16777216.0f * 2.0f - 1.0f);
  }
  CUDA_OK(cudaMemcpy(b.p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
}

/// Median time in ms of fn() over repetitions (at least 3, about 0.25 s in all).
template <class Fn>
double time_ms(Fn&& fn) {
  cudaEvent_t a, b;
  CUDA_OK(cudaEventCreate(&a));
  CUDA_OK(cudaEventCreate(&b));
  fn();  // warm up
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<double> times;
  double total = 0.0;
  while (times.size() < 3 || (total < 250.0 && times.size() < 50)) {
    CUDA_OK(cudaEventRecord(a));
    fn();
    CUDA_OK(cudaEventRecord(b));
    CUDA_OK(cudaEventSynchronize(b));
    float ms = 0.0f;
    CUDA_OK(cudaEventElapsedTime(&ms, a, b));
    times.push_back(ms);
    total += ms;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct bench_row {
  std::string name, variant;
  index_t L, H, Hkv, D, window, block, memory, fam;
  double ms, flops, bytes;
};

std::vector<bench_row> g_rows;
gpu_peak g_peak;

void print_row(const bench_row& r) {
  const double tflops = r.flops / (r.ms * 1e-3) / 1e12;
  const double gbps = r.bytes / (r.ms * 1e-3) / 1e9;
  std::printf("%-44s %9.3f %9.1f %7.1f%% %9.0f\n", r.name.c_str(), r.ms, tflops,
              100.0 * tflops / g_peak.tflops, gbps);
  g_rows.push_back(r);
}

/// Useful FLOPs of token rows under a mask (4·D per visible pair, every query head).
double mask_flops(const fam::mask_spec& m, index_t L, index_t H, index_t D) {
  return 4.0 * D * H * static_cast<double>(fam::visible_pairs(m, L));
}

template <class T>
void prefill(const char* label, const fam::mask_spec& mask, index_t L, index_t H, index_t Hkv,
             index_t D, fc::kernel_kind kernel) {
  cfg_t cfg(D, 1, 0, 0);
  cfg.set_heads(H, Hkv);
  dbuf<T> q(L * H * D), k(L * Hkv * D), v(L * Hkv * D);
  dbuf<float> out(L * H * D);
  fill_random(q, 1);
  fill_random(k, 2);
  fill_random(v, 3);
  fc::attention_arguments<T> a;
  a.cfg = cfg;
  a.mask = mask;
  a.q = fam::make_view<const T>(q.p, L, H, D);
  a.k = fam::make_view<const T>(k.p, L, Hkv, D);
  a.v = fam::make_view<const T>(v.p, L, Hkv, D);
  a.out = fam::make_view(out.p, L, H, D);
  a.options.kernel = kernel;
  FAM_OK(fc::can_implement(a));
  const double ms = time_ms([&] { FAM_OK(fc::run(a)); });
  const double bytes = static_cast<double>(sizeof(T)) * L * (H + 2 * Hkv) * D + 4.0 * L * H * D;
  print_row({label,
             mask.kind == fam::variant::full_causal      ? "full"
             : mask.kind == fam::variant::sliding_window ? "swa"
                                                         : "bswa",
             L, H, Hkv, D, mask.window, mask.block, mask.memory, 0, ms, mask_flops(mask, L, H, D),
             bytes});
}

/// FAM prefill through the device state: L tokens in one attend per block, update_fam with
/// fixed projections after each block (the engine's FFN is not timed).
template <class T>
void fam_prefill(const char* label, index_t L, index_t B, index_t M, index_t F, index_t H,
                 index_t Hkv, index_t D) {
  cfg_t cfg(D, B, M, F);
  cfg.set_heads(H, Hkv);
  dbuf<T> q(L * H * D), k(L * Hkv * D), v(L * Hkv * D), qf(F * H * D), kf(F * Hkv * D);
  dbuf<float> out(L * H * D);
  fill_random(q, 4);
  fill_random(k, 5);
  fill_random(v, 6);
  fill_random(qf, 7);
  fill_random(kf, 8);
  dbuf<unsigned char> storage(fc::device_state<cfg_t, T>::storage_bytes(cfg));
  fc::device_state<cfg_t, T> st;
  FAM_OK(st.init(cfg, storage.p, storage.n));
  const auto vq = fam::make_view<const T>(qf.p, F, H, D);
  const auto vk = fam::make_view<const T>(kf.p, F, Hkv, D);
  const double ms = time_ms([&] {
    FAM_OK(fc::reset(st));
    FAM_OK(fc::begin_fam(st, vq, vk, vk));
    for (index_t done = 0; done < L;) {
      index_t used = 0;
      FAM_OK(fc::attend(st, fam::make_view<const T>(q.p, L, H, D).rows_from(done, L - done),
                        fam::make_view<const T>(k.p, L, Hkv, D).rows_from(done, L - done),
                        fam::make_view<const T>(v.p, L, Hkv, D).rows_from(done, L - done),
                        fam::make_view(out.p, L, H, D).rows_from(done, L - done), {}, &used));
      done += used;
      if (st.phase() == fam::fam_phase::pending) FAM_OK(fc::update_fam(st, vq, vk, vk));
    }
  });
  const index_t blocks = (L + B - 1) / B, full_blocks = L / B;
  const double flops = mask_flops(fam::mask_spec::bswa(B, M), L, H, D) +
                       4.0 * D * H *
                           (static_cast<double>(L) * F +                      // tokens -> FAM
                            static_cast<double>(full_blocks) * F * (F + B));  // FAM rows
  const double bytes = static_cast<double>(sizeof(T)) * L * (H + 2 * Hkv) * D + 4.0 * L * H * D +
                       static_cast<double>(blocks) * F * (H + 2 * Hkv) * D * sizeof(T);
  print_row({label, "fam", L, H, Hkv, D, 0, B, M, F, ms, flops, bytes});
}

/// BSWA decode: the ring full (M blocks plus half a block), then one token per call.
template <class T>
void decode(const char* label, index_t B, index_t M, index_t H, index_t Hkv, index_t D,
            bool workspace) {
  cfg_t cfg(D, B, M, 0);
  cfg.set_heads(H, Hkv);
  const index_t prefix = M * B + B / 2, steps = 32, L = prefix + steps;
  dbuf<T> q(L * H * D), k(L * Hkv * D), v(L * Hkv * D);
  dbuf<float> out(L * H * D);
  fill_random(q, 9);
  fill_random(k, 10);
  fill_random(v, 11);
  dbuf<unsigned char> storage(fc::device_state<cfg_t, T>::storage_bytes(cfg));
  const std::size_t ws_bytes = workspace ? fc::workspace_size(cfg) : 0;
  dbuf<unsigned char> ws(ws_bytes);
  fc::context ctx;
  ctx.workspace = workspace ? ws.p : nullptr;
  ctx.workspace_bytes = ws_bytes;
  fc::device_state<cfg_t, T> st, base;
  dbuf<unsigned char> base_storage(storage.n);
  FAM_OK(base.init(cfg, base_storage.p, base_storage.n));
  FAM_OK(fc::attend(base, fam::make_view<const T>(q.p, L, H, D).rows_from(0, prefix),
                    fam::make_view<const T>(k.p, L, Hkv, D).rows_from(0, prefix),
                    fam::make_view<const T>(v.p, L, Hkv, D).rows_from(0, prefix),
                    fam::make_view(out.p, L, H, D).rows_from(0, prefix)));
  FAM_OK(st.init(cfg, storage.p, storage.n));
  const double ms = time_ms([&] {
    FAM_OK(fc::copy_state(st, base));
    for (index_t i = prefix; i < L; ++i)
      FAM_OK(fc::attend(st, fam::make_view<const T>(q.p, L, H, D).rows_from(i, 1),
                        fam::make_view<const T>(k.p, L, Hkv, D).rows_from(i, 1),
                        fam::make_view<const T>(v.p, L, Hkv, D).rows_from(i, 1),
                        fam::make_view(out.p, L, H, D).rows_from(i, 1), {}, nullptr, ctx));
  });
  const double keys = static_cast<double>(M) * B + B / 2 + steps / 2.0;  // per step, mean
  const double per_step_ms = ms / steps;
  const double flops = 4.0 * D * H * keys;
  const double bytes = keys * Hkv * D * 2.0 * sizeof(T) + H * D * (sizeof(T) + 4.0);
  print_row({label, "decode", 1, H, Hkv, D, 0, B, M, 0, per_step_ms, flops, bytes});
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv = nullptr;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
      csv = argv[++i];
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::printf("usage: %s [--csv FILE] [--quick]\n", argv[0]);
      return 2;
    }
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("no CUDA device: benchmark skipped\n");
    return 77;
  }
  int dev = 0;
  CUDA_OK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, dev));
  g_peak = peak_of(prop, dev);
  std::printf(
      "fam CUDA benchmark: %s (sm_%d%d, %d SMs), dense bf16 peak %.0f TFLOP/s (%s), "
      "memory %.0f GB/s\n",
      prop.name, prop.major, prop.minor, prop.multiProcessorCount, g_peak.tflops, g_peak.source,
      g_peak.gbps);
  std::printf("%-44s %9s %9s %8s %9s\n", "case (bf16 unless said; H=32 Hkv=8 D=128)", "ms",
              "TFLOP/s", "%peak", "GB/s");
  const index_t L = quick ? 4096 : 8192, H = 32, Hkv = 8, D = 128;
  using bf = fam::bf16;
  const auto mma = fc::kernel_kind::automatic;
  prefill<bf>("prefill full causal", fam::mask_spec::full(), L, H, Hkv, D, mma);
  prefill<bf>("prefill sliding window W=4096", fam::mask_spec::sliding_window(4096), L, H, Hkv, D,
              mma);
  prefill<bf>("prefill BSWA B=1024 M=3", fam::mask_spec::bswa(1024, 3), L, H, Hkv, D, mma);
  prefill<fam::fp16>("prefill BSWA B=1024 M=3 fp16", fam::mask_spec::bswa(1024, 3), L, H, Hkv, D,
                     mma);
  prefill<bf>("prefill BSWA B=1024 M=3 simple kernel", fam::mask_spec::bswa(1024, 3), L, H, Hkv, D,
              fc::kernel_kind::simple);
  prefill<float>("prefill BSWA B=1024 M=3 fp32 (simple)", fam::mask_spec::bswa(1024, 3), L, H, Hkv,
                 D, mma);
  fam_prefill<bf>("prefill FAM B=1024 M=3 F=64 (state)", L, 1024, 3, 64, H, Hkv, D);
  decode<bf>("decode BSWA B=1024 M=3, per token", 1024, 3, H, Hkv, D, true);
  decode<bf>("decode BSWA B=1024 M=3, no key splits", 1024, 3, H, Hkv, D, false);
  if (csv != nullptr) {
    if (std::FILE* f = std::fopen(csv, "w")) {
      std::fprintf(f, "name,variant,L,H,Hkv,D,window,block,memory,fam,ms,flops,bytes\n");
      for (const bench_row& r : g_rows)
        std::fprintf(f, "%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%.6f,%.6g,%.6g\n",
                     r.name.c_str(), r.variant.c_str(), static_cast<long long>(r.L),
                     static_cast<long long>(r.H), static_cast<long long>(r.Hkv),
                     static_cast<long long>(r.D), static_cast<long long>(r.window),
                     static_cast<long long>(r.block), static_cast<long long>(r.memory),
                     static_cast<long long>(r.fam), r.ms, r.flops, r.bytes);
      std::fclose(f);
    }
  }
  return 0;
}
