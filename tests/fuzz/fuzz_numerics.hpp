// The numeric contract the fuzz targets check, row by row, against the float64 oracle
// (tests/support/oracle.hpp), and strided tensors surrounded by canaries.
//
// One attention row: query q, visible keys k_j and values v_j (already in the precision the
// library sees: storage types converted to float), scale s.
//  - q or a visible k holds a NaN: every output element and the lse are NaN (a NaN logit
//    poisons its row, visibly).
//  - q or a visible k holds an infinity: nothing is promised about the row.
//  - otherwise, per output dimension d: a NaN in some visible v_j[d] makes out[d] NaN; an
//    infinity there promises nothing; else out[d] is compared with the oracle under a bound
//    derived from the backend's arithmetic (below). With moderate inputs (|q|, |k| <= 2, a
//    scale of at most 1/sqrt(D), D <= 64, at most 1024 keys) the documented tolerance
//    max|err| <= 1e-5 (1 + max|V|) holds too, max|V| over the whole call as in the core tests.
//    (Larger logits are fine but not that fine: at |logit| ~ 1e4 an fp32 logit is only known
//    to ~1e-3, and near-ties move the output by that much; the derived bound covers it.)
//
// The derived bound. A backend computes each logit s_j = s q.k_j with an error of at most
// (D + 3) u s sum_d |q_d k_jd| (a dot product of D terms, the scale's rounding and the
// product with it; u = 2^-24 for fp32 backends, 2^-53 for the double-precision reference) and
// the oracle the same with u = 2^-53. The softmax is shift-invariant, so the error in the
// running max cancels, and every weight is off by a relative delta <= expm1(2 ds + 8u + 4u_o)
// (ds: the largest logit error, 8u: exp). Then out = sum p_j v_j / sum p_j is off by at most
// 2 delta / (1 - delta) max_j |v_j[d]|, plus the rounding of the two sums, 4 gamma_n max|v|
// with gamma_n = n u / (1 - n u) over n = 2 * keys + 8 operations (keys, rescales, the final
// division), plus the final fp32 rounding. When delta is not small (logits near 1e7 and
// beyond) the weights are unknowable and only the convex hull is checked: out[d] lies between
// the smallest and the largest visible v_j[d]. An fp32 backend whose logits could overflow
// fp32 (sum |q_d k_jd| above 1e36) is not checked numerically at all, nor is an output dimension
// whose values times the key count could overflow the fp32 accumulator (1e38): that is outside
// what the library documents (see docs/bad-inputs.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "fam/fam.hpp"
#include "fuzz_support.hpp"
#include "support/oracle.hpp"

