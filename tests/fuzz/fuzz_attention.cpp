// fuzz_attention: configurations, inputs, layouts, chunkings, save/restore, copies, rewinds and
// bad calls drawn from the fuzzer's bytes, each result checked against the float64 oracle
// (fuzz_numerics.hpp states the numeric contract) and each error against its documented
// status, with nothing written and no state changed. Every program runs on the reference
// backend and, when the build has xsimd, on the SIMD backend too.
//
// The first byte picks the program:
//   0  attention() on a whole sequence: full, sliding window or BSWA (huge W, B and M too),
//      storage types fp32/bf16/fp16, strided layouts, lse, a shuffled parallel hook, one
//      injected fault;
//   1  fam_attention() on one fused block;
//   2  a streaming layer_state under a schedule of chunks, save/restore, copy_state, rewinds,
//      attend_batch and injected faults, with drawn or weight-free (SPEC §6) FAM updates,
//      compared with a plain run (bitwise), a run with non-finite inputs zeroed (bitwise on
//      the rows that see none of them) and the oracle;
//   3  a configuration of arbitrary 64-bit values: validate(), supports(), storage_bytes().
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"  // first: FAM_ASSERT

#include "fam/fam.hpp"
#if defined(FAM_FUZZ_SIMD)
#include "fam/backend/simd.hpp"
#endif
#include "fuzz_numerics.hpp"

namespace {

using fam::index_t;
using fam::status;
using fuzz::bytes_in;
using fuzz::precision;
using cfg_t = fam::dynamic_config;
constexpr index_t kMax = std::numeric_limits<index_t>::max();

std::size_t sz(index_t n) { return static_cast<std::size_t>(n); }

const char* name_of(status s) { return fam::to_string(s); }

#define EXPECT_STATUS(got, want, ...)                                                     \
  FUZZ_CHECK((got) == (want), "status '%s', documented '%s': " __VA_ARGS__, name_of(got), \
             name_of(want))

// ---- values -----------------------------------------------------------------------------------

/// Bulk values: a PRNG seed and a distribution picked by the fuzzer.
struct value_source {
  fuzz::prng rng;
  int mode;
  float next() {
    switch (mode % 6) {
      case 0:
        return float(2.0 * rng.unit());  // moderate: the documented tolerance applies
      case 1:
        return float(rng.unit() * std::ldexp(1.0, int(rng.next() % 41) - 20));
      case 2:
        return float(rng.unit() * std::ldexp(1.0, int(rng.next() % 250) - 124));  // any size
      case 3:
        return float(int(rng.next() % 5) - 2);  // small integers: equal logits, exact ties
      case 4:
        return float(rng.unit() * 100.0);  // logits up to ~1e4 (SPEC §7.6)
      default:
        return float(0.5 * rng.unit());
    }
  }
  std::vector<float> fill(index_t n) {
    std::vector<float> x(sz(n));
    for (float& f : x) f = next();
    return x;
  }
};

/// Special values placed by the fuzzer: (tensor, index, value) triples from the last bytes.
struct patch {
  std::uint8_t tensor;
  std::uint32_t index;
  std::uint8_t code;
};
std::vector<patch> read_patches(bytes_in& in, std::size_t max_count) {
  std::vector<patch> ps;
  while (in.left() >= 4 && ps.size() < max_count) {
    patch p;
    p.tensor = in.byte();
    p.index = static_cast<std::uint32_t>(in.u64(2));
    p.code = in.byte();
    ps.push_back(p);
  }
  return ps;
}
void apply_patches(const std::vector<patch>& ps, std::uint8_t tensor, std::vector<float>& x,
                   std::uint8_t tensors) {
  if (x.empty()) return;
  for (const patch& p : ps)
    if (p.tensor % tensors == tensor) x[p.index % x.size()] = fuzz::special_value(p.code);
}

/// The value the library sees when x is stored as T.
template <class T>
double effective(float x) {
  return static_cast<double>(fam::to_float(fam::from_float<T>(x)));
}
template <class T>
std::vector<double> effective(const std::vector<float>& x) {
  std::vector<double> d(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) d[i] = effective<T>(x[i]);
  return d;
}
bool finite_all(const double* x, index_t n) {
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}
double max_abs_finite(const std::vector<double>& x) {
  double m = 0.0;
  for (double v : x)
    if (std::isfinite(v)) m = std::max(m, std::fabs(v));
  return m;
}

/// The same tensor with every element the library would see as non-finite set to 0.
template <class T>
std::vector<float> zeroed(const std::vector<float>& x) {
  std::vector<float> z = x;
  for (float& f : z)
    if (!std::isfinite(effective<T>(f))) f = 0.0f;
  return z;
}

/// Copies [rows, heads, D] contiguous floats into a strided tensor of T.
template <class T>
fuzz::strided<T> to_strided(const std::vector<float>& x, int kind, index_t rows, index_t heads,
                            index_t D, index_t pad) {
  fuzz::strided<T> s(kind, rows, heads, D, pad, fam::from_float<T>(-7.0f));
  for (index_t r = 0; r < rows; ++r)
    for (index_t h = 0; h < heads; ++h)
      for (index_t d = 0; d < D; ++d)
        s.at(r, h, d) = fam::from_float<T>(x[sz((r * heads + h) * D + d)]);
  return s;
}

// ---- backends ---------------------------------------------------------------------------------

/// A parallel-for that runs the items on the calling thread in a permuted order: any schedule
/// must give the same bits (fam/parallel.hpp).
struct permuted_hook {
  std::uint64_t seed;
  static void run(void* self, index_t n, void (*task)(void*, index_t), void* arg) {
    auto* h = static_cast<permuted_hook*>(self);
    std::vector<index_t> order(sz(n));
    std::iota(order.begin(), order.end(), index_t(0));
    fuzz::prng r(h->seed++);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[r.next() % i]);
    for (index_t i : order) task(arg, i);
  }
  fam::parallel_hook hook() { return {this, &permuted_hook::run}; }
};

template <class Fn>
void for_each_backend(Fn&& fn) {
  fn(fam::reference_backend{}, precision::fp64, "reference");
#if defined(FAM_FUZZ_SIMD)
  fn(fam::simd_backend<>{}, precision::fp32, "simd");
#endif
}

// ---- the visibility of SPEC §2, with huge parameters clamped to what L tokens can use --------

struct token_mask {
  oracle::mask kind;
  index_t W, B, M;
  bool visible(index_t n, index_t m) const { return oracle::token_visible(kind, W, B, M, n, m); }
};
token_mask clamp_mask(const fam::mask_spec& s, index_t L) {
  const index_t cap = L + 1;  // W, B or M beyond L + 1 mean the same as L + 1 for L tokens
  switch (s.kind) {
    case fam::variant::sliding_window:
      return {oracle::mask::window, std::min(s.window, cap), 1, 0};
    case fam::variant::bswa:
      return {oracle::mask::bswa, 0, std::min(s.block, cap), std::min(s.memory, cap)};
    default:
      return {oracle::mask::full, 0, 1, 0};
  }
}

// =============================================================================================
// Program 0: attention() on a whole sequence
// =============================================================================================

struct seq_problem {
  index_t L, H, Hkv, D;
  fam::mask_spec mask;
  bool has_scale;
  double scale;
  int type_combo;
  int lay[4];
  index_t pad;
  bool lse, lse_head_major, permute;
  int fault;
  std::vector<float> q, k, v;
};

/// One injected fault: what it does to the call, and the status the documentation promises.
struct seq_call {
  cfg_t cfg;
  fam::mask_spec mask;
  fam::tensor_view<float> views[4];  // q, k, v (as mutable for editing), out
  fam::lse_view lse;
};

/// Applies fault f (if it applies to this shape) and returns its documented status.
status apply_seq_fault(int f, seq_call& c, const seq_problem& p) {
  const index_t L = p.L;
  switch (f) {
    case 1:
      if (L < 1) break;
      c.views[0].data = nullptr;
      return status::null_pointer;
    case 2:
      if (L < 1) break;
      c.views[1].data = nullptr;
      return status::null_pointer;
    case 3:
      if (L < 1) break;
      c.views[3].data = nullptr;
      return status::null_pointer;
    case 4:
      c.views[1].rows += 1;
      return status::shape_mismatch;
    case 5:  // (an empty tensor accepts any empty view: faults of shape need rows)
      if (L < 1) break;
      c.views[2].heads += 1;
      return status::shape_mismatch;
    case 6:
      if (L < 1) break;
      c.views[3].head_dim += 1;
      return status::shape_mismatch;
    case 7:
      if (L < 1) break;
      c.views[0].row_stride = -1 - c.views[0].row_stride;
      return status::invalid_layout;
    case 8:
      if (L < 1 || p.Hkv < 2) break;
      c.views[1].head_stride = p.D - 1;
      return status::invalid_layout;
    case 9:
      if (L < 2) break;
      c.views[3].row_stride = 0;
      c.views[3].head_stride = p.D;
      return status::invalid_layout;
    case 10:
      if (L < 2 || c.lse.data == nullptr) break;
      c.lse.row_stride = 0;
      c.lse.head_stride = 1;
      return status::invalid_layout;
    case 11:
      if (L < 2) break;
      c.views[2].row_stride = index_t(1) << 62;
      return status::too_large;
    case 12:
      c.cfg.heads = 0;
      return status::invalid_argument;
    case 13:
      c.cfg.kv_heads = p.H + 1;
      return status::invalid_argument;
    case 14:
      c.mask = fam::mask_spec::sliding_window(0);
      return status::invalid_argument;
    case 15:
      c.mask = fam::mask_spec::bswa(2, -1);
      return status::invalid_argument;
    case 16:
      c.mask = fam::mask_spec::fam(2, 1, 1);  // FAM needs its state
      return status::invalid_argument;
    case 17:
      c.cfg.set_scale(-0.5);
      return status::invalid_argument;
    case 18:
      c.cfg.set_scale(std::numeric_limits<double>::quiet_NaN());
      return status::invalid_argument;
    case 19:
      c.views[0].rows = -1;  // L = -1
      return status::invalid_argument;
    case 20:
      if (L < 1) break;
      c.views[0].head_dim = p.D + 1;
      return status::shape_mismatch;
    case 21:  // a configuration whose ring would not be addressable
      c.cfg = cfg_t(p.D, index_t(1) << 40, (index_t(1) << 20) - 1, 0);
      c.cfg.set_heads(p.H, p.Hkv);
      return status::too_large;
    case 22:
      c.cfg.phi_dim = -1;
      return status::invalid_argument;
    default:
      break;
  }
  return status::ok;
}

