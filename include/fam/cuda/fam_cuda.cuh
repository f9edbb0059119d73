// fam on NVIDIA GPUs: full causal, sliding-window, BSWA and FAM attention on device memory, with
// the contract of docs/spec.md and the FAM protocol of fam/stream.hpp. Compile with nvcc
// (C++17); never included by fam/fam.hpp. docs/cuda.md describes the API and its status.
//
//   fam::cuda::attention_arguments<T>   whole sequences (full, window, BSWA), CUTLASS style:
//       can_implement(args) -> status, get_workspace_size(args), run(args, ws, bytes, stream)
//   fam::cuda::fam_block_arguments<T>   one fused FAM block (fam::fam_attention on device)
//   fam::cuda::device_state<Config, T>  ring + FAM state in device memory that the caller owns;
//       begin_fam / attend / fam_output / update_fam / rewind / reset / copy_state, as on the CPU
//
// Every call validates its arguments on the host before it touches the device, enqueues its
// work on the caller's stream and returns a fam::status; nothing is thrown, nothing is
// allocated, nothing synchronizes. A CUDA runtime failure becomes a status too
// (fam/cuda/error.cuh: the exact cudaError_t is kept in fam::cuda::last_error()).
//
// Storage: T is float, fam::bf16 or fam::fp16 for Q, K and V alike; outputs and log-sum-exps
// are fp32; softmax and accumulation are fp32. Two kernels: a simple tiled one (any T, any head
// dim up to 256) and a tensor-core one (bf16/fp16, head dim a multiple of 8 up to 256, 16-byte
// aligned rows, sm_80+), chosen per call unless launch_options says which.
#ifndef FAM_CUDA_FAM_CUDA_CUH_
#define FAM_CUDA_FAM_CUDA_CUH_

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

// nvcc warns (#554) that tensor_view<const T>'s conversion to tensor_view<const T> is never
// used; it is harmless. Silenced for fam's headers when this header includes them first.
#if defined(__NVCC__)
#pragma nv_diag_suppress 554
#endif
#include "../config.hpp"
#include "../kv_ring.hpp"
#include "../layer_state.hpp"
#include "../mask.hpp"
#include "../types.hpp"
#include "../view.hpp"
#if defined(__NVCC__)
#pragma nv_diag_default 554
#endif
#include "detail/mma_kernel.cuh"
#include "detail/params.cuh"
#include "detail/simple_kernel.cuh"
#include "error.cuh"

