// The tensor-core kernel (sm_80 and newer; sm_90 runs the same HMMA code): bf16 or fp16 storage,
// fp32 accumulation, head dims up to DPad in {64, 128, 256} that are multiples of 8.
//
// CTA = 4 warps = 64 query rows (packed by kv head), key tiles of 64. Q, K and V tiles sit in
// shared memory (rows padded by 8 elements, so that the 32-bit fragment loads below hit 32
// different banks). Per warp and key tile, flash-attention-2 style:
//   S[16 x 64] = Q[16 x D] K^T        mma.sync.m16n8k16 (row.col), fp32 accumulators
//   masking (boundary tiles only), row max by 2 shuffles, online softmax in the registers
//   O[16 x D] += P V                  P re-packed from the S accumulators into A fragments
// Fragment layouts (PTX ISA, mma.m16n8k16 for .bf16/.f16; g = lane / 4, c = lane % 4):
//   A (16x16, row-major): a0 = (g, 2c..2c+1), a1 = (g+8, 2c..), a2 = (g, 2c+8..), a3 = (g+8,
//   2c+8..) B (16x8, "col"):      b0 = (k = 2c..2c+1, n = g), b1 = (k = 2c+8..2c+9, n = g) C/D
//   (16x8, fp32):     c0,c1 = (g, 2c..2c+1), c2,c3 = (g+8, 2c..2c+1)
// Two adjacent C tiles of S (keys 16kk..16kk+15) are exactly the A fragment of P for keys
// 16kk..16kk+15. K rows in shared memory are the B operand of Q K^T directly (two consecutive
// dims of one key: one 32-bit load); V's B operand pairs two consecutive keys of one dim, read
// as two 16-bit loads.
#ifndef FAM_CUDA_DETAIL_MMA_KERNEL_CUH_
#define FAM_CUDA_DETAIL_MMA_KERNEL_CUH_

#include "params.cuh"

FAM_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

template <int DPad>
struct mma_shape {
  static constexpr int threads = 128;
  static constexpr int warps = 4;
  static constexpr int bm = 64;            ///< query rows per CTA (16 per warp)
  static constexpr int bn = 64;            ///< keys per tile
  static constexpr int stride = DPad + 8;  ///< Q and K row pitch in shared memory (elements)
  static constexpr int smem_bytes = (bm + 2 * bn) * stride * 2;
};

#if defined(FAM_CUDA_KERNELS)
template <class T>
struct mma_type;
template <>
struct mma_type<bf16> {
  __device__ static std::uint32_t pack(float lo, float hi) {
    __nv_bfloat162 t = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
    std::uint32_t u;
    memcpy(&u, &t, sizeof u);
    return u;
  }
  __device__ static void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                             std::uint32_t b1) {
#if defined(FAM_CUDA_EMULATION)
    ::fam_emu::mma_m16n8k16<bf16>(c, a, b0, b1);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();  // the host dispatch never launches this kernel below sm_80
#endif
  }
};
template <>
struct mma_type<fp16> {
  __device__ static std::uint32_t pack(float lo, float hi) {
    __half2 t = __floats2half2_rn(lo, hi);
    std::uint32_t u;
    memcpy(&u, &t, sizeof u);
    return u;
  }
  __device__ static void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                             std::uint32_t b1) {
#if defined(FAM_CUDA_EMULATION)
    ::fam_emu::mma_m16n8k16<fp16>(c, a, b0, b1);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();
#endif
  }
};

__device__ __forceinline__ std::uint32_t ld32(const std::uint16_t* p) {
  return *reinterpret_cast<const std::uint32_t*>(p);
}
__device__ __forceinline__ std::uint32_t ld2x16(const std::uint16_t* lo, const std::uint16_t* hi) {
  return static_cast<std::uint32_t>(*lo) | (static_cast<std::uint32_t>(*hi) << 16);
}

