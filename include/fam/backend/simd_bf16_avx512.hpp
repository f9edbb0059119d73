// bf16 dot-product micro-kernels for AVX-512 BF16 (vdpbf16ps), used by the SIMD backend when
// queries, keys and values are all stored as bf16 and the compiler flags enable AVX512_BF16.
// xsimd 8.1 knows neither the type nor the ISA, so the intrinsics live here, in one header
// tagged with the xsimd architecture it serves; without the ISA the header defines nothing
// but `available<Arch> == false` and the backend keeps its fp32-FMA path.
//
// vdpbf16ps multiplies pairs of bf16 (exactly, in fp32) and adds both products to one fp32
// lane, so both operands come as pairs along the reduced dimension:
//   scores  S[r][j] += (q[r][2p], q[r][2p+1]) . (K[j][2p], K[j][2p+1])  over dim pairs p
//   values  O[r][d] += (P[r][2p], P[r][2p+1]) . (V[2p][d], V[2p+1][d])  over key pairs p
// The tiles are re-laid as pairs once per tile (pack_keys, pack_values) when many rows share
// them, or interleaved in registers as the kernels read them (keys_in_place, values_in_place)
// when one row group does (decode). The value kernel needs the probabilities in bf16: the
// backend uses it only when the caller opts in (simd_backend::round_probabilities_to_bf16);
// then the probabilities are rounded (round_to_bf16) before they are summed and used, so that
// the normalizer sums exactly the weights that multiply V. Every lane is still one fixed chain
// of operations, independent of row grouping, chunking, ring placement and threads.
#ifndef FAM_BACKEND_SIMD_BF16_AVX512_HPP_
#define FAM_BACKEND_SIMD_BF16_AVX512_HPP_

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../detail/simd_compat.hpp"
#include "../types.hpp"

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
#define FAM_HAS_AVX512_BF16 1
#else
#define FAM_HAS_AVX512_BF16 0
#endif