FAM_NAMESPACE_BEGIN
namespace cuda {

/// Largest head dimension of either kernel.
inline constexpr index_t max_head_dim = 256;
/// Largest number of key splits of one decode launch.
inline constexpr int max_key_splits = 32;

/// Which kernel a call uses.
enum class kernel_kind : int {
  automatic,    ///< tensor cores when the call allows them (bf16/fp16, D % 8 == 0, aligned, sm_80+)
  simple,       ///< the simple tiled kernel
  tensor_core,  ///< the tensor-core kernel, or status::unsupported when the call does not allow it
};

struct launch_options {
  kernel_kind kernel = kernel_kind::automatic;
  /// Split-KV for launches whose query rows (times H / Hkv) fit one tile of 64 — decode and
  /// short chunks: the keys are cut into up to this many shares that run in parallel and are
  /// merged through the workspace. 0: as many as the workspace and the GPU make worthwhile;
  /// 1: never.
  int max_splits = 0;
};

/// Bytes of workspace with which any call of this configuration may use the most key splits
/// (the same for every call: size it once). A smaller workspace (or none) only means fewer
/// splits; results agree within fp32 rounding.
template <class Config>
std::size_t workspace_size(const Config& cfg) noexcept {
  if (cfg.validate() != status::ok) return 0;
  return static_cast<std::size_t>(max_key_splits) * static_cast<std::size_t>(cfg.kv_heads) *
         detail::mma_shape<64>::bm * static_cast<std::size_t>(cfg.head_dim() + 1) * sizeof(float);
}

namespace detail {

template <class T>
struct non_deduced {
  using type = T;
};
template <class T>
using same_t = typename non_deduced<T>::type;

struct device_info {
  int major = 0;
  int sms = 1;
  int smem_optin = 0;
};

inline status query_device(device_info& info) noexcept {
  int dev = 0;
  FAM_CUDA_TRY(cudaGetDevice(&dev));
  FAM_CUDA_TRY(cudaDeviceGetAttribute(&info.major, cudaDevAttrComputeCapabilityMajor, dev));
  FAM_CUDA_TRY(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, dev));
  FAM_CUDA_TRY(
      cudaDeviceGetAttribute(&info.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return status::ok;
}

inline bool aligned16(const void* p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

/// Can the tensor-core kernel read these rows (16-byte vectors)? Host-side, no device query.
template <class T>
bool tensor_core_layout(const attend_params<T>& p) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return false;
  } else {
    constexpr index_t v = 16 / sizeof(T);  // elements per 16-byte vector
    if (p.head_dim % 8 != 0 || p.head_dim > max_head_dim) return false;
    bool ok = aligned16(p.q) && p.q_row_stride % v == 0 && p.q_head_stride % v == 0;
    for (const key_segment<T>& s : p.seg) {
      if (s.count == 0) continue;
      ok = ok && aligned16(s.k) && aligned16(s.v) && s.k_row_stride % v == 0 &&
           s.v_row_stride % v == 0 && s.k_head_stride % v == 0 && s.v_head_stride % v == 0;
    }
    return ok;
  }
}

inline int pad_of(int head_dim) noexcept {
  return head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : 256;
}

template <class T, int DPad>
status launch_kernel(const attend_params<T>& p, bool use_mma, dim3 grid, int smem,
                     cudaStream_t stream) noexcept {
  if constexpr (!std::is_same_v<T, float>) {
    if (use_mma) {
      void (*kernel)(attend_params<T>) = mma_kernel<T, DPad>;
      if (smem > 48 * 1024)
        FAM_CUDA_TRY(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      FAM_CUDA_LAUNCH(kernel, grid, mma_shape<DPad>::threads, smem, stream, p);
      FAM_CUDA_TRY(cudaGetLastError());
      return status::ok;
    }
  }
  void (*kernel)(attend_params<T>) = simple_kernel<T, DPad>;
  FAM_CUDA_LAUNCH(kernel, grid, simple_shape<DPad>::threads, 0, stream, p);
  FAM_CUDA_TRY(cudaGetLastError());
  return status::ok;
}

/// Enqueues one attention launch (plus the split merge). @pre p validated on the host.
template <class T>
status launch(attend_params<T> p, const launch_options& opt, void* workspace,
              std::size_t workspace_bytes, cudaStream_t stream) noexcept {
  if (p.rows == 0) return status::ok;
  device_info info;
  FAM_TRY(query_device(info));
  const int dpad = pad_of(p.head_dim);
  const int mma_smem = dpad == 64    ? mma_shape<64>::smem_bytes
                       : dpad == 128 ? mma_shape<128>::smem_bytes
                                     : mma_shape<256>::smem_bytes;
  const bool mma_ok = tensor_core_layout(p) && info.major >= 8 && mma_smem <= info.smem_optin;
  if (opt.kernel == kernel_kind::tensor_core && !mma_ok) return status::unsupported;
  const bool use_mma = mma_ok && opt.kernel != kernel_kind::simple;

  const index_t bm = use_mma ? mma_shape<64>::bm : simple_shape<64>::bm;
  const index_t bn = use_mma ? mma_shape<64>::bn : 4096 / dpad;
  const index_t vrows = p.rows * p.group;
  const index_t grid_x = (vrows + bm - 1) / bm;
  FAM_CHECK(grid_x <= 0x7fffffff && p.kv_heads <= 65535, status::too_large);

  // Split-KV when one row tile holds every row of a kv head (decode).
  int splits = 1;
  if (grid_x == 1 && workspace != nullptr && opt.max_splits != 1 && vrows <= mma_shape<64>::bm) {
    const key_range lo = row_keys(p, 0), hi = row_keys(p, p.rows - 1);
    const index_t tiles = hi.hi >= lo.lo ? hi.hi / bn - lo.lo / bn + 1 : 0;
    index_t want = opt.max_splits > 0 ? opt.max_splits : max_key_splits;
    if (want > max_key_splits) want = max_key_splits;
    if (want > tiles / 2) want = tiles / 2;  // at least two tiles per share
    const index_t fill = (2 * static_cast<index_t>(info.sms) + p.kv_heads - 1) / p.kv_heads;
    if (want > fill) want = fill;
    const index_t per_split =
        static_cast<index_t>(p.kv_heads) * vrows * (p.head_dim + 1) * sizeof(float);
    const index_t fit = static_cast<index_t>(workspace_bytes) / per_split;
    if (want > fit) want = fit;
    if (want > 1) splits = static_cast<int>(want);
  }
  p.splits = splits;
  if (splits > 1) {
    p.part_out = static_cast<float*>(workspace);
    p.part_lse = p.part_out + static_cast<index_t>(splits) * p.kv_heads * vrows * p.head_dim;
  }

  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(p.kv_heads),
                  static_cast<unsigned>(splits));
  status s = status::ok;
  switch (dpad) {
    case 64:
      s = launch_kernel<T, 64>(p, use_mma, grid, mma_shape<64>::smem_bytes, stream);
      break;
    case 128:
      s = launch_kernel<T, 128>(p, use_mma, grid, mma_shape<128>::smem_bytes, stream);
      break;
    default:
      s = launch_kernel<T, 256>(p, use_mma, grid, mma_shape<256>::smem_bytes, stream);
      break;
  }
  FAM_TRY(s);
  if (splits > 1) {
    void (*kernel)(attend_params<T>) = combine_kernel<T>;
    const dim3 grid2(static_cast<unsigned>(vrows), static_cast<unsigned>(p.kv_heads));
    FAM_CUDA_LAUNCH(kernel, grid2, 128, 0, stream, p);
    FAM_CUDA_TRY(cudaGetLastError());
  }
  return status::ok;
}

/// Copies a [rows, heads, D] view into a strided destination of the same storage type.
template <class T>
status copy_rows(T* dst, index_t d_row, index_t d_head, tensor_view<const T> src,
                 cudaStream_t stream) noexcept {
  const index_t items = src.rows * src.heads;
  if (items == 0 || src.head_dim == 0) return status::ok;
  const unsigned blocks = static_cast<unsigned>(items < 65535 ? items : 65535);
  void (*kernel)(T*, index_t, index_t, const T*, index_t, index_t, index_t, index_t, int) =
      copy_rows_kernel<T, T>;
  FAM_CUDA_LAUNCH(kernel, blocks, 128, 0, stream, dst, d_row, d_head, src.data, src.row_stride,
                  src.head_stride, src.rows, src.heads, static_cast<int>(src.head_dim));
  FAM_CUDA_TRY(cudaGetLastError());
  return status::ok;
}

/// The head part of a configuration, checked as the CPU backends check it.
template <class Config>
status check_config(const Config& cfg) noexcept {
  FAM_TRY(cfg.validate());
  FAM_CHECK(cfg.head_dim() <= max_head_dim, status::unsupported);
  FAM_CHECK(cfg.kv_heads <= 65535 && cfg.heads / cfg.kv_heads <= 65535, status::unsupported);
  return status::ok;
}

template <class T, class Config>
attend_params<T> base_params(const Config& cfg) noexcept {
  attend_params<T> p;
  p.group = static_cast<int>(cfg.heads / cfg.kv_heads);
  p.kv_heads = static_cast<int>(cfg.kv_heads);
  p.head_dim = static_cast<int>(cfg.head_dim());
  p.scale_log2 = static_cast<float>(cfg.scale() * 1.4426950408889634);
  return p;
}

template <class T>
void set_queries(attend_params<T>& p, tensor_view<const T> q, tensor_view<float> out,
                 lse_view lse) noexcept {
  p.q = q.data;
  p.q_row_stride = q.row_stride;
  p.q_head_stride = q.head_stride;
  p.out = out.data;
  p.out_row_stride = out.row_stride;
  p.out_head_stride = out.head_stride;
  p.lse = lse.data;
  p.lse_row_stride = lse.row_stride;
  p.lse_head_stride = lse.head_stride;
  p.rows = q.rows;
}

/// A contiguous segment from two [rows, Hkv, D] views.
template <class T>
key_segment<T> segment_of(tensor_view<const T> k, tensor_view<const T> v) noexcept {
  key_segment<T> s;
  if (k.rows == 0) return s;
  s.k = k.data;
  s.v = v.data;
  s.k_row_stride = k.row_stride;
  s.v_row_stride = v.row_stride;
  s.k_head_stride = k.head_stride;
  s.v_head_stride = v.head_stride;
  s.count = k.rows;
  return s;
}

template <class T>
void set_keys(attend_params<T>& p, key_segment<T> a, key_segment<T> b = {},
              key_segment<T> c = {}) noexcept {
  p.seg[0] = a;
  p.seg[1] = b;
  p.seg[2] = c;
  p.n_keys = a.count + b.count + c.count;
}

/// With kernel_kind::tensor_core, the layout checks that need no device.
template <class T>
status check_forced_kernel(const attend_params<T>& p, const launch_options& opt) noexcept {
  FAM_CHECK(opt.max_splits >= 0, status::invalid_argument);
  if (opt.kernel == kernel_kind::tensor_core) FAM_CHECK(tensor_core_layout(p), status::unsupported);
  return status::ok;
}

}  // namespace detail

// ---------------------------------------------------------------- whole sequences

/// Attention of a whole sequence under `mask` (full causal, sliding window or BSWA), as
/// fam::attention, with every view in device memory.
template <class T, class Config = dynamic_config>
struct attention_arguments {
  Config cfg{};      ///< heads, kv heads, head dim, scale (B, M, F validated, unused)
  mask_spec mask{};  ///< full, sliding_window or bswa (fam: fam_block_arguments, device_state)
  tensor_view<const T> q{};  ///< [L, H, D]
  tensor_view<const T> k{};  ///< [L, Hkv, D]
  tensor_view<const T> v{};  ///< [L, Hkv, D]
  tensor_view<float> out{};  ///< [L, H, D]
  lse_view lse{};            ///< optional [L, H], natural log
  launch_options options{};
};

namespace detail {
template <class T, class Config>
attend_params<T> params_of(const attention_arguments<T, Config>& a) noexcept {
  attend_params<T> p = base_params<T>(a.cfg);
  set_queries(p, a.q, a.out, a.lse);
  set_keys(p, segment_of(a.k, a.v));
  p.rule = row_rule::sequence;
  p.mask = a.mask;
  return p;
}
}  // namespace detail

/// ok, or what fam::attention would return for these arguments; unsupported for a head dim above
/// 256, or kernel_kind::tensor_core with a layout the tensor-core kernel cannot read.
template <class T, class Config>
status can_implement(const attention_arguments<T, Config>& a) noexcept {
  static_assert(is_storage_type_v<T>, "fam: storage types are float, fam::bf16, fam::fp16");
  FAM_TRY(detail::check_config(a.cfg));
  FAM_TRY(a.mask.validate());
  FAM_CHECK(a.mask.kind != variant::fam, status::invalid_argument);
  const index_t L = a.q.rows, H = a.cfg.heads, Hkv = a.cfg.kv_heads, D = a.cfg.head_dim();
  FAM_CHECK(L >= 0, status::invalid_argument);
  FAM_TRY(fam::detail::check_view(a.q, L, H, D));
  FAM_TRY(fam::detail::check_view(a.k, L, Hkv, D));
  FAM_TRY(fam::detail::check_view(a.v, L, Hkv, D));
  FAM_TRY(fam::detail::check_view(a.out, L, H, D));
  FAM_TRY(fam::detail::check_lse(a.lse, L, H));
  return detail::check_forced_kernel(detail::params_of(a), a.options);
}

/// Workspace that lets run() split the keys of short query chunks (0 for longer ones).
template <class T, class Config>
std::size_t get_workspace_size(const attention_arguments<T, Config>& a) noexcept {
  if (a.cfg.validate() != status::ok || a.cfg.kv_heads < 1) return 0;
  return a.q.rows * (a.cfg.heads / a.cfg.kv_heads) <= detail::mma_shape<64>::bm
             ? workspace_size(a.cfg)
             : 0;
}

/// Validates, then enqueues the attention on `stream`. Outputs are written when the stream
/// reaches the work; nothing is written on error.
template <class T, class Config>
status run(const attention_arguments<T, Config>& a, void* workspace = nullptr,
           std::size_t workspace_bytes = 0, cudaStream_t stream = nullptr) noexcept {
  FAM_TRY(can_implement(a));
  return detail::launch(detail::params_of(a), a.options, workspace, workspace_bytes, stream);
}

// ---------------------------------------------------------------- one fused FAM block

/// fam::fam_block_args on device memory: token rows see [memory | FAM | block causally],
/// FAM rows see [FAM | whole block] (SPEC §3).
template <class T, class Config = dynamic_config>
struct fam_block_arguments {
  Config cfg{};                           ///< heads, kv heads, D, B, M, F, scale
  tensor_view<const T> mem_k{}, mem_v{};  ///< [Lm, Hkv, D], Lm = j*B with j <= M, oldest first
  tensor_view<const T> qf{};              ///< [F, H, D]
  tensor_view<const T> kf{}, vf{};        ///< [F, Hkv, D]
  tensor_view<const T> q{};               ///< [b, H, D], b <= B
  tensor_view<const T> k{}, v{};          ///< [b, Hkv, D]
  tensor_view<float> ut{};                ///< [b, H, D]
  tensor_view<float> uf{};                ///< [F, H, D]
  lse_view lse_t{};                       ///< optional [b, H]
  lse_view lse_f{};                       ///< optional [F, H]
  launch_options options{};
};

namespace detail {
template <class T, class Config>
attend_params<T> token_params_of(const fam_block_arguments<T, Config>& a) noexcept {
  attend_params<T> p = base_params<T>(a.cfg);
  set_queries(p, a.q, a.ut, a.lse_t);
  set_keys(p, segment_of(a.mem_k, a.mem_v), segment_of(a.kf, a.vf), segment_of(a.k, a.v));
  p.rule = row_rule::causal;
  p.causal_base = a.mem_k.rows + a.kf.rows;
  return p;
}
template <class T, class Config>
attend_params<T> fam_params_of(const fam_block_arguments<T, Config>& a) noexcept {
  attend_params<T> p = base_params<T>(a.cfg);
  set_queries(p, a.qf, a.uf, a.lse_f);
  set_keys(p, segment_of(a.kf, a.vf), segment_of(a.k, a.v));
  p.rule = row_rule::all;
  return p;
}
}  // namespace detail

template <class T, class Config>
status can_implement(const fam_block_arguments<T, Config>& a) noexcept {
  static_assert(is_storage_type_v<T>, "fam: storage types are float, fam::bf16, fam::fp16");
  FAM_TRY(detail::check_config(a.cfg));
  const index_t H = a.cfg.heads, Hkv = a.cfg.kv_heads, D = a.cfg.head_dim();
  const index_t B = a.cfg.block_size(), F = a.cfg.fam_len(), b = a.q.rows, Lm = a.mem_k.rows;
  FAM_CHECK(b >= 0 && b <= B, status::shape_mismatch);
  FAM_CHECK(Lm >= 0 && Lm % B == 0 && Lm / B <= a.cfg.mem_segments(), status::shape_mismatch);
  FAM_TRY(fam::detail::check_view(a.mem_k, Lm, Hkv, D));
  FAM_TRY(fam::detail::check_view(a.mem_v, Lm, Hkv, D));
  FAM_TRY(fam::detail::check_view(a.qf, F, H, D));
  FAM_TRY(fam::detail::check_view(a.kf, F, Hkv, D));
  FAM_TRY(fam::detail::check_view(a.vf, F, Hkv, D));
  FAM_TRY(fam::detail::check_view(a.q, b, H, D));
  FAM_TRY(fam::detail::check_view(a.k, b, Hkv, D));
  FAM_TRY(fam::detail::check_view(a.v, b, Hkv, D));
  FAM_TRY(fam::detail::check_view(a.ut, b, H, D));
  FAM_TRY(fam::detail::check_view(a.uf, F, H, D));
  FAM_TRY(fam::detail::check_lse(a.lse_t, b, H));
  FAM_TRY(fam::detail::check_lse(a.lse_f, F, H));
  if (b > 0) FAM_TRY(detail::check_forced_kernel(detail::token_params_of(a), a.options));
  if (F > 0) FAM_TRY(detail::check_forced_kernel(detail::fam_params_of(a), a.options));
  return status::ok;
}

template <class T, class Config>
std::size_t get_workspace_size(const fam_block_arguments<T, Config>& a) noexcept {
  return workspace_size(a.cfg);
}

template <class T, class Config>
status run(const fam_block_arguments<T, Config>& a, void* workspace = nullptr,
           std::size_t workspace_bytes = 0, cudaStream_t stream = nullptr) noexcept {
  FAM_TRY(can_implement(a));
  if (a.q.rows > 0)
    FAM_TRY(
        detail::launch(detail::token_params_of(a), a.options, workspace, workspace_bytes, stream));
  if (a.cfg.fam_len() > 0)
    FAM_TRY(
        detail::launch(detail::fam_params_of(a), a.options, workspace, workspace_bytes, stream));
  return status::ok;
}

// ---------------------------------------------------------------- streaming state

/// Stream, workspace and kernel options of a state call.
struct context {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;  ///< optional, workspace_size(cfg) bytes for the most key splits
  std::size_t workspace_bytes = 0;
  launch_options options{};
};

namespace detail {
struct device_state_access;
}

/// The streaming state of one layer and one sequence in device memory that the caller provides
/// (fam::layer_state's protocol; SPEC §2, §4, §5). Device layout, each region 256-byte aligned:
///   ring K, ring V  [Hkv][(M+1)*B][D]  T   block b in slot b % (M+1), rows row-major
///   Kf, Vf          [F][Hkv][D]        T   the installed FAM keys/values (Φ[t-1])
///   Qf              [F][H][D]          T   the installed FAM queries
///   Uf              [F][H][D]          fp32  FAM output of the last completed block
///   Uf lse          [F][H]             fp32
/// Token count, phase and `fresh` live on the host: the protocol is driven by the host.
/// Φ itself stays with the caller (phi_dim must be 0). Not thread-safe.
template <class Config, class T = bf16>
class device_state {
  static_assert(is_storage_type_v<T>, "fam: storage types are float, fam::bf16, fam::fp16");

