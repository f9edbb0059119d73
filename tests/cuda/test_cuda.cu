// Tests of the CUDA adapter against fam's CPU reference backend (fam::attention,
// fam::fam_attention, fam::layer_state), on a GPU or on the CPU emulator (test_cuda_emulated.cpp
// includes this file after tests/cuda/emulator/cuda_emulator.hpp).
//
//   fam_cuda_tests              every GPU test (exit 77 = skipped when there is no GPU)
//   fam_cuda_tests --smoke      a few small cases of each kernel and type, a minute at most
//   fam_cuda_tests --validation argument checks only; needs no GPU (and runs without one)
//   --seed N, --trials N        random shapes
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "fam/cuda/fam_cuda.cuh"
#include "fam/fam.hpp"

namespace {

namespace fc = fam::cuda;
using fam::index_t;
using cfg_t = fam::dynamic_config;

int g_failures = 0, g_checks = 0;

// On the CPU emulator every CUDA thread is a fiber: the same cases, smaller.
#if defined(FAM_CUDA_EMULATION)
constexpr index_t kScale = 4;
#else
constexpr index_t kScale = 1;
#endif

#define CHECK(cond)                                                 \
  do {                                                              \
    ++g_checks;                                                     \
    if (!(cond)) {                                                  \
      ++g_failures;                                                 \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                               \
  } while (0)
#define CHECK_STATUS(expr, want)                                                                   \
  do {                                                                                             \
    ++g_checks;                                                                                    \
    const fam::status got_ = (expr);                                                               \
    if (got_ != (want)) {                                                                          \
      ++g_failures;                                                                                \
      std::printf("FAILED %s:%d: %s -> %s, want %s (cuda: %s)\n", __FILE__, __LINE__, #expr,       \
                  fam::to_string(got_), fam::to_string(want), cudaGetErrorName(fc::last_error())); \
    }                                                                                              \
  } while (0)
#define CUDA_OK(call)                                                                    \
  do {                                                                                   \
    const cudaError_t e_ = (call);                                                       \
    if (e_ != cudaSuccess) {                                                             \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorName(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, float>) return "fp32";
  if constexpr (std::is_same_v<T, fam::bf16>) return "bf16";
  if constexpr (std::is_same_v<T, fam::fp16>) return "fp16";
}

const char* kernel_name(fc::kernel_kind k) {
  return k == fc::kernel_kind::simple        ? "simple"
         : k == fc::kernel_kind::tensor_core ? "mma"
                                             : "auto";
}

/// Device memory for n elements of T.
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
  void upload(const std::vector<T>& h) {
    CUDA_OK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    CUDA_OK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void fill(unsigned char byte) { CUDA_OK(cudaMemset(p, byte, n * sizeof(T))); }
};

/// A host tensor [rows, heads, D] with a random layout (padding, token- or head-major), whose
/// strides stay multiples of 8 elements (so that the tensor-core kernel can read it) unless
/// `odd` asks otherwise.
template <class T>
struct host_tensor {
  std::vector<T> data;
  index_t rows = 0, heads = 0, dim = 0, row_stride = 0, head_stride = 0;

  host_tensor(index_t r, index_t h, index_t d, std::mt19937& rng, bool odd = false,
              float lo = -1.0f, float hi = 1.0f)
      : rows(r), heads(h), dim(d) {
    std::uniform_int_distribution<int> pad(0, 2), major(0, 3);
    const index_t unit = odd ? 1 : 8;
    const index_t dpad = ((d + unit - 1) / unit) * unit + unit * pad(rng);
    if (major(rng) == 0) {  // head-major
      row_stride = dpad;
      head_stride = std::max<index_t>(r, 1) * dpad + unit * pad(rng);
    } else {
      head_stride = dpad;
      row_stride = h * dpad + unit * pad(rng);
    }
    const index_t total = std::max<index_t>(r, 1) * row_stride + h * head_stride + d + 8;
    data.resize(static_cast<std::size_t>(total), fam::from_float<T>(777.0f));  // poison padding
    std::uniform_real_distribution<float> u(lo, hi);
    for (index_t i = 0; i < r; ++i)
      for (index_t j = 0; j < h; ++j)
        for (index_t k = 0; k < d; ++k)
          data[i * row_stride + j * head_stride + k] = fam::from_float<T>(u(rng));
  }
  fam::tensor_view<const T> view() const {
    return {data.data(), rows, heads, dim, row_stride, head_stride};
  }
  fam::tensor_view<const T> view_on(const T* dev) const {
    return {dev, rows, heads, dim, row_stride, head_stride};
  }
  float at(index_t r, index_t h, index_t d) const {
    return fam::to_float(data[r * row_stride + h * head_stride + d]);
  }
};

/// Max |a - b| over [rows, heads, D] of two contiguous fp32 outputs; NaN counts as infinite.
double max_err(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0.0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!(d <= e)) e = std::isnan(d) ? INFINITY : d;
  }
  return a.size() == b.size() ? e : INFINITY;
}

template <class T>
double tolerance(bool tensor_cores) {
  if (!tensor_cores) return std::is_same_v<T, float> ? 3e-5 : 5e-5;
  return std::is_same_v<T, fam::bf16> ? 2e-2 : 4e-3;  // P is rounded to T before P V
}

template <class T>
bool may_use_tensor_cores(fc::kernel_kind k, index_t D) {
  return !std::is_same_v<T, float> && k != fc::kernel_kind::simple && D % 8 == 0;
}

bool report(const char* what, double err, double tol, const std::string& shape) {
  ++g_checks;
  if (err <= tol) return true;
  ++g_failures;
  std::printf("FAILED %s: max error %.3g > %.3g (%s)\n", what, err, tol, shape.c_str());
  return false;
}

// ------------------------------------------------------------------ whole sequences

template <class T>
void sequence_case(std::mt19937& rng, const fam::mask_spec& mask, index_t L, index_t H, index_t Hkv,
                   index_t D, fc::kernel_kind kernel) {
  cfg_t cfg(D, 1, 0, 0);
  cfg.set_heads(H, Hkv);
  host_tensor<T> q(L, H, D, rng), k(L, Hkv, D, rng), v(L, Hkv, D, rng);
  std::vector<float> ref(static_cast<std::size_t>(L * H * D)),
      ref_lse(static_cast<std::size_t>(L * H));
  CHECK_STATUS(
      fam::attention(cfg, mask, q.view(), k.view(), v.view(), fam::make_view(ref.data(), L, H, D),
                     fam::make_lse_view(ref_lse.data(), H)),
      fam::status::ok);

  dbuf<T> dq(q.data.size()), dk(k.data.size()), dv(v.data.size());
  dq.upload(q.data);
  dk.upload(k.data);
  dv.upload(v.data);
  dbuf<float> dout(ref.size()), dlse(ref_lse.size());
  dout.fill(0xff);  // NaN: every element must be written
  fc::attention_arguments<T> a;
  a.cfg = cfg;
  a.mask = mask;
  a.q = q.view_on(dq.p);
  a.k = k.view_on(dk.p);
  a.v = v.view_on(dv.p);
  a.out = fam::make_view(dout.p, L, H, D);
  a.lse = fam::make_lse_view(dlse.p, H);
  a.options.kernel = kernel;
  CHECK_STATUS(fc::can_implement(a), fam::status::ok);
  const std::size_t ws_bytes = fc::get_workspace_size(a);
  dbuf<unsigned char> ws(ws_bytes);
  CHECK_STATUS(fc::run(a, ws_bytes > 0 ? ws.p : nullptr, ws_bytes, nullptr), fam::status::ok);
  CUDA_OK(cudaDeviceSynchronize());
  char shape[160];
  std::snprintf(shape, sizeof shape,
                "%s %s kind=%d W=%lld B=%lld M=%lld L=%lld H=%lld Hkv=%lld D=%lld", type_name<T>(),
                kernel_name(kernel), static_cast<int>(mask.kind),
                static_cast<long long>(mask.window), static_cast<long long>(mask.block),
                static_cast<long long>(mask.memory), static_cast<long long>(L),
                static_cast<long long>(H), static_cast<long long>(Hkv), static_cast<long long>(D));
  report("sequence out", max_err(dout.download(), ref),
         tolerance<T>(may_use_tensor_cores<T>(kernel, D)), shape);
  report("sequence lse", max_err(dlse.download(), ref_lse), 2e-4, shape);
}

fam::mask_spec random_mask(std::mt19937& rng, index_t L) {
  std::uniform_int_distribution<int> kind(0, 2);
  std::uniform_int_distribution<index_t> w(1, std::max<index_t>(L, 2)), b(1, 96), m(0, 4);
  switch (kind(rng)) {
    case 0:
      return fam::mask_spec::full();
    case 1:
      return fam::mask_spec::sliding_window(w(rng));
    default: {
      const index_t blocks[] = {1, 3, 16, 64, 100, b(rng)};
      return fam::mask_spec::bswa(blocks[std::uniform_int_distribution<int>(0, 5)(rng)], m(rng));
    }
  }
}

index_t random_dim(std::mt19937& rng, bool tensor_core_only) {
  const index_t any[] = {1, 5, 8, 16, 24, 40, 64, 72, 96, 128, 136, 200, 256};
  const index_t tc[] = {8, 16, 32, 64, 80, 128, 192, 256};
  return tensor_core_only ? tc[std::uniform_int_distribution<int>(0, 7)(rng)]
                          : any[std::uniform_int_distribution<int>(0, 12)(rng)];
}

void random_heads(std::mt19937& rng, index_t& H, index_t& Hkv) {
  const index_t pairs[][2] = {{1, 1}, {2, 2}, {4, 1}, {4, 2}, {8, 2}, {6, 3}, {16, 2}, {3, 1}};
  const auto& p = pairs[std::uniform_int_distribution<int>(0, 7)(rng)];
  H = p[0];
  Hkv = p[1];
}

template <class T>
void random_sequences(std::mt19937& rng, int trials, index_t max_len) {
  for (int i = 0; i < trials; ++i) {
    const fc::kernel_kind kinds[] = {fc::kernel_kind::automatic, fc::kernel_kind::simple,
                                     fc::kernel_kind::tensor_core};
    fc::kernel_kind kernel = kinds[std::uniform_int_distribution<int>(0, 2)(rng)];
    if (std::is_same_v<T, float> && kernel == fc::kernel_kind::tensor_core)
      kernel = fc::kernel_kind::simple;
    index_t H, Hkv;
    random_heads(rng, H, Hkv);
    const index_t D = random_dim(rng, kernel == fc::kernel_kind::tensor_core);
    const index_t L = std::uniform_int_distribution<index_t>(1, max_len)(rng);
    sequence_case<T>(rng, random_mask(rng, L), L, H, Hkv, D, kernel);
  }
}

// ------------------------------------------------------------------ streaming state vs CPU

/// The CPU's layer_state and the device_state, driven through the same protocol with the same
/// chunks: token outputs, consumed counts, phases and Uf must agree. The next FAM projections are
/// made from the CPU's Uf (Qf = Uf, Kf = Vf = Uf of each group's first head), so both sides
/// always install the same values and each block is compared on its own.
template <class T>
void stream_case(std::mt19937& rng, index_t B, index_t M, index_t F, index_t H, index_t Hkv,
                 index_t D, index_t L, int chunking, fc::kernel_kind kernel, bool workspace) {
  cfg_t cfg(D, B, M, F);
  cfg.set_heads(H, Hkv);
  char shape[200];
  std::snprintf(shape, sizeof shape,
                "%s %s B=%lld M=%lld F=%lld H=%lld Hkv=%lld D=%lld L=%lld chunking=%d ws=%d",
                type_name<T>(), kernel_name(kernel), static_cast<long long>(B),
                static_cast<long long>(M), static_cast<long long>(F), static_cast<long long>(H),
                static_cast<long long>(Hkv), static_cast<long long>(D), static_cast<long long>(L),
                chunking, workspace ? 1 : 0);

  fam::layer_state<cfg_t, T> cpu;
  CHECK_STATUS(cpu.init(cfg), fam::status::ok);
  const std::size_t bytes = fc::device_state<cfg_t, T>::storage_bytes(cfg);
  dbuf<unsigned char> storage(bytes);
  fc::device_state<cfg_t, T> gpu;
  CHECK_STATUS(gpu.init(cfg, storage.p, bytes), fam::status::ok);
  const std::size_t ws_bytes = workspace ? fc::workspace_size(cfg) : 0;
  dbuf<unsigned char> ws(ws_bytes);
  fc::context ctx;
  ctx.workspace = workspace ? ws.p : nullptr;
  ctx.workspace_bytes = ws_bytes;
  ctx.options.kernel = kernel;

  host_tensor<T> q(L, H, D, rng), k(L, Hkv, D, rng), v(L, Hkv, D, rng);
  dbuf<T> dq(q.data.size()), dk(k.data.size()), dv(v.data.size());
  dq.upload(q.data);
  dk.upload(k.data);
  dv.upload(v.data);
  std::vector<float> ref(static_cast<std::size_t>(L * H * D));
  dbuf<float> dout(ref.size());
  dout.fill(0xff);

  // FAM projections: host [F, H, D] / [F, Hkv, D] contiguous, in T.
  std::vector<T> qf(static_cast<std::size_t>(F * H * D)), kf(static_cast<std::size_t>(F * Hkv * D));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& x : qf) x = fam::from_float<T>(u(rng));
  for (auto& x : kf) x = fam::from_float<T>(u(rng));
  dbuf<T> dqf(qf.size()), dkf(kf.size());
  auto install = [&](bool begin) {
    dqf.upload(qf);
    dkf.upload(kf);
    const auto hq = fam::make_view<const T>(qf.data(), F, H, D);
    const auto hk = fam::make_view<const T>(kf.data(), F, Hkv, D);
    const auto gq = fam::make_view<const T>(dqf.p, F, H, D);
    const auto gk = fam::make_view<const T>(dkf.p, F, Hkv, D);
    if (begin) {
      CHECK_STATUS(fam::begin_fam(cpu, hq, hk, hk), fam::status::ok);
      CHECK_STATUS(fc::begin_fam(gpu, gq, gk, gk, true, ctx), fam::status::ok);
    } else {
      CHECK_STATUS(fam::update_fam(cpu, hq, hk, hk), fam::status::ok);
      CHECK_STATUS(fc::update_fam(gpu, gq, gk, gk, ctx), fam::status::ok);
    }
  };
  if (F > 0) install(true);

