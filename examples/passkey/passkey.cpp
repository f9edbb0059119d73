// passkey: hand-wired passkey retrieval through the streaming FAM protocol.
//
// A pass key (one of 128 words) is read once, near the start; then come `filler` random
// words; then a question. The network of network.hpp must answer with the key. It runs
// through the public streaming API only: layer_state, begin_fam, attend, fam_output,
// update_fam. Four variants see exactly the same streams:
//
//   FAM                   B = 16, M = 1, F = 1: the FAM row stores the key and copies it on
//   BSWA, same state      F = 0, M = 2: more KV rows than FAM keeps, but no feedback
//   FAM with F = 0        the same network without FAM rows (= BSWA with M = 1)
//   FAM, frozen           F = 1, but every update re-installs Φ[-1]: memory that never learns
//
//   passkey [--filler N] [--trials T] [--seed S] [--picture DIR]
//           defaults: N = 100000, T = 20; --picture also writes DIR/passkey_attention.svg
//           (the network's attention weights) and DIR/passkey_distance.svg (accuracy against
//           short distances, where the controls can still see the key)
//
// It prints the accuracy of each variant next to chance (1/128) and returns non-zero unless
// FAM answers every trial and, once the key is out of the controls' BSWA window, no control
// does better than kControlMax.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "attention_picture.hpp"
#include "fam/fam.hpp"
#include "network.hpp"

