// 04 custom backend: plug your own kernel under the library's algorithm.
//
// The algorithm (masks, rings, FAM spans) is written once; for every group of query rows it
// calls kernel::attend_rows(rows, spans, mask, D, scale, backend) and overload resolution on
// the backend's tag type picks the kernel. A backend derives from an existing tag, so whatever
// it does not overload falls back to its base. The mask's causal edge on the last span is all
// these kernels read: a sliding window's moving lower edge is handed only to backends that
// declare kernel::reads_window_edge<their tag> = true, the others get such rows one by one.
// Two here:
//
//   counting_backend  the reference kernel, plus a tally of the (query, key) pairs it visits
//   float_backend     the same online softmax accumulated in float instead of double
//
// The order of includes matters: the algorithm names kernel::attend_rows with a qualified
// name, and C++ resolves such a name where the algorithm is defined, so a kernel must be
// declared before the headers that call it (fam/attention.hpp, fam/stream.hpp). Declared
// after them, it would be silently ignored in favour of the base tag's kernel; the counting
// check below would catch that (it would count nothing).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "fam/backend/reference.hpp"  // the tag to derive from and the kernel's types only

// ---------------------------------------------------------------------------------------------
// The backends: tag types, and their kernels in namespace fam::kernel.
// ---------------------------------------------------------------------------------------------

/// What counting_backend saw.
struct tally {
  long long calls = 0;  // attend_rows calls (one per group of rows that share their keys)
  long long rows = 0;   // query rows
  long long pairs = 0;  // (query row, visible key) pairs: the work of the attention
};

struct counting_backend : fam::reference_backend {
  static constexpr const char* name() noexcept { return "counting"; }
  tally* counts = nullptr;  // the tag is passed around by reference; this is where counts go
};

struct float_backend : fam::reference_backend {
  static constexpr const char* name() noexcept { return "float"; }
};

FAM_NAMESPACE_BEGIN
namespace kernel {

/// Counts, then runs the reference kernel (the base tag's overload) unchanged.
template <class TQ, class Spans>
void attend_rows(const query_rows<TQ>& rows, const Spans& spans, row_mask mask, index_t head_dim,
                 double scale, const counting_backend& b) noexcept {
  b.counts->calls += 1;
  b.counts->rows += rows.count;
  for (index_t i = 0; i < rows.count; ++i)
    for (index_t s = 0; s < spans.size(); ++s)  // the last span is the causally masked one
      b.counts->pairs += s + 1 == spans.size() ? mask.visible(i, spans[s].count) : spans[s].count;
  attend_rows(rows, spans, mask, head_dim, scale, static_cast<const reference_backend&>(b));
}

/// Online softmax in float, one key at a time: m = running max, l = running sum, acc = Σ p·v.
template <class TQ, class Spans>
void attend_rows(const query_rows<TQ>& rows, const Spans& spans, row_mask mask, index_t head_dim,
                 double scale, const float_backend&) noexcept {
  for (index_t i = 0; i < rows.count; ++i) {
    const TQ* q = rows.q + i * rows.q_stride;  // [D]
    float m = -INFINITY, l = 0.0f, acc[float_backend::max_head_dim] = {};
    for (index_t s = 0; s < spans.size(); ++s) {
      const auto span = spans[s];
      const index_t count = s + 1 == spans.size() ? mask.visible(i, span.count) : span.count;
      for (index_t j = 0; j < count; ++j) {
        // key j, element d: span.k[j*k_stride + d*k_dim_stride] (the ring stores K transposed)
        float logit = 0.0f;
        for (index_t d = 0; d < head_dim; ++d)
          logit += to_float(q[d]) * to_float(span.k[j * span.k_stride + d * span.k_dim_stride]);
        logit *= float(scale);
        const float m_new = std::fmax(m, logit);
        const float rescale = std::exp(m - m_new), p = std::exp(logit - m_new);
        const auto* v = span.v + j * span.v_stride;  // [D]
        l = l * rescale + p;
        for (index_t d = 0; d < head_dim; ++d) acc[d] = acc[d] * rescale + p * to_float(v[d]);
        m = m_new;
      }
    }
    float* out = rows.out + i * rows.out_stride;  // [D]
    for (index_t d = 0; d < head_dim; ++d) out[d] = l > 0.0f ? acc[d] / l : 0.0f;
    if (rows.lse != nullptr) rows.lse[i * rows.lse_stride] = l > 0.0f ? m + std::log(l) : -INFINITY;
  }
}

}  // namespace kernel
FAM_NAMESPACE_END

#include "fam/fam.hpp"  // the algorithm: only now, after the kernels above

// ---------------------------------------------------------------------------------------------
// The check: both backends against the reference, whole-sequence BSWA and streamed FAM.
// ---------------------------------------------------------------------------------------------