  const double tol = tolerance<T>(may_use_tensor_cores<T>(kernel, D));
  index_t done = 0;
  int blocks_compared = 0;
  bool ok = true;
  while (done < L && ok) {
    index_t chunk = 1;
    if (chunking == 1) chunk = L - done;  // all at once
    if (chunking == 2) chunk = std::uniform_int_distribution<index_t>(1, 2 * B + 3)(rng);  // ragged
    chunk = std::min(chunk, L - done);
    index_t used_cpu = -1, used_gpu = -2;
    CHECK_STATUS(
        fam::attend(cpu, q.view().rows_from(done, chunk), k.view().rows_from(done, chunk),
                    v.view().rows_from(done, chunk),
                    fam::make_view(ref.data(), L, H, D).rows_from(done, chunk), {}, &used_cpu),
        fam::status::ok);
    CHECK_STATUS(
        fc::attend(gpu, q.view_on(dq.p).rows_from(done, chunk),
                   k.view_on(dk.p).rows_from(done, chunk), v.view_on(dv.p).rows_from(done, chunk),
                   fam::make_view(dout.p, L, H, D).rows_from(done, chunk), {}, &used_gpu, ctx),
        fam::status::ok);
    CHECK(used_cpu == used_gpu);
    CHECK(cpu.tokens() == gpu.tokens() && cpu.phase() == gpu.phase());
    if (used_cpu != used_gpu || used_cpu <= 0) return;
    done += used_cpu;
    if (cpu.phase() == fam::fam_phase::pending) {
      CUDA_OK(cudaDeviceSynchronize());
      const auto uf_cpu = cpu.fam_output();
      std::vector<float> a(static_cast<std::size_t>(F * H * D)), b(a.size());
      CUDA_OK(cudaMemcpy(b.data(), gpu.fam_output().data, b.size() * sizeof(float),
                         cudaMemcpyDeviceToHost));
      for (index_t r = 0; r < F; ++r)
        for (index_t h = 0; h < H; ++h)
          for (index_t d = 0; d < D; ++d) a[(r * H + h) * D + d] = uf_cpu.at(r, h)[d];
      ok = report("stream Uf", max_err(b, a), tol, shape) && ok;
      ++blocks_compared;
      // next projections from the CPU's Uf
      for (index_t r = 0; r < F; ++r)
        for (index_t h = 0; h < H; ++h)
          for (index_t d = 0; d < D; ++d)
            qf[(r * H + h) * D + d] = fam::from_float<T>(a[(r * H + h) * D + d]);
      for (index_t r = 0; r < F; ++r)
        for (index_t g = 0; g < Hkv; ++g)
          for (index_t d = 0; d < D; ++d)
            kf[(r * Hkv + g) * D + d] = fam::from_float<T>(a[(r * H + g * (H / Hkv)) * D + d]);
      install(false);
    }
  }
  CUDA_OK(cudaDeviceSynchronize());
  report("stream out", max_err(dout.download(), ref), tol, shape);
}