template <class TQ, class TK, class Backend>
void run_sequence(const seq_problem& p, const Backend& backend_in, precision prec,
                  const char* bname) {
  const index_t L = p.L, H = p.H, Hkv = p.Hkv, D = p.D;
  Backend backend = backend_in;
  permuted_hook hook{0x5eed};
  if (p.permute) backend.parallel = hook.hook();

  cfg_t cfg(D, 3, 1, 2);
  cfg.set_heads(H, Hkv);
  if (p.has_scale) cfg.set_scale(p.scale);

  auto run = [&](const std::vector<float>& qx, const std::vector<float>& kx,
                 const std::vector<float>& vx, int fault, fuzz::out_tensor& out,
                 fuzz::lse_tensor& lse) {
    auto q = to_strided<TQ>(qx, p.lay[0], L, H, D, p.pad);
    auto k = to_strided<TK>(kx, p.lay[1], L, Hkv, D, p.pad);
    auto v = to_strided<TK>(vx, p.lay[2], L, Hkv, D, p.pad);
    out = fuzz::out_tensor(p.lay[3], L, H, D, p.pad);
    lse = fuzz::lse_tensor(p.lse_head_major, L, H);
    seq_call c{cfg, p.mask, {}, p.lse ? lse.view() : fam::lse_view{}};
    auto mut = [](auto view) {
      using T = std::remove_const_t<std::remove_pointer_t<decltype(view.data)>>;
      return fam::tensor_view<float>{reinterpret_cast<float*>(const_cast<T*>(view.data)),
                                     view.rows,
                                     view.heads,
                                     view.head_dim,
                                     view.row_stride,
                                     view.head_stride};
    };
    c.views[0] = mut(q.cview());
    c.views[1] = mut(k.cview());
    c.views[2] = mut(v.cview());
    c.views[3] = out.view();
    const status want_fault = apply_seq_fault(fault, c, p);
    auto back_q = [&](const fam::tensor_view<float>& x) {
      return fam::tensor_view<const TQ>{reinterpret_cast<const TQ*>(x.data),
                                        x.rows,
                                        x.heads,
                                        x.head_dim,
                                        x.row_stride,
                                        x.head_stride};
    };
    auto back_k = [&](const fam::tensor_view<float>& x) {
      return fam::tensor_view<const TK>{reinterpret_cast<const TK*>(x.data),
                                        x.rows,
                                        x.heads,
                                        x.head_dim,
                                        x.row_stride,
                                        x.head_stride};
    };
    const status got = fam::attention(c.cfg, c.mask, back_q(c.views[0]), back_k(c.views[1]),
                                      back_k(c.views[2]), c.views[3], c.lse, backend);
    return std::make_pair(got, want_fault);
  };

  // the documented status of the unfaulted call
  status want = status::ok;
  if (D > Backend::max_head_dim) want = status::unsupported;

  fuzz::out_tensor out;
  fuzz::lse_tensor lse;
  if (p.fault != 0) {
    const auto [got, fault_status] = run(p.q, p.k, p.v, p.fault, out, lse);
    if (fault_status != status::ok) {
      // a fault on a call that would fail anyway may report either problem
      FUZZ_CHECK(got == fault_status || (want != status::ok && got == want),
                 "%s attention fault %d: status '%s', documented '%s'", bname, p.fault,
                 name_of(got), name_of(fault_status));
      FUZZ_CHECK(out.untouched() && lse.untouched(), "%s attention fault %d: output written", bname,
                 p.fault);
      return;
    }
  }
  const auto [got, unused] = run(p.q, p.k, p.v, 0, out, lse);
  (void)unused;
  EXPECT_STATUS(got, want, "%s attention L=%lld H=%lld Hkv=%lld D=%lld", bname, (long long)L,
                (long long)H, (long long)Hkv, (long long)D);
  if (got != status::ok) {
    FUZZ_CHECK(out.untouched() && lse.untouched(), "%s: failed call wrote its output", bname);
    return;
  }
  out.check_written(bname);
  if (p.lse) lse.check_written(bname);

  // the oracle, row by row
  const std::vector<double> qd = effective<TQ>(p.q), kd = effective<TK>(p.k),
                            vd = effective<TK>(p.v);
  const double v_scale = max_abs_finite(vd);
  const token_mask tm = clamp_mask(p.mask, L);
  const double scale = cfg.scale();
  bool any_nonfinite = false;
  for (const auto* x : {&qd, &kd, &vd})
    for (double e : *x) any_nonfinite = any_nonfinite || !std::isfinite(e);
  std::vector<char> tainted(sz(L * H), 0);
  for (index_t n = 0; n < L; ++n)
    for (index_t h = 0; h < H; ++h) {
      const index_t g = h / (H / Hkv);
      fuzz::row_case rc;
      rc.q = &qd[sz((n * H + h) * D)];
      bool taint = !finite_all(rc.q, D);
      for (index_t m = 0; m <= n; ++m)
        if (tm.visible(n, m)) {
          rc.k.push_back(&kd[sz((m * Hkv + g) * D)]);
          rc.v.push_back(&vd[sz((m * Hkv + g) * D)]);
          taint = taint || !finite_all(rc.k.back(), D) || !finite_all(rc.v.back(), D);
        }
      tainted[sz(n * H + h)] = taint;
      const std::vector<float> row = out.row(n, h);
      const float l = lse.get(n, h);
      fuzz::check_row({bname, n, h}, rc, D, scale, prec, row.data(), p.lse ? &l : nullptr, v_scale);
    }

  // non-finite inputs: the rows that see none of them are the rows of the zeroed run, bitwise
  if (any_nonfinite) {
    fuzz::out_tensor out0;
    fuzz::lse_tensor lse0;
    const auto [got0, u0] = run(zeroed<TQ>(p.q), zeroed<TK>(p.k), zeroed<TK>(p.v), 0, out0, lse0);
    (void)u0;
    EXPECT_STATUS(got0, status::ok, "%s zeroed run", bname);
    for (index_t n = 0; n < L; ++n)
      for (index_t h = 0; h < H; ++h) {
        if (tainted[sz(n * H + h)]) continue;
        for (index_t d = 0; d < D; ++d)
          FUZZ_CHECK(fuzz::same_bits(out.at(n, h, d), out0.at(n, h, d)),
                     "%s row %lld head %lld sees no non-finite input but differs from the zeroed "
                     "run: %g vs %g",
                     bname, (long long)n, (long long)h, double(out.at(n, h, d)),
                     double(out0.at(n, h, d)));
        if (p.lse)
          FUZZ_CHECK(fuzz::same_bits(lse.get(n, h), lse0.get(n, h)),
                     "%s row %lld head %lld: lse differs from the zeroed run", bname, (long long)n,
                     (long long)h);
      }
  }
}