 public:
  using config_type = Config;
  using kv_type = T;
  static constexpr std::size_t alignment = 256;

  /// Bytes of device storage for this configuration (0 if cfg is invalid).
  static std::size_t storage_bytes(const Config& cfg) noexcept {
    if (cfg.validate() != status::ok) return 0;
    return layout_of(cfg).total;
  }

  /// Binds device storage of at least storage_bytes(cfg) bytes, 256-byte aligned, and zeroes it
  /// on `stream`. @return ok; cfg errors; unsupported (D > 256, phi_dim > 0); null_pointer;
  /// buffer_too_small; invalid_layout (misaligned); a CUDA error's status.
  status init(const Config& cfg, void* device_storage, std::size_t bytes,
              cudaStream_t stream = nullptr) noexcept {
    FAM_TRY(detail::check_config(cfg));
    FAM_CHECK(cfg.phi_dim == 0, status::unsupported);
    const layout l = layout_of(cfg);
    FAM_CHECK(device_storage != nullptr, status::null_pointer);
    FAM_CHECK(bytes >= l.total, status::buffer_too_small);
    FAM_CHECK(reinterpret_cast<std::uintptr_t>(device_storage) % alignment == 0,
              status::invalid_layout);
    FAM_CUDA_TRY(cudaMemsetAsync(device_storage, 0, l.total, stream));
    cfg_ = cfg;
    base_ = static_cast<unsigned char*>(device_storage);
    layout_ = l;
    initialized_ = true;
    set_meta(0, cfg.fam_len() > 0 ? fam_phase::none : fam_phase::installed, false);
    return status::ok;
  }

