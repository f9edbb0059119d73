// What one attention launch computes, in a form both kernels share.
//
// Keys are a "logical" sequence of up to three segments [memory | FAM | block], each a run of
// rows of one kv head (contiguous, or the blocks of a ring, slot by slot). With this order every
// query row sees one contiguous interval of logical keys:
//   - a whole sequence (full, sliding window, BSWA): the one segment is the caller's K/V and
//     row n sees visible_tokens(mask, n) (fam/mask.hpp, the rule the CPU backends use);
//   - tokens of a FAM/BSWA block: [memory | FAM | block so far], row i sees [0, base + i];
//   - FAM rows: [FAM | whole block], every key.
// Query rows are packed by kv head: one CTA serves the G = H / Hkv query heads that share a kv
// head, row v of kv head g being (token v / G, head g * G + v % G), so decode reads K/V once.
#ifndef FAM_CUDA_DETAIL_PARAMS_CUH_
#define FAM_CUDA_DETAIL_PARAMS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#include "../../kv_ring.hpp"
#include "../../mask.hpp"
#include "../../types.hpp"

FAM_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// One run of keys/values of kv head 0 (add kvh * head stride for kv head kvh).
template <class T>
struct key_segment {
  const T* k = nullptr;
  const T* v = nullptr;
  index_t k_row_stride = 0;
  index_t v_row_stride = 0;
  index_t k_head_stride = 0;
  index_t v_head_stride = 0;
  index_t count = 0;
  index_t block = 1;        ///< ring only: rows per block (B)
  index_t ring_blocks = 0;  ///< 0: contiguous rows; else blocks in the ring (M + 1)
  index_t first_block = 0;  ///< ring only: absolute block of the segment's first key

  /// Row (in k/v rows) of the segment's key j: block first_block + j / B lives in the ring slot
  /// that fam::ring_geometry gives it.
  FAM_HOST_DEVICE index_t physical_row(index_t j) const noexcept {
    if (ring_blocks == 0) return j;
    const ring_geometry ring{block, ring_blocks - 1};
    const index_t b = j / block;
    return ring.slot_of_block(first_block + b) * block + (j - b * block);
  }
};

/// How a query row's visible interval of logical keys is found.
enum class row_rule : int {
  sequence = 0,  ///< row r is token first_token + r; keys are tokens: visible_tokens(mask, n)
  causal = 1,    ///< row r sees [0, causal_base + r]
  all = 2,       ///< every row sees every key
};

inline constexpr int max_segments = 3;

// Kernels are compiled by nvcc, or — for the CPU emulator of tests/cuda/emulator, which runs
// this same source on the host with one fiber per CUDA thread — by the host compiler with
// FAM_CUDA_EMULATION defined. Launches and dynamic shared memory go through these two macros.
#if defined(__CUDACC__) || defined(FAM_CUDA_EMULATION)
#define FAM_CUDA_KERNELS 1
#endif
#if defined(FAM_CUDA_EMULATION)
#define FAM_CUDA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::fam_emu::launch(kernel, grid, block, smem, stream, __VA_ARGS__)
#define FAM_CUDA_DYNAMIC_SMEM(type, name) type* name = ::fam_emu::dynamic_smem<type>()
#else
#define FAM_CUDA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#define FAM_CUDA_DYNAMIC_SMEM(type, name) extern __shared__ type name[]
#endif

template <class T>
struct attend_params {
  const T* q = nullptr;  ///< query head 0 of row 0
  index_t q_row_stride = 0;
  index_t q_head_stride = 0;
  float* out = nullptr;
  index_t out_row_stride = 0;
  index_t out_head_stride = 0;
  float* lse = nullptr;  ///< optional, natural log
  index_t lse_row_stride = 0;
  index_t lse_head_stride = 0;
  index_t rows = 0;  ///< query rows (tokens or FAM rows)
  int group = 1;     ///< G = H / Hkv
  int kv_heads = 1;
  int head_dim = 0;
  float scale_log2 = 0.0f;  ///< scale * log2(e): the kernels use exp2

  key_segment<T> seg[max_segments];
  index_t n_keys = 0;  ///< sum of the segments' counts

  row_rule rule = row_rule::all;
  mask_spec mask{};
  index_t first_token = 0;
  index_t causal_base = 0;

  /// Split-KV (decode): splits > 1 makes CTA z of a kv head handle its z-th share of the key
  /// tiles and write a normalized partial output and its log2-sum-exp to the workspace; the
  /// combine kernel merges them. Only used when all rows of a kv head fit one row tile.
  int splits = 1;
  float* part_out = nullptr;  ///< [splits][Hkv][rows * G][D]
  float* part_lse = nullptr;  ///< [splits][Hkv][rows * G]
};

/// The interval of logical keys that query row r sees (lo > hi: none).
template <class T>
FAM_HOST_DEVICE inline key_range row_keys(const attend_params<T>& p, index_t r) noexcept {
  switch (p.rule) {
    case row_rule::sequence:
      return visible_tokens(p.mask, p.first_token + r);
    case row_rule::causal:
      return {0, p.causal_base + r};
    case row_rule::all:
      break;
  }
  return {0, p.n_keys - 1};
}