template <class T>
void random_streams(std::mt19937& rng, int trials, index_t max_len) {
  for (int i = 0; i < trials; ++i) {
    index_t H, Hkv;
    random_heads(rng, H, Hkv);
    const fc::kernel_kind kinds[] = {fc::kernel_kind::automatic, fc::kernel_kind::simple};
    const fc::kernel_kind kernel = kinds[std::uniform_int_distribution<int>(0, 1)(rng)];
    const index_t D = random_dim(rng, false);
    const index_t B = std::uniform_int_distribution<index_t>(1, 80)(rng);
    const index_t M = std::uniform_int_distribution<index_t>(0, 3)(rng);
    const index_t F = std::uniform_int_distribution<index_t>(0, 3)(rng) == 0
                          ? 0
                          : std::uniform_int_distribution<index_t>(1, 40)(rng);
    const index_t L = std::uniform_int_distribution<index_t>(1, max_len)(rng);
    stream_case<T>(rng, B, M, F, H, Hkv, D, L, std::uniform_int_distribution<int>(0, 2)(rng),
                   kernel, std::uniform_int_distribution<int>(0, 1)(rng) == 1);
  }
}

// ------------------------------------------------------------------ prefill == decode on device

/// BSWA: the stateless whole-sequence call and the state fed token by token (decode, with key
/// splits) agree; FAM: fam_block_arguments per block and the state fed in ragged chunks agree.
template <class T>
void prefill_equals_decode(std::mt19937& rng, index_t B, index_t M, index_t F, index_t H,
                           index_t Hkv, index_t D, index_t L) {
  cfg_t cfg(D, B, M, F);
  cfg.set_heads(H, Hkv);
  host_tensor<T> q(L, H, D, rng), k(L, Hkv, D, rng), v(L, Hkv, D, rng);
  dbuf<T> dq(q.data.size()), dk(k.data.size()), dv(v.data.size());
  dq.upload(q.data);
  dk.upload(k.data);
  dv.upload(v.data);
  const std::size_t n = static_cast<std::size_t>(L * H * D);
  dbuf<float> prefill(n), decode(n);
  prefill.fill(0xff);
  decode.fill(0xff);
  const std::size_t ws_bytes = fc::workspace_size(cfg);
  dbuf<unsigned char> ws(ws_bytes);
  char shape[160];
  std::snprintf(shape, sizeof shape, "%s B=%lld M=%lld F=%lld H=%lld Hkv=%lld D=%lld L=%lld",
                type_name<T>(), static_cast<long long>(B), static_cast<long long>(M),
                static_cast<long long>(F), static_cast<long long>(H), static_cast<long long>(Hkv),
                static_cast<long long>(D), static_cast<long long>(L));

  // FAM projections: fixed random ones for every block (what they are does not matter here)
  std::vector<T> qf(static_cast<std::size_t>(F * H * D)), kf(static_cast<std::size_t>(F * Hkv * D));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& x : qf) x = fam::from_float<T>(u(rng));
  for (auto& x : kf) x = fam::from_float<T>(u(rng));
  dbuf<T> dqf(qf.size()), dkf(kf.size());
  dqf.upload(qf);
  dkf.upload(kf);
  const auto gq = fam::make_view<const T>(dqf.p, F, H, D);
  const auto gk = fam::make_view<const T>(dkf.p, F, Hkv, D);
  dbuf<float> uf_prefill(static_cast<std::size_t>(std::max<index_t>(F, 1) * H * D));

  if (F == 0) {
    fc::attention_arguments<T> a;
    a.cfg = cfg;
    a.mask = fam::mask_spec::bswa(B, M);
    a.q = q.view_on(dq.p);
    a.k = k.view_on(dk.p);
    a.v = v.view_on(dv.p);
    a.out = fam::make_view(prefill.p, L, H, D);
    CHECK_STATUS(fc::run(a, nullptr, 0, nullptr), fam::status::ok);
  } else {
    for (index_t t = 0; t * B < L; ++t) {  // block by block, memory = the previous blocks
      const index_t b = std::min(B, L - t * B), mem_blocks = std::min(M, t);
      fc::fam_block_arguments<T> a;
      a.cfg = cfg;
      a.mem_k = k.view_on(dk.p).rows_from((t - mem_blocks) * B, mem_blocks * B);
      a.mem_v = v.view_on(dv.p).rows_from((t - mem_blocks) * B, mem_blocks * B);
      a.qf = gq;
      a.kf = gk;
      a.vf = gk;
      a.q = q.view_on(dq.p).rows_from(t * B, b);
      a.k = k.view_on(dk.p).rows_from(t * B, b);
      a.v = v.view_on(dv.p).rows_from(t * B, b);
      a.ut = fam::make_view(prefill.p, L, H, D).rows_from(t * B, b);
      a.uf = fam::make_view(uf_prefill.p, F, H, D);
      CHECK_STATUS(fc::run(a, ws.p, ws_bytes, nullptr), fam::status::ok);
    }
  }

  dbuf<unsigned char> storage(fc::device_state<cfg_t, T>::storage_bytes(cfg));
  fc::device_state<cfg_t, T> st;
  CHECK_STATUS(st.init(cfg, storage.p, storage.n), fam::status::ok);
  fc::context ctx;
  ctx.workspace = ws.p;
  ctx.workspace_bytes = ws_bytes;
  if (F > 0) CHECK_STATUS(fc::begin_fam(st, gq, gk, gk, true, ctx), fam::status::ok);
  for (index_t done = 0; done < L;) {
    const index_t chunk =
        F == 0 ? 1 : std::min<index_t>(L - done, std::uniform_int_distribution<index_t>(1, 7)(rng));
    index_t used = 0;
    CHECK_STATUS(
        fc::attend(st, q.view_on(dq.p).rows_from(done, chunk),
                   k.view_on(dk.p).rows_from(done, chunk), v.view_on(dv.p).rows_from(done, chunk),
                   fam::make_view(decode.p, L, H, D).rows_from(done, chunk), {}, &used, ctx),
        fam::status::ok);
    if (used <= 0) break;
    done += used;
    if (st.phase() == fam::fam_phase::pending)
      CHECK_STATUS(fc::update_fam(st, gq, gk, gk, ctx), fam::status::ok);
  }
  CUDA_OK(cudaDeviceSynchronize());
  report("prefill == decode", max_err(decode.download(), prefill.download()),
         2 * tolerance<T>(!std::is_same_v<T, float> && D % 8 == 0), shape);
}