namespace {

using fam::index_t;
constexpr index_t kD = 16, kB = 8, kM = 2, kF = 4, kH = 2, kL = 64;  // L: whole blocks
constexpr double kFloatTolerance = 1e-5;  // float accumulation vs double, outputs of size ~1
using config = fam::attention_config<kD, kB, kM, kF>;

struct inputs {
  std::vector<float> q, k, v, fam_q, fam_kv;  // [L,H,D], [L,H,D] x2, [F,H,D], [F,H,D]
};

/// Whole-sequence BSWA, then FAM streamed block by block (weight-free: Φ[t] = Uf, the
/// quickstart's loop), all with one backend. Returns [BSWA outputs ; FAM outputs].
template <class Backend>
std::vector<float> run(const inputs& in, const Backend& backend) {
  config cfg;
  cfg.set_heads(kH, kH);
  std::vector<float> out(2 * kL * kH * kD, 0.0f);
  auto view = [](const std::vector<float>& x, index_t rows) {
    return fam::make_view<const float>(x.data(), rows, kH, kD);
  };
  auto bswa = fam::make_view(out.data(), kL, kH, kD);
  auto famo = fam::make_view(out.data() + kL * kH * kD, kL, kH, kD);
  if (fam::attention(cfg, fam::mask_spec::bswa(kB, kM), view(in.q, kL), view(in.k, kL),
                     view(in.v, kL), bswa, {}, backend) != fam::status::ok)
    return {};

  fam::layer_state<config> st;
  std::vector<float> phi = in.fam_kv;  // Φ rows [F, H, D], used as Qf = Kf = Vf
  if (st.init(cfg) != fam::status::ok ||
      fam::begin_fam(st, view(phi, kF), view(phi, kF), view(phi, kF)) != fam::status::ok)
    return {};
  for (index_t n = 0, used = 0; n < kL; n += used) {
    const index_t rest = kL - n;
    if (fam::attend(st, view(in.q, kL).rows_from(n, rest), view(in.k, kL).rows_from(n, rest),
                    view(in.v, kL).rows_from(n, rest), famo.rows_from(n, rest), {}, &used,
                    backend) != fam::status::ok)
      return {};
    if (st.phase() == fam::fam_phase::pending) {
      const auto uf = st.fam_output();  // [F, H, D]
      for (index_t r = 0; r < kF; ++r)
        for (index_t h = 0; h < kH; ++h)
          for (index_t d = 0; d < kD; ++d) phi[std::size_t((r * kH + h) * kD + d)] = uf.at(r, h)[d];
      if (fam::update_fam(st, view(phi, kF), view(phi, kF), view(phi, kF)) != fam::status::ok)
        return {};
    }
  }
  return out;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::fmax(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

}  // namespace

int main() {
  std::mt19937 rng(4);
  std::normal_distribution<float> g;
  inputs in{std::vector<float>(kL * kH * kD),
            std::vector<float>(kL * kH * kD),
            std::vector<float>(kL * kH * kD),
            {},
            std::vector<float>(kF * kH * kD)};
  for (auto* x : {&in.q, &in.k, &in.v, &in.fam_kv})
    for (float& e : *x) e = g(rng);

  const std::vector<float> ref = run(in, fam::reference_backend{});
  tally counts;
  counting_backend counting;
  counting.counts = &counts;
  const std::vector<float> counted = run(in, counting);
  const std::vector<float> single = run(in, float_backend{});
  if (ref.empty() || counted.empty() || single.empty()) return std::printf("a call failed\n"), 1;

  // The work, predicted from the masks (SPEC §3): every head of every token sees its BSWA keys;
  // with FAM it also sees the F FAM keys, and each block's F FAM rows see F + B keys.
  const index_t bswa_pairs = kH * fam::visible_pairs(fam::mask_spec::bswa(kB, kM), kL);
  const index_t fam_pairs = bswa_pairs + kH * (kL * kF + (kL / kB) * kF * (kF + kB));
  std::printf("counting backend: %lld kernel calls, %lld query rows, %lld (query, key) pairs\n",
              counts.calls, counts.rows, counts.pairs);
  std::printf("  predicted from the masks: %lld pairs (BSWA) + %lld pairs (FAM) = %lld\n",
              (long long)bswa_pairs, (long long)fam_pairs, (long long)(bswa_pairs + fam_pairs));
  const double counted_diff = max_diff(counted, ref), float_diff = max_diff(single, ref);
  std::printf("  outputs vs reference: max |diff| = %.1e (the same kernel: bitwise)\n",
              counted_diff);
  std::printf("float backend: outputs vs reference (double): max |diff| = %.1e\n", float_diff);

  const bool ok =
      counts.pairs == bswa_pairs + fam_pairs && counted_diff == 0.0 && float_diff < kFloatTolerance;
  std::printf("%s\n", ok ? "backends: ok" : "SELF-CHECK FAILED");
  return ok ? 0 : 1;
}