namespace {

using fam::index_t;
using namespace passkey;

constexpr index_t kBlock = 16;       // B
constexpr index_t kMemory = 1;       // M of the FAM network
constexpr index_t kFamRows = 1;      // F: one row is enough to hold one word
constexpr double kControlMax = 0.1;  // a control above this accuracy would mean a leak
using config = fam::attention_config<kD, kBlock, fam::dynamic, fam::dynamic>;

struct variant {
  const char* name;
  index_t M, F;
  bool frozen;  // re-install Φ[-1] at every update instead of the new state
};

struct trial {
  index_t key;         // the word to remember
  index_t key_pos;     // where in block 0 it comes
  std::uint64_t seed;  // of the filler words
};

/// Qf, Kf, Vf [F, 1, D] of a FAM state Φ [F, D]: the layer's own Wq, Wk, Wv (SPEC §4).
struct fam_projections {
  std::vector<float> q, k, v;
  explicit fam_projections(const std::vector<float>& phi, index_t F)
      : q(phi.size()), k(phi.size()), v(phi.size()) {
    for (index_t r = 0; r < F; ++r) {
      project(query_weights(), &phi[std::size_t(r * kD)], &q[std::size_t(r * kD)]);
      project(key_weights(), &phi[std::size_t(r * kD)], &k[std::size_t(r * kD)]);
      project(value_weights(), &phi[std::size_t(r * kD)], &v[std::size_t(r * kD)]);
    }
  }
  fam::tensor_view<const float> view(const std::vector<float>& x) const {
    return fam::make_view(x.data(), index_t(x.size()) / kD, 1, kD);
  }
};

bool ok(fam::status s, const char* what) {
  if (s != fam::status::ok) std::printf("%s: %s\n", what, fam::to_string(s));
  return s == fam::status::ok;
}

/// Streams one trial through one variant; returns the decoded answer (-1: none, -2: error).
index_t run(const variant& var, const trial& tr, index_t n_filler) {
  config cfg(kD, kBlock, var.M, var.F);
  cfg.set_scale(kScale);
  fam::layer_state<config> st;
  if (!ok(st.init(cfg), "init")) return -2;

  // Φ[-1]: F empty FAM rows. Our update has no residual, so `fresh` plays no part.
  std::vector<float> phi0(std::size_t(var.F * kD));
  for (index_t r = 0; r < var.F; ++r) initial_fam(&phi0[std::size_t(r * kD)]);
  if (var.F > 0) {
    const fam_projections p(phi0, var.F);
    if (!ok(fam::begin_fam(st, p.view(p.q), p.view(p.k), p.view(p.v)), "begin_fam")) return -2;
  }

  const index_t L = tr.key_pos + 1 + n_filler + 1;  // ... key, filler..., question
  std::mt19937_64 words(tr.seed);
  std::uniform_int_distribution<index_t> any_word(0, kKeys - 1);
  std::vector<float> x(kD), q(kBlock * kD), k(kBlock * kD), v(kBlock * kD), out(kBlock * kD);
  index_t answer = -1;
  for (index_t n = 0; n < L;) {
    // the rest of the current block (attend stops at a block end anyway when F > 0)
    const index_t count = std::min(L - n, kBlock - st.block_offset());
    for (index_t i = 0; i < count; ++i) {
      const index_t pos = n + i;
      const token t = pos == tr.key_pos ? token{token::pass_key, tr.key}
                      : pos == L - 1    ? token{token::question, 0}
                                        : token{token::filler, any_word(words)};
      embed(t, x.data());
      project(query_weights(), x.data(), &q[std::size_t(i * kD)]);
      project(key_weights(), x.data(), &k[std::size_t(i * kD)]);
      project(value_weights(), x.data(), &v[std::size_t(i * kD)]);
    }
    index_t consumed = 0;
    if (!ok(fam::attend(st, fam::make_view<const float>(q.data(), count, 1, kD),
                        fam::make_view<const float>(k.data(), count, 1, kD),
                        fam::make_view<const float>(v.data(), count, 1, kD),
                        fam::make_view(out.data(), count, 1, kD), {}, &consumed),
            "attend"))
      return -2;
    n += consumed;
    if (n == L) answer = decode(&out[std::size_t((consumed - 1) * kD)]);  // Wo = I
    if (st.phase() == fam::fam_phase::pending) {
      // Φ[t] = Uf·Wo = Uf (or, frozen, Φ[-1] again), then its projections
      std::vector<float> phi = phi0;
      if (!var.frozen) {
        const fam::tensor_view<const float> uf = st.fam_output();  // [F, 1, D]
        for (index_t r = 0; r < var.F; ++r)
          std::memcpy(&phi[std::size_t(r * kD)], uf.at(r, 0), sizeof(float) * kD);
      }
      const fam_projections p(phi, var.F);
      if (!ok(fam::update_fam(st, p.view(p.q), p.view(p.k), p.view(p.v)), "update_fam")) return -2;
    }
  }
  return answer;
}

const variant kVariants[] = {
    {"FAM (B=16, M=1, F=1)", kMemory, kFamRows, false},
    {"BSWA, same state (M=2, F=0)", kMemory + 1, 0, false},
    {"FAM with F=0 (M=1)", kMemory, 0, false},
    {"FAM frozen (Phi never updated)", kMemory, kFamRows, true},
};

/// `count` random keys, each at a random place in block 0, each with its own filler stream.
std::vector<trial> make_trials(index_t count, index_t seed) {
  std::mt19937_64 rng{std::uint64_t(seed)};
  std::vector<trial> ts;
  for (index_t i = 0; i < count; ++i)
    ts.push_back({std::uniform_int_distribution<index_t>(0, kKeys - 1)(rng),
                  std::uniform_int_distribution<index_t>(0, kBlock - 1)(rng), rng()});
  return ts;
}

/// Trials answered correctly (-1 on an API error); `shown` gets "key->answer" of the first few.
index_t count_correct(const variant& var, const std::vector<trial>& ts, index_t n_filler,
                      std::string* shown = nullptr) {
  constexpr std::size_t kShown = 4;
  index_t correct = 0;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const index_t a = run(var, ts[i], n_filler);
    if (a == -2) return -1;
    correct += a == ts[i].key;
    if (shown != nullptr && i < kShown)
      *shown += " " + std::to_string(ts[i].key) + "->" + (a < 0 ? "none" : std::to_string(a));
  }
  return correct;
}

