// 05 custom variant: BSWA with attention sinks, built from the public pieces.
//
// Attention sinks (Xiao et al. 2023, "StreamingLLM") are a few key/value rows that every token
// may attend to, wherever it is in the stream: a place to park attention that has nowhere
// useful to go. In fam's terms they are FAM columns that never change. Every token of block t
// sees the F FAM keys Kf, Vf installed for block t; install the sinks once with begin_fam and
// re-install the same rows at every update_fam, and BSWA gains S = F sinks. The FAM rows' own
// output (fam_output) is simply not used.
//
//   05_custom_variant [out_dir]     writes mask_sinks.svg into out_dir (default .)
//
// Self-check: the streamed outputs equal the dense teaching path (fam::naive::fam_block, the
// same mask written as a score matrix) and differ from plain BSWA.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/mask_picture.hpp"
#include "common/svg.hpp"
#include "fam/fam.hpp"

namespace {

using fam::index_t;
constexpr index_t kD = 8, kB = 4, kM = 1, kSinks = 2, kL = 22;  // D, B, M, S = F, L
constexpr double kTolerance = 1e-5;  // fp32 outputs of two summation orders
using config = fam::attention_config<kD, kB, kM, kSinks>;

/// The variant's mask: a sink column is visible to every token; the rest is BSWA.
bool sees(fam::node q, fam::node k) {
  return !q.is_fam && (k.is_fam || fam::visible(fam::mask_spec::bswa(kB, kM), q, k));
}

bool draw(const std::string& out_dir) {
  std::vector<fam::node> cols;
  for (index_t r = 0; r < kSinks; ++r) cols.push_back(fam::node::fam_of(0, r));
  const std::vector<fam::node> rows = picture::tokens(12);
  for (const fam::node& n : rows) cols.push_back(n);
  std::printf("mask (columns s0 s1 are the sinks, then tokens 0..11):\n");
  picture::print(rows, cols, sees, "s");
  const std::string path = svg::join(out_dir, "mask_sinks.svg");
  svg::grid g =
      picture::grid("BSWA with 2 attention sinks, B = 4, M = 1", rows, cols, sees, kB, "s");
  g.legend[1].second = "token reads a sink (in every block)";
  std::printf("-> %s\n\n", path.c_str());
  return svg::write_file(path, svg::heatmap(g));
}

}  // namespace

int main(int argc, char** argv) {
  if (!draw(argc > 1 ? argv[1] : ".")) return 1;

  // Random tokens [L, 1, D] and two sinks [S, 1, D].
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  std::vector<float> q(kL * kD), k(kL * kD), v(kL * kD), sink_k(kSinks * kD), sink_v(kSinks * kD);
  for (auto* x : {&q, &k, &v, &sink_k, &sink_v})
    for (float& e : *x) e = g(rng);
  const auto Q = fam::make_view<const float>(q.data(), kL, 1, kD);
  const auto K = fam::make_view<const float>(k.data(), kL, 1, kD);
  const auto V = fam::make_view<const float>(v.data(), kL, 1, kD);
  const auto Sk = fam::make_view<const float>(sink_k.data(), kSinks, 1, kD);
  const auto Sv = fam::make_view<const float>(sink_v.data(), kSinks, 1, kD);

  // Stream: the sinks go in as the FAM columns, and go in again after every block.
  config cfg;
  fam::layer_state<config> st;
  if (st.init(cfg) != fam::status::ok) return 1;
  if (fam::begin_fam(st, Sk, Sk, Sv) != fam::status::ok) return 1;  // Qf: unused, any [S,1,D]
  std::vector<float> out(kL * kD);
  const auto O = fam::make_view(out.data(), kL, 1, kD);
  for (index_t n = 0, used = 0; n < kL; n += used) {
    if (fam::attend(st, Q.rows_from(n, kL - n), K.rows_from(n, kL - n), V.rows_from(n, kL - n),
                    O.rows_from(n, kL - n), {}, &used) != fam::status::ok)
      return 1;
    if (st.phase() == fam::fam_phase::pending &&
        fam::update_fam(st, Sk, Sk, Sv) != fam::status::ok)  // the sinks never change
      return 1;
  }

  // Dense reference: block by block, the score matrix of the FAM mask with the sinks as Φ.
  std::vector<float> dense(kL * kD), bswa(kL * kD), uf(kSinks * kD);
  const fam::mask_spec fam_mask = fam::mask_spec::fam(kB, kM, kSinks);
  for (index_t t = 0; t * kB < kL; ++t) {
    const index_t end = std::min(kL, (t + 1) * kB);  // the sequence up to block t's end
    fam::naive::fam_block(fam_mask, cfg.scale(), t, Q.rows_from(0, end), K.rows_from(0, end),
                          V.rows_from(0, end), Sk, Sk, Sv, fam::make_view(dense.data(), end, 1, kD),
                          fam::make_view(uf.data(), kSinks, 1, kD));
  }
  if (fam::attention(cfg, fam::mask_spec::bswa(kB, kM), Q, K, V,
                     fam::make_view(bswa.data(), kL, 1, kD)) != fam::status::ok)
    return 1;

  double to_dense = 0, to_bswa = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    to_dense = std::fmax(to_dense, std::fabs(out[i] - dense[i]));
    to_bswa = std::fmax(to_bswa, std::fabs(out[i] - bswa[i]));
  }
  std::printf("streamed with sinks vs dense reference: max |diff| = %.2e\n", to_dense);
  std::printf("streamed with sinks vs plain BSWA:      max |diff| = %.2e\n", to_bswa);
  const bool ok = to_dense < kTolerance && to_bswa > kTolerance;
  std::printf("%s\n", ok ? "sinks: ok" : "SELF-CHECK FAILED");
  return ok ? 0 : 1;
}
