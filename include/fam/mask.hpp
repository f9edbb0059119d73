// Who sees whom: the visibility rules of SPEC §2-§3 as pure functions of token indices.
// Every backend (reference, SIMD, CUDA) uses these; the test oracle deliberately does not.
#ifndef FAM_MASK_HPP_
#define FAM_MASK_HPP_

#include "config.hpp"

FAM_NAMESPACE_BEGIN

/// The attention variants behind one interface.
enum class variant : int {
  full_causal,     ///< key m visible to query n iff m <= n
  sliding_window,  ///< iff n - W < m <= n (W keys including itself)
  bswa,            ///< iff m <= n and block(m) + M >= block(n)
  fam,             ///< BSWA for tokens, plus F FAM rows per block (SPEC §3)
};

/// A variant with its parameters. Build with the named constructors.
struct mask_spec {
  variant kind = variant::full_causal;
  index_t window = 0;   ///< W (sliding_window)
  index_t block = 1;    ///< B (bswa, fam)
  index_t memory = 0;   ///< M (bswa, fam)
  index_t fam_len = 0;  ///< F (fam)

  FAM_HOST_DEVICE static constexpr mask_spec full() noexcept {
    return {variant::full_causal, 0, 1, 0, 0};
  }
  FAM_HOST_DEVICE static constexpr mask_spec sliding_window(index_t w) noexcept {
    return {variant::sliding_window, w, 1, 0, 0};
  }
  FAM_HOST_DEVICE static constexpr mask_spec bswa(index_t b, index_t m) noexcept {
    return {variant::bswa, 0, b, m, 0};
  }
  FAM_HOST_DEVICE static constexpr mask_spec fam(index_t b, index_t m, index_t f) noexcept {
    return {variant::fam, 0, b, m, f};
  }

  /// ok, or invalid_argument for W < 1, B < 1, M < 0, F < 0 (no sentinel values).
  FAM_HOST_DEVICE constexpr status validate() const noexcept {
    switch (kind) {
      case variant::full_causal:
        return status::ok;
      case variant::sliding_window:
        return window >= 1 ? status::ok : status::invalid_argument;
      case variant::bswa:
      case variant::fam:
        return block >= 1 && memory >= 0 && fam_len >= 0 ? status::ok : status::invalid_argument;
    }
    return status::invalid_argument;
  }
};

/// A row or column of the attention: token n, or FAM row r of the state Φ[t-1] that block t
/// reads (as keys) and updates (as queries).
struct node {
  bool is_fam = false;
  index_t token = 0;      ///< token index n (when !is_fam)
  index_t fam_block = 0;  ///< t: the block this FAM row belongs to (when is_fam)
  index_t fam_row = 0;    ///< r in [0, F) (when is_fam)

  FAM_HOST_DEVICE static constexpr node tok(index_t n) noexcept { return {false, n, 0, 0}; }
  FAM_HOST_DEVICE static constexpr node fam_of(index_t t, index_t r) noexcept {
    return {true, 0, t, r};
  }
};

/// block(n) = floor(n / B) for n >= 0.
FAM_HOST_DEVICE constexpr index_t block_of(index_t n, index_t block_size) noexcept {
  return n / block_size;
}

/// Inclusive range [lo, hi] of token keys visible to token query n (hi = n for every variant).
struct key_range {
  index_t lo;
  index_t hi;
};

/// The token keys that token query n >= 0 sees (SPEC §2): the whole prefix for full causal,
/// the last W tokens for the window, the previous min(M, block(n)) blocks plus its own block
/// up to itself for BSWA and FAM.
FAM_HOST_DEVICE constexpr key_range visible_tokens(const mask_spec& s, index_t n) noexcept {
  switch (s.kind) {
    case variant::sliding_window:
      return {n - s.window + 1 > 0 ? n - s.window + 1 : 0, n};
    case variant::bswa:
    case variant::fam: {
      const index_t first_block = block_of(n, s.block) - s.memory;
      return {first_block > 0 ? first_block * s.block : 0, n};
    }
    case variant::full_causal:
      break;
  }
  return {0, n};
}

/// The public visibility function: does `query` see `key`? (SPEC §2-§3)
///  - token n -> token m: m in visible_tokens(n)
///  - token n -> FAM row (t, r): t == block(n)   (the FAM of the previous state, Φ[t-1])
///  - FAM row (t, r) -> token m: block(m) == t   (the whole block, bidirectionally)
///  - FAM row (t, r) -> FAM row (t', r'): t == t' (bidirectional among a state's rows)
/// FAM rows exist only for variant::fam and r < F. Memory blocks are never visible to FAM rows.
FAM_HOST_DEVICE constexpr bool visible(const mask_spec& s, node query, node key) noexcept {
  const bool has_fam = s.kind == variant::fam && s.fam_len > 0;
  if (query.is_fam || key.is_fam) {
    if (!has_fam) return false;
    if ((query.is_fam && (query.fam_row < 0 || query.fam_row >= s.fam_len)) ||
        (key.is_fam && (key.fam_row < 0 || key.fam_row >= s.fam_len)))
      return false;
  }
  if ((!query.is_fam && query.token < 0) || (!key.is_fam && key.token < 0)) return false;
  if (!query.is_fam && !key.is_fam) {
    const key_range r = visible_tokens(s, query.token);
    return key.token >= r.lo && key.token <= r.hi;
  }
  if (!query.is_fam) return key.fam_block == block_of(query.token, s.block);
  if (!key.is_fam) return block_of(key.token, s.block) == query.fam_block;
  return key.fam_block == query.fam_block;
}

/// Token visibility only: visible(s, tok(n), tok(m)).
FAM_HOST_DEVICE constexpr bool visible(const mask_spec& s, index_t n, index_t m) noexcept {
  return visible(s, node::tok(n), node::tok(m));
}

/// Useful query-key pairs of a whole sequence of L tokens (token rows only), for FLOP counts.
constexpr index_t visible_pairs(const mask_spec& s, index_t length) noexcept {
  index_t pairs = 0;
  for (index_t n = 0; n < length; ++n) {
    const key_range r = visible_tokens(s, n);
    pairs += r.hi - r.lo + 1;
  }
  return pairs;
}

FAM_NAMESPACE_END

#endif  // FAM_MASK_HPP_