// ------------------------------------------------------------------ argument checks

/// Statuses of bad calls: validated on the host before any CUDA call, so this runs without a GPU.
void validation_tests() {
  cfg_t cfg(64, 16, 2, 4);
  cfg.set_heads(4, 2);
  // Fake "device" pointers: validation never dereferences them.
  alignas(16) static fam::bf16 buf[1 << 16];
  alignas(16) static float fbuf[1 << 16];
  const index_t L = 10;
  fc::attention_arguments<fam::bf16> a;
  a.cfg = cfg;
  a.mask = fam::mask_spec::bswa(16, 2);
  a.q = fam::make_view<const fam::bf16>(buf, L, 4, 64);
  a.k = fam::make_view<const fam::bf16>(buf, L, 2, 64);
  a.v = fam::make_view<const fam::bf16>(buf, L, 2, 64);
  a.out = fam::make_view(fbuf, L, 4, 64);
  CHECK_STATUS(fc::can_implement(a), fam::status::ok);
  auto b = a;
  b.mask = fam::mask_spec::fam(16, 2, 4);
  CHECK_STATUS(fc::can_implement(b), fam::status::invalid_argument);
  b = a;
  b.mask = fam::mask_spec::sliding_window(0);
  CHECK_STATUS(fc::can_implement(b), fam::status::invalid_argument);
  b = a;
  b.k = fam::make_view<const fam::bf16>(buf, L, 4, 64);
  CHECK_STATUS(fc::can_implement(b), fam::status::shape_mismatch);
  b = a;
  b.q.data = nullptr;
  CHECK_STATUS(fc::can_implement(b), fam::status::null_pointer);
  b = a;
  b.out.row_stride = 3;
  CHECK_STATUS(fc::can_implement(b), fam::status::invalid_layout);
  b = a;
  b.cfg.set_heads(4, 3);
  CHECK_STATUS(fc::can_implement(b), fam::status::invalid_argument);
  b = a;
  b.q.data = buf + 1;  // not 16-byte aligned: only the simple kernel can read it
  CHECK_STATUS(fc::can_implement(b), fam::status::ok);
  b.options.kernel = fc::kernel_kind::tensor_core;
  CHECK_STATUS(fc::can_implement(b), fam::status::unsupported);
  b = a;
  b.options.max_splits = -1;
  CHECK_STATUS(fc::can_implement(b), fam::status::invalid_argument);
  {
    cfg_t big(320, 16, 2, 0);
    fc::attention_arguments<fam::bf16> c;
    c.cfg = big;
    CHECK_STATUS(fc::can_implement(c), fam::status::unsupported);  // D > 256
  }
  {
    fc::attention_arguments<float> c;
    c.cfg = cfg;
    c.mask = fam::mask_spec::full();
    c.q = fam::make_view<const float>(fbuf, L, 4, 64);
    c.k = c.v = fam::make_view<const float>(fbuf, L, 2, 64);
    c.out = fam::make_view(fbuf, L, 4, 64);
    CHECK_STATUS(fc::can_implement(c), fam::status::ok);
    c.options.kernel = fc::kernel_kind::tensor_core;
    CHECK_STATUS(fc::can_implement(c), fam::status::unsupported);  // fp32 has no mma path
  }
  // An empty sequence is valid and launches nothing.
  b = a;
  b.q = b.k = b.v = fam::tensor_view<const fam::bf16>{};
  b.out = fam::tensor_view<float>{};
  CHECK_STATUS(fc::run(b), fam::status::ok);

  // FAM blocks
  fc::fam_block_arguments<fam::bf16> f;
  f.cfg = cfg;
  f.qf = fam::make_view<const fam::bf16>(buf, 4, 4, 64);
  f.kf = f.vf = fam::make_view<const fam::bf16>(buf, 4, 2, 64);
  f.q = fam::make_view<const fam::bf16>(buf, 16, 4, 64);
  f.k = f.v = fam::make_view<const fam::bf16>(buf, 16, 2, 64);
  f.ut = fam::make_view(fbuf, 16, 4, 64);
  f.uf = fam::make_view(fbuf, 4, 4, 64);
  CHECK_STATUS(fc::can_implement(f), fam::status::ok);
  auto g = f;
  g.q = fam::make_view<const fam::bf16>(buf, 17, 4, 64);
  CHECK_STATUS(fc::can_implement(g), fam::status::shape_mismatch);  // b > B
  g = f;
  g.mem_k = g.mem_v = fam::make_view<const fam::bf16>(buf, 8, 2, 64);
  CHECK_STATUS(fc::can_implement(g), fam::status::shape_mismatch);  // Lm not a multiple of B
  g = f;
  g.mem_k = g.mem_v = fam::make_view<const fam::bf16>(buf, 48, 2, 64);
  CHECK_STATUS(fc::can_implement(g), fam::status::shape_mismatch);  // Lm > M*B

  // State: errors that come before any device work.
  fc::device_state<cfg_t, fam::bf16> st;
  CHECK(!st.initialized());
  CHECK_STATUS(fc::attend(st, a.q, a.k, a.v, a.out), fam::status::not_initialized);
  CHECK_STATUS(fc::begin_fam(st, f.qf, f.kf, f.vf), fam::status::not_initialized);
  CHECK_STATUS(fc::rewind(st, 0), fam::status::not_initialized);
  const std::size_t need = fc::device_state<cfg_t, fam::bf16>::storage_bytes(cfg);
  CHECK(need > 0);
  CHECK_STATUS(st.init(cfg, nullptr, need), fam::status::null_pointer);
  CHECK_STATUS(st.init(cfg, buf, need - 1), fam::status::buffer_too_small);
  CHECK_STATUS(st.init(cfg, reinterpret_cast<unsigned char*>(buf) + 16, need),
               fam::status::invalid_layout);
  cfg_t with_phi = cfg;
  with_phi.phi_dim = 8;
  CHECK_STATUS(st.init(with_phi, buf, need), fam::status::unsupported);
  cfg_t bad(64, 0, 2, 4);
  CHECK_STATUS(st.init(bad, buf, need), fam::status::invalid_argument);
  CHECK((fc::device_state<cfg_t, fam::bf16>::storage_bytes(bad) == 0));
  CHECK(fc::workspace_size(cfg) > 0 && fc::workspace_size(bad) == 0);

  // Status mapping of runtime errors.
  CHECK(fc::status_of(cudaSuccess) == fam::status::ok);
  CHECK(fc::status_of(cudaErrorMemoryAllocation) == fam::status::out_of_memory);
  CHECK(fc::status_of(cudaErrorInvalidValue) == fam::status::invalid_argument);
  CHECK(fc::status_of(cudaErrorNoDevice) == fam::status::unsupported);
}

