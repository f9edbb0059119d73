// The SIMD CPU backend (xsimd): flash-style tiles with an online softmax, never a full score
// matrix. Per chunk of query rows that share their keys (a block of BSWA or FAM, up to 1024):
//   for each key span (memory blocks, FAM, own block) and each key tile of 32 keys
//   (aligned to the span start, so to block boundaries):
//     the tile, prepared once for every row of the chunk (fp32_tiles: K^T read in place from
//               the ring, which stores K^T per tile of 32 keys, else packed/widened to fp32;
//               bf16_dot_tiles: K^T and V re-laid as bf16 pairs for vdpbf16ps); a call of one
//               row group (decode) reads bf16/fp16 tiles in place and widens or re-lays them
//               in registers instead, since no other row would reuse a prepared copy, and
//               (16-register ISAs) prefetches the next tile while it works on this one;
//     per micro-group of rows: S = Q K^T (register-blocked), boundary tiles masked per row,
//               online softmax (running max m, sum l, rescale of the output rows),
//               O += P V (register-blocked).
// Tiles outside the window are never visited: the spans only cover visible blocks.
//
// Determinism: every output element is a fixed chain of operations that does not depend on
// how rows are grouped (the micro-kernels give each (row, key) and (row, dim) lane its own
// sequential chain), on the chunking of the call, on the ring's placement or on threads.
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
#include "simd_bf16_avx512.hpp"
#include "simd_convert.hpp"

FAM_NAMESPACE_BEGIN

/// Counters a caller may attach to a simd_backend (backend.stats = &s) to see the tiling.
struct attention_stats {
  std::atomic<index_t> key_tiles{0};     ///< (row chunk, key tile) pairs computed
  std::atomic<index_t> masked_tiles{0};  ///< of those, tiles where some row sees only a part
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
  /// Opt-in, for calls whose Q, K and V are all bf16 on AVX512_BF16: round the softmax
  /// probabilities to bf16 so that P V also runs on vdpbf16ps (faster prefill). Off by
  /// default: the contract keeps softmax and accumulation in fp32 (SPEC §1), and the default
  /// bf16 path takes only Q K^T on vdpbf16ps (exact bf16 products, fp32 sums). With it on, the
  /// error stays within 2x that of a naive bf16 implementation (tests/simd), not within the
  /// fp32 bound.
  bool round_probabilities_to_bf16 = false;
};