namespace fuzz {

using fam::index_t;

/// Unit roundoff of the backend's arithmetic.
enum class precision { fp32, fp64 };
inline double unit_roundoff(precision p) { return p == precision::fp32 ? 0x1p-24 : 0x1p-53; }

/// One query row and what it sees, in double (exact copies of what the library reads).
struct row_case {
  const double* q = nullptr;
  std::vector<const double*> k, v;
};

/// Where a row sits, for messages.
struct row_where {
  const char* what;
  index_t row, head;
};

/// Checks one output row (out: D floats, lse: optional) against the contract above.
/// @param v_scale  max|V| over the whole call (the documented tolerance's scale)
inline void check_row(const row_where& at, const row_case& rc, index_t D, double scale,
                      precision prec, const float* out, const float* lse, double v_scale) {
  const std::size_t n = rc.k.size();
  FUZZ_CHECK(n > 0, "%s row %lld head %lld: no visible key (the harness is wrong)", at.what,
             (long long)at.row, (long long)at.head);
  // the regime of the documented tolerance: the core tests' inputs (|q|, |k| <= 2, the default
  // scale 1/sqrt(D) or less, so logits below 4 sqrt(D))
  bool nan_qk = false, inf_qk = false,
       moderate = D <= 64 && n <= 1024 && scale <= 1.000001 / std::sqrt(double(D));
  auto scan = [&](const double* x) {
    for (index_t d = 0; d < D; ++d) {
      nan_qk = nan_qk || std::isnan(x[d]);
      inf_qk = inf_qk || std::isinf(x[d]);
      moderate = moderate && std::fabs(x[d]) <= 2.0;
    }
  };
  scan(rc.q);
  for (const double* k : rc.k) scan(k);
  if (nan_qk) {
    for (index_t d = 0; d < D; ++d)
      FUZZ_CHECK(std::isnan(out[d]), "%s row %lld head %lld: sees a NaN query/key, out[%lld] = %g",
                 at.what, (long long)at.row, (long long)at.head, (long long)d, double(out[d]));
    if (lse != nullptr)
      FUZZ_CHECK(std::isnan(*lse), "%s row %lld head %lld: sees a NaN query/key, lse = %g", at.what,
                 (long long)at.row, (long long)at.head, double(*lse));
    return;
  }
  if (inf_qk) return;

  // the size of every logit, and whether fp32 could overflow on the way
  double smax = 0.0;  // max_j s * sum_d |q_d k_jd|
  bool overflow_risk = false;
  for (const double* k : rc.k) {
    double a = 0.0;
    for (index_t d = 0; d < D; ++d) a += std::fabs(rc.q[d] * k[d]);
    overflow_risk = overflow_risk || a > 1e36 || a * scale > 1e36;
    smax = std::max(smax, a * scale);
  }
  if (prec == precision::fp32 && overflow_risk) return;

  const oracle::row_result want = oracle::attend_row(rc.q, rc.k, rc.v, D, scale);
  const double u = unit_roundoff(prec), uo = 0x1p-53, u32 = 0x1p-24;
  const double ds = double(D + 3) * (u + uo) * 1.01 * smax;
  const double delta = std::expm1(2.0 * ds + 8.0 * u + 4.0 * uo);
  const double nops = 2.0 * double(n) + 8.0;
  const double gam = nops * u / (1.0 - nops * u);
  bool all_v_finite = true;
  for (index_t d = 0; d < D; ++d) {
    bool nan_v = false, inf_v = false;
    double vmax = 0.0, vlo = INFINITY, vhi = -INFINITY;
    for (const double* v : rc.v) {
      nan_v = nan_v || std::isnan(v[d]);
      inf_v = inf_v || std::isinf(v[d]);
      if (std::isfinite(v[d])) {
        vmax = std::max(vmax, std::fabs(v[d]));
        vlo = std::min(vlo, v[d]);
        vhi = std::max(vhi, v[d]);
      }
    }
    all_v_finite = all_v_finite && !nan_v && !inf_v;
    const double got = out[d];
    if (nan_v) {
      FUZZ_CHECK(std::isnan(got), "%s row %lld head %lld: sees a NaN value in dim %lld, out = %g",
                 at.what, (long long)at.row, (long long)at.head, (long long)d, got);
      continue;
    }
    if (inf_v) continue;
    // an fp32 accumulator holds sum_j p_j v_j with sum_j p_j up to the key count: values near
    // FLT_MAX / keys can overflow it (outside the documented range, like fp32 logits above)
    if (prec == precision::fp32 && vmax * (double(n) + 1.0) > 1e38) continue;
    FUZZ_CHECK(std::isfinite(got),
               "%s row %lld head %lld: finite inputs, out[%lld] = %g (oracle %.9g, max logit %g)",
               at.what, (long long)at.row, (long long)at.head, (long long)d, got, want.out[d],
               smax);
    const double err = std::fabs(got - want.out[d]);
    if (delta < 0.25) {
      const double bound = vmax * (2.0 * delta / (1.0 - delta) + 4.0 * gam) +
                           4.0 * u32 * std::fabs(want.out[d]) + 1e-30;
      FUZZ_CHECK(err <= bound,
                 "%s row %lld head %lld dim %lld: got %.9g, oracle %.9g, |err| %.3g > derived "
                 "bound %.3g (keys %zu, max logit %.3g, D %lld)",
                 at.what, (long long)at.row, (long long)at.head, (long long)d, got, want.out[d],
                 err, bound, n, smax, (long long)D);
    } else {
      const double slack = 4.0 * gam * vmax + 1e-30;
      FUZZ_CHECK(got >= vlo - slack && got <= vhi + slack,
                 "%s row %lld head %lld dim %lld: got %.9g outside the values' hull [%.9g, %.9g]",
                 at.what, (long long)at.row, (long long)at.head, (long long)d, got, vlo, vhi);
    }
    if (moderate)
      FUZZ_CHECK(err <= 1e-5 * (1.0 + v_scale),
                 "%s row %lld head %lld dim %lld: moderate inputs, got %.9g, oracle %.9g, |err| "
                 "%.3g above the documented 1e-5 (1 + max|V| = %g); keys %zu, D %lld, scale %g, "
                 "max logit %g, derived bound %g",
                 at.what, (long long)at.row, (long long)at.head, (long long)d, got, want.out[d],
                 err, v_scale, n, (long long)D, scale, smax,
                 vmax * (2.0 * delta / (1.0 - delta) + 4.0 * gam));
  }
  // an lse beyond the fp32 range (logits near 1e38 and more, in double) has no fp32 value
  if (lse != nullptr && std::fabs(want.lse) < 3.0e38) {
    const double got = *lse;
    FUZZ_CHECK(std::isfinite(got), "%s row %lld head %lld: finite logits, lse = %g", at.what,
               (long long)at.row, (long long)at.head, got);
    if (delta < 0.25) {
      const double bound = 2.0 * ds + 8.0 * u + 4.0 * uo + 4.0 * gam +
                           4.0 * u32 * (std::fabs(want.lse) + std::log(double(n) + 1.0) + 1.0);
      FUZZ_CHECK(std::fabs(got - want.lse) <= bound,
                 "%s row %lld head %lld: lse %.9g, oracle %.9g, bound %.3g", at.what,
                 (long long)at.row, (long long)at.head, got, want.lse, bound);
    }
  }
  (void)all_v_finite;
}

// ---- strided tensors ------------------------------------------------------------------------

/// A NaN with a payload no computation produces: unwritten output is recognised by its bits.
inline float canary() {
  const std::uint32_t bits = 0x7fa5c3e1u;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline bool is_canary(float f) { return same_bits(f, canary()); }

/// Layout kinds the harness draws for a [rows, heads, D] tensor.
struct layout {
  index_t row_stride = 0, head_stride = 0, size = 0;
};

inline layout make_layout(int kind, index_t rows, index_t heads, index_t D, index_t pad) {
  layout l;
  switch (kind % 5) {
    case 1:  // padded rows
      l.row_stride = heads * D + pad;
      l.head_stride = D;
      break;
    case 2:  // head-major, padded heads
      l.row_stride = D;
      l.head_stride = rows * D + pad;
      break;
    case 3:  // padded heads, token-major
      l.head_stride = D + pad;
      l.row_stride = heads * (D + pad);
      break;
    case 4:  // one row: any row stride is valid, take a huge one
      if (rows <= 1) {
        l.row_stride = index_t(1) << 61;
        l.head_stride = D + pad;
        break;
      }
      [[fallthrough]];
    default:
      l.row_stride = heads * D;
      l.head_stride = D;
  }
  l.size = rows > 0 && heads > 0 && D > 0
               ? (rows - 1) * l.row_stride + (heads - 1) * l.head_stride + D
               : 0;
  if (rows == 1) l.size = (heads - 1) * l.head_stride + D;
  return l;
}

/// A [rows, heads, D] tensor of T in a buffer with padding (and one guard element each side).
template <class T>
struct strided {
  index_t rows = 0, heads = 0, D = 0;
  layout lay;
  std::vector<T> buf;

  strided() = default;
  strided(int kind, index_t r, index_t h, index_t d, index_t pad, T fill)
      : rows(r), heads(h), D(d), lay(make_layout(kind, r, h, d, pad)) {
    buf.assign(static_cast<std::size_t>(lay.size + 2), fill);
  }
  index_t offset(index_t r, index_t h, index_t d) const {
    return 1 + (rows == 1 ? 0 : r * lay.row_stride) + h * lay.head_stride + d;
  }
  T& at(index_t r, index_t h, index_t d) { return buf[static_cast<std::size_t>(offset(r, h, d))]; }
  const T& at(index_t r, index_t h, index_t d) const {
    return buf[static_cast<std::size_t>(offset(r, h, d))];
  }
  fam::tensor_view<T> view() {
    return {buf.data() + 1, rows, heads, D, lay.row_stride, lay.head_stride};
  }
  fam::tensor_view<const T> cview() const {
    return {buf.data() + 1, rows, heads, D, lay.row_stride, lay.head_stride};
  }
  /// Which buffer elements belong to the tensor.
  std::vector<char> element_mask() const {
    std::vector<char> m(buf.size(), 0);
    for (index_t r = 0; r < rows; ++r)
      for (index_t h = 0; h < heads; ++h)
        for (index_t d = 0; d < D; ++d) m[static_cast<std::size_t>(offset(r, h, d))] = 1;
    return m;
  }
};

/// An output tensor: every element starts as a canary.
struct out_tensor : strided<float> {
  out_tensor() = default;
  out_tensor(int kind, index_t r, index_t h, index_t d, index_t pad)
      : strided<float>(kind, r, h, d, pad, canary()) {}
  bool untouched() const {
    return std::all_of(buf.begin(), buf.end(), [](float f) { return is_canary(f); });
  }
  /// Every element written, nothing else.
  void check_written(const char* what) const {
    const std::vector<char> m = element_mask();
    for (std::size_t i = 0; i < buf.size(); ++i)
      FUZZ_CHECK(bool(m[i]) != is_canary(buf[i]),
                 "%s: buffer element %zu is %s (an output must write exactly its elements)", what,
                 i, m[i] ? "not written" : "written outside the view");
  }
  /// out[r, h, 0..D) as a contiguous copy.
  std::vector<float> row(index_t r, index_t h) const {
    std::vector<float> x(static_cast<std::size_t>(D));
    for (index_t d = 0; d < D; ++d) x[static_cast<std::size_t>(d)] = at(r, h, d);
    return x;
  }
};

/// An lse output [rows, heads], token-major or head-major, with guards.
struct lse_tensor {
  index_t rows = 0, heads = 0, rs = 0, hs = 0;
  std::vector<float> buf;
  lse_tensor() = default;
  lse_tensor(bool head_major, index_t r, index_t h) : rows(r), heads(h) {
    rs = head_major ? 1 : h;
    hs = head_major ? std::max<index_t>(r, 1) : 1;
    buf.assign(static_cast<std::size_t>(r * h + 2), canary());
  }
  float& at(index_t r, index_t h) { return buf[static_cast<std::size_t>(1 + r * rs + h * hs)]; }
  float get(index_t r, index_t h) const {
    return buf[static_cast<std::size_t>(1 + r * rs + h * hs)];
  }
  fam::lse_view view() { return {buf.data() + 1, rs, hs}; }
  bool untouched() const {
    return std::all_of(buf.begin(), buf.end(), [](float f) { return is_canary(f); });
  }
  void check_written(const char* what) const {
    FUZZ_CHECK(is_canary(buf.front()) && is_canary(buf.back()), "%s: lse guard written", what);
    for (std::size_t i = 1; i + 1 < buf.size(); ++i)
      FUZZ_CHECK(!is_canary(buf[i]), "%s: lse element %zu not written", what, i - 1);
  }
};

}  // namespace fuzz