/// The protocol's phase errors, on an initialized state (needs a device or the emulator).
void protocol_tests() {
  cfg_t cfg(16, 4, 1, 2);
  cfg.set_heads(2, 1);
  dbuf<unsigned char> storage(fc::device_state<cfg_t, float>::storage_bytes(cfg));
  fc::device_state<cfg_t, float> st;
  CHECK_STATUS(st.init(cfg, storage.p, storage.n), fam::status::ok);
  dbuf<float> x(64 * 2 * 16), out(64 * 2 * 16);
  x.fill(0);
  const auto q = fam::make_view<const float>(x.p, 6, 2, 16);
  const auto kv = fam::make_view<const float>(x.p, 6, 1, 16);
  const auto o = fam::make_view(out.p, 6, 2, 16);
  const auto qf = fam::make_view<const float>(x.p, 2, 2, 16);
  const auto kf = fam::make_view<const float>(x.p, 2, 1, 16);
  CHECK(st.phase() == fam::fam_phase::none);
  CHECK_STATUS(fc::attend(st, q, kv, kv, o), fam::status::fam_not_installed);
  CHECK_STATUS(fc::update_fam(st, qf, kf, kf), fam::status::no_update_pending);
  CHECK_STATUS(fc::begin_fam(st, qf, kf, kf), fam::status::ok);
  CHECK(st.fresh());
  CHECK_STATUS(fc::attend(st, q, kv, kv, o),
               fam::status::invalid_argument);  // crosses B, no consumed
  index_t used = 0;
  CHECK_STATUS(fc::attend(st, q.rows_from(0, 3), kv.rows_from(0, 3), kv.rows_from(0, 3),
                          o.rows_from(0, 3), {}, &used),
               fam::status::ok);
  CHECK(used == 3 && st.tokens() == 3);
  CHECK_STATUS(fc::rewind(st, 4), fam::status::out_of_range);
  CHECK_STATUS(fc::rewind(st, 1), fam::status::ok);
  CHECK(st.tokens() == 2);
  CHECK_STATUS(fc::begin_fam(st, qf, kf, kf), fam::status::invalid_argument);  // inside a block
  CHECK_STATUS(fc::attend(st, q, kv, kv, o, {}, &used), fam::status::ok);
  CHECK(used == 2 && st.phase() == fam::fam_phase::pending && st.tokens() == 4);
  CHECK_STATUS(fc::attend(st, q, kv, kv, o, {}, &used), fam::status::fam_update_pending);
  CHECK(st.fam_position(0) == 4 - 2);
  CHECK_STATUS(fc::update_fam(st, qf, kf, kf), fam::status::ok);
  CHECK(!st.fresh() && st.phase() == fam::fam_phase::installed);
  fc::device_state<cfg_t, float> copy;
  dbuf<unsigned char> storage2(storage.n);
  CHECK_STATUS(copy.init(cfg, storage2.p, storage2.n), fam::status::ok);
  CHECK_STATUS(fc::copy_state(copy, st), fam::status::ok);
  CHECK(copy.tokens() == 4 && copy.phase() == fam::fam_phase::installed);
  CHECK_STATUS(fc::reset(st), fam::status::ok);
  CHECK(st.tokens() == 0 && st.phase() == fam::fam_phase::none);
  // The tensor-core kernel is refused for fp32 when forced.
  fc::context ctx;
  ctx.options.kernel = fc::kernel_kind::tensor_core;
  CHECK_STATUS(fc::attend(copy, q.rows_from(0, 1), kv.rows_from(0, 1), kv.rows_from(0, 1),
                          o.rows_from(0, 1), {}, &used, ctx),
               fam::status::unsupported);
  CUDA_OK(cudaDeviceSynchronize());
}