namespace kernel {
namespace simd_detail {

template <class Arch>
using fbatch = simd::fbatch<Arch>;
template <class Arch>
inline constexpr index_t width = static_cast<index_t>(fbatch<Arch>::size);
/// Keys per tile (32: a K^T tile and a V tile of D = 128 fit in L1 together).
inline constexpr index_t key_tile = 32;
/// Shapes of the micro-kernels: R rows x V vectors of accumulators, plus V loaded vectors and
/// one broadcast, as many as the register file holds (32 vector registers with AVX-512, 16
/// below: 6 x 2 there, as 3 x 4 would need 17 and spill).
/// Score kernel: vectors of keys per pass over the dims, and rows.
template <class Arch>
inline constexpr index_t score_vectors = 2;
template <class Arch>
inline constexpr int score_rows = width<Arch> >= 16 ? 12 : 6;
/// Value kernel: vectors of dims per pass over the keys, and rows (divides score_rows).
template <class Arch>
inline constexpr int value_vectors = width<Arch> >= 16 ? 4 : 2;
template <class Arch>
inline constexpr int value_rows = 6;
/// A tile read for one row group only (decode) comes from DRAM, and the work on it takes about
/// as long as reading it. The hardware prefetchers alone do not overlap the two. Two answers:
/// - with 32 registers (AVX-512), values for rows in pairs over 8 vectors of dims (a whole
///   value row of D = 128), so that each value row is read in one run (fp32 decode 15.5 -> 18
///   GB/s on the AVX-512 machine);
/// - with 16 registers, the prefill kernels, and the kernels prefetch the next tile one cache
///   line per step of their inner loops, spread over this tile's work (AVX2, Zen 3: fp32 decode
///   18.8-20.7 -> 15.8-17.7 ms per token, bf16 34-36 -> 25-26 ms; the rows-in-long-runs shapes
///   it replaces widened each bf16 value up to 4 times). Not measured on AVX-512, where an
///   earlier prefetch of whole tiles at once was slower, so it stays off there.
template <class Arch>
inline constexpr bool streamed_value_runs = width<Arch> >= 16;
template <class Arch>
inline constexpr int streamed_value_vectors = 8;
template <class Arch>
inline constexpr bool prefetch_next_tile = !streamed_value_runs<Arch>;  // the other answer
inline constexpr index_t cache_line = 64;

/// The cache lines [next, last] of the tile after the current one, handed out one at a time to
/// the steps of the kernels' inner loops by a prefetch_cursor (see prefetch_next_tile). A hint:
/// changes no value.
struct next_tile_lines {
  const char* next = nullptr;
  const char* last = nullptr;
};

/// A kernel's copy of next_tile_lines, kept in registers: one prefetch per step without a
/// branch (once the tile is done it asks again for its last line, a cache hit).
struct prefetch_cursor {
  const char* at = nullptr;
  const char* last = nullptr;
  next_tile_lines* from = nullptr;
  explicit prefetch_cursor(next_tile_lines* n) noexcept : from(n) {
    if (n != nullptr) {
      at = n->next;
      last = n->last;
    }
  }
  void step() noexcept {
    simd::prefetch_line(at);
    at += at < last ? cache_line : 0;
  }
  ~prefetch_cursor() {
    if (from != nullptr) from->next = at;
  }
};

/// s[r][0, KT) = Q[r] . K^T[:, 0, KT) for R rows; kt holds D rows of KT keys, kt_stride apart,
/// as fp32 or as bf16/fp16 widened on load. Each lane accumulates its own sequential FMA chain
/// over d. With Prefetch, one line of `next` per step over d.
template <class Arch, int R, class TE, bool Prefetch = false>
inline void scores(const float* const* q, const TE* kt, index_t kt_stride, index_t head_dim,
                   float* s, next_tile_lines* next = nullptr) noexcept {
  using b = fbatch<Arch>;
  constexpr index_t W = width<Arch>, KT = key_tile, V = score_vectors<Arch>;
  for (index_t k0 = 0; k0 < KT; k0 += V * W) {
    b acc[R][V];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) acc[r][c] = b(0.0f);
    prefetch_cursor pf(Prefetch ? next : nullptr);
    for (index_t d = 0; d < head_dim; ++d) {
      const TE* row = kt + d * kt_stride + k0;
      if constexpr (Prefetch) pf.step();
      b k[V];
      for (int c = 0; c < V; ++c) {
        k[c] = simd::load_float<Arch>(row + c * W);
        simd::keep_in_register<Arch>(k[c]);  // one load per vector, not one per row
      }
      for (int r = 0; r < R; ++r) {
        const b qd(q[r][d]);
        for (int c = 0; c < V; ++c) acc[r][c] = xsimd::fma(qd, k[c], acc[r][c]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) acc[r][c].store_aligned(s + r * KT + k0 + c * W);
  }
}

/// out[r][:] += sum_{j in [j0, j1)} p[r][j] * V[j][:] for R rows (V as fp32, or bf16/fp16
/// widened on load), V vectors of dims at a time; per element a sequential FMA chain over j, so
/// splitting [j0, j1), regrouping rows or changing V changes nothing. With Prefetch, one line
/// of `next` per step over j.
template <class Arch, int R, class TE, int V = value_vectors<Arch>, bool Prefetch = false>
inline void accumulate_values(const float* const* p, index_t j0, index_t j1, const TE* v,
                              index_t v_stride, float* const* out, index_t head_dim,
                              next_tile_lines* next = nullptr) noexcept {
  using b = fbatch<Arch>;
  constexpr index_t W = width<Arch>;
  index_t d0 = 0;
  for (; d0 + V * W <= head_dim; d0 += V * W) {
    b acc[R][V];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) acc[r][c] = b::load_unaligned(out[r] + d0 + c * W);
    prefetch_cursor pf(Prefetch ? next : nullptr);
    for (index_t j = j0; j < j1; ++j) {
      if constexpr (Prefetch) pf.step();
      b vv[V];
      // no keep_in_register here: with g++ folding these loads into the FMAs, decode from
      // DRAM measured 14.5 GB/s instead of 12.5 (L3-resident tiles only slightly slower)
      for (int c = 0; c < V; ++c) vv[c] = simd::load_float<Arch>(v + j * v_stride + d0 + c * W);
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
        acc = xsimd::fma(b(p[r][j]), simd::load_float<Arch>(v + j * v_stride + d0), acc);
      acc.store_unaligned(out[r] + d0);
    }
  for (; d0 < head_dim; ++d0)  // dims past the last full vector: scalar, same chain per element
    for (int r = 0; r < R; ++r) {
      float acc = out[r][d0];
      for (index_t j = j0; j < j1; ++j)
        acc = std::fma(p[r][j], to_float(v[j * v_stride + d0]), acc);
      out[r][d0] = acc;
    }
}

/// scores<Arch, n> for a run-time row count 1 <= n <= N.
template <class Arch, int N, class TE, bool Prefetch = false>
inline void scores_rows(index_t n, const float* const* q, const TE* kt, index_t kt_stride,
                        index_t head_dim, float* s, next_tile_lines* next = nullptr) noexcept {
  if constexpr (N > 1) {
    if (n < N)
      return scores_rows<Arch, N - 1, TE, Prefetch>(n, q, kt, kt_stride, head_dim, s, next);
  }
  scores<Arch, N, TE, Prefetch>(q, kt, kt_stride, head_dim, s, next);
}

/// accumulate_values<Arch, n> for a run-time row count 1 <= n <= N.
template <class Arch, int N, class TE, bool Prefetch = false>
inline void accumulate_rows(index_t n, const float* const* p, index_t j0, index_t j1, const TE* v,
                            index_t v_stride, float* const* out, index_t head_dim,
                            next_tile_lines* next = nullptr) noexcept {
  if constexpr (N > 1) {
    if (n < N)
      return accumulate_rows<Arch, N - 1, TE, Prefetch>(n, p, j0, j1, v, v_stride, out, head_dim,
                                                        next);
  }
  accumulate_values<Arch, N, TE, value_vectors<Arch>, Prefetch>(p, j0, j1, v, v_stride, out,
                                                                head_dim, next);
}

template <class T>
using key_type_of = std::remove_const_t<std::remove_pointer_t<decltype(T{}.k)>>;

/// Online softmax of one row over one tile of scores s[0, KT) (raw dot products): scales,
/// masks the keys outside [begin, end), updates the running max m and sum l, rescales the row's
/// output and leaves the probabilities in s (zero outside), each passed through `round` before
/// it is summed or used. Returns false when the row sees no finite logit in this tile.
template <class Arch, class Round>
inline bool softmax_row(float* s, index_t begin, index_t end, float scale, const float* lane_index,
                        float& m, float& l, float* out, index_t head_dim, Round round) noexcept {
  using b = fbatch<Arch>;
  constexpr index_t W = width<Arch>, NV = key_tile / W;
  const float neg_inf = -INFINITY;
  const b first(static_cast<float>(begin)), cnt(static_cast<float>(end));
  auto seen = [&](index_t c) {
    const b lane = b::load_aligned(lane_index + c * W);
    return lane >= first && lane < cnt;
  };
  b vmax(neg_inf);
  auto nan_lanes = b(0.0f) != b(0.0f);
  const bool whole = begin == 0 && end == key_tile;  // no lane to mask (most tiles)
  for (index_t c = 0; c < NV; ++c) {
    b x = b::load_aligned(s + c * W) * b(scale);
    if (!whole) x = xsimd::select(seen(c), x, b(neg_inf));
    x.store_aligned(s + c * W);
    vmax = xsimd::max(vmax, x);
    nan_lanes = nan_lanes || xsimd::isnan(x);  // not x != x: NEQ_OQ in xsimd 8.1
  }
  // a NaN logit poisons its row, visibly (max would skip it)
  const float tile_max = xsimd::any(nan_lanes) ? NAN : simd::reduce_max<Arch>(vmax);
  if (tile_max == neg_inf) return false;
  const float m_new = std::isnan(tile_max) ? tile_max : std::fmax(m, tile_max);
  // exp(0) = 1 exactly: a tile that does not raise the max (most tiles) skips the call
  const float alpha = m == neg_inf ? 0.0f : m == m_new ? 1.0f : std::exp(m - m_new);
  b vsum(0.0f);
  for (index_t c = 0; c < NV; ++c) {
    const b e = xsimd::exp(b::load_aligned(s + c * W) - b(m_new));
    const b pe = round(whole ? e : xsimd::select(seen(c), e, b(0.0f)));
    pe.store_aligned(s + c * W);
    vsum += pe;
  }
  l = l * alpha + simd::reduce_add<Arch>(vsum);
  if (alpha != 1.0f) {
    index_t d = 0;
    for (; d + W <= head_dim; d += W)
      (b::load_unaligned(out + d) * b(alpha)).store_unaligned(out + d);
    for (; d < head_dim; ++d) out[d] *= alpha;
  }
  m = m_new;
  return true;
}

/// Splits O += P V of a tile among `nr` rows, row r over its keys [begin[r], end[r]): per
/// micro-group of `group` rows, the keys every row of it sees (cut to multiples of `step`, the
/// keys a kernel takes at once) go to together(g0, ng, lo, hi), the rest of each row to
/// alone(r, j0, j1) with j0 < j1, each row in key order.
template <class Alone, class Together>
inline void split_values(index_t nr, index_t group, index_t step, const index_t* begin,
                         const index_t* end, index_t kt, Alone alone_or_none,
                         Together together) noexcept {
  auto alone = [&](index_t r, index_t j0, index_t j1) {
    if (j0 < j1) alone_or_none(r, j0, j1);
  };
  for (index_t g0 = 0; g0 < nr; g0 += group) {
    const index_t ng = nr - g0 < group ? nr - g0 : group;
    index_t lo = 0, hi = kt;
    for (index_t r = g0; r < g0 + ng; ++r) {
      lo = begin[r] > lo ? begin[r] : lo;
      hi = end[r] < hi ? end[r] : hi;
    }
    lo = (lo + step - 1) / step * step;
    hi = hi / step * step;
    if (lo >= hi) {
      for (index_t r = g0; r < g0 + ng; ++r) alone(r, begin[r], end[r]);
      continue;
    }
    for (index_t r = g0; r < g0 + ng; ++r) alone(r, begin[r], lo);
    together(g0, ng, lo, hi);
    for (index_t r = g0; r < g0 + ng; ++r) alone(r, hi, end[r]);
  }
}

/// O += P V for a tile of values (rows v + j * v_stride; fp32, or bf16/fp16 widened on load),
/// row r over its keys [begin[r], end[r]): per value micro-group, the keys all its rows see
/// together, the others row by row, each row in key order (a key a row does not see is never
/// multiplied: its value may be non-finite).
/// `streamed`: the tile comes from memory for these rows only (decode; see
/// streamed_value_runs): with 32 registers, rows in pairs over streamed_value_vectors of dims;
/// with `next` (16 registers), the value_rows x value_vectors kernel prefetching the next tile.
template <class Arch, class TE>
inline void accumulate_tile(index_t nr, const float* const* p, const index_t* begin,
                            const index_t* end, float* const* out, index_t kt, const TE* v,
                            index_t v_stride, index_t head_dim, bool streamed,
                            next_tile_lines* next = nullptr) noexcept {
  constexpr int RV = value_rows<Arch>, SV = streamed_value_vectors<Arch>;
  auto alone = [&](index_t r, index_t j0, index_t j1) {
    accumulate_values<Arch, 1>(p + r, j0, j1, v, v_stride, out + r, head_dim);
  };
  const bool long_runs =
      streamed_value_runs<Arch> && streamed && head_dim % (SV * width<Arch>) == 0;
  auto together = [&](index_t g0, index_t ng, index_t lo, index_t hi) {
    if (next != nullptr)
      return accumulate_rows<Arch, RV, TE, true>(ng, p + g0, lo, hi, v, v_stride, out + g0,
                                                 head_dim, next);
    if (!long_runs)
      return accumulate_rows<Arch, RV>(ng, p + g0, lo, hi, v, v_stride, out + g0, head_dim);
    for (index_t r = g0; r < g0 + ng; r += 2) {
      if (r + 1 < g0 + ng)
        accumulate_values<Arch, 2, TE, SV>(p + r, lo, hi, v, v_stride, out + r, head_dim);
      else
        accumulate_values<Arch, 1, TE, SV>(p + r, lo, hi, v, v_stride, out + r, head_dim);
    }
  };
  split_values(nr, RV, 1, begin, end, kt, alone, together);
}

/// K^T of the tile of keys [j0, j0 + kt) where it can be read in place: a ring tile (padding
/// keys masked later) or a whole tile of transposed keys; null otherwise. Sets the distance
/// between its dim rows.
template <class Span>
inline auto key_tile_in_place(const Span& span, index_t j0, index_t kt,
                              index_t& dim_stride) noexcept -> decltype(span.k) {
  if (span.k_tile == key_tile) {
    dim_stride = key_tile;
    return span.key(j0);
  }
  if (span.k_tile == 0 && span.k_stride == 1 && kt == key_tile) {
    dim_stride = span.k_dim_stride;
    return span.k + j0;
  }
  return nullptr;
}

/// The fp32 tiles: K^T and V as fp32 (in place when stored so, else widened), queries widened
/// per row group, FMA micro-kernels. With `direct` (a call of one row group: decode), bf16/fp16
/// tiles that can be read in place are widened in registers by the micro-kernels instead of
/// into buffers: the same values, without writing and re-reading 3x the tile's bytes; and, with
/// prefetch_next_tile, the kernels prefetch the span's next tile (ring tiles only).
template <class Arch, class TQ, class TK>
struct fp32_tiles {
  static constexpr int group_rows = score_rows<Arch>;
  static constexpr index_t DMAX = simd_backend<Arch>::max_head_dim;
  index_t head_dim;
  bool direct = false;
  alignas(64) float kt_buf[DMAX * key_tile];  // [D][KT] packed K^T tile
  alignas(64) float v_buf[key_tile * DMAX];   // [KT][D] widened values (non-fp32 storage)
  alignas(64) float q_buf[group_rows * DMAX];
  const float* ktile = nullptr;  // the tile as fp32 ...
  const float* vtile = nullptr;
  const TK* ktile_stored = nullptr;  // ... or, in place in its storage type (not null)
  const TK* vtile_stored = nullptr;
  index_t kt_stride = key_tile;
  index_t v_stride = 0;
  const float* q[group_rows];
  next_tile_lines next_k, next_v;  // lines of the next tile to prefetch (both empty if none)

  /// Makes the tile's keys [j0, j0 + kt) usable; returns whether K^T was read in place.
  template <class Span>
  bool load(const Span& span, index_t j0, index_t kt) noexcept {
    const TK* kt_in_place = key_tile_in_place(span, j0, kt, kt_stride);
    ktile_stored = vtile_stored = nullptr;
    next_k = next_v = next_tile_lines{};
    if (prefetch_next_tile<Arch> && direct && span.k_tile == key_tile &&
        span.v_stride == head_dim && j0 + 2 * key_tile <= span.count) {
      static_assert(key_tile * sizeof(TK) % cache_line == 0, "a tile is whole lines per dim");
      const auto last_line =
          static_cast<std::size_t>(key_tile * head_dim) * sizeof(TK) - cache_line;
      const char* k = reinterpret_cast<const char*>(span.key(j0 + key_tile));
      const char* v = reinterpret_cast<const char*>(span.v + (j0 + key_tile) * head_dim);
      next_k = next_tile_lines{k, k + last_line};
      next_v = next_tile_lines{v, v + last_line};
    }
    if constexpr (std::is_same_v<TK, float>) {
      vtile = span.v + j0 * span.v_stride;
      v_stride = span.v_stride;
      if (kt_in_place != nullptr) {
        ktile = kt_in_place;
        return true;
      }
    } else if (direct && kt_in_place != nullptr) {
      ktile_stored = kt_in_place;
      vtile_stored = span.v + j0 * span.v_stride;
      v_stride = span.v_stride;
      return true;
    } else {
      if (span.v_stride == head_dim) {  // contiguous rows: widen the tile whole
        simd::widen(span.v + j0 * head_dim, v_buf, kt * head_dim, Arch{});
      } else {
        for (index_t j = 0; j < kt; ++j)
          simd::widen(span.v + (j0 + j) * span.v_stride, v_buf + j * head_dim, head_dim, Arch{});
      }
      vtile = v_buf;
      v_stride = head_dim;
    }
    ktile = kt_buf;
    kt_stride = key_tile;
    for (index_t d = 0; d < head_dim; ++d)
      for (index_t j = kt; j < key_tile; ++j) kt_buf[d * key_tile + j] = 0.0f;
    if (span.k_tile == key_tile) {  // a ring tile of another storage type: widen it whole
      simd::widen(span.key(j0), kt_buf, head_dim * key_tile, Arch{});
    } else if (span.k_dim_stride != 1) {  // transposed source: read along keys
      for (index_t d = 0; d < head_dim; ++d)
        for (index_t j = 0; j < kt; ++j)
          kt_buf[d * key_tile + j] = to_float(span.key(j0 + j)[d * span.k_dim_stride]);
    } else {  // row-major source: read along dims
      for (index_t j = 0; j < kt; ++j) {
        const TK* key = span.key(j0 + j);
        for (index_t d = 0; d < head_dim; ++d) kt_buf[d * key_tile + j] = to_float(key[d]);
      }
    }
    return false;
  }
  void set_query(int r, const TQ* row) noexcept {
    if constexpr (std::is_same_v<TQ, float>) {
      q[r] = row;
    } else {
      simd::widen(row, q_buf + r * DMAX, head_dim, Arch{});
      q[r] = q_buf + r * DMAX;
    }
  }
  void scores(index_t nr, float* s) noexcept {
    if (ktile_stored != nullptr) return scores_of(nr, ktile_stored, s);
    scores_of(nr, ktile, s);
  }
  template <class TE>
  void scores_of(index_t nr, const TE* kt, float* s) noexcept {
    if (next_k.next != nullptr)
      return scores_rows<Arch, group_rows, TE, true>(nr, q, kt, kt_stride, head_dim, s, &next_k);
    scores_rows<Arch, group_rows>(nr, q, kt, kt_stride, head_dim, s);
  }
  fbatch<Arch> round(const fbatch<Arch>& p) const noexcept { return p; }
  void to_weights(index_t, const float*) noexcept {}
  void values(index_t nr, const float* const* p, const index_t* begin, const index_t* end,
              float* const* out, index_t kt) noexcept {
    next_tile_lines* next = next_v.next != nullptr ? &next_v : nullptr;
    if (vtile_stored != nullptr)
      return accumulate_tile<Arch>(nr, p, begin, end, out, kt, vtile_stored, v_stride, head_dim,
                                   direct, next);
    accumulate_tile<Arch>(nr, p, begin, end, out, kt, vtile, v_stride, head_dim, direct, next);
  }
};

#if FAM_HAS_AVX512_BF16
/// The bf16 tiles (see simd_bf16_avx512.hpp): K^T re-laid as dim pairs, Q K^T on vdpbf16ps;
/// P V in fp32 on widened values, or, with round_probabilities_to_bf16, on vdpbf16ps with V
/// re-laid as key pairs and P rounded to bf16. With `direct` (decode), tiles that can be read
/// in place are re-laid and widened in registers instead. @pre head_dim % 16 == 0.
template <class Arch>
struct bf16_dot_tiles {
  static constexpr int group_rows = simd::bf16_dot::score_rows;
  static constexpr index_t DMAX = simd_backend<Arch>::max_head_dim;
  index_t head_dim;
  bool direct = false;   // one row group per call (decode): tiles read in place where they can
  bool round_p = false;  // simd_backend::round_probabilities_to_bf16
  alignas(64) std::uint16_t k_pairs[DMAX * key_tile];  // [D/2][KT][2]
  alignas(64) std::uint16_t v_pairs[key_tile * DMAX];  // [KT/2][D][2]
  alignas(64) std::uint16_t p_bf16[group_rows * key_tile];
  alignas(64) float v_buf[key_tile * DMAX];  // [KT][D] widened values (fp32 probabilities)
  const std::uint16_t* q[group_rows];
  const std::uint16_t* kt_stored = nullptr;  // K^T read in place (rows kt_stride apart), or null
  index_t kt_stride = key_tile;
  const bf16* v_stored = nullptr;  // V rows read in place (v_stride apart), or null
  index_t v_stride = 0;

  template <class Span>
  bool load(const Span& span, index_t j0, index_t kt) noexcept {
    v_stored = nullptr;
    const bf16* kt_in_place = direct ? key_tile_in_place(span, j0, kt, kt_stride) : nullptr;
    kt_stored = reinterpret_cast<const std::uint16_t*>(kt_in_place);
    if (kt_in_place == nullptr)
      simd::bf16_dot::pack_keys([&](index_t j) { return span.key(j0 + j); }, kt, span.k_dim_stride,
                                span.k_tile == key_tile, head_dim, k_pairs);
    if (direct) {
      v_stored = span.v + j0 * span.v_stride;
      v_stride = span.v_stride;
    } else if (round_p) {
      simd::bf16_dot::pack_values(span.v + j0 * span.v_stride, span.v_stride, kt, head_dim,
                                  v_pairs);
    } else {
      for (index_t j = 0; j < kt; ++j)
        simd::widen(span.v + (j0 + j) * span.v_stride, v_buf + j * head_dim, head_dim, Arch{});
    }
    return kt_stored != nullptr;
  }
  void set_query(int r, const bf16* row) noexcept {
    q[r] = reinterpret_cast<const std::uint16_t*>(row);
  }
  void scores(index_t nr, float* s) const noexcept {
    namespace bd = simd::bf16_dot;
    if (kt_stored != nullptr)
      return bd::scores_rows<group_rows>(nr, q, head_dim / 2, s,
                                         bd::keys_in_place{kt_stored, kt_stride});
    bd::scores_rows<group_rows>(nr, q, head_dim / 2, s, bd::packed_keys{k_pairs});
  }
  fbatch<Arch> round(const fbatch<Arch>& p) const noexcept {
    return round_p ? simd::bf16_dot::round_to_bf16<Arch>(p) : p;
  }
  void to_weights(index_t r, const float* p) noexcept {
    if (round_p) simd::bf16_dot::to_bf16_row(p, p_bf16 + r * key_tile);
  }
  /// O += P V: fp32 P times V widened (in a buffer, or in registers when read in place), or
  /// rounded P times V pairs on vdpbf16ps.
  void values(index_t nr, const float* const* p, const index_t* begin, const index_t* end,
              float* const* out, index_t kt) const noexcept {
    if (!round_p) {  // fp32 probabilities times widened values, as the fp32 tiles do
      if (v_stored != nullptr)
        return accumulate_tile<Arch>(nr, p, begin, end, out, kt, v_stored, v_stride, head_dim,
                                     direct);
      return accumulate_tile<Arch>(nr, p, begin, end, out, kt, v_buf, head_dim, head_dim, direct);
    }
    if (v_stored != nullptr)
      return values_with(nr, begin, end, out, kt,
                         simd::bf16_dot::values_in_place{v_stored, v_stride, kt});
    values_with(nr, begin, end, out, kt, simd::bf16_dot::packed_values{v_pairs, head_dim});
  }
  /// Rounded P V over key pairs, row r over its keys [begin[r], end[r]): the pairs all rows of
  /// a value micro-group see whole together, the others row by row in key order, a pair that
  /// holds one key the row sees with its partner masked out.
  template <class ValuePair>
  void values_with(index_t nr, const index_t* begin, const index_t* end, float* const* out,
                   index_t kt, ValuePair pairs) const noexcept {
    namespace bd = simd::bf16_dot;
    constexpr int RV = bd::value_rows;
    const std::uint16_t* p16[group_rows];
    for (index_t r = 0; r < nr; ++r) p16[r] = p_bf16 + r * key_tile;
    // the pairs [p0, p1) of row r's keys [j0, j1), partners outside masked
    auto alone = [&](index_t r, index_t j0, index_t j1) {
      bd::values<1>(p16 + r, j0 / 2, (j1 + 1) / 2, j0 % 2 != 0, j1 % 2 != 0, head_dim, out + r,
                    pairs);
    };
    // whole pairs only together: [lo, hi) even
    auto together = [&](index_t g0, index_t ng, index_t lo, index_t hi) {
      bd::values_rows<RV>(ng, p16 + g0, lo / 2, hi / 2, false, false, head_dim, out + g0, pairs);
    };
    split_values(nr, RV, 2, begin, end, kt, alone, together);
  }
};
#endif

/// The tiled loop shared by every tile kind: per chunk of rows, per span, per key tile
/// (aligned to the span start), per row group: scores, online softmax, O += P V.
template <class Arch, class Tiles, class TQ, class Spans>
void attend_tiled(const query_rows<TQ>& rows, const Spans& spans, row_mask mask, index_t head_dim,
                  float scale, attention_stats* stats, Tiles& tiles) noexcept {
  constexpr index_t KT = key_tile, RC = simd_backend<Arch>::row_chunk;
  constexpr int RQ = Tiles::group_rows;
  alignas(64) float s_buf[RQ * KT];  // [RQ][KT] scores, then probabilities
  alignas(64) float lane_index[KT];
  for (index_t j = 0; j < KT; ++j) lane_index[j] = static_cast<float>(j);
  float m[RC], l[RC];  // running max and sum per row of the chunk
  const float neg_inf = -INFINITY;
  const index_t n_spans = spans.size();
  const bool one_group = rows.count <= RQ;  // (decode): queries prepared once per call
  tiles.direct = one_group;                 // and tiles read in place where they can be

  for (index_t c0 = 0; c0 < rows.count; c0 += RC) {
    const index_t c1 = rows.count - c0 < RC ? rows.count : c0 + RC;
    for (index_t i = c0; i < c1; ++i) {
      float* o = rows.out + i * rows.out_stride;
      for (index_t d = 0; d < head_dim; ++d) o[d] = 0.0f;
      m[i - c0] = neg_inf;
      l[i - c0] = 0.0f;
    }
    if (one_group)
      for (index_t r = c0; r < c1; ++r) tiles.set_query(int(r - c0), rows.q + r * rows.q_stride);
    for (index_t si = 0; si < n_spans; ++si) {
      const auto span = spans[si];
      const bool first = si == 0, last = si + 1 == n_spans;
      // row i sees the span's keys [hidden(i), visible(i)); both grow with the row
      auto visible = [&](index_t i) { return last ? mask.visible(i, span.count) : span.count; };
      auto hidden = [&](index_t i) { return first ? mask.hidden(i, span.count) : 0; };
      const index_t vis_max = visible(c1 - 1);
      for (index_t j0 = hidden(c0) / KT * KT; j0 < vis_max; j0 += KT) {
        const index_t kt = vis_max - j0 < KT ? vis_max - j0 : KT;
        const bool in_place = tiles.load(span, j0, kt);
        if (stats != nullptr) {
          stats->key_tiles.fetch_add(1, std::memory_order_relaxed);
          if (!in_place) stats->packed_tiles.fetch_add(1, std::memory_order_relaxed);
          if (visible(c0) < j0 + kt || hidden(c1 - 1) > j0)
            stats->masked_tiles.fetch_add(1, std::memory_order_relaxed);
        }
        for (index_t r0 = c0; r0 < c1; r0 += RQ) {
          const index_t nr = c1 - r0 < RQ ? c1 - r0 : RQ;
          float* out[RQ];
          const float* p[RQ];
          index_t begin[RQ], end[RQ];  // row r sees the keys [begin, end) of this tile
          bool any_key = false;
          for (index_t r = 0; r < nr; ++r) {
            const index_t vis = visible(r0 + r) - j0, hid = hidden(r0 + r) - j0;
            end[r] = vis < 0 ? 0 : (vis < kt ? vis : kt);
            begin[r] = hid < 0 ? 0 : (hid < end[r] ? hid : end[r]);
            any_key = any_key || begin[r] < end[r];
          }
          // a micro-group beyond its rows' causal edge or before their window edge: nothing
          // to add (a chunk of 256 rows leaves a triangle of such tiles at each edge)
          if (!any_key) continue;
          for (index_t r = 0; r < nr; ++r) {
            if (!one_group) tiles.set_query(int(r), rows.q + (r0 + r) * rows.q_stride);
            out[r] = rows.out + (r0 + r) * rows.out_stride;
            p[r] = s_buf + r * KT;
          }
          tiles.scores(nr, s_buf);
          for (index_t r = 0; r < nr; ++r) {
            const index_t i = r0 + r - c0;
            if (begin[r] == end[r] ||
                !softmax_row<Arch>(s_buf + r * KT, begin[r], end[r], scale, lane_index, m[i], l[i],
                                   out[r], head_dim,
                                   [&](const fbatch<Arch>& x) { return tiles.round(x); }))
              begin[r] = end[r] = 0;
            else
              tiles.to_weights(r, s_buf + r * KT);
          }
          tiles.values(nr, p, begin, end, out, kt);
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

}  // namespace simd_detail

/// SIMD attend_rows: same contract as the reference overload (see reference.hpp). bf16
/// queries, keys and values take the vdpbf16ps kernels where the ISA has them (head_dim a
/// multiple of 16), everything else the fp32-FMA kernels.
template <class TQ, class Spans, class Arch>
void attend_rows(const query_rows<TQ>& rows, const Spans& spans, row_mask mask, index_t head_dim,
                 double scale, const simd_backend<Arch>& backend) noexcept {
  namespace sd = simd_detail;
  using TK = sd::key_type_of<decltype(spans[0])>;
  static_assert(simd_backend<Arch>::key_tile == sd::key_tile &&
                    sd::score_rows<Arch> % sd::value_rows<Arch> == 0,
                "fam: micro-kernel shapes disagree");
  FAM_ASSERT(head_dim <= simd_backend<Arch>::max_head_dim);
  const float fscale = static_cast<float>(scale);
#if FAM_HAS_AVX512_BF16
  if constexpr (std::is_same_v<TQ, bf16> && std::is_same_v<TK, bf16> &&
                simd::bf16_dot::available<Arch>) {
    if (head_dim % 16 == 0) {
      sd::bf16_dot_tiles<Arch> tiles;
      tiles.head_dim = head_dim;
      tiles.round_p = backend.round_probabilities_to_bf16;
      return sd::attend_tiled<Arch>(rows, spans, mask, head_dim, fscale, backend.stats, tiles);
    }
  }
#endif
  sd::fp32_tiles<Arch, TQ, TK> tiles;
  tiles.head_dim = head_dim;
  sd::attend_tiled<Arch>(rows, spans, mask, head_dim, fscale, backend.stats, tiles);
}

template <class Arch>
inline constexpr bool reads_window_edge<simd_backend<Arch>> = true;

}  // namespace kernel
FAM_NAMESPACE_END

#endif  // FAM_BACKEND_SIMD_HPP_
