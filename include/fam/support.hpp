// Capability query: can this backend run this configuration, and if not, every reason why.
// validate() and the calls stop at the first problem and return one status; supports() looks at
// every parameter and reports all of them at once, as a bitmask with a text for each reason.
#ifndef FAM_SUPPORT_HPP_
#define FAM_SUPPORT_HPP_

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>

#include "backend/backend.hpp"
#include "backend/reference.hpp"
#include "config.hpp"

FAM_NAMESPACE_BEGIN

/// Why a configuration is not supported. Each is one bit of support_report::reasons.
enum class support_reason : std::uint32_t {
  invalid_head_dim = 1u << 0,      ///< D < 1
  invalid_block_size = 1u << 1,    ///< B < 1
  invalid_mem_segments = 1u << 2,  ///< M < 0
  invalid_fam_len = 1u << 3,       ///< F < 0
  invalid_heads = 1u << 4,         ///< H < 1 or Hkv < 1
  heads_not_divisible = 1u << 5,   ///< H % Hkv != 0 (with H, Hkv >= 1)
  invalid_phi_dim = 1u << 6,       ///< phi_dim < 0
  invalid_scale = 1u << 7,         ///< a set scale that is not finite and positive
  static_mismatch = 1u << 8,       ///< a compile-time parameter given another run-time value
  head_dim_too_large = 1u << 9,    ///< D above Backend::max_head_dim
  too_large = 1u << 10,            ///< the ring or the FAM state would overflow 64-bit offsets
};

/// Every reason, in bit order (for iteration).
inline constexpr support_reason all_support_reasons[] = {
    support_reason::invalid_head_dim,
    support_reason::invalid_block_size,
    support_reason::invalid_mem_segments,
    support_reason::invalid_fam_len,
    support_reason::invalid_heads,
    support_reason::heads_not_divisible,
    support_reason::invalid_phi_dim,
    support_reason::invalid_scale,
    support_reason::static_mismatch,
    support_reason::head_dim_too_large,
    support_reason::too_large,
};

/// A short English description of one reason.
constexpr const char* to_string(support_reason r) noexcept {
  switch (r) {
    case support_reason::invalid_head_dim:
      return "head dim D must be >= 1";
    case support_reason::invalid_block_size:
      return "block size B must be >= 1";
    case support_reason::invalid_mem_segments:
      return "memory segments M must be >= 0";
    case support_reason::invalid_fam_len:
      return "FAM length F must be >= 0";
    case support_reason::invalid_heads:
      return "heads H and kv heads Hkv must be >= 1";
    case support_reason::heads_not_divisible:
      return "heads H must be a multiple of kv heads Hkv";
    case support_reason::invalid_phi_dim:
      return "phi_dim must be >= 0";
    case support_reason::invalid_scale:
      return "scale must be finite and positive";
    case support_reason::static_mismatch:
      return "a compile-time parameter was given a different run-time value";
    case support_reason::head_dim_too_large:
      return "head dim D exceeds the backend's max_head_dim";
    case support_reason::too_large:
      return "sizes overflow the index type";
  }
  return "unknown reason";
}

/// The answer of supports(): empty when the configuration is supported.
struct support_report {
  std::uint32_t reasons = 0;  ///< bitwise or of support_reason values

  constexpr bool ok() const noexcept { return reasons == 0; }
  constexpr explicit operator bool() const noexcept { return ok(); }
  constexpr bool has(support_reason r) const noexcept {
    return (reasons & static_cast<std::uint32_t>(r)) != 0;
  }
  constexpr void add(support_reason r) noexcept { reasons |= static_cast<std::uint32_t>(r); }
  /// Number of reasons.
  constexpr int count() const noexcept {
    int n = 0;
    for (support_reason r : all_support_reasons) n += has(r) ? 1 : 0;
    return n;
  }
  /// Calls fn(support_reason) for each reason present, in bit order.
  template <class Fn>
  constexpr void for_each(Fn&& fn) const {
    for (support_reason r : all_support_reasons)
      if (has(r)) fn(r);
  }
};

/// Every reason of `report` as text, joined by "; " ("supported" when there is none).
/// (This one allocates; it is meant for messages.)
inline std::string to_string(const support_report& report) {
  if (report.ok()) return "supported";
  std::string text;
  report.for_each([&text](support_reason r) {
    if (!text.empty()) text += "; ";
    text += to_string(r);
  });
  return text;
}

namespace detail {

/// The same overflow rule as attention_config::validate(): the product of `factors` (all >= 0)
/// stays below max / 64, checked by division.
constexpr bool support_fits(std::initializer_list<index_t> factors) noexcept {
  constexpr index_t kLimit = std::numeric_limits<index_t>::max() / 64;
  index_t product = 1;
  for (index_t f : factors) {
    if (f != 0 && product > kLimit / f) return false;
    product *= f;
  }
  return true;
}

}  // namespace detail

/// Can `Backend` run attention of configuration `cfg`? Returns every reason it cannot:
/// all the rules of cfg.validate() (SPEC §1), each checked on its own, plus the backend's
/// limits (head dim above Backend::max_head_dim). Never allocates, never fails.
///
/// report.ok() is exactly "cfg.validate() == ok and cfg.head_dim() <= Backend::max_head_dim".
/// Notes: the scale is checked only when D >= 1 (the default scale 1/sqrt(D) depends on D);
/// static_mismatch is reported when validate() rejects a configuration whose visible
/// parameters are all valid (the run-time value of a static parameter is not visible).
template <class Backend = reference_backend, class Config>
support_report supports(const Config& cfg) noexcept {
  detail::check_backend<Backend>();
  support_report report;
  const index_t D = cfg.head_dim(), B = cfg.block_size(), M = cfg.mem_segments(), F = cfg.fam_len(),
                H = cfg.heads, Hkv = cfg.kv_heads, P = cfg.phi_dim;
  if (D < 1) report.add(support_reason::invalid_head_dim);
  if (B < 1) report.add(support_reason::invalid_block_size);
  if (M < 0) report.add(support_reason::invalid_mem_segments);
  if (F < 0) report.add(support_reason::invalid_fam_len);
  if (H < 1 || Hkv < 1) {
    report.add(support_reason::invalid_heads);
  } else if (H % Hkv != 0) {
    report.add(support_reason::heads_not_divisible);
  }
  if (P < 0) report.add(support_reason::invalid_phi_dim);
  if (D >= 1) {
    const double s = cfg.scale();
    if (!(std::isfinite(s) && s > 0.0)) report.add(support_reason::invalid_scale);
  }
  if (D > Backend::max_head_dim) report.add(support_reason::head_dim_too_large);

  // Sizes, as validate() computes them, when the parameters they use are themselves valid.
  constexpr index_t kSegLimit = std::numeric_limits<index_t>::max() / 64;
  if (M >= kSegLimit || F >= kSegLimit) {
    report.add(support_reason::too_large);
  } else if (D >= 1 && B >= 1 && M >= 0 && F >= 0 && H >= 1 && P >= 0) {
    if (!detail::support_fits({H, M + 1, B, D}) || !detail::support_fits({H, F, D}) ||
        !detail::support_fits({F, P}) ||
        !detail::support_fits({H, M + 1, Config::tiled_rows(B), D}))  // the ring's K tiles
      report.add(support_reason::too_large);
  }

  if (report.ok() && cfg.validate() != status::ok) report.add(support_reason::static_mismatch);
  return report;
}

FAM_NAMESPACE_END

#endif  // FAM_SUPPORT_HPP_