/// Softmax stability (SPEC §7.6): logits of magnitude 1e4 stay finite and correct.
template <class T>
void large_logits() {
  std::mt19937 rng(5);
  const index_t L = 70, H = 2, D = 16;
  cfg_t cfg(D, 1, 0, 0);
  cfg.set_heads(H, H);
  cfg.set_scale(1.0);
  host_tensor<T> q(L, H, D, rng, false, -30.0f, 30.0f), k(L, H, D, rng, false, -30.0f, 30.0f),
      v(L, H, D, rng);
  std::vector<float> ref(static_cast<std::size_t>(L * H * D));
  CHECK_STATUS(fam::attention(cfg, fam::mask_spec::full(), q.view(), k.view(), v.view(),
                              fam::make_view(ref.data(), L, H, D)),
               fam::status::ok);
  dbuf<T> dq(q.data.size()), dk(k.data.size()), dv(v.data.size());
  dq.upload(q.data);
  dk.upload(k.data);
  dv.upload(v.data);
  dbuf<float> dout(ref.size());
  fc::attention_arguments<T> a;
  a.cfg = cfg;
  a.mask = fam::mask_spec::full();
  a.q = q.view_on(dq.p);
  a.k = k.view_on(dk.p);
  a.v = v.view_on(dv.p);
  a.out = fam::make_view(dout.p, L, H, D);
  a.options.kernel = fc::kernel_kind::simple;
  CHECK_STATUS(fc::run(a), fam::status::ok);
  CUDA_OK(cudaDeviceSynchronize());
  // Logits near 1e4: a relative error of 1e-7 in a logit is 1e-3 absolute: allow for it.
  report("large logits", max_err(dout.download(), ref), 5e-2, type_name<T>());
}