  bool initialized() const noexcept { return initialized_; }
  const Config& config() const noexcept { return cfg_; }
  index_t tokens() const noexcept { return n_; }
  index_t current_block() const noexcept { return n_ / cfg_.block_size(); }
  index_t block_offset() const noexcept { return n_ % cfg_.block_size(); }
  fam_phase phase() const noexcept { return phase_; }
  bool fresh() const noexcept { return fresh_; }
  void set_fresh(bool f) noexcept { fresh_ = f; }
  index_t token_position(index_t i) const noexcept { return n_ + i + cfg_.position_offset; }
  index_t fam_position(index_t r) const noexcept {
    return current_block() * cfg_.block_size() - cfg_.fam_len() + r + cfg_.position_offset;
  }

  /// Uf [F, H, D] in device memory (meaningful while phase() == pending, once the stream has
  /// run the call that completed the block).
  tensor_view<const float> fam_output() const noexcept {
    return make_view<const float>(uf(), cfg_.fam_len(), cfg_.heads, cfg_.head_dim());
  }
  /// Its log-sum-exp [F, H], device memory.
  const float* fam_output_lse() const noexcept { return uf_lse(); }

  /// The device regions (layout above).
  T* ring_k() const noexcept { return at<T>(layout_.ring_k); }
  T* ring_v() const noexcept { return at<T>(layout_.ring_v); }
  T* fam_k() const noexcept { return at<T>(layout_.kf); }
  T* fam_v() const noexcept { return at<T>(layout_.vf); }
  T* fam_q() const noexcept { return at<T>(layout_.qf); }
  float* uf() const noexcept { return at<float>(layout_.uf); }
  float* uf_lse() const noexcept { return at<float>(layout_.uf_lse); }
  ring_geometry geometry() const noexcept { return {cfg_.block_size(), cfg_.mem_segments()}; }
  std::size_t bytes() const noexcept { return layout_.total; }
  void* storage() const noexcept { return base_; }

