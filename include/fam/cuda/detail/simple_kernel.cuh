// The simple tiled kernel: any storage type, any head dim up to DPad, fp32 throughout.
// CTA = 128 threads = 16 query rows (packed by kv head) x 8 threads; thread t of a row owns the
// dims t, t + 8, ... of the query and of the output. Per key tile (in shared memory as fp32):
// scores by a dot product over each thread's dims plus a 3-step shuffle reduction, then the
// online softmax (running max m, sum l, rescale by exp2(m_old - m_new)). Tiles outside the
// union of the CTA's visible intervals are never loaded; only tiles that some row sees only in
// part are masked.
#ifndef FAM_CUDA_DETAIL_SIMPLE_KERNEL_CUH_
#define FAM_CUDA_DETAIL_SIMPLE_KERNEL_CUH_

#include "params.cuh"

FAM_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

template <int DPad>
struct simple_shape {
  static constexpr int threads = 128;
  static constexpr int lanes_per_row = 8;
  static constexpr int bm = threads / lanes_per_row;  ///< 16 query rows per CTA
  static constexpr int bn = 4096 / DPad;              ///< keys per tile: 32 KiB of K and V tiles
  static constexpr int dims_per_lane = DPad / lanes_per_row;
};

#if defined(FAM_CUDA_KERNELS)
template <class T, int DPad>
__global__ void __launch_bounds__(128) simple_kernel(attend_params<T> p) {
  using S = simple_shape<DPad>;
  __shared__ float ks[S::bn][DPad];
  __shared__ float vs[S::bn][DPad];

  const int tid = threadIdx.x, lane8 = tid % S::lanes_per_row, row_in_cta = tid / S::lanes_per_row;
  const index_t kvh = blockIdx.y;
  const int split = blockIdx.z;
  const index_t vrows = p.rows * p.group;
  const index_t v0 = static_cast<index_t>(blockIdx.x) * S::bm;
  const index_t v = v0 + row_in_cta;
  const bool valid = v < vrows;
  const index_t vlast = (v0 + S::bm < vrows ? v0 + S::bm : vrows) - 1;

  // Visible intervals are monotone in the row: the first row has the smallest lo and hi, the
  // last row the largest. Keys every row sees: [last.lo, first.hi].
  const key_range first = row_keys(p, v0 / p.group), last = row_keys(p, vlast / p.group);
  const key_range mine = row_keys(p, (valid ? v : vlast) / p.group);
  const tile_range tiles = split_tiles(first.lo, last.hi, S::bn, split, p.splits);

  const index_t r = (valid ? v : vlast) / p.group;
  const index_t h = kvh * p.group + (valid ? v : vlast) % p.group;
  float q[S::dims_per_lane], o[S::dims_per_lane];
#pragma unroll
  for (int i = 0; i < S::dims_per_lane; ++i) {
    const int d = lane8 + i * S::lanes_per_row;
    q[i] = d < p.head_dim ? load_float(p.q + r * p.q_row_stride + h * p.q_head_stride + d) : 0.0f;
    o[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  for (index_t tile = tiles.begin; tile < tiles.end; ++tile) {
    const index_t j0 = tile * S::bn;
    __syncthreads();  // the previous tile is consumed
    for (int idx = tid; idx < S::bn * DPad; idx += S::threads) {
      const int j = idx / DPad, d = idx % DPad;
      const index_t key = j0 + j;
      float kx = 0.0f, vx = 0.0f;
      if (key < p.n_keys && d < p.head_dim) {
        kx = load_float(key_row<T, false>(p, kvh, key) + d);
        vx = load_float(key_row<T, true>(p, kvh, key) + d);
      }
      ks[j][d] = kx;
      vs[j][d] = vx;
    }
    __syncthreads();

    const bool boundary = !(j0 >= last.lo && j0 + S::bn - 1 <= first.hi);
    float s[S::bn];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < S::bn; ++j) {
      float x = 0.0f;
#pragma unroll
      for (int i = 0; i < S::dims_per_lane; ++i) x += q[i] * ks[j][lane8 + i * S::lanes_per_row];
      x += __shfl_xor_sync(0xffffffffu, x, 1);
      x += __shfl_xor_sync(0xffffffffu, x, 2);
      x += __shfl_xor_sync(0xffffffffu, x, 4);
      x *= p.scale_log2;
      if (boundary && (!valid || j0 + j < mine.lo || j0 + j > mine.hi)) x = -INFINITY;
      s[j] = x;
      tile_max = fmaxf(tile_max, x);
    }
    const float m_new = fmaxf(m, tile_max);
    if (m_new == -INFINITY) continue;      // nothing visible to this row yet
    const float alpha = exp2f(m - m_new);  // 0 while m is -inf
    l *= alpha;
#pragma unroll
    for (int i = 0; i < S::dims_per_lane; ++i) o[i] *= alpha;
#pragma unroll
    for (int j = 0; j < S::bn; ++j) {
      const float pj = exp2f(s[j] - m_new);
      l += pj;
#pragma unroll
      for (int i = 0; i < S::dims_per_lane; ++i) o[i] += pj * vs[j][lane8 + i * S::lanes_per_row];
    }
    m = m_new;
  }

  if (!valid) return;
  float* out = out_row(p, kvh, v, split);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int i = 0; i < S::dims_per_lane; ++i) {
    const int d = lane8 + i * S::lanes_per_row;
    if (d < p.head_dim) out[d] = o[i] * inv;
  }
  if (lane8 == 0) store_row_lse(p, kvh, v, m, l, split);
}
#endif  // FAM_CUDA_KERNELS

}  // namespace detail
}  // namespace cuda
FAM_NAMESPACE_END

#endif  // FAM_CUDA_DETAIL_SIMPLE_KERNEL_CUH_