void program_sequence(bytes_in& in) {
  seq_problem p{};
  value_source vs{fuzz::prng(in.u64()), in.byte()};
  p.H = in.range(1, 4);
  {
    std::vector<index_t> divs;
    for (index_t d = 1; d <= p.H; ++d)
      if (p.H % d == 0) divs.push_back(d);
    p.Hkv = divs[sz(in.range(0, index_t(divs.size()) - 1))];
  }
  const std::uint8_t dsel = in.byte();
  const index_t big_d[] = {32, 64, 128, 255, 256, 257, 1024, 1025};
  p.D = dsel < 232 ? 1 + dsel % 24 : big_d[dsel % 8];
  p.L = in.range(0, 40);
  if (p.D > 64) p.L = std::min<index_t>(p.L, 6);
  const std::uint8_t mk = in.byte();
  const index_t w = in.range(0, 50), b = in.range(0, 50), m = in.range(0, 6);
  const index_t huge[] = {kMax, kMax / 2, kMax - 1, index_t(1) << 40};
  switch (mk % 6) {
    case 0:
      p.mask = fam::mask_spec::full();
      break;
    case 1:
      p.mask = fam::mask_spec::sliding_window(1 + w);
      break;
    case 2:
      p.mask = fam::mask_spec::bswa(1 + b % 12, m);
      break;
    case 3:
      p.mask = fam::mask_spec::bswa(1 + b, m);
      break;
    case 4:  // huge, valid: they must mean "everything" without overflowing anything
      p.mask = fam::mask_spec::bswa(huge[b % 4], huge[m % 4]);
      break;
    default:
      p.mask = (w & 1) ? fam::mask_spec::sliding_window(huge[w % 4])
                       : fam::mask_spec::bswa(1 + b % 5, huge[m % 4]);
  }
  const std::uint8_t sc = in.byte();
  const double scales[] = {1.0, 0.01, 10.0, 1e-30, 1e4, 0.125};
  p.has_scale = sc % 3 == 1;
  p.scale = scales[(sc / 3) % 6];
  p.type_combo = in.byte() % 6;
  for (int& l : p.lay) l = in.byte() % 5;
  p.pad = in.range(0, 3);
  const std::uint8_t fl = in.byte();
  p.lse = (fl & 1) != 0;
  p.lse_head_major = (fl & 2) != 0;
  p.permute = (fl & 4) != 0;
  const std::uint8_t f = in.byte();
  p.fault = f < 160 ? 0 : 1 + f % 22;
  p.q = vs.fill(p.L * p.H * p.D);
  p.k = vs.fill(p.L * p.Hkv * p.D);
  p.v = vs.fill(p.L * p.Hkv * p.D);
  const std::vector<patch> ps = read_patches(in, 16);
  apply_patches(ps, 0, p.q, 3);
  apply_patches(ps, 1, p.k, 3);
  apply_patches(ps, 2, p.v, 3);

  for_each_backend([&](const auto& backend, precision prec, const char* name) {
    using B = std::decay_t<decltype(backend)>;
    switch (p.type_combo) {
      case 0:
        run_sequence<float, float, B>(p, backend, prec, name);
        break;
      case 1:
        run_sequence<float, fam::bf16, B>(p, backend, prec, name);
        break;
      case 2:
        run_sequence<float, fam::fp16, B>(p, backend, prec, name);
        break;
      case 3:
        run_sequence<fam::bf16, fam::bf16, B>(p, backend, prec, name);
        break;
      case 4:
        run_sequence<fam::fp16, fam::fp16, B>(p, backend, prec, name);
        break;
      default:
        run_sequence<fam::bf16, float, B>(p, backend, prec, name);
    }
  });
}

// =============================================================================================
// Program 1: one fused FAM block (fam_attention)
// =============================================================================================

void program_block(bytes_in& in) {
  value_source vs{fuzz::prng(in.u64()), in.byte()};
  const index_t H = in.range(1, 4);
  index_t Hkv = H;
  if (in.flag()) Hkv = (H % 2 == 0) ? H / 2 : 1;
  const index_t D = in.range(1, 20), B = in.range(1, 9), M = in.range(0, 3), F = in.range(0, 5);
  const index_t j = in.range(0, M), b = in.range(0, B), Lm = j * B;
  const int lay = in.byte();
  const index_t pad = in.range(0, 2);
  const std::uint8_t fl = in.byte();
  const std::uint8_t fault_byte = in.byte();
  const int fault = fault_byte < 170 ? 0 : 1 + fault_byte % 10;
  std::vector<float> mk = vs.fill(Lm * Hkv * D), mv = vs.fill(Lm * Hkv * D),
                     qf = vs.fill(F * H * D), kf = vs.fill(F * Hkv * D), vf = vs.fill(F * Hkv * D),
                     q = vs.fill(b * H * D), k = vs.fill(b * Hkv * D), v = vs.fill(b * Hkv * D);
  const std::vector<patch> ps = read_patches(in, 12);
  std::vector<float>* all[] = {&mk, &mv, &qf, &kf, &vf, &q, &k, &v};
  for (std::uint8_t t = 0; t < 8; ++t) apply_patches(ps, t, *all[t], 8);
  cfg_t cfg(D, B, M, F);
  cfg.set_heads(H, Hkv);

  for_each_backend([&](const auto& backend, precision prec, const char* bname) {
    auto s_mk = to_strided<float>(mk, lay, Lm, Hkv, D, pad),
         s_mv = to_strided<float>(mv, lay >> 1, Lm, Hkv, D, pad),
         s_qf = to_strided<float>(qf, lay >> 2, F, H, D, pad),
         s_kf = to_strided<float>(kf, lay >> 3, F, Hkv, D, pad),
         s_vf = to_strided<float>(vf, lay >> 4, F, Hkv, D, pad),
         s_q = to_strided<float>(q, lay >> 5, b, H, D, pad),
         s_k = to_strided<float>(k, lay >> 6, b, Hkv, D, pad),
         s_v = to_strided<float>(v, lay >> 7, b, Hkv, D, pad);
    fuzz::out_tensor ut(lay >> 1, b, H, D, pad), uf(lay >> 2, F, H, D, pad);
    fuzz::lse_tensor lt((fl & 2) != 0, b, H), lf((fl & 4) != 0, F, H);
    fam::fam_block_args<> a;
    a.mem_k = s_mk.cview();
    a.mem_v = s_mv.cview();
    a.qf = s_qf.cview();
    a.kf = s_kf.cview();
    a.vf = s_vf.cview();
    a.q = s_q.cview();
    a.k = s_k.cview();
    a.v = s_v.cview();
    a.ut = ut.view();
    a.uf = uf.view();
    if (fl & 1) a.lse_t = lt.view(), a.lse_f = lf.view();
    cfg_t c = cfg;
    status want = status::ok;
    switch (fault) {
      case 1:
        if (B < 2) break;
        a.mem_k.rows = a.mem_v.rows = Lm + 1;  // not a multiple of B
        want = status::shape_mismatch;
        break;
      case 2:
        a.q.rows = a.k.rows = a.v.rows = a.ut.rows = B + 1;
        want = status::shape_mismatch;
        break;
      case 3:
        a.mem_k.rows = a.mem_v.rows = (M + 1) * B;
        want = status::shape_mismatch;
        break;
      case 4:
        a.qf.rows = F + 1;
        want = status::shape_mismatch;
        break;
      case 5:
        if (F < 1) break;
        a.kf.data = nullptr;
        want = status::null_pointer;
        break;
      case 6:
        if (b < 1) break;
        a.ut.data = nullptr;
        want = status::null_pointer;
        break;
      case 7:
        if (F < 1) break;
        a.uf.row_stride = -1;
        want = status::invalid_layout;
        break;
      case 8:
        if (b < 1) break;
        a.q.head_dim = D + 1;
        want = status::shape_mismatch;
        break;
      case 9:
        a.q.rows = -1;
        want = status::shape_mismatch;
        break;
      case 10:
        c.kv_heads = 0;
        want = status::invalid_argument;
        break;
      default:
        break;
    }
    const status got = fam::fam_attention(c, a, backend);
    EXPECT_STATUS(got, want, "%s fam_attention fault %d (Lm %lld b %lld F %lld B %lld)", bname,
                  fault, (long long)Lm, (long long)b, (long long)F, (long long)B);
    if (got != status::ok) {
      FUZZ_CHECK(ut.untouched() && uf.untouched() && lt.untouched() && lf.untouched(),
                 "%s fam_attention failed and wrote", bname);
      return;
    }
    ut.check_written("fam_attention ut");
    uf.check_written("fam_attention uf");
    if (fl & 1) lt.check_written("lse_t"), lf.check_written("lse_f");
    const std::vector<double> dmk = effective<float>(mk), dmv = effective<float>(mv),
                              dqf = effective<float>(qf), dkf = effective<float>(kf),
                              dvf = effective<float>(vf), dq = effective<float>(q),
                              dk = effective<float>(k), dv = effective<float>(v);
    double v_scale = std::max({max_abs_finite(dmv), max_abs_finite(dvf), max_abs_finite(dv)});
    const std::string tok_what = std::string(bname) + " fam_attention token",
                      fam_what = std::string(bname) + " fam_attention FAM row";
    for (index_t h = 0; h < H; ++h) {
      const index_t g = h / (H / Hkv);
      auto fam_keys = [&](fuzz::row_case& rc) {
        for (index_t r = 0; r < F; ++r) {
          rc.k.push_back(&dkf[sz((r * Hkv + g) * D)]);
          rc.v.push_back(&dvf[sz((r * Hkv + g) * D)]);
        }
      };
      for (index_t i = 0; i < b; ++i) {  // token row: memory, FAM, block 0..i
        fuzz::row_case rc;
        rc.q = &dq[sz((i * H + h) * D)];
        for (index_t m = 0; m < Lm; ++m) {
          rc.k.push_back(&dmk[sz((m * Hkv + g) * D)]);
          rc.v.push_back(&dmv[sz((m * Hkv + g) * D)]);
        }
        fam_keys(rc);
        for (index_t m = 0; m <= i; ++m) {
          rc.k.push_back(&dk[sz((m * Hkv + g) * D)]);
          rc.v.push_back(&dv[sz((m * Hkv + g) * D)]);
        }
        const std::vector<float> row = ut.row(i, h);
        const float l = lt.get(i, h);
        fuzz::check_row({tok_what.c_str(), i, h}, rc, D, c.scale(), prec, row.data(),
                        (fl & 1) ? &l : nullptr, v_scale);
      }
      for (index_t r = 0; r < F; ++r) {  // FAM row: FAM and the whole block, no memory
        fuzz::row_case rc;
        rc.q = &dqf[sz((r * H + h) * D)];
        fam_keys(rc);
        for (index_t m = 0; m < b; ++m) {
          rc.k.push_back(&dk[sz((m * Hkv + g) * D)]);
          rc.v.push_back(&dv[sz((m * Hkv + g) * D)]);
        }
        const std::vector<float> row = uf.row(r, h);
        const float l = lf.get(r, h);
        fuzz::check_row({fam_what.c_str(), r, h}, rc, D, c.scale(), prec, row.data(),
                        (fl & 1) ? &l : nullptr, v_scale);
      }
    }
  });
}