 private:
  friend struct detail::device_state_access;
  void set_meta(index_t n, fam_phase p, bool fresh) noexcept {
    n_ = n;
    phase_ = p;
    fresh_ = fresh;
  }

  struct layout {
    std::size_t ring_k, ring_v, kf, vf, qf, uf, uf_lse, total;
  };
  static std::size_t aligned(std::size_t n) noexcept {
    return (n + alignment - 1) / alignment * alignment;
  }
  static layout layout_of(const Config& c) noexcept {
    const auto D = static_cast<std::size_t>(c.head_dim());
    const auto F = static_cast<std::size_t>(c.fam_len());
    const auto H = static_cast<std::size_t>(c.heads), Hkv = static_cast<std::size_t>(c.kv_heads);
    const std::size_t ring = aligned(Hkv * static_cast<std::size_t>(c.ring_rows()) * D * sizeof(T));
    const std::size_t fkv = aligned(F * Hkv * D * sizeof(T));
    layout l{};
    l.ring_k = 0;
    l.ring_v = ring;
    l.kf = 2 * ring;
    l.vf = l.kf + fkv;
    l.qf = l.vf + fkv;
    l.uf = l.qf + aligned(F * H * D * sizeof(T));
    l.uf_lse = l.uf + aligned(F * H * D * sizeof(float));
    l.total = l.uf_lse + aligned(F * H * sizeof(float));
    return l;
  }
  template <class U>
  U* at(std::size_t offset) const noexcept {
    return base_ == nullptr ? nullptr : reinterpret_cast<U*>(base_ + offset);
  }