#if defined(FAM_CUDA_EMULATION)
/// A GPU below sm_80 (emulated): automatic falls back to the simple kernel, a forced
/// tensor-core launch is refused with unsupported (and nothing is written).
void pre_sm80_fallback(std::mt19937& rng) {
  fam_emu::device().major = 7;
  sequence_case<fam::bf16>(rng, fam::mask_spec::bswa(16, 1), 50, 4, 2, 64,
                           fc::kernel_kind::automatic);
  cfg_t cfg(64, 1, 0, 0);
  cfg.set_heads(2, 2);
  dbuf<fam::bf16> x(8 * 2 * 64);
  dbuf<float> out(8 * 2 * 64);
  out.fill(0);
  fc::attention_arguments<fam::bf16> a;
  a.cfg = cfg;
  a.mask = fam::mask_spec::full();
  a.q = a.k = a.v = fam::make_view<const fam::bf16>(x.p, 8, 2, 64);
  a.out = fam::make_view(out.p, 8, 2, 64);
  a.options.kernel = fc::kernel_kind::tensor_core;
  CHECK_STATUS(fc::can_implement(a), fam::status::ok);  // the layout allows it...
  CHECK_STATUS(fc::run(a), fam::status::unsupported);   // ...the device does not
  const std::vector<float> o = out.download();
  CHECK(std::all_of(o.begin(), o.end(), [](float f) { return f == 0.0f; }));
  fam_emu::device().major = 8;
}
#endif