// =============================================================================================
// Program 2: a streaming layer_state under a schedule
// =============================================================================================

struct stream_op {
  std::uint8_t kind, a, b;
};

struct stream_problem {
  index_t L, H, Hkv, D, B, M, F, phi;
  bool has_scale, feedback, fresh, caller_storage;
  double scale;
  index_t offset;
  int kv_type;
  std::vector<float> q, k, v;
  // drawn FAM installs: install t is used by block t (install 0 = begin_fam)
  std::vector<std::vector<float>> qf, kf, vf, ph;
  std::vector<stream_op> ops;
  std::vector<float> spec;  // values of speculative (rewound) tokens
};

/// Everything a pass produced.
struct stream_result {
  std::vector<float> out, lse;                             // [L, H, D], [L, H]
  std::vector<std::vector<float>> uf, uf_lse;              // per completed block [F, H, D], [F, H]
  std::vector<std::vector<float>> inst_q, inst_k, inst_v;  // install t as passed (floats)
};

template <class KV>
using state_t = fam::layer_state<cfg_t, KV>;

template <class KV>
std::vector<unsigned char> blob_of(const state_t<KV>& st) {
  std::vector<unsigned char> b(fam::serialized_size(st));
  const status s = fam::save_state(st, b.data(), b.size());
  FUZZ_CHECK(s == status::ok, "save_state: %s", name_of(s));
  return b;
}

/// The state's observable metadata plus its bytes.
template <class KV>
struct print {
  index_t tokens;
  fam::fam_phase phase;
  bool fresh;
  std::vector<unsigned char> blob;
  explicit print(const state_t<KV>& st)
      : tokens(st.tokens()), phase(st.phase()), fresh(st.fresh()), blob(blob_of(st)) {}
  bool operator==(const print& o) const {
    return tokens == o.tokens && phase == o.phase && fresh == o.fresh && blob == o.blob;
  }
};

template <class KV, class Backend>
class stream_pass {
 public:
  stream_pass(const stream_problem& p, const Backend& backend, const char* name, bool plain,
              const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
              const std::vector<std::vector<float>>& qf, const std::vector<std::vector<float>>& kf,
              const std::vector<std::vector<float>>& vf)
      : p_(p),
        be_(backend),
        name_(name),
        plain_(plain),
        q_(q),
        k_(k),
        v_(v),
        qf_(qf),
        kf_(kf),
        vf_(vf) {
    cfg_ = cfg_t(p.D, p.B, p.M, p.F);
    cfg_.set_heads(p.H, p.Hkv);
    cfg_.phi_dim = p.phi;
    cfg_.position_offset = p.offset;
    if (p.has_scale) cfg_.set_scale(p.scale);
  }

  stream_result run() {
    const stream_problem& p = p_;
    res_.out.assign(sz(p.L * p.H * p.D), fuzz::canary());
    res_.lse.assign(sz(p.L * p.H), fuzz::canary());
    // two states, so that restores and copies can move the stream between them
    if (p.caller_storage && !plain_) {
      storage_.assign(state_t<KV>::storage_bytes(cfg_) + 64, 0);
      auto* base = storage_.data();
      auto* aligned = base + (64 - reinterpret_cast<std::uintptr_t>(base) % 64) % 64;
      init_ok(a_.init(cfg_, aligned, state_t<KV>::storage_bytes(cfg_)));
    } else {
      init_ok(a_.init(cfg_));
    }
    init_ok(b_.init(cfg_));
    cur_ = &a_;
    other_ = &b_;
    if (p.F > 0) {
      if (!plain_) {  // a token before begin_fam
        fault_call(1000);
      }
      install(0, true);
    }
    pos_ = 0;
    std::size_t next_op = 0;
    while (pos_ < p.L) {
      if (plain_ || next_op >= p.ops.size()) {
        feed(p.L - pos_, true, 0);
        continue;
      }
      const stream_op op = p.ops[next_op++];
      switch (op.kind % 12) {
        case 4:
          save_restore(op);
          break;
        case 5:
          fork();
          break;
        case 6:
          speculate(op);
          break;
        case 7:
          rewind_real(op);
          break;
        case 8:
        case 9:
          fault_call(op.a);
          break;
        case 10:
          reset_check();
          break;
        default:
          feed(1 + op.a % (p.B + 2), (op.b & 1) != 0, op.b >> 1);
      }
      check_meta();
    }
    return std::move(res_);
  }

 private:
  void init_ok(status s) { FUZZ_CHECK(s == status::ok, "%s init: %s", name_, name_of(s)); }

  fam::tensor_view<const float> rows(const std::vector<float>& x, index_t heads, index_t first,
                                     index_t count) const {
    return fam::make_view<const float>(x.data(), p_.L, heads, p_.D).rows_from(first, count);
  }
  fam::tensor_view<float> out_rows(index_t first, index_t count) {
    return fam::make_view(res_.out.data(), p_.L, p_.H, p_.D).rows_from(first, count);
  }
  fam::lse_view lse_rows(index_t first) {
    return fam::make_lse_view(res_.lse.data(), p_.H).rows_from(first);
  }

  /// The FAM of block t: drawn, or the previous Uf (SPEC §6) when feeding back.
  void install(std::size_t t, bool first) {
    const stream_problem& p = p_;
    std::vector<float> q, k, v;
    if (p.feedback && t > 0) {
      q = k = v = res_.uf[t - 1];
    } else {
      q = qf_[t % qf_.size()];
      k = kf_[t % kf_.size()];
      v = vf_[t % vf_.size()];
    }
    const std::vector<float>& ph = p.ph[t % p.ph.size()];
    const auto qv = fam::make_view<const float>(q.data(), p.F, p.H, p.D);
    const auto kv = fam::make_view<const float>(k.data(), p.F, p.Hkv, p.D);
    const auto vv = fam::make_view<const float>(v.data(), p.F, p.Hkv, p.D);
    const auto pv = fam::make_view<const float>(ph.data(), p.F, 1, p.phi);
    status s;
    if (first) {
      s = fam::begin_fam(*cur_, qv, kv, vv, pv, p.fresh);
      fresh_ = p.fresh;
    } else if (p.feedback && t > 0 && p.H == p.Hkv && (t & 1)) {
      // the state's own Uf as the new Qf = Kf = Vf (the views alias the state's storage)
      const auto uf = cur_->fam_output();
      s = fam::update_fam(*cur_, uf, uf, uf, pv);
      fresh_ = false;
    } else {
      s = fam::update_fam(*cur_, qv, kv, vv, pv);
      fresh_ = false;
    }
    FUZZ_CHECK(s == status::ok, "%s install %zu: %s", name_, t, name_of(s));
    if (res_.inst_q.size() <= t) {
      res_.inst_q.resize(t + 1), res_.inst_k.resize(t + 1), res_.inst_v.resize(t + 1);
    }
    res_.inst_q[t] = q;
    res_.inst_k[t] = k;
    res_.inst_v[t] = v;
    // Φ is kept when phi_dim > 0
    if (p.phi > 0) {
      const auto phi = cur_->phi();
      for (index_t r = 0; r < p.F; ++r)
        for (index_t d = 0; d < p.phi; ++d)
          FUZZ_CHECK(fuzz::same_bits(phi.at(r, 0)[d], ph[sz(r * p.phi + d)]),
                     "%s: phi() is not the installed Φ", name_);
    }
  }