  Config cfg_{};
  unsigned char* base_ = nullptr;
  layout layout_{};
  index_t n_ = 0;
  fam_phase phase_ = fam_phase::installed;
  bool fresh_ = false;
  bool initialized_ = false;
};

namespace detail {

/// The protocol functions' access to a state's host-side meta data (token count, phase, fresh).
struct device_state_access {
  template <class Config, class T>
  static void set_meta(device_state<Config, T>& st, index_t n, fam_phase p, bool fresh) noexcept {
    st.set_meta(n, p, fresh);
  }
};

template <class Config, class T>
status check_fam_views(const device_state<Config, T>& st, tensor_view<const T> qf,
                       tensor_view<const T> kf, tensor_view<const T> vf) noexcept {
  const Config& c = st.config();
  FAM_TRY(fam::detail::check_view(qf, c.fam_len(), c.heads, c.head_dim()));
  FAM_TRY(fam::detail::check_view(kf, c.fam_len(), c.kv_heads, c.head_dim()));
  FAM_TRY(fam::detail::check_view(vf, c.fam_len(), c.kv_heads, c.head_dim()));
  return status::ok;
}

template <class Config, class T>
status install_fam(const device_state<Config, T>& st, tensor_view<const T> qf,
                   tensor_view<const T> kf, tensor_view<const T> vf, cudaStream_t stream) noexcept {
  const Config& c = st.config();
  const index_t D = c.head_dim();
  FAM_TRY(copy_rows(st.fam_q(), c.heads * D, D, qf, stream));
  FAM_TRY(copy_rows(st.fam_k(), c.kv_heads * D, D, kf, stream));
  FAM_TRY(copy_rows(st.fam_v(), c.kv_heads * D, D, vf, stream));
  return status::ok;
}

/// Keys of block t with `filled` rows in its slot: [memory blocks of the ring | FAM | block].
template <class Config, class T>
void state_keys(const device_state<Config, T>& st, attend_params<T>& p, index_t t, index_t filled,
                bool with_memory) noexcept {
  const Config& c = st.config();
  const index_t B = c.block_size(), D = c.head_dim(), F = c.fam_len();
  const ring_geometry ring = st.geometry();
  const index_t head = ring.rows() * D;
  key_segment<T> mem, fam, blk;
  if (with_memory) {
    mem.first_block = ring.first_memory_block(t * B);
    mem.count = (t - mem.first_block) * B;
    mem.k = st.ring_k();
    mem.v = st.ring_v();
    mem.k_row_stride = mem.v_row_stride = D;
    mem.k_head_stride = mem.v_head_stride = head;
    mem.block = B;
    mem.ring_blocks = ring.blocks();
  }
  if (F > 0) {
    fam.k = st.fam_k();
    fam.v = st.fam_v();
    fam.k_row_stride = fam.v_row_stride = c.kv_heads * D;
    fam.k_head_stride = fam.v_head_stride = D;
    fam.count = F;
  }
  const index_t slot_row = ring.slot_of_block(t) * B;
  blk.k = st.ring_k() + slot_row * D;
  blk.v = st.ring_v() + slot_row * D;
  blk.k_row_stride = blk.v_row_stride = D;
  blk.k_head_stride = blk.v_head_stride = head;
  blk.count = filled;
  set_keys(p, mem, fam, blk);
}

}  // namespace detail

/// Installs the projections of the initial FAM state Φ[-1]: Qf [F, H, D], Kf/Vf [F, Hkv, D]
/// (device memory, storage type T, RoPE'd at fam_position(r)). At a block boundary, no update
/// pending. @return ok; not_initialized; fam_update_pending; invalid_argument; view errors.
template <class Config, class T>
status begin_fam(device_state<Config, T>& st, tensor_view<const detail::same_t<T>> qf,
                 tensor_view<const detail::same_t<T>> kf, tensor_view<const detail::same_t<T>> vf,
                 bool fresh = true, const context& ctx = {}) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CHECK(st.phase() != fam_phase::pending, status::fam_update_pending);
  FAM_CHECK(st.block_offset() == 0, status::invalid_argument);
  FAM_TRY(detail::check_fam_views(st, qf, kf, vf));
  FAM_TRY(detail::install_fam(st, qf, kf, vf, ctx.stream));
  detail::device_state_access::set_meta(st, st.tokens(), fam_phase::installed,
                                        fresh && st.config().fam_len() > 0);
  return status::ok;
}