/// Key tiles [begin, end) that CTA `split` of `splits` visits for keys [lo, hi] in tiles of bn.
struct tile_range {
  index_t begin;
  index_t end;
};
FAM_HOST_DEVICE inline tile_range split_tiles(index_t lo, index_t hi, index_t bn, int split,
                                              int splits) noexcept {
  if (hi < lo) return {0, 0};
  const index_t first = lo / bn, last = hi / bn + 1;
  const index_t per = (last - first + splits - 1) / splits;
  index_t b = first + split * per, e = b + per;
  if (b > last) b = last;
  if (e > last) e = last;
  return {b, e};
}

// ---- device-side storage conversions (bit patterns; fam::bf16 and fam::fp16 are 16-bit PODs)

#if defined(FAM_CUDA_KERNELS)
__device__ __forceinline__ float load_float(const float* p) { return *p; }
__device__ __forceinline__ float load_float(const bf16* p) {
  return __uint_as_float(static_cast<unsigned>(p->bits) << 16);
}
__device__ __forceinline__ float load_float(const fp16* p) {
  return __half2float(__ushort_as_half(p->bits));
}

/// Pointer to element 0 of logical key j of kv head kvh (K or V), j < p.n_keys.
template <class T, bool IsValue>
__device__ __forceinline__ const T* key_row(const attend_params<T>& p, index_t kvh, index_t j) {
  int s = 0;
#pragma unroll
  for (int i = 0; i + 1 < max_segments; ++i) {
    if (s == i && j >= p.seg[i].count) {
      j -= p.seg[i].count;
      s = i + 1;
    }
  }
  const key_segment<T>& g = p.seg[s];
  const index_t row = g.physical_row(j);
  return IsValue ? g.v + kvh * g.v_head_stride + row * g.v_row_stride
                 : g.k + kvh * g.k_head_stride + row * g.k_row_stride;
}

/// Writes row v of kv head kvh (o = acc / l, lse2 = m + log2 l; l == 0: no visible key).
template <class T>
__device__ __forceinline__ void store_row_lse(const attend_params<T>& p, index_t kvh, index_t v,
                                              float m, float l, int split) {
  const float lse2 = l > 0.0f ? m + log2f(l) : -INFINITY;
  if (p.splits > 1) {
    p.part_lse[(static_cast<index_t>(split) * p.kv_heads + kvh) * p.rows * p.group + v] = lse2;
  } else if (p.lse != nullptr) {
    const index_t r = v / p.group, h = kvh * p.group + v % p.group;
    p.lse[r * p.lse_row_stride + h * p.lse_head_stride] = lse2 * 0.6931471805599453f;
  }
}

/// Where row v of kv head kvh writes its output (the workspace when split).
template <class T>
__device__ __forceinline__ float* out_row(const attend_params<T>& p, index_t kvh, index_t v,
                                          int split) {
  if (p.splits > 1)
    return p.part_out +
           ((static_cast<index_t>(split) * p.kv_heads + kvh) * p.rows * p.group + v) * p.head_dim;
  const index_t r = v / p.group, h = kvh * p.group + v % p.group;
  return p.out + r * p.out_row_stride + h * p.out_head_stride;
}

/// Merges the split partials: grid (rows * G, Hkv), one thread per output element.
template <class T>
__global__ void combine_kernel(attend_params<T> p) {
  const index_t v = blockIdx.x, kvh = blockIdx.y, vrows = p.rows * p.group;
  float m = -INFINITY;
  for (int z = 0; z < p.splits; ++z)
    m = fmaxf(m, p.part_lse[(static_cast<index_t>(z) * p.kv_heads + kvh) * vrows + v]);
  const index_t r = v / p.group, h = kvh * p.group + v % p.group;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float acc = 0.0f, l = 0.0f;
    if (m != -INFINITY) {
      for (int z = 0; z < p.splits; ++z) {
        const index_t i = (static_cast<index_t>(z) * p.kv_heads + kvh) * vrows + v;
        const float w = exp2f(p.part_lse[i] - m);  // 0 for an empty split (-inf)
        l += w;
        acc += w * p.part_out[i * p.head_dim + d];
      }
    }
    p.out[r * p.out_row_stride + h * p.out_head_stride + d] = l > 0.0f ? acc / l : 0.0f;
  }
  if (threadIdx.x == 0 && p.lse != nullptr) {
    float l = 0.0f;
    if (m != -INFINITY)
      for (int z = 0; z < p.splits; ++z)
        l += exp2f(p.part_lse[(static_cast<index_t>(z) * p.kv_heads + kvh) * vrows + v] - m);
    p.lse[r * p.lse_row_stride + h * p.lse_head_stride] =
        l > 0.0f ? (m + log2f(l)) * 0.6931471805599453f : -INFINITY;
  }
}

/// Copies rows x heads x D elements between two strided [rows, heads, D] layouts, converting
/// (used for the ring and for installing the FAM projections). grid.x over rows * heads.
template <class TD, class TS>
__global__ void copy_rows_kernel(TD* dst, index_t d_row, index_t d_head, const TS* src,
                                 index_t s_row, index_t s_head, index_t rows, index_t heads,
                                 int head_dim) {
  for (index_t i = blockIdx.x; i < rows * heads; i += gridDim.x) {
    const index_t r = i / heads, h = i % heads;
    const TS* s = src + r * s_row + h * s_head;
    TD* d = dst + r * d_row + h * d_head;
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) d[e] = s[e];
  }
}
#endif  // FAM_CUDA_KERNELS

}  // namespace detail
}  // namespace cuda
FAM_NAMESPACE_END

#endif  // FAM_CUDA_DETAIL_PARAMS_CUH_