/// Requires: head_dim % 8 == 0, every row start 16-byte aligned (checked by the host).
template <class T, int DPad>
__global__ void __launch_bounds__(128) mma_kernel(attend_params<T> p) {
  using S = mma_shape<DPad>;
  using M = mma_type<T>;
  constexpr int chunks = DPad / 8;  // 16-byte chunks per row
  FAM_CUDA_DYNAMIC_SMEM(uint4, smem_u4);
  std::uint16_t* qs = reinterpret_cast<std::uint16_t*>(smem_u4);
  std::uint16_t* ks = qs + S::bm * S::stride;
  std::uint16_t* vs = ks + S::bn * S::stride;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
  const index_t kvh = blockIdx.y;
  const int split = blockIdx.z;
  const index_t vrows = p.rows * p.group;
  const index_t v0 = static_cast<index_t>(blockIdx.x) * S::bm;
  const index_t vlast = (v0 + S::bm < vrows ? v0 + S::bm : vrows) - 1;
  const key_range first = row_keys(p, v0 / p.group), last = row_keys(p, vlast / p.group);
  const tile_range tiles = split_tiles(first.lo, last.hi, S::bn, split, p.splits);

  // This thread's two rows: warp * 16 + g and + 8.
  const index_t va = v0 + warp * 16 + g, vb = va + 8;
  const bool valid_a = va < vrows, valid_b = vb < vrows;
  const key_range ka = row_keys(p, (valid_a ? va : vlast) / p.group);
  const key_range kb = row_keys(p, (valid_b ? vb : vlast) / p.group);

  // Q tile, zero past the head dim and past the last row.
  for (int i = tid; i < S::bm * chunks; i += S::threads) {
    const int row = i / chunks, ch = i % chunks;
    const index_t v = v0 + row;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (v < vrows && ch * 8 < p.head_dim) {
      const index_t r = v / p.group, h = kvh * p.group + v % p.group;
      x = *reinterpret_cast<const uint4*>(p.q + r * p.q_row_stride + h * p.q_head_stride + ch * 8);
    }
    *reinterpret_cast<uint4*>(qs + row * S::stride + ch * 8) = x;
  }

  float o[DPad / 8][4];
#pragma unroll
  for (int n = 0; n < DPad / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;  // la/lb: this thread's columns

  for (index_t tile = tiles.begin; tile < tiles.end; ++tile) {
    const index_t j0 = tile * S::bn;
    __syncthreads();  // the previous tile is consumed (and the Q tile is stored)
    for (int i = tid; i < S::bn * chunks; i += S::threads) {
      const int j = i / chunks, ch = i % chunks;
      const index_t key = j0 + j;
      uint4 kx = make_uint4(0, 0, 0, 0), vx = make_uint4(0, 0, 0, 0);
      if (key < p.n_keys && ch * 8 < p.head_dim) {
        kx = *reinterpret_cast<const uint4*>(key_row<T, false>(p, kvh, key) + ch * 8);
        vx = *reinterpret_cast<const uint4*>(key_row<T, true>(p, kvh, key) + ch * 8);
      }
      *reinterpret_cast<uint4*>(ks + j * S::stride + ch * 8) = kx;
      *reinterpret_cast<uint4*>(vs + j * S::stride + ch * 8) = vx;
    }
    __syncthreads();

    // S = Q K^T for this warp's 16 rows and the tile's 64 keys (8 n-tiles of 8 keys).
    float s[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < DPad / 16; ++kk) {
      if (kk * 16 < p.head_dim) {
        const std::uint16_t* qa = qs + (warp * 16 + g) * S::stride + kk * 16 + 2 * c;
        const std::uint32_t a[4] = {ld32(qa), ld32(qa + 8 * S::stride), ld32(qa + 8),
                                    ld32(qa + 8 * S::stride + 8)};
#pragma unroll
        for (int n = 0; n < 8; ++n) {
          const std::uint16_t* kb_ = ks + (n * 8 + g) * S::stride + kk * 16 + 2 * c;
          M::mma(s[n], a, ld32(kb_), ld32(kb_ + 8));
        }
      }
    }

    const bool boundary = !(j0 >= last.lo && j0 + S::bn - 1 <= first.hi);
    float mxa = -INFINITY, mxb = -INFINITY;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[n][e] * p.scale_log2;
        if (boundary) {
          const index_t key = j0 + n * 8 + 2 * c + (e & 1);
          const bool upper = e < 2;
          const key_range& kr = upper ? ka : kb;
          if (!(upper ? valid_a : valid_b) || key < kr.lo || key > kr.hi) x = -INFINITY;
        }
        s[n][e] = x;
        if (e < 2) {
          mxa = fmaxf(mxa, x);
        } else {
          mxb = fmaxf(mxb, x);
        }
      }
    }
    mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 1));
    mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 2));
    mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 1));
    mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 2));
    const float na = fmaxf(ma, mxa), nb = fmaxf(mb, mxb);
    // A row with nothing visible so far keeps m = -inf: its weights are 0, nothing rescales.
    const float alpha_a = na == -INFINITY ? 1.0f : exp2f(ma - na);
    const float alpha_b = nb == -INFINITY ? 1.0f : exp2f(mb - nb);
    std::uint32_t pa[4][4];  // P as A fragments, 4 k-steps of 16 keys
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      const float p0 = na == -INFINITY ? 0.0f : exp2f(s[n][0] - na);
      const float p1 = na == -INFINITY ? 0.0f : exp2f(s[n][1] - na);
      const float p2 = nb == -INFINITY ? 0.0f : exp2f(s[n][2] - nb);
      const float p3 = nb == -INFINITY ? 0.0f : exp2f(s[n][3] - nb);
      la = (n == 0 ? la * alpha_a : la) + p0 + p1;
      lb = (n == 0 ? lb * alpha_b : lb) + p2 + p3;
      pa[n / 2][(n % 2) * 2 + 0] = M::pack(p0, p1);  // rows g:   a0 (even n) / a2 (odd n)
      pa[n / 2][(n % 2) * 2 + 1] = M::pack(p2, p3);  // rows g+8: a1 (even n) / a3 (odd n)
    }
    ma = na;
    mb = nb;