  /// After a call that completed a block: record Uf, install the next FAM.
  void after_block_end() {
    const stream_problem& p = p_;
    if (cur_->phase() != fam::fam_phase::pending) return;
    FUZZ_CHECK(p.F > 0 && cur_->block_offset() == 0, "%s: pending without a block end", name_);
    const auto uf = cur_->fam_output();
    std::vector<float> u(sz(p.F * p.H * p.D)), l(sz(p.F * p.H));
    for (index_t r = 0; r < p.F; ++r)
      for (index_t h = 0; h < p.H; ++h) {
        std::memcpy(&u[sz((r * p.H + h) * p.D)], uf.at(r, h), sizeof(float) * sz(p.D));
        l[sz(r * p.H + h)] = cur_->fam_output_lse()[r * p.H + h];
      }
    const std::size_t t = sz(pos_ / p.B - 1);
    FUZZ_CHECK(res_.uf.size() == t, "%s: block %zu completed twice or out of order", name_, t);
    res_.uf.push_back(u);
    res_.uf_lse.push_back(l);
    // the documented positions of the new FAM rows (SPEC §4)
    for (index_t r = 0; r < p.F; ++r)
      FUZZ_CHECK(cur_->fam_position(r) == pos_ - p.F + r + p.offset, "%s: fam_position(%lld)",
                 name_, (long long)r);
    if (!plain_) fault_call(1001);  // tokens while the update is pending
    install(t + 1, false);
  }

  void feed(index_t want, bool with_consumed, int how) {
    const stream_problem& p = p_;
    const index_t c = std::min(want, p.L - pos_);
    const index_t to_end = p.B - cur_->block_offset();
    if (p.F > 0 && !with_consumed && c > to_end) {
      // crossing the block end without `consumed` is refused, state unchanged
      const print<KV> before(*cur_);
      std::vector<float> scratch(sz(c * p.H * p.D), fuzz::canary());
      const status s = fam::attend(*cur_, rows(q_, p.H, pos_, c), rows(k_, p.Hkv, pos_, c),
                                   rows(v_, p.Hkv, pos_, c),
                                   fam::make_view(scratch.data(), c, p.H, p.D), {}, nullptr, be_);
      EXPECT_STATUS(s, status::invalid_argument, "%s: chunk crossing the block end, no consumed",
                    name_);
      FUZZ_CHECK(print<KV>(*cur_) == before, "%s: refused attend changed the state", name_);
      FUZZ_CHECK(std::all_of(scratch.begin(), scratch.end(), fuzz::is_canary),
                 "%s: refused attend wrote", name_);
      with_consumed = true;
    }
    index_t n = -5;
    if (how % 4 == 1 || how % 4 == 2) {
      // attend_batch: alone, or with a fork of this state fed the same chunk
      fam::sequence_step<cfg_t, KV, float> steps[2];
      std::vector<float> out2(sz(c * p.H * p.D), fuzz::canary());
      const std::vector<KV> kc = stored(k_, pos_, c), vc = stored(v_, pos_, c);
      steps[0].state = cur_;
      steps[0].q = rows(q_, p.H, pos_, c);
      steps[0].k = fam::make_view<const KV>(kc.data(), c, p.Hkv, p.D);
      steps[0].v = fam::make_view<const KV>(vc.data(), c, p.Hkv, p.D);
      steps[0].out = out_rows(pos_, c);
      steps[0].lse = lse_rows(pos_);
      index_t count = 1;
      if (how % 4 == 2) {
        const status cs = fam::copy_state(*other_, *cur_);
        FUZZ_CHECK(cs == status::ok, "%s copy_state: %s", name_, name_of(cs));
        steps[1] = steps[0];
        steps[1].state = other_;
        steps[1].out = fam::make_view(out2.data(), c, p.H, p.D);
        steps[1].lse = {};
        count = 2;
      }
      const status s = fam::attend_batch(steps, count, be_);
      FUZZ_CHECK(s == status::ok, "%s attend_batch: %s", name_, name_of(s));
      n = steps[0].consumed;
      if (count == 2) {
        FUZZ_CHECK(steps[1].consumed == n, "%s: batch members consumed differently", name_);
        for (index_t i = 0; i < n * p.H * p.D; ++i)
          FUZZ_CHECK(fuzz::same_bits(out2[sz(i)], res_.out[sz(pos_ * p.H * p.D + i)]),
                     "%s: a batch member and its fork disagree", name_);
        FUZZ_CHECK(blob_of(*other_) == blob_of(*cur_), "%s: fork state differs after batch", name_);
      }
    } else {
      const status s =
          fam::attend(*cur_, rows(q_, p.H, pos_, c), kv_rows(k_, pos_, c), kv_rows(v_, pos_, c),
                      out_rows(pos_, c), lse_rows(pos_), with_consumed ? &n : nullptr, be_);
      FUZZ_CHECK(s == status::ok, "%s attend of %lld tokens at %lld: %s", name_, (long long)c,
                 (long long)pos_, name_of(s));
      if (!with_consumed) n = c;
    }
    const index_t expect = p.F > 0 ? std::min(c, to_end) : c;
    FUZZ_CHECK(n == expect, "%s: consumed %lld, documented %lld", name_, (long long)n,
               (long long)expect);
    pos_ += n;
    // a pending update survives save and restore
    if ((how & 4) && cur_->phase() == fam::fam_phase::pending) save_restore({4, 0, 0});
    after_block_end();
  }

  fam::tensor_view<const float> kv_rows(const std::vector<float>& x, index_t first,
                                        index_t count) const {
    return rows(x, p_.Hkv, first, count);
  }
  /// Rows [first, first + count) of a [L, Hkv, D] tensor in the state's storage type.
  std::vector<KV> stored(const std::vector<float>& x, index_t first, index_t count) const {
    std::vector<KV> r(sz(count * p_.Hkv * p_.D));
    for (std::size_t i = 0; i < r.size(); ++i)
      r[i] = fam::from_float<KV>(x[sz(first * p_.Hkv * p_.D) + i]);
    return r;
  }

  void save_restore(const stream_op& op) {
    const std::vector<unsigned char> blob = blob_of(*cur_);
    FUZZ_CHECK(blob.size() == fam::serialized_size(*cur_), "%s: serialized_size", name_);
    if (op.a & 1) {  // restore into a freshly initialized state instead of the dirty other one
      state_t<KV> fresh;
      init_ok(fresh.init(cfg_));
      *other_ = std::move(fresh);
    }
    const status s = fam::restore_state(*other_, blob.data(), blob.size());
    FUZZ_CHECK(s == status::ok, "%s restore_state: %s", name_, name_of(s));
    FUZZ_CHECK(blob_of(*other_) == blob, "%s: restore then save is not the same blob", name_);
    FUZZ_CHECK(other_->tokens() == cur_->tokens() && other_->phase() == cur_->phase() &&
                   other_->fresh() == cur_->fresh(),
               "%s: restored metadata differs", name_);
    std::swap(cur_, other_);
  }

  void fork() {
    const status s = fam::copy_state(*other_, *cur_);
    FUZZ_CHECK(s == status::ok, "%s copy_state: %s", name_, name_of(s));
    FUZZ_CHECK(blob_of(*other_) == blob_of(*cur_), "%s: copy differs", name_);
    std::swap(cur_, other_);
  }

  /// Tokens that are sent and taken back: nothing of them may remain.
  void speculate(const stream_op& op) {
    const stream_problem& p = p_;
    const index_t o = cur_->block_offset();
    const index_t room = p.B - o - 1;  // never complete the block: that cannot be undone
    if (room < 1 || cur_->phase() == fam::fam_phase::pending) return;
    const index_t s = 1 + op.a % room;
    std::vector<float> x(sz(s * p.H * p.D)), xk(sz(s * p.Hkv * p.D)), out(sz(s * p.H * p.D));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = p.spec[(i + op.b) % p.spec.size()];
    for (std::size_t i = 0; i < xk.size(); ++i) xk[i] = p.spec[(i * 7 + op.b) % p.spec.size()];
    index_t n = 0;
    const status st = fam::attend(*cur_, fam::make_view<const float>(x.data(), s, p.H, p.D),
                                  fam::make_view<const float>(xk.data(), s, p.Hkv, p.D),
                                  fam::make_view<const float>(xk.data(), s, p.Hkv, p.D),
                                  fam::make_view(out.data(), s, p.H, p.D), {}, &n, be_);
    FUZZ_CHECK(st == status::ok && n == s, "%s speculative attend: %s", name_, name_of(st));
    const status r = fam::rewind(*cur_, s);
    FUZZ_CHECK(r == status::ok, "%s rewind(%lld): %s", name_, (long long)s, name_of(r));
  }

  /// Real tokens taken back and sent again: the same outputs, bitwise.
  void rewind_real(const stream_op& op) {
    const index_t o = cur_->block_offset();
    if (o < 1 || cur_->phase() == fam::fam_phase::pending) return;
    const index_t r = 1 + op.a % o;
    const status s = fam::rewind(*cur_, r);
    FUZZ_CHECK(s == status::ok, "%s rewind(%lld) of %lld: %s", name_, (long long)r, (long long)o,
               name_of(s));
    pos_ -= r;
  }

  void reset_check() {
    state_t<KV> scratch, fresh;
    init_ok(scratch.init(cfg_));
    init_ok(fresh.init(cfg_));
    FUZZ_CHECK(fam::copy_state(scratch, *cur_) == status::ok, "%s copy", name_);
    fam::reset(scratch);
    FUZZ_CHECK(print<KV>(scratch) == print<KV>(fresh), "%s: reset is not a fresh state", name_);
  }

