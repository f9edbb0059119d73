// The SIMD CPU backend (xsimd): flash-style tiles with an online softmax, never a full score
// matrix. Per group of query rows that share their keys (a block of BSWA or FAM):
//   for each key span (memory blocks, FAM, own block) and each key tile of 64 keys
//   (aligned to the span start, so to block boundaries):
//     K^T tile: read in place from the ring (which stores K^T per block), else packed once
//               for up to 256 rows;
//     per micro-group of rows: S = scale * Q K^T (register-blocked FMA), boundary tiles masked
//               per row, online softmax (running max m, sum l, rescale of the output rows),
//               O += P V (register-blocked FMA).
// Tiles outside the window are never visited: the spans only cover visible blocks.
//
// Determinism: every output element is a fixed chain of operations that does not depend on
// how rows are grouped (the micro-kernels give each (row, key) and (row, dim) lane its own
// sequential FMA chain), on the chunking of the call, on the ring's placement or on threads.
// Prefill and decode therefore agree bitwise, within one ISA.
#ifndef FAM_BACKEND_SIMD_HPP_
#define FAM_BACKEND_SIMD_HPP_

#include <atomic>
#include <cmath>
#include <type_traits>

#include "../detail/key_spans.hpp"
#include "../detail/math.hpp"
#include "../detail/simd_compat.hpp"
#include "../types.hpp"
#include "reference.hpp"
#include "simd_convert.hpp"

FAM_NAMESPACE_BEGIN

/// Counters a caller may attach to a simd_backend (backend.stats = &s) to see the tiling.
struct attention_stats {
  std::atomic<index_t> key_tiles{0};     ///< (row chunk, key tile) pairs computed
  std::atomic<index_t> masked_tiles{0};  ///< of those, tiles where some row sees only a prefix
  std::atomic<index_t> packed_tiles{0};  ///< tiles whose K^T was packed (not read in place)
  void reset() noexcept {
    key_tiles = 0;
    masked_tiles = 0;
    packed_tiles = 0;
  }
};

/// SIMD backend for the xsimd architecture Arch (default: the best the compiler flags enable).
/// Falls back to the reference backend for anything it does not overload.
template <class Arch = xsimd::default_arch>
struct simd_backend : reference_backend {
  using arch = Arch;
  static constexpr const char* name() noexcept { return "simd"; }
  /// Largest head dimension (tile buffers live on the stack: ~140 KB at D = 256).
  static constexpr index_t max_head_dim = 256;
  /// Keys per tile: a multiple of the vector width of every ISA.
  static constexpr index_t key_tile = 32;
  /// Query rows that share one packed K^T tile (a whole block up to B = 1024).
  static constexpr index_t row_chunk = 1024;

  attention_stats* stats = nullptr;  ///< optional counters
};