/// Accuracy against the number of filler tokens, short distances: the controls answer while
/// the key is in their window and stop when it leaves; FAM does not care.
svg::plot distance_plot(const std::vector<trial>& ts) {
  constexpr index_t kStep = 4, kLongest = 6 * kBlock;
  const char* colours[] = {"#dd8a2e", "#2b6cb0", "#6b8e23", "#7a1f1f"};
  const char* dashes[] = {nullptr, "6 3", "2 2", "8 3 2 3"};
  svg::plot p;
  p.title = "passkey accuracy against distance (" + std::to_string(ts.size()) + " keys each)";
  p.x_label = "filler tokens between the key and the question";
  p.y_label = "accuracy (%)";
  for (std::size_t v = 0; v < std::size(kVariants); ++v) {
    svg::series s{kVariants[v].name, colours[v], {}, {}, dashes[v]};
    for (index_t n = 0; n <= kLongest; n += kStep) {
      s.x.push_back(double(n));
      s.y.push_back(100.0 * double(count_correct(kVariants[v], ts, n)) / double(ts.size()));
    }
    p.lines.push_back(s);
  }
  p.y_marks = {{100.0 / double(kKeys), "chance"}};
  p.width = 720;
  return p;
}

const char* arg_text(int argc, char** argv, const char* name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return nullptr;
}

index_t arg_value(int argc, char** argv, const char* name, index_t fallback) {
  const char* text = arg_text(argc, argv, name);
  return text != nullptr ? std::atoll(text) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const index_t n_filler = arg_value(argc, argv, "--filler", 100000);
  const index_t trials = arg_value(argc, argv, "--trials", 20);
  const index_t seed = arg_value(argc, argv, "--seed", 1);
  if (n_filler < 1 || trials < 1) return std::printf("need --filler >= 1 and --trials >= 1\n"), 2;
  const std::vector<trial> ts = make_trials(trials, seed);
  if (const char* dir = arg_text(argc, argv, "--picture")) {
    const std::string path = svg::join(dir, "passkey_attention.svg");
    if (!svg::write_file(path, svg::heatmap(attention_picture())))
      return std::printf("cannot write %s\n", path.c_str()), 1;
    std::printf("-> %s\n", path.c_str());
    const std::string plot = svg::join(dir, "passkey_distance.svg");
    if (!svg::write_file(plot, svg::line_plot(distance_plot(ts))))
      return std::printf("cannot write %s\n", plot.c_str()), 1;
    std::printf("-> %s\n", plot.c_str());
  }

  std::printf(
      "passkey: %lld possible keys (chance %.2f%%), %lld trials, key in block 0, then "
      "%lld filler tokens, then the question\n\n",
      (long long)kKeys, 100.0 / double(kKeys), (long long)trials, (long long)n_filler);
  // The controls must fail only when the key has left their window ((M+1)·B tokens, largest M).
  const bool key_out_of_window = n_filler >= (kMemory + 2) * kBlock;
  if (!key_out_of_window)
    std::printf("(filler shorter than the controls' window: they may still see the key)\n");
  std::printf("%-30s %10s %9s %9s %8s   answers of the first trials (key -> answer)\n", "variant",
              "KV rows", "correct", "accuracy", "seconds");
  bool pass = true;
  for (const variant& var : kVariants) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string shown;
    const index_t correct = count_correct(var, ts, n_filler, &shown);
    if (correct < 0) return 1;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double acc = double(correct) / double(trials);
    // the rows of keys and values the state keeps: ring (M+1)·B plus F FAM rows
    const index_t rows = (var.M + 1) * kBlock + var.F;
    std::printf("%-30s %10lld %4lld/%-4lld %8.1f%% %8.2f  %s\n", var.name, (long long)rows,
                (long long)correct, (long long)trials, 100.0 * acc, secs, shown.c_str());
    const bool is_fam = &var == &kVariants[0];
    pass = pass && (is_fam ? correct == trials : !key_out_of_window || acc <= kControlMax);
  }
  std::printf("\nchance level: 1/%lld = %.2f%%. %s\n", (long long)kKeys, 100.0 / double(kKeys),
              pass ? "FAM retrieves every key; no control beats chance by more than 10%."
                   : "SELF-CHECK FAILED");
  return pass ? 0 : 1;
}