  void check_meta() {
    FUZZ_CHECK(cur_->tokens() == pos_, "%s: tokens() %lld, fed %lld", name_,
               (long long)cur_->tokens(), (long long)pos_);
    FUZZ_CHECK(cur_->fresh() == (fresh_ && p_.F > 0), "%s: fresh() %d, documented %d", name_,
               int(cur_->fresh()), int(fresh_));
    FUZZ_CHECK(cur_->token_position(1) == pos_ + 1 + p_.offset, "%s: token_position", name_);
  }

  /// A bad call (which one: `which`); it must return its documented status and change nothing.
  void fault_call(int which) {
    const stream_problem& p = p_;
    state_t<KV>& st = *cur_;
    const print<KV> before(st);
    const index_t o = st.block_offset(), c = std::max<index_t>(1, std::min<index_t>(2, p.L - pos_));
    const bool pending = st.phase() == fam::fam_phase::pending;
    const bool none = st.phase() == fam::fam_phase::none;
    std::vector<float> out(sz((c + 1) * p.H * p.D), fuzz::canary());
    std::vector<float> lse(sz((c + 1) * p.H), fuzz::canary());
    index_t consumed = -7;
    // well-formed token inputs of c rows (every fault below breaks exactly one thing)
    const std::vector<float> xq(sz(c * p.H * p.D), 0.25f);
    const std::vector<KV> xkv(sz((c + 1) * p.Hkv * p.D), fam::from_float<KV>(0.5f));
    const std::vector<float> fam_rows(sz((p.F + 1) * p.H * p.D), 0.5f);
    auto q = fam::make_view<const float>(xq.data(), c, p.H, p.D);
    auto k = fam::make_view<const KV>(xkv.data(), c, p.Hkv, p.D);
    auto v = k;
    const auto fq = fam::make_view<const float>(fam_rows.data(), p.F, p.H, p.D);
    const auto fk = fam::make_view<const float>(fam_rows.data(), p.F, p.Hkv, p.D);
    auto ov = fam::make_view(out.data(), c, p.H, p.D);
    fam::lse_view lv = fam::make_lse_view(lse.data(), p.H);
    status want = status::ok, got = status::ok;
    const char* what = "";
    // the documented status of a well-formed attend in this phase
    const status phase_status = none      ? status::fam_not_installed
                                : pending ? status::fam_update_pending
                                          : status::ok;
    std::vector<unsigned char> blob;
    const int kind = which >= 1000 ? 0 : which % 16;
    switch (kind) {
      case 0:
        what = "attend in the wrong phase";
        want = phase_status;
        if (want == status::ok) return;
        got = fam::attend(st, q, k, v, ov, lv, &consumed, be_);
        break;
      case 1:
        what = "q and k lengths differ";
        k.rows += 1;
        want = status::shape_mismatch;
        got = fam::attend(st, q, k, v, ov, lv, &consumed, be_);
        break;
      case 2:
        what = "null q";
        q.data = nullptr;
        want = status::null_pointer;
        got = fam::attend(st, q, k, v, ov, lv, &consumed, be_);
        break;
      case 3:
        what = "negative out row stride";
        ov.row_stride = -ov.row_stride - 1;
        want = status::invalid_layout;
        got = fam::attend(st, q, k, v, ov, lv, &consumed, be_);
        break;
      case 4:
        if (c < 2) return;
        what = "lse rows on one element";
        lv.row_stride = 0;
        lv.head_stride = 1;
        want = status::invalid_layout;
        got = fam::attend(st, q, k, v, ov, lv, &consumed, be_);
        break;
      case 5:
        what = "update_fam with nothing pending";
        if (pending) return;
        want = status::no_update_pending;
        got = fam::update_fam(st, fq, fk, fk);
        break;
      case 6: {
        what = "begin_fam inside a block or while pending";
        if (!pending && o == 0) return;
        want = pending ? status::fam_update_pending : status::invalid_argument;
        got = fam::begin_fam(st, fq, fk, fk);
        break;
      }
      case 7:
        what = "rewind past the block start";
        want = status::out_of_range;
        got = fam::rewind(st, o + 1 + (which >> 4) % 3);
        break;
      case 8:
        what = "rewind by a negative count";
        want = status::out_of_range;
        got = fam::rewind(st, -1 - (which >> 4));
        break;
      case 9: {
        what = "update_fam with Qf of F+1 rows";
        if (!pending) return;
        const auto qv = fam::make_view<const float>(fam_rows.data(), p.F + 1, p.H, p.D);
        want = status::shape_mismatch;
        got = fam::update_fam(st, qv, fk, fk);
        break;
      }
      case 10: {
        what = "restore a blob with one byte changed";
        blob = blob_of(st);
        const std::size_t i = (std::size_t(which) * 2654435761u) % blob.size();
        blob[i] ^= static_cast<unsigned char>(1u << ((which >> 2) % 8));
        got = fam::restore_state(st, blob.data(), blob.size());
        FUZZ_CHECK(got == status::corrupt_state || got == status::incompatible_state,
                   "%s: %s (byte %zu): status '%s'", name_, what, i, name_of(got));
        want = got;
        break;
      }
      case 11:
        what = "restore a truncated blob";
        blob = blob_of(st);
        want = status::corrupt_state;
        got = fam::restore_state(st, blob.data(), blob.size() - 1 - sz(which >> 4) % 9);
        break;
      case 12: {
        what = "save into a buffer one byte short";
        blob.assign(fam::serialized_size(st), 0xab);
        std::size_t written = 77;
        want = status::buffer_too_small;
        got = fam::save_state(st, blob.data(), blob.size() - 1, &written);
        FUZZ_CHECK(written == 77 && std::all_of(blob.begin(), blob.end(),
                                                [](unsigned char x) { return x == 0xab; }),
                   "%s: %s wrote", name_, what);
        break;
      }
      case 13: {
        what = "restore a blob of another configuration";
        cfg_t other = st.config();
        other.set_scale(st.config().scale() * 2.0);
        state_t<KV> o2;
        init_ok(o2.init(other));
        blob = blob_of(o2);
        want = status::incompatible_state;
        got = fam::restore_state(st, blob.data(), blob.size());
        break;
      }
      case 14: {
        what = "copy_state from another configuration";
        cfg_t other(p.D, p.B + 1, p.M, p.F);
        other.set_heads(p.H, p.Hkv);
        other.phi_dim = p.phi;
        state_t<KV> o2;
        init_ok(o2.init(other));
        want = status::shape_mismatch;
        got = fam::copy_state(st, o2);
        break;
      }
      default: {
        what = "attend_batch naming one state twice";
        fam::sequence_step<cfg_t, KV, float> steps[2];
        steps[0].state = steps[1].state = &st;
        steps[0].q = steps[1].q = q;
        steps[0].k = steps[1].k = k;
        steps[0].v = steps[1].v = v;
        steps[0].out = steps[1].out = ov;
        steps[0].consumed = steps[1].consumed = -7;
        want = status::invalid_argument;
        got = fam::attend_batch(steps, 2, be_);
        FUZZ_CHECK(steps[0].consumed == -7 && steps[1].consumed == -7, "%s: %s set consumed", name_,
                   what);
        break;
      }
    }
    EXPECT_STATUS(got, want, "%s fault '%s' (phase %d, offset %lld)", name_, what,
                  int(before.phase), (long long)o);
    FUZZ_CHECK(consumed == -7, "%s: failed call '%s' set consumed", name_, what);
    FUZZ_CHECK(std::all_of(out.begin(), out.end(), fuzz::is_canary) &&
                   std::all_of(lse.begin(), lse.end(), fuzz::is_canary),
               "%s: failed call '%s' wrote its output", name_, what);
    FUZZ_CHECK(print<KV>(st) == before, "%s: failed call '%s' changed the state", name_, what);
  }

  const stream_problem& p_;
  Backend be_;
  const char* name_;
  bool plain_;
  const std::vector<float>&q_, &k_, &v_;
  const std::vector<std::vector<float>>&qf_, &kf_, &vf_;
  cfg_t cfg_{};
  state_t<KV> a_, b_;
  state_t<KV>*cur_ = nullptr, *other_ = nullptr;
  std::vector<unsigned char> storage_;
  stream_result res_;
  index_t pos_ = 0;
  bool fresh_ = false;
};

/// Which rows see a non-finite value, directly or through a FAM computed from one.
struct taint_map {
  std::vector<char> row;  // [L, H]
};