#pragma unroll
    for (int n = 0; n < DPad / 8; ++n) {
      o[n][0] *= alpha_a;
      o[n][1] *= alpha_a;
      o[n][2] *= alpha_b;
      o[n][3] *= alpha_b;
    }
    // O += P V: B fragment (k = keys 16kk + 2c.., n = dims 8n + g), two 16-bit loads each.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int n = 0; n < DPad / 8; ++n) {
        if (n * 8 < p.head_dim) {
          const std::uint16_t* vb_ = vs + (kk * 16 + 2 * c) * S::stride + n * 8 + g;
          M::mma(o[n], pa[kk], ld2x16(vb_, vb_ + S::stride),
                 ld2x16(vb_ + 8 * S::stride, vb_ + 9 * S::stride));
        }
      }
    }
  }

  // Row sums: each thread holds its own columns; add across the 4 threads of the row.
  la += __shfl_xor_sync(0xffffffffu, la, 1);
  la += __shfl_xor_sync(0xffffffffu, la, 2);
  lb += __shfl_xor_sync(0xffffffffu, lb, 1);
  lb += __shfl_xor_sync(0xffffffffu, lb, 2);
  const float inv_a = la > 0.0f ? 1.0f / la : 0.0f, inv_b = lb > 0.0f ? 1.0f / lb : 0.0f;
  if (valid_a) {
    float* out = out_row(p, kvh, va, split);
#pragma unroll
    for (int n = 0; n < DPad / 8; ++n)
      if (n * 8 < p.head_dim) {
        out[n * 8 + 2 * c] = o[n][0] * inv_a;
        out[n * 8 + 2 * c + 1] = o[n][1] * inv_a;
      }
    if (c == 0) store_row_lse(p, kvh, va, ma, la, split);
  }
  if (valid_b) {
    float* out = out_row(p, kvh, vb, split);
#pragma unroll
    for (int n = 0; n < DPad / 8; ++n)
      if (n * 8 < p.head_dim) {
        out[n * 8 + 2 * c] = o[n][2] * inv_b;
        out[n * 8 + 2 * c + 1] = o[n][3] * inv_b;
      }
    if (c == 0) store_row_lse(p, kvh, vb, mb, lb, split);
  }
}
#endif  // FAM_CUDA_KERNELS

}  // namespace detail
}  // namespace cuda
FAM_NAMESPACE_END

#endif  // FAM_CUDA_DETAIL_MMA_KERNEL_CUH_