FAM_NAMESPACE_BEGIN
namespace simd {
namespace bf16_dot {

/// Keys per tile: the tile of the SIMD backend and of the ring.
inline constexpr index_t tile = 32;

#if FAM_HAS_AVX512_BF16
/// Whether the kernels exist for Arch: AVX-512 BW code built with AVX512_BF16 enabled.
template <class Arch>
inline constexpr bool available = std::is_base_of_v<xsimd::avx512bw, Arch>;

/// Rows of the score kernel (2 vectors of 16 keys each) and of the value kernel (4 vectors of
/// 16 dims each): the accumulators fill most of the 32 zmm registers.
inline constexpr int score_rows = 12;
inline constexpr int value_rows = 6;

namespace detail {
inline std::uint32_t pair_at(const std::uint16_t* x, index_t p) noexcept {
  std::uint32_t u;
  std::memcpy(&u, x + 2 * p, sizeof u);
  return u;
}
inline __m512 dot(__m512 acc, __m512i a, __m512i b) noexcept {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}
/// Interleave the 16-bit elements of a and b: lo = a0 b0 a1 b1 ... a15 b15, hi = a16 b16 ...
FAM_ALWAYS_INLINE __m512i interleave_index_lo() noexcept {
  return _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38,
                          6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
}
FAM_ALWAYS_INLINE __m512i interleave_lo(__m512i a, __m512i b) noexcept {
  return _mm512_permutex2var_epi16(a, interleave_index_lo(), b);
}
FAM_ALWAYS_INLINE void interleave(__m512i a, __m512i b, __m512i& lo, __m512i& hi) noexcept {
  const __m512i idx_lo = interleave_index_lo();
  const __m512i idx_hi = _mm512_add_epi16(idx_lo, _mm512_set1_epi16(16));
  lo = _mm512_permutex2var_epi16(a, idx_lo, b);
  hi = _mm512_permutex2var_epi16(a, idx_hi, b);
}
inline __mmask32 first(index_t n) noexcept {
  return n >= 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1;
}
}  // namespace detail

/// x rounded to the nearest bf16 (ties to even), as fp32.
template <class Arch>
inline fbatch<Arch> round_to_bf16(const fbatch<Arch>& x) noexcept {
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(x);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/// p16[0, 32) = bf16 of p[0, 32), values that round_to_bf16 already made exact.
inline void to_bf16_row(const float* p, std::uint16_t* p16) noexcept {
  const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_load_ps(p + 16), _mm512_load_ps(p));
  _mm512_store_si512(p16, (__m512i)h);
}

/// K^T of keys [0, kt) of a tile as pairs: kp[p][j][e] = K[j][2p + e], dims padded to an even
/// count and keys to the tile with zeros. `key(j)` points at key j, element d at
/// key(j)[d * dim_stride]; a ring tile (in_ring: K^T [D][32], dim_stride 32) is interleaved
/// with vector permutes.
template <class KeyAt>
inline void pack_keys(KeyAt key, index_t kt, index_t dim_stride, bool in_ring, index_t head_dim,
                      std::uint16_t* kp) noexcept {
  const index_t pairs = (head_dim + 1) / 2;
  if (in_ring && head_dim % 2 == 0) {
    const std::uint16_t* t = reinterpret_cast<const std::uint16_t*>(key(0));
    for (index_t p = 0; p < pairs; ++p) {
      __m512i lo, hi;
      detail::interleave(_mm512_loadu_si512(t + 2 * p * tile),
                         _mm512_loadu_si512(t + (2 * p + 1) * tile), lo, hi);
      _mm512_store_si512(kp + p * 2 * tile, lo);
      _mm512_store_si512(kp + p * 2 * tile + tile, hi);
    }
    return;
  }
  std::memset(kp, 0, static_cast<std::size_t>(pairs * 2 * tile) * sizeof(std::uint16_t));
  for (index_t j = 0; j < kt; ++j) {
    const bf16* k = key(j);
    for (index_t d = 0; d < head_dim; ++d)
      kp[(d / 2) * 2 * tile + 2 * j + d % 2] = k[d * dim_stride].bits;
  }
}

/// Value rows [0, kt) of a tile as pairs of keys: vp[p][d][e] = V[2p + e][d]; the partner of an
/// odd last key is zero. Row j starts at v + j * v_stride. @pre head_dim % 16 == 0.
inline void pack_values(const bf16* v, index_t v_stride, index_t kt, index_t head_dim,
                        std::uint16_t* vp) noexcept {
  for (index_t p = 0; 2 * p < kt; ++p) {
    const std::uint16_t* a = reinterpret_cast<const std::uint16_t*>(v + 2 * p * v_stride);
    const std::uint16_t* b = reinterpret_cast<const std::uint16_t*>(v + (2 * p + 1) * v_stride);
    const bool has_b = 2 * p + 1 < kt;
    std::uint16_t* dst = vp + p * 2 * head_dim;
    for (index_t d0 = 0; d0 < head_dim; d0 += 32) {
      const __mmask32 m = detail::first(head_dim - d0);
      const __m512i va = _mm512_maskz_loadu_epi16(m, a + d0);
      const __m512i vb = has_b ? _mm512_maskz_loadu_epi16(m, b + d0) : _mm512_setzero_si512();
      __m512i lo, hi;
      detail::interleave(va, vb, lo, hi);
      _mm512_storeu_si512(dst + 2 * d0, lo);
      if (d0 + 16 < head_dim) _mm512_storeu_si512(dst + 2 * d0 + 32, hi);
    }
  }
}

/// s[r][0, 32) = Q[r] . K^T for R rows; q[r] is a bf16 row of 2 * pairs elements and
/// key_pair(p, k0, k1) gives the keys' dim pair p as kp[p] would hold it (k0: keys 0-15, k1:
/// keys 16-31).
template <int R, class KeyPair>
inline void scores(const std::uint16_t* const* q, index_t pairs, float* s,
                   KeyPair key_pair) noexcept {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (index_t p = 0; p < pairs; ++p) {
    __m512i k0, k1;
    key_pair(p, k0, k1);
    for (int r = 0; r < R; ++r) {
      const __m512i qq = _mm512_set1_epi32(static_cast<int>(detail::pair_at(q[r], p)));
      acc[r][0] = detail::dot(acc[r][0], qq, k0);
      acc[r][1] = detail::dot(acc[r][1], qq, k1);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_store_ps(s + r * tile, acc[r][0]);
    _mm512_store_ps(s + r * tile + 16, acc[r][1]);
  }
}

/// Dim pairs from the packed tile kp [pairs][32][2] (pack_keys).
struct packed_keys {
  const std::uint16_t* kp;
  FAM_ALWAYS_INLINE void operator()(index_t p, __m512i& k0, __m512i& k1) const noexcept {
    k0 = _mm512_load_si512(kp + p * 2 * tile);
    k1 = _mm512_load_si512(kp + p * 2 * tile + tile);
  }
};

/// Dim pairs interleaved in registers from a K^T tile read in place: rows of 32 keys, one per
/// dim, row_stride elements apart (a ring tile, or a whole tile of transposed keys). The same
/// pairs as packed_keys of that tile, without the round trip through memory: decode, where a
/// tile serves one row group only.
struct keys_in_place {
  const std::uint16_t* kt;
  index_t row_stride;
  FAM_ALWAYS_INLINE void operator()(index_t p, __m512i& k0, __m512i& k1) const noexcept {
    detail::interleave(_mm512_loadu_si512(kt + 2 * p * row_stride),
                       _mm512_loadu_si512(kt + (2 * p + 1) * row_stride), k0, k1);
  }
};

/// out[r][:] += sum over key pairs p in [p0, p1) of (P[r][2p], P[r][2p+1]) . V pair p, for R
/// rows; p16[r] holds the row's bf16 probabilities, value_pair(p, d) the pairs of dims
/// [d, d + 16) of key pair p as pack_values lays them out.
/// With odd_first, the pair p0 holds one key the rows see, its odd key; with odd_last, the pair
/// p1 - 1 holds one, its even key: the partner is masked out (a value the row does not see may
/// be non-finite). @pre head_dim % 16 == 0.
template <int R, class ValuePair>
inline void values(const std::uint16_t* const* p16, index_t p0, index_t p1, bool odd_first,
                   bool odd_last, index_t head_dim, float* const* out,
                   ValuePair value_pair) noexcept {
  const __m512i even_keys = _mm512_set1_epi32(0xffff);
  const __m512i odd_keys = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  auto run = [&](auto vectors, index_t d0) {
    constexpr int V = decltype(vectors)::value;
    __m512 acc[R][V];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) acc[r][c] = _mm512_loadu_ps(out[r] + d0 + 16 * c);
    auto add_pair = [&](index_t p, const __m512i* vv) {
      for (int r = 0; r < R; ++r) {
        const __m512i pp = _mm512_set1_epi32(static_cast<int>(detail::pair_at(p16[r], p)));
        for (int c = 0; c < V; ++c) acc[r][c] = detail::dot(acc[r][c], pp, vv[c]);
      }
    };
    auto add_edge_pair = [&](index_t p, __m512i keep) {  // a pair with one key masked out
      __m512i vv[V];
      for (int c = 0; c < V; ++c) vv[c] = _mm512_and_si512(value_pair(p, d0 + 16 * c), keep);
      add_pair(p, vv);
    };
    // in key order: the first pair, the whole pairs (nothing tested in their loop), the last
    index_t q0 = p0, q1 = p1;
    if (q0 < q1 && odd_first) {
      add_edge_pair(q0, odd_last && q1 - q0 == 1 ? _mm512_setzero_si512() : odd_keys);
      ++q0;
    }
    const bool last_alone = q0 < q1 && odd_last;
    if (last_alone) --q1;
    for (index_t p = q0; p < q1; ++p) {
      __m512i vv[V];
      for (int c = 0; c < V; ++c) vv[c] = value_pair(p, d0 + 16 * c);
      add_pair(p, vv);
    }
    if (last_alone) add_edge_pair(q1, even_keys);
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < V; ++c) _mm512_storeu_ps(out[r] + d0 + 16 * c, acc[r][c]);
  };
  index_t d0 = 0;
  for (; d0 + 64 <= head_dim; d0 += 64) run(std::integral_constant<int, 4>{}, d0);
  for (; d0 < head_dim; d0 += 16) run(std::integral_constant<int, 1>{}, d0);
}

/// Value pairs from the packed tile vp [KT/2][D][2] (pack_values).
struct packed_values {
  const std::uint16_t* vp;
  index_t head_dim;
  FAM_ALWAYS_INLINE __m512i operator()(index_t p, index_t d) const noexcept {
    return _mm512_loadu_si512(vp + p * 2 * head_dim + 2 * d);
  }
};

/// Value pairs interleaved in registers from the value rows [0, kt) read in place (row j at
/// v + j * v_stride): what pack_values would store, partner of an odd last key zero (that row
/// is never read).
struct values_in_place {
  const bf16* v;
  index_t v_stride, kt;
  FAM_ALWAYS_INLINE __m512i operator()(index_t p, index_t d) const noexcept {
    const auto row = [&](index_t j) {
      return _mm512_castsi256_si512(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + j * v_stride + d)));
    };
    const __m512i a = row(2 * p), b = 2 * p + 1 < kt ? row(2 * p + 1) : _mm512_setzero_si512();
    return detail::interleave_lo(a, b);
  }
};

/// scores<n> / values<n> for a run-time row count 1 <= n <= N.
template <int N, class KeyPair>
inline void scores_rows(index_t n, const std::uint16_t* const* q, index_t pairs, float* s,
                        KeyPair key_pair) noexcept {
  if constexpr (N > 1) {
    if (n < N) return scores_rows<N - 1>(n, q, pairs, s, key_pair);
  }
  scores<N>(q, pairs, s, key_pair);
}
template <int N, class ValuePair>
inline void values_rows(index_t n, const std::uint16_t* const* p16, index_t p0, index_t p1,
                        bool odd_first, bool odd_last, index_t head_dim, float* const* out,
                        ValuePair value_pair) noexcept {
  if constexpr (N > 1) {
    if (n < N)
      return values_rows<N - 1>(n, p16, p0, p1, odd_first, odd_last, head_dim, out, value_pair);
  }
  values<N>(p16, p0, p1, odd_first, odd_last, head_dim, out, value_pair);
}
#else
template <class Arch>
inline constexpr bool available = false;
#endif

}  // namespace bf16_dot
}  // namespace simd
FAM_NAMESPACE_END

#endif  // FAM_BACKEND_SIMD_BF16_AVX512_HPP_