bool have_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    std::printf("no CUDA device (%s): GPU tests skipped\n",
                e != cudaSuccess ? cudaGetErrorName(e) : "0 devices");
    return false;
  }
  int dev = 0, major = 0, minor = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  std::printf("device %d: sm_%d%d, %d SMs\n", dev, major, minor, sms);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false, validation = false;
  unsigned seed = 1;
  int trials = 40;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--smoke") {
      smoke = true;
    } else if (s == "--validation") {
      validation = true;
    } else if (s == "--seed" && i + 1 < argc) {
      seed = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (s == "--trials" && i + 1 < argc) {
      trials = std::atoi(argv[++i]);
    } else {
      std::printf("usage: %s [--smoke | --validation] [--seed N] [--trials N]\n", argv[0]);
      return 2;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  validation_tests();
  if (validation) {
    std::printf("%d passed, %d failed (validation: %d checks)\n", g_checks - g_failures, g_failures,
                g_checks);
    return g_failures == 0 ? 0 : 1;
  }
  if (!have_device()) return 77;

  std::mt19937 rng(seed);
  protocol_tests();
#if defined(FAM_CUDA_EMULATION)
  pre_sm80_fallback(rng);
#endif
  if (smoke) {
    // Each kernel and storage type once, on small shapes.
    sequence_case<float>(rng, fam::mask_spec::full(), 70, 4, 2, 64, fc::kernel_kind::simple);
    sequence_case<fam::bf16>(rng, fam::mask_spec::bswa(16, 2), 130, 4, 2, 64,
                             fc::kernel_kind::tensor_core);
    sequence_case<fam::fp16>(rng, fam::mask_spec::sliding_window(20), 90, 2, 1, 128,
                             fc::kernel_kind::tensor_core);
    sequence_case<fam::bf16>(rng, fam::mask_spec::full(), 33, 2, 2, 40, fc::kernel_kind::simple);
    stream_case<fam::bf16>(rng, 16, 2, 4, 4, 2, 64, 70, 2, fc::kernel_kind::automatic, true);
    stream_case<float>(rng, 8, 1, 0, 2, 1, 32, 40, 0, fc::kernel_kind::simple, true);
  } else {
    large_logits<float>();
    random_sequences<float>(rng, trials, 300 / kScale);
    random_sequences<fam::bf16>(rng, trials, 300 / kScale);
    random_sequences<fam::fp16>(rng, trials, 300 / kScale);
    random_streams<float>(rng, (trials + 1) / 2, 260 / kScale);
    random_streams<fam::bf16>(rng, (trials + 1) / 2, 260 / kScale);
    random_streams<fam::fp16>(rng, (trials + 1) / 2, 260 / kScale);
    // FAM across many blocks (40 on a GPU, 10 on the emulator), each block's Uf compared.
    stream_case<fam::bf16>(rng, 32, 3, 16, 8, 2, 128 / kScale, 40 / kScale * 32, 2,
                           fc::kernel_kind::automatic, true);
    stream_case<float>(rng, 16, 2, 8, 4, 4, 64, 40 / kScale * 16, 0, fc::kernel_kind::automatic,
                       true);
    // Long context, one kv head: decode with key splits against the whole-sequence call.
    // (long enough for several key splits on the emulator too)
    prefill_equals_decode<fam::bf16>(rng, 64, 7, 0, 8, 1, 128 / kScale, 600);
    prefill_equals_decode<float>(rng, 32, 7, 0, 4, 2, 40, 300);
    prefill_equals_decode<fam::fp16>(rng, 32, 2, 8, 4, 2, 64, 250 / kScale);
    prefill_equals_decode<fam::bf16>(rng, 16, 1, 4, 2, 1, 24, 120);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d passed, %d failed (%s, seed %u, %.1f s)\n", g_checks - g_failures, g_failures,
              smoke ? "smoke" : "full", seed, secs);
  return g_failures == 0 ? 0 : 1;
}