namespace kernel {
namespace simd_detail {

template <class Arch>
using fbatch = simd::fbatch<Arch>;
template <class Arch>
inline constexpr index_t width = static_cast<index_t>(fbatch<Arch>::size);
/// Keys per tile (32: a K^T tile and a V tile of D = 128 fit in L1 together).
inline constexpr index_t key_tile = 32;
/// Vectors of keys per score micro-kernel, and rows: as many as the register file holds
/// (32 vector registers with AVX-512, 16 below).
template <class Arch>
inline constexpr index_t score_vectors = key_tile / width<Arch> < 4 ? key_tile / width<Arch> : 4;
template <class Arch>
inline constexpr int score_rows = width<Arch> >= 16 ? 12 : 3;
/// Rows of the value micro-kernel (4 vectors of dims each); divides score_rows.
template <class Arch>
inline constexpr int value_rows = width<Arch> >= 16 ? 6 : 3;

/// s[r][0, KT) = Q[r] . K^T[:, 0, KT) for R rows; kt holds D rows of KT keys, kt_stride apart.
/// Each lane accumulates its own sequential FMA chain over d.
template <class Arch, int R>
inline void scores(const float* const* q, const float* kt, index_t kt_stride, index_t head_dim,
                   float* s) noexcept {
  using b = fbatch<Arch>;
  constexpr index_t W = width<Arch>, KT = key_tile, V = score_vectors<Arch>;
  for (index_t k0 = 0; k0 < KT; k0 += V * W) {
    b acc[R][V];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) acc[r][c] = b(0.0f);
    for (index_t d = 0; d < head_dim; ++d) {
      const float* row = kt + d * kt_stride + k0;
      b k[V];
      for (int c = 0; c < V; ++c) k[c] = b::load_unaligned(row + c * W);
      for (int r = 0; r < R; ++r) {
        const b qd(q[r][d]);
        for (int c = 0; c < V; ++c) acc[r][c] = xsimd::fma(qd, k[c], acc[r][c]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) acc[r][c].store_aligned(s + r * KT + k0 + c * W);
  }
}

/// out[r][:] += sum_{j in [j0, j1)} p[r][j] * V[j][:] for R rows; per element a sequential FMA
/// chain over j, so splitting [j0, j1) or regrouping rows changes nothing.
template <class Arch, int R>
inline void accumulate_values(const float* const* p, index_t j0, index_t j1, const float* v,
                              index_t v_stride, float* const* out, index_t head_dim) noexcept {
  using b = fbatch<Arch>;
  constexpr index_t W = width<Arch>, V = 4;
  index_t d0 = 0;
  for (; d0 + V * W <= head_dim; d0 += V * W) {
    b acc[R][V];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) acc[r][c] = b::load_unaligned(out[r] + d0 + c * W);
    for (index_t j = j0; j < j1; ++j) {
      b vv[V];
      for (int c = 0; c < V; ++c) vv[c] = b::load_unaligned(v + j * v_stride + d0 + c * W);
      for (int r = 0; r < R; ++r) {
        const b pj(p[r][j]);
        for (int c = 0; c < V; ++c) acc[r][c] = xsimd::fma(pj, vv[c], acc[r][c]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) acc[r][c].store_unaligned(out[r] + d0 + c * W);
  }
  for (; d0 + W <= head_dim; d0 += W)
    for (int r = 0; r < R; ++r) {
      b acc = b::load_unaligned(out[r] + d0);
      for (index_t j = j0; j < j1; ++j)
        acc = xsimd::fma(b(p[r][j]), b::load_unaligned(v + j * v_stride + d0), acc);
      acc.store_unaligned(out[r] + d0);
    }
  for (; d0 < head_dim; ++d0)  // dims past the last full vector: scalar, same chain per element
    for (int r = 0; r < R; ++r) {
      float acc = out[r][d0];
      for (index_t j = j0; j < j1; ++j) acc = std::fma(p[r][j], v[j * v_stride + d0], acc);
      out[r][d0] = acc;
    }
}

/// scores<Arch, n> for a run-time row count 1 <= n <= N.
template <class Arch, int N>
inline void scores_rows(index_t n, const float* const* q, const float* kt, index_t kt_stride,
                        index_t head_dim, float* s) noexcept {
  if constexpr (N > 1) {
    if (n < N) return scores_rows<Arch, N - 1>(n, q, kt, kt_stride, head_dim, s);
  }
  scores<Arch, N>(q, kt, kt_stride, head_dim, s);
}

/// accumulate_values<Arch, n> for a run-time row count 1 <= n <= N.
template <class Arch, int N>
inline void accumulate_rows(index_t n, const float* const* p, index_t j0, index_t j1,
                            const float* v, index_t v_stride, float* const* out,
                            index_t head_dim) noexcept {
  if constexpr (N > 1) {
    if (n < N) return accumulate_rows<Arch, N - 1>(n, p, j0, j1, v, v_stride, out, head_dim);
  }
  accumulate_values<Arch, N>(p, j0, j1, v, v_stride, out, head_dim);
}

template <class T>
using key_type_of = std::remove_const_t<std::remove_pointer_t<decltype(T{}.k)>>;

}  // namespace simd_detail

/// SIMD attend_rows: same contract as the reference overload (see reference.hpp).
template <class TQ, class Spans, class Arch>
void attend_rows(const query_rows<TQ>& rows, const Spans& spans, tail_mask tail, index_t head_dim,
                 double scale, const simd_backend<Arch>& backend) noexcept {
  namespace sd = simd_detail;
  using b = sd::fbatch<Arch>;
  using TK = sd::key_type_of<decltype(spans[0])>;
  constexpr index_t W = sd::width<Arch>, KT = simd_backend<Arch>::key_tile;
  constexpr index_t DMAX = simd_backend<Arch>::max_head_dim, RC = simd_backend<Arch>::row_chunk;
  constexpr int RQ = sd::score_rows<Arch>, RV = sd::value_rows<Arch>;
  static_assert(RQ % RV == 0 && KT == sd::key_tile, "fam: micro-kernel shapes disagree");
  constexpr index_t NV = KT / W;  // vectors per tile row
  FAM_ASSERT(head_dim <= DMAX);

  alignas(64) float kt_buf[DMAX * KT];  // [D][KT] packed K^T tile
  alignas(64) float v_buf[KT * DMAX];   // [KT][D] converted values (non-fp32 storage only)
  alignas(64) float q_buf[RQ * DMAX];   // [RQ][D] converted queries (non-fp32 storage only)
  alignas(64) float s_buf[RQ * KT];     // [RQ][KT] scores, then probabilities
  alignas(64) float lane_index[NV * W];
  for (index_t j = 0; j < KT; ++j) lane_index[j] = static_cast<float>(j);
  float m[RC], l[RC];  // running max and sum per row of the chunk
  const float fscale = static_cast<float>(scale);
  const float neg_inf = -INFINITY;
  const index_t n_spans = spans.size();

  for (index_t c0 = 0; c0 < rows.count; c0 += RC) {
    const index_t c1 = rows.count - c0 < RC ? rows.count : c0 + RC;
    for (index_t i = c0; i < c1; ++i) {
      float* o = rows.out + i * rows.out_stride;
      for (index_t d = 0; d < head_dim; ++d) o[d] = 0.0f;
      m[i - c0] = neg_inf;
      l[i - c0] = 0.0f;
    }
    for (index_t si = 0; si < n_spans; ++si) {
      const auto span = spans[si];
      const bool last = si + 1 == n_spans;
      auto visible = [&](index_t i) { return last ? tail.visible(i, span.count) : span.count; };
      const index_t vis_max = visible(c1 - 1);  // visible counts grow with the row
      for (index_t j0 = 0; j0 < vis_max; j0 += KT) {
        const index_t kt = vis_max - j0 < KT ? vis_max - j0 : KT;
        // K^T of the tile as fp32 [D][KT]: in place when the storage already is, else packed
        const float* ktile = kt_buf;
        index_t kt_stride = KT;
        bool in_place = false;
        if constexpr (std::is_same_v<TK, float>) {
          if (span.k_tile == KT) {  // the ring's tiles: in place, padding keys masked below
            ktile = span.key(j0);
            kt_stride = KT;
            in_place = true;
          } else if (span.k_tile == 0 && span.k_stride == 1 && kt == KT) {
            ktile = span.k + j0;
            kt_stride = span.k_dim_stride;
            in_place = true;
          }
        }
        if (!in_place) {
          for (index_t d = 0; d < head_dim; ++d)
            for (index_t j = kt; j < KT; ++j) kt_buf[d * KT + j] = 0.0f;
          if (span.k_tile == KT) {  // a ring tile of another storage type: widen it whole
            simd::widen(span.key(j0), kt_buf, head_dim * KT, Arch{});
          } else if (span.k_dim_stride != 1) {  // transposed source: read along keys
            for (index_t d = 0; d < head_dim; ++d)
              for (index_t j = 0; j < kt; ++j)
                kt_buf[d * KT + j] = to_float(span.key(j0 + j)[d * span.k_dim_stride]);
          } else {  // row-major source: read along dims
            for (index_t j = 0; j < kt; ++j) {
              const TK* key = span.key(j0 + j);
              for (index_t d = 0; d < head_dim; ++d) kt_buf[d * KT + j] = to_float(key[d]);
            }
          }
        }
        // the tile's value rows as fp32
        const float* vtile;
        index_t v_stride;
        if constexpr (std::is_same_v<TK, float>) {
          vtile = span.v + j0 * span.v_stride;
          v_stride = span.v_stride;
        } else {
          if (span.v_stride == head_dim) {  // contiguous rows: widen the tile whole
            simd::widen(span.v + j0 * head_dim, v_buf, kt * head_dim, Arch{});
          } else {
            for (index_t j = 0; j < kt; ++j)
              simd::widen(span.v + (j0 + j) * span.v_stride, v_buf + j * head_dim, head_dim,
                          Arch{});
          }
          vtile = v_buf;
          v_stride = head_dim;
        }
        if (backend.stats != nullptr) {
          backend.stats->key_tiles.fetch_add(1, std::memory_order_relaxed);
          if (!in_place) backend.stats->packed_tiles.fetch_add(1, std::memory_order_relaxed);
          if (visible(c0) < j0 + kt)
            backend.stats->masked_tiles.fetch_add(1, std::memory_order_relaxed);
        }

        for (index_t r0 = c0; r0 < c1; r0 += RQ) {
          const index_t nr = c1 - r0 < RQ ? c1 - r0 : RQ;
          const float* q[RQ];
          float* out[RQ];
          const float* p[RQ];
          index_t count[RQ];  // keys of this tile that row r sees
          for (index_t r = 0; r < nr; ++r) {
            const TQ* qr = rows.q + (r0 + r) * rows.q_stride;
            if constexpr (std::is_same_v<TQ, float>) {
              q[r] = qr;
            } else {
              for (index_t d = 0; d < head_dim; ++d) q_buf[r * DMAX + d] = to_float(qr[d]);
              q[r] = q_buf + r * DMAX;
            }
            out[r] = rows.out + (r0 + r) * rows.out_stride;
            p[r] = s_buf + r * KT;
            const index_t vis = visible(r0 + r) - j0;
            count[r] = vis < 0 ? 0 : (vis < kt ? vis : kt);
          }
          sd::scores_rows<Arch, RQ>(nr, q, ktile, kt_stride, head_dim, s_buf);
          // online softmax, one row at a time
          for (index_t r = 0; r < nr; ++r) {
            if (count[r] == 0) continue;
            float* s = s_buf + r * KT;
            const b cnt(static_cast<float>(count[r]));
            b vmax(neg_inf);
            auto nan_lanes = b(0.0f) != b(0.0f);
            for (index_t c = 0; c < NV; ++c) {
              b x = b::load_aligned(s + c * W) * b(fscale);
              x = xsimd::select(b::load_aligned(lane_index + c * W) < cnt, x, b(neg_inf));
              x.store_aligned(s + c * W);
              vmax = xsimd::max(vmax, x);
              nan_lanes = nan_lanes || xsimd::isnan(x);  // not x != x: NEQ_OQ in xsimd 8.1
            }
            // a NaN logit poisons its row, visibly (max would skip it)
            const float tile_max = xsimd::any(nan_lanes) ? NAN : simd::reduce_max<Arch>(vmax);
            if (tile_max == neg_inf) {
              count[r] = 0;
              continue;
            }
            const index_t i = r0 + r - c0;
            const float m_new = std::isnan(tile_max) ? tile_max : std::fmax(m[i], tile_max);
            const float alpha = m[i] == neg_inf ? 0.0f : std::exp(m[i] - m_new);
            b vsum(0.0f);
            for (index_t c = 0; c < NV; ++c) {
              const b e = xsimd::exp(b::load_aligned(s + c * W) - b(m_new));
              const b pe = xsimd::select(b::load_aligned(lane_index + c * W) < cnt, e, b(0.0f));
              pe.store_aligned(s + c * W);
              vsum += pe;
            }
            l[i] = l[i] * alpha + simd::reduce_add<Arch>(vsum);
            if (alpha != 1.0f) {
              index_t d = 0;
              for (; d + W <= head_dim; d += W)
                (b::load_unaligned(out[r] + d) * b(alpha)).store_unaligned(out[r] + d);
              for (; d < head_dim; ++d) out[r][d] *= alpha;
            }
            m[i] = m_new;
          }
          // O += P V: per value micro-group, the keys all its rows see together, then the
          // rest row by row
          for (index_t g0 = 0; g0 < nr; g0 += RV) {
            const index_t ng = nr - g0 < RV ? nr - g0 : RV;
            index_t common = kt;
            for (index_t r = g0; r < g0 + ng; ++r) common = count[r] < common ? count[r] : common;
            if (common > 0)
              sd::accumulate_rows<Arch, RV>(ng, p + g0, 0, common, vtile, v_stride, out + g0,
                                            head_dim);
            for (index_t r = g0; r < g0 + ng; ++r)
              if (count[r] > common)
                sd::accumulate_values<Arch, 1>(p + r, common, count[r], vtile, v_stride, out + r,
                                               head_dim);
          }
        }
      }
    }
    // normalize
    for (index_t i = c0; i < c1; ++i) {
      float* o = rows.out + i * rows.out_stride;
      const float li = l[i - c0];
      const bool empty = li == 0.0f;
      const float inv = empty ? 0.0f : 1.0f / li;
      for (index_t d = 0; d < head_dim; ++d) o[d] = empty ? 0.0f : o[d] * inv;
      if (rows.lse != nullptr)
        rows.lse[i * rows.lse_stride] = empty ? neg_inf : m[i - c0] + std::log(li);
    }
  }
}

}  // namespace kernel
FAM_NAMESPACE_END

#endif  // FAM_BACKEND_SIMD_HPP_