/// Installs the projections of Φ[t] after block t completed (phase() == pending); clears fresh.
template <class Config, class T>
status update_fam(device_state<Config, T>& st, tensor_view<const detail::same_t<T>> qf,
                  tensor_view<const detail::same_t<T>> kf, tensor_view<const detail::same_t<T>> vf,
                  const context& ctx = {}) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CHECK(st.phase() == fam_phase::pending, status::no_update_pending);
  FAM_TRY(detail::check_fam_views(st, qf, kf, vf));
  FAM_TRY(detail::install_fam(st, qf, kf, vf, ctx.stream));
  detail::device_state_access::set_meta(st, st.tokens(), fam_phase::installed, false);
  return status::ok;
}

/// Attends the next L tokens (q [L, H, D], k/v [L, Hkv, D], out [L, H, D], optional lse [L, H],
/// all device memory) after storing their keys in the ring, as fam::attend: with F > 0 the call
/// stops after the token that completes a block and computes Uf (phase() == pending); pass
/// `consumed` to allow a chunk that crosses the block end. @return the statuses of fam::attend
/// (validation errors leave everything unchanged), plus unsupported / a CUDA error's status from
/// a launch: then tokens() and *consumed count the pieces enqueued before it.
template <class Config, class T>
status attend(device_state<Config, T>& st, tensor_view<const detail::same_t<T>> q,
              tensor_view<const detail::same_t<T>> k, tensor_view<const detail::same_t<T>> v,
              tensor_view<float> out, lse_view lse = {}, index_t* consumed = nullptr,
              const context& ctx = {}) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  const Config& c = st.config();
  const index_t L = q.rows, H = c.heads, Hkv = c.kv_heads, D = c.head_dim();
  const index_t B = c.block_size(), F = c.fam_len();
  FAM_CHECK(L >= 0, status::invalid_argument);
  FAM_TRY(fam::detail::check_view(q, L, H, D));
  FAM_TRY(fam::detail::check_view(k, L, Hkv, D));
  FAM_TRY(fam::detail::check_view(v, L, Hkv, D));
  FAM_TRY(fam::detail::check_view(out, L, H, D));
  FAM_TRY(fam::detail::check_lse(lse, L, H));
  FAM_CHECK(ctx.options.max_splits >= 0, status::invalid_argument);
  if (L == 0) {
    if (consumed != nullptr) *consumed = 0;
    return status::ok;
  }
  FAM_CHECK(L <= max_tokens - st.tokens(), status::too_large);  // positions stay inside int64
  FAM_CHECK(st.phase() != fam_phase::none, status::fam_not_installed);
  FAM_CHECK(st.phase() != fam_phase::pending, status::fam_update_pending);
  FAM_CHECK(consumed != nullptr || F == 0 || L <= B - st.block_offset(), status::invalid_argument);
  if (ctx.options.kernel == kernel_kind::tensor_core) {
    // The state's own buffers are aligned; the caller's rows must be too.
    detail::attend_params<T> probe = detail::base_params<T>(c);
    detail::set_queries(probe, q, out, lse);
    detail::set_keys(probe, detail::segment_of(k, v));
    FAM_TRY(detail::check_forced_kernel(probe, ctx.options));
  }

  if (consumed != nullptr) *consumed = 0;
  const ring_geometry ring = st.geometry();
  index_t done = 0;
  while (done < L) {
    const index_t t = st.current_block(), o = st.block_offset();
    const index_t count = L - done < B - o ? L - done : B - o;
    // keys and values of the piece into block t's slot (evicting block t-M-1 when o == 0)
    const index_t row0 = ring.slot_of_block(t) * B + o;
    FAM_TRY(detail::copy_rows(st.ring_k() + row0 * D, D, ring.rows() * D, k.rows_from(done, count),
                              ctx.stream));
    FAM_TRY(detail::copy_rows(st.ring_v() + row0 * D, D, ring.rows() * D, v.rows_from(done, count),
                              ctx.stream));
    detail::attend_params<T> p = detail::base_params<T>(c);
    detail::set_queries(p, q.rows_from(done, count), out.rows_from(done, count),
                        lse.rows_from(done));
    detail::state_keys(st, p, t, o + count, true);
    p.rule = detail::row_rule::causal;
    p.causal_base = p.seg[0].count + p.seg[1].count + o;
    FAM_TRY(detail::launch(p, ctx.options, ctx.workspace, ctx.workspace_bytes, ctx.stream));
    detail::device_state_access::set_meta(st, st.tokens() + count, st.phase(), st.fresh());
    done += count;
    if (consumed != nullptr) *consumed = done;  // also right if a later launch fails
    if (st.block_offset() == 0 && F > 0) {
      // block t is complete: the FAM rows compress it (SPEC §3); then wait for update_fam
      detail::attend_params<T> pf = detail::base_params<T>(c);
      pf.q = st.fam_q();
      pf.q_row_stride = H * D;
      pf.q_head_stride = D;
      pf.out = st.uf();
      pf.out_row_stride = H * D;
      pf.out_head_stride = D;
      pf.lse = st.uf_lse();
      pf.lse_row_stride = H;
      pf.lse_head_stride = 1;
      pf.rows = F;
      detail::state_keys(st, pf, t, B, false);
      pf.rule = detail::row_rule::all;
      FAM_TRY(detail::launch(pf, ctx.options, ctx.workspace, ctx.workspace_bytes, ctx.stream));
      detail::device_state_access::set_meta(st, st.tokens(), fam_phase::pending, st.fresh());
      break;
    }
  }
  return status::ok;
}