template <class KV>
void check_stream_against_oracle(const stream_problem& p, const stream_result& r, precision prec,
                                 const char* bname, double scale) {
  const index_t L = p.L, H = p.H, Hkv = p.Hkv, D = p.D, B = p.B, M = p.M, F = p.F;
  const std::vector<double> qd = effective<float>(p.q), kd = effective<KV>(p.k),
                            vd = effective<KV>(p.v);
  double v_scale = max_abs_finite(vd);
  std::vector<std::vector<double>> iq, ik, iv;
  for (std::size_t t = 0; t < r.inst_q.size(); ++t) {
    iq.push_back(effective<float>(r.inst_q[t]));
    ik.push_back(effective<KV>(r.inst_k[t]));
    iv.push_back(effective<KV>(r.inst_v[t]));
    v_scale = std::max(v_scale, max_abs_finite(iv.back()));
  }
  const index_t nblocks = (L + B - 1) / B;
  const std::string tok_what = std::string(bname) + " stream token",
                    fam_what = std::string(bname) + " stream FAM row";
  for (index_t t = 0; t < nblocks; ++t) {
    if (F > 0)
      FUZZ_CHECK(sz(t) < iq.size(), "%s: block %lld ran without an installed FAM", bname,
                 (long long)t);
    const index_t n0 = t * B, n1 = std::min(L, n0 + B), m0 = std::max<index_t>(0, t - M) * B;
    for (index_t h = 0; h < H; ++h) {
      const index_t g = h / (H / Hkv);
      auto add_fam = [&](fuzz::row_case& rc) {
        for (index_t f = 0; f < F; ++f) {
          rc.k.push_back(&ik[sz(t)][sz((f * Hkv + g) * D)]);
          rc.v.push_back(&iv[sz(t)][sz((f * Hkv + g) * D)]);
        }
      };
      for (index_t n = n0; n < n1; ++n) {
        fuzz::row_case rc;
        rc.q = &qd[sz((n * H + h) * D)];
        for (index_t m = m0; m < n0; ++m) {
          rc.k.push_back(&kd[sz((m * Hkv + g) * D)]);
          rc.v.push_back(&vd[sz((m * Hkv + g) * D)]);
        }
        add_fam(rc);
        for (index_t m = n0; m <= n; ++m) {
          rc.k.push_back(&kd[sz((m * Hkv + g) * D)]);
          rc.v.push_back(&vd[sz((m * Hkv + g) * D)]);
        }
        fuzz::check_row({tok_what.c_str(), n, h}, rc, D, scale, prec, &r.out[sz((n * H + h) * D)],
                        &r.lse[sz(n * H + h)], v_scale);
      }
      if (n1 - n0 == B && F > 0) {  // a complete block: its FAM rows (SPEC §3)
        FUZZ_CHECK(sz(t) < r.uf.size(), "%s: block %lld completed without a FAM output", bname,
                   (long long)t);
        for (index_t f = 0; f < F; ++f) {
          fuzz::row_case rc;
          rc.q = &iq[sz(t)][sz((f * H + h) * D)];
          add_fam(rc);
          for (index_t m = n0; m < n1; ++m) {
            rc.k.push_back(&kd[sz((m * Hkv + g) * D)]);
            rc.v.push_back(&vd[sz((m * Hkv + g) * D)]);
          }
          fuzz::check_row({fam_what.c_str(), f, h}, rc, D, scale, prec,
                          &r.uf[sz(t)][sz((f * H + h) * D)], &r.uf_lse[sz(t)][sz(f * H + h)],
                          v_scale);
        }
      }
    }
  }
}

/// Rows [L, H] that see a non-finite value (through the FAM rows too, when they feed back).
template <class KV>
std::vector<char> stream_taint(const stream_problem& p, const stream_result& r) {
  const index_t L = p.L, H = p.H, Hkv = p.Hkv, D = p.D, B = p.B, M = p.M, F = p.F;
  auto bad = [&](const std::vector<float>& x, std::size_t at, bool kv) {
    for (index_t d = 0; d < D; ++d)
      if (!std::isfinite(kv ? effective<KV>(x[at + sz(d)]) : double(x[at + sz(d)]))) return true;
    return false;
  };
  std::vector<char> key(sz(L * Hkv)), row(sz(L * H));
  for (index_t m = 0; m < L; ++m)
    for (index_t g = 0; g < Hkv; ++g)
      key[sz(m * Hkv + g)] =
          bad(p.k, sz((m * Hkv + g) * D), true) || bad(p.v, sz((m * Hkv + g) * D), true);
  std::vector<char> fam_k, fam_q, uf;  // per install: [F, Hkv], [F, H]; per block: [F, H]
  const index_t nblocks = (L + B - 1) / B;
  for (index_t t = 0; t < nblocks; ++t) {
    fam_k.assign(sz(F * Hkv), 0);
    fam_q.assign(sz(F * H), 0);
    if (sz(t) < r.inst_q.size()) {
      const bool fed = p.feedback && t > 0;
      for (index_t f = 0; f < F; ++f) {
        for (index_t g = 0; g < Hkv; ++g)
          fam_k[sz(f * Hkv + g)] = (fed && uf[sz(f * H + g)]) ||
                                   bad(r.inst_k[sz(t)], sz((f * Hkv + g) * D), true) ||
                                   bad(r.inst_v[sz(t)], sz((f * Hkv + g) * D), true);
        for (index_t h = 0; h < H; ++h)
          fam_q[sz(f * H + h)] =
              (fed && uf[sz(f * H + h)]) || bad(r.inst_q[sz(t)], sz((f * H + h) * D), false);
      }
    }
    const index_t n0 = t * B, n1 = std::min(L, n0 + B), m0 = std::max<index_t>(0, t - M) * B;
    std::vector<char> next_uf(sz(F * H), 0);
    for (index_t h = 0; h < H; ++h) {
      const index_t g = h / (H / Hkv);
      bool seen = false;  // memory and FAM keys, then the block's keys one by one
      for (index_t m = m0; m < n0; ++m) seen = seen || key[sz(m * Hkv + g)];
      for (index_t f = 0; f < F; ++f) seen = seen || fam_k[sz(f * Hkv + g)];
      bool block = false;
      for (index_t n = n0; n < n1; ++n) {
        block = block || key[sz(n * Hkv + g)];
        row[sz(n * H + h)] = seen || block || bad(p.q, sz((n * H + h) * D), false);
      }
      for (index_t f = 0; f < F; ++f) {
        bool fam_seen = fam_q[sz(f * H + h)] || block;
        for (index_t f2 = 0; f2 < F; ++f2) fam_seen = fam_seen || fam_k[sz(f2 * Hkv + g)];
        next_uf[sz(f * H + h)] = fam_seen;
      }
    }
    uf = next_uf;
  }
  return row;
}

template <class KV, class Backend>
void run_stream(const stream_problem& p, const Backend& backend, precision prec,
                const char* bname) {
  stream_pass<KV, Backend> main_pass(p, backend, bname, false, p.q, p.k, p.v, p.qf, p.kf, p.vf);
  const stream_result r = main_pass.run();
  cfg_t cfg(p.D, p.B, p.M, p.F);
  if (p.has_scale) cfg.set_scale(p.scale);
  check_stream_against_oracle<KV>(p, r, prec, bname, cfg.scale());

  // any chunking, any save/restore, copy or rewind: the same bits as one plain run
  stream_pass<KV, Backend> plain(p, backend, bname, true, p.q, p.k, p.v, p.qf, p.kf, p.vf);
  const stream_result pr = plain.run();
  for (std::size_t i = 0; i < r.out.size(); ++i)
    FUZZ_CHECK(fuzz::same_value(r.out[i], pr.out[i]),
               "%s: output %zu differs from the plain run: %.9g vs %.9g", bname, i,
               double(r.out[i]), double(pr.out[i]));
  for (std::size_t i = 0; i < r.lse.size(); ++i)
    FUZZ_CHECK(fuzz::same_value(r.lse[i], pr.lse[i]), "%s: lse %zu differs from the plain run",
               bname, i);
  FUZZ_CHECK(r.uf.size() == pr.uf.size(), "%s: FAM updates differ in number", bname);
  for (std::size_t t = 0; t < r.uf.size(); ++t)
    for (std::size_t i = 0; i < r.uf[t].size(); ++i)
      FUZZ_CHECK(fuzz::same_value(r.uf[t][i], pr.uf[t][i]),
                 "%s: Uf of block %zu differs from the plain run", bname, t);

  // non-finite inputs: rows that see none of them match the run with them zeroed, bitwise
  bool any = false;
  auto scan = [&](const std::vector<float>& x, bool kv) {
    for (float f : x) any = any || !std::isfinite(kv ? effective<KV>(f) : double(f));
  };
  scan(p.q, false);
  scan(p.k, true);
  scan(p.v, true);
  for (const auto& x : p.qf) scan(x, false);
  for (const auto& x : p.kf) scan(x, true);
  for (const auto& x : p.vf) scan(x, true);
  if (!any) return;
  const std::vector<char> taint = stream_taint<KV>(p, r);
  auto zero_all = [](const std::vector<std::vector<float>>& xs, bool kv) {
    std::vector<std::vector<float>> z;
    for (const auto& x : xs) z.push_back(kv ? zeroed<KV>(x) : zeroed<float>(x));
    return z;
  };
  const std::vector<float> zq = zeroed<float>(p.q), zk = zeroed<KV>(p.k), zv = zeroed<KV>(p.v);
  const auto zqf = zero_all(p.qf, false), zkf = zero_all(p.kf, true), zvf = zero_all(p.vf, true);
  stream_pass<KV, Backend> zero_pass(p, backend, bname, true, zq, zk, zv, zqf, zkf, zvf);
  const stream_result zr = zero_pass.run();
  for (index_t n = 0; n < p.L; ++n)
    for (index_t h = 0; h < p.H; ++h) {
      if (taint[sz(n * p.H + h)]) continue;
      for (index_t d = 0; d < p.D; ++d) {
        const std::size_t i = sz((n * p.H + h) * p.D + d);
        FUZZ_CHECK(fuzz::same_bits(r.out[i], zr.out[i]),
                   "%s: token %lld head %lld sees no non-finite value but differs from the zeroed "
                   "run (%g vs %g)",
                   bname, (long long)n, (long long)h, double(r.out[i]), double(zr.out[i]));
      }
    }
}