/// Forgets the last `count` tokens of the current, incomplete block (host-side only).
template <class Config, class T>
status rewind(device_state<Config, T>& st, index_t count) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CHECK(count >= 0 && count <= st.block_offset(), status::out_of_range);
  detail::device_state_access::set_meta(st, st.tokens() - count, st.phase(), st.fresh());
  return status::ok;
}

/// Back to the state right after init(): zeroed storage (on ctx.stream), no tokens, no FAM.
template <class Config, class T>
status reset(device_state<Config, T>& st, const context& ctx = {}) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CUDA_TRY(cudaMemsetAsync(st.storage(), 0, st.bytes(), ctx.stream));
  detail::device_state_access::set_meta(
      st, 0, st.config().fam_len() > 0 ? fam_phase::none : fam_phase::installed, false);
  return status::ok;
}

/// Makes dst a copy of src (device-to-device on ctx.stream): fork a sequence.
template <class Config, class T>
status copy_state(device_state<Config, T>& dst, const device_state<Config, T>& src,
                  const context& ctx = {}) noexcept {
  FAM_CHECK(dst.initialized() && src.initialized(), status::not_initialized);
  FAM_CHECK(dst.bytes() == src.bytes() && dst.config().heads == src.config().heads &&
                dst.config().kv_heads == src.config().kv_heads &&
                dst.config().head_dim() == src.config().head_dim() &&
                dst.config().block_size() == src.config().block_size() &&
                dst.config().mem_segments() == src.config().mem_segments() &&
                dst.config().fam_len() == src.config().fam_len() &&
                dst.config().scale() == src.config().scale(),
            status::shape_mismatch);
  if (&dst == &src) return status::ok;
  FAM_CUDA_TRY(cudaMemcpyAsync(dst.storage(), src.storage(), src.bytes(), cudaMemcpyDeviceToDevice,
                               ctx.stream));
  detail::device_state_access::set_meta(dst, src.tokens(), src.phase(), src.fresh());
  return status::ok;
}

}  // namespace cuda
FAM_NAMESPACE_END

#endif  // FAM_CUDA_FAM_CUDA_CUH_