void program_stream(bytes_in& in) {
  stream_problem p{};
  value_source vs{fuzz::prng(in.u64()), in.byte()};
  p.H = in.range(1, 4);
  p.Hkv = p.H;
  const std::uint8_t hk = in.byte();
  if (hk & 1) p.Hkv = (p.H % 2 == 0 && (hk & 2)) ? p.H / 2 : 1;
  p.D = in.range(1, 16);
  p.B = in.range(1, 9);
  p.M = in.range(0, 3);
  p.F = in.range(0, 4);
  p.phi = in.range(0, 3);
  p.L = in.range(0, 48);
  const std::uint8_t fl = in.byte();
  p.has_scale = (fl & 1) != 0;
  p.scale = (fl & 2) ? 0.5 : 3.0;
  p.feedback = (fl & 4) != 0 && p.H == p.Hkv;
  p.fresh = (fl & 8) != 0;
  p.caller_storage = (fl & 16) != 0;
  p.kv_type = (fl >> 5) % 3;
  p.offset = static_cast<index_t>(in.u64(5)) - (index_t(1) << 39);
  const index_t nblocks = (p.L + p.B - 1) / p.B + 1;
  p.q = vs.fill(p.L * p.H * p.D);
  p.k = vs.fill(p.L * p.Hkv * p.D);
  p.v = vs.fill(p.L * p.Hkv * p.D);
  const index_t installs = std::min<index_t>(nblocks, 4);
  for (index_t t = 0; t < installs; ++t) {
    p.qf.push_back(vs.fill(p.F * p.H * p.D));
    p.kf.push_back(vs.fill(p.F * p.Hkv * p.D));
    p.vf.push_back(vs.fill(p.F * p.Hkv * p.D));
    p.ph.push_back(vs.fill(p.F * p.phi));
  }
  p.spec = vs.fill(16);
  p.spec[3] = std::numeric_limits<float>::quiet_NaN();
  p.spec[9] = std::numeric_limits<float>::infinity();
  const index_t nops = in.range(0, 40);
  for (index_t i = 0; i < nops; ++i) p.ops.push_back({in.byte(), in.byte(), in.byte()});
  const std::vector<patch> ps = read_patches(in, 12);
  apply_patches(ps, 0, p.q, 6);
  apply_patches(ps, 1, p.k, 6);
  apply_patches(ps, 2, p.v, 6);
  for (auto& x : p.qf) apply_patches(ps, 3, x, 6);
  for (auto& x : p.kf) apply_patches(ps, 4, x, 6);
  for (auto& x : p.vf) apply_patches(ps, 5, x, 6);

  if (std::getenv("FAM_FUZZ_DEBUG") != nullptr) {
    std::fprintf(stderr,
                 "stream: L %lld H %lld Hkv %lld D %lld B %lld M %lld F %lld phi %lld kv %d "
                 "feedback %d scale %d/%g ops %zu\n",
                 (long long)p.L, (long long)p.H, (long long)p.Hkv, (long long)p.D, (long long)p.B,
                 (long long)p.M, (long long)p.F, (long long)p.phi, p.kv_type, int(p.feedback),
                 int(p.has_scale), p.scale, p.ops.size());
    for (const stream_op& o : p.ops) std::fprintf(stderr, "  op %d %d %d\n", o.kind % 12, o.a, o.b);
    auto dump = [](const char* n, const std::vector<float>& x) {
      std::fprintf(stderr, "%s:", n);
      for (float f : x) std::fprintf(stderr, " %g", double(f));
      std::fprintf(stderr, "\n");
    };
    dump("q", p.q);
    dump("k", p.k);
    dump("v", p.v);
    for (std::size_t t = 0; t < p.qf.size(); ++t)
      dump("qf", p.qf[t]), dump("kf", p.kf[t]), dump("vf", p.vf[t]);
  }
  for_each_backend([&](const auto& backend, precision prec, const char* name) {
    using B = std::decay_t<decltype(backend)>;
    switch (p.kv_type) {
      case 0:
        run_stream<float, B>(p, backend, prec, name);
        break;
      case 1:
        run_stream<fam::bf16, B>(p, backend, prec, name);
        break;
      default:
        run_stream<fam::fp16, B>(p, backend, prec, name);
    }
  });
}

// =============================================================================================
// Program 3: configurations of arbitrary 64-bit values
// =============================================================================================

index_t wild(bytes_in& in) {
  const std::uint8_t sel = in.byte();
  switch (sel % 8) {
    case 0:
      return kMax;
    case 1:
      return std::numeric_limits<index_t>::min();
    case 2:
      return index_t(1) << in.range(0, 62);
    case 3:
      return -in.range(0, 3);
    case 4:
      return static_cast<index_t>(in.u64());
    case 5:
      return (index_t(1) << in.range(0, 62)) - 1;
    default:
      return in.range(0, 300);
  }
}

void program_config(bytes_in& in) {
  const index_t D = wild(in), B = wild(in), M = wild(in), F = wild(in), H = wild(in),
                Hkv = wild(in), phi = wild(in);
  cfg_t c(D, B, M, F);
  c.set_heads(H, Hkv);
  c.phi_dim = phi;
  const std::uint8_t sc = in.byte();
  if (sc & 1) {
    const double s[] = {0.0,
                        -1.0,
                        std::numeric_limits<double>::infinity(),
                        std::numeric_limits<double>::quiet_NaN(),
                        1e-300,
                        1e300,
                        0.5,
                        -0.0};
    c.set_scale(s[(sc >> 1) % 8]);
  }
  const status got = c.validate();
  // an independent reading of the rules: SPEC §1 ranges, and sizes that must be addressable
  const bool in_range = D >= 1 && B >= 1 && M >= 0 && F >= 0 && H >= 1 && Hkv >= 1 &&
                        H % Hkv == 0 && phi >= 0 &&
                        (!(sc & 1) || (std::isfinite(c.scale()) && c.scale() > 0.0));
  __extension__ typedef __int128 wide;
  const wide limit = wide(kMax) / 64;
  bool fits = true;
  if (in_range) {
    const wide ring = wide(H) * (wide(M) + 1);
    const wide tiled = (wide(B) + 31) / 32 * 32;  // K rows in whole tiles of 32 keys
    fits = ring <= limit && ring * B <= limit && ring * B * D <= limit &&
           ring * tiled * D <= limit && wide(H) * F <= limit && wide(H) * F * D <= limit &&
           wide(F) * phi <= limit && M < kMax / 64 && F < kMax / 64;
    EXPECT_STATUS(got, fits ? status::ok : status::too_large,
                  "validate of D %lld B %lld M %lld F %lld H %lld Hkv %lld phi %lld", (long long)D,
                  (long long)B, (long long)M, (long long)F, (long long)H, (long long)Hkv,
                  (long long)phi);
  } else {
    FUZZ_CHECK(got == status::invalid_argument || got == status::too_large,
               "validate of an out-of-range configuration: '%s'", name_of(got));
  }
  // supports() agrees with validate() and the backend limit, and never fails
  const fam::support_report rep = fam::supports(c);
  FUZZ_CHECK(rep.ok() == (got == status::ok && D <= fam::reference_backend::max_head_dim),
             "supports() says %s, validate() '%s'", fam::to_string(rep).c_str(), name_of(got));
  // storage_bytes: 0 exactly when invalid; when valid, at least the ring's K and V
  for (int kv = 0; kv < 2; ++kv) {
    const std::size_t bytes = kv == 0 ? fam::layer_state<cfg_t>::storage_bytes(c)
                                      : fam::layer_state<cfg_t, fam::fp16>::storage_bytes(c);
    FUZZ_CHECK((bytes == 0) == (got != status::ok), "storage_bytes %zu for '%s'", bytes,
               name_of(got));
    if (got == status::ok) {
      const wide ring = wide(Hkv) * (wide(M) + 1) * B * D * (kv == 0 ? 4 : 2);
      FUZZ_CHECK(wide(bytes) >= 2 * ring,
                 "storage_bytes %zu is smaller than the ring it must hold (%lld bytes of K and V): "
                 "a size wrapped around",
                 bytes, (long long)(2 * ring));
    }
  }
  // small valid ones: a state can be built, and its blob restores
  if (got == status::ok && fam::layer_state<cfg_t>::storage_bytes(c) < (std::size_t(1) << 20)) {
    fam::layer_state<cfg_t> st, st2;
    FUZZ_CHECK(st.init(c) == status::ok && st2.init(c) == status::ok, "init of a valid config");
    const std::vector<unsigned char> b = blob_of(st);
    FUZZ_CHECK(fam::restore_state(st2, b.data(), b.size()) == status::ok, "restore");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return 0; }

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bytes_in in(data, size);
  switch (in.byte() % 4) {
    case 0:
      program_sequence(in);
      break;
    case 1:
      program_block(in);
      break;
    case 2:
      program_stream(in);
      break;
    default:
      program_config(in);
  }
  return 0;
}
