// llama2: an inference engine for llama2.c checkpoints whose every attention runs through fam.
//
//   llama2 generate   [model] [--attn full|bswa|fam] [--B 64 --M 3 --F 16 --phi0 derived|zeros]
//                     [--steps 256] [--temp 1] [--seed 42] [--quiet]
//   llama2 check      [--model-dir DIR]   greedy full attention vs the reference continuation
//   llama2 perplexity [model] [--tokens 20000] [--seed 7] [--B 64 --M 3 --F 16] [--svg FILE]
//   llama2 receptive  [model] [--B 16 --M 1 --F 4] [--blocks 32] [--eps 0.1] [--seed 7]
//
// [model] is --model-dir DIR (stories260K.bin and tok512.bin), --model FILE --tokenizer FILE,
// or --random (a seeded random model of the same shape). Every mode but check takes
// --backend reference|simd (default: simd when the build has xsimd).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli.hpp"
#include "engine.hpp"
#include "generate.hpp"
#include "perplexity.hpp"
#include "progress.hpp"
#include "receptive_field.hpp"
#include "svg_plot.hpp"

namespace {

using namespace llama2;

constexpr int kSkipped = 77;  // ctest SKIP_RETURN_CODE

/// The greedy continuation from BOS that llama2.c's run.c prints for stories260K.
constexpr const char* kReference =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball.";

/// Streams tokens; prints the text, or with --quiet a progress bar and RSS at 1K, 2K, 5K, ...
int run_generate(const options& o) {
  const model m = model_from(o);
  const fam::index_t steps = o.integer("steps", 256);
  const attention_variant v = variant_from(o, steps + 1);
  const double temperature = o.real("temp", 1.0);
  const auto seed = std::uint64_t(o.integer("seed", 42));
  const bool quiet = o.flag("quiet");
  const backend_kind backend = backend_from(o);
  o.reject_unused();

  std::fprintf(stderr, "model: %s\nattention: %s (%s backend), temperature %g, seed %llu\n",
               m.description.c_str(), v.name().c_str(), backend_name(backend), temperature,
               (unsigned long long)seed);
  engine e(m.weights, v, backend);
  rng r(seed);
  progress_bar bar(steps, quiet);
  std::vector<fam::index_t> marks;  // 1K, 2K, 5K, 10K, ...
  for (fam::index_t d = 1000; d <= steps; d *= 10)
    for (fam::index_t k : {1, 2, 5})
      if (k * d <= steps) marks.push_back(k * d);
  std::size_t next_mark = 0;
  stopwatch clock;
  if (quiet) std::printf("%10s %10s %10s %10s\n", "tokens", "RSS MiB", "tok/s", "phi rms");
  int prev = kBos;
  generate(e, steps, temperature, r, [&](fam::index_t i, int token) {
    if (!quiet) {
      std::cout << m.tok.decode(prev, token) << std::flush;
    } else {
      bar.update(i + 1);
      if (next_mark < marks.size() && i + 1 == marks[next_mark]) {
        std::fprintf(stderr, "\r%70s\r", "");  // clear the bar's line for the table row
        std::printf("%10lld %10.1f %10.0f %10.2f\n", (long long)(i + 1), double(rss_kib()) / 1024.0,
                    double(i + 1) / clock.seconds(), e.phi_rms());
        std::fflush(stdout);
        ++next_mark;
      }
    }
    prev = token;
    return true;
  });
  const double s = clock.seconds();
  std::fprintf(stderr,
               "\n%lld tokens in %.1f s: %.0f tok/s; RSS %.1f MiB; attention state %.1f KiB\n",
               (long long)steps, s, double(steps) / s, double(rss_kib()) / 1024.0,
               double(e.state_bytes()) / 1024.0);
  return 0;
}

/// Greedy decoding with full attention on `backend`: does it reproduce the reference text token
/// for token, and does one whole-prefix call predict the same tokens? Prints what it saw.
bool greedy_matches(const model& m, backend_kind backend) {
  const std::string expected = kReference;
  engine e(m.weights, attention_variant::full(m.weights.cfg.seq_len), backend);
  rng unused(1);
  std::string text;
  std::vector<int> tokens;
  generate(e, 100, 0.0, unused, [&](fam::index_t, int token) {
    text += m.tok.decode(tokens.empty() ? kBos : tokens.back(), token);
    tokens.push_back(token);
    return text.size() < expected.size();
  });
  std::printf("greedy, full attention, %s backend, %zu tokens, one per call:\n  %s\n",
              backend_name(backend), tokens.size(), text.c_str());
  if (text.compare(0, expected.size(), expected) != 0) {
    std::printf("FAIL: expected\n  %s\n", expected.c_str());
    return false;
  }
  // the same stream in one call: row i's argmax must be token i+1
  std::vector<int> prompt{kBos};
  prompt.insert(prompt.end(), tokens.begin(), tokens.end() - 1);
  e.reset();
  const matrix logits = e.forward(prompt.data(), fam::index_t(prompt.size()));
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (argmax(logits.row(Eigen::Index(i)).data(), m.weights.cfg.vocab_size) != tokens[i]) {
      std::printf("FAIL: the whole-prefix call predicts another token at position %zu\n", i + 1);
      return false;
    }
  return true;
}

/// The reference continuation, on every backend of this build. 77 (skipped) without the model.
int run_check(const options& o) {
  std::string dir = o.str("model-dir", "");
  if (dir.empty() && !o.positional().empty()) dir = o.positional().front();
  o.reject_unused();
  if (!model_dir_complete(dir)) {
    std::printf("skipped: no model directory with %s and %s given\n", kCheckpointName,
                kTokenizerName);
    return kSkipped;
  }
  const model m = load_model(dir + "/" + kCheckpointName, dir + "/" + kTokenizerName);
  bool ok = greedy_matches(m, backend_kind::reference);
  if (kHaveSimd) ok = greedy_matches(m, backend_kind::simd) && ok;
  if (ok) std::printf("ok: matches the reference continuation, decode and prefill agree\n");
  return ok ? 0 : 1;
}

/// Perplexity per position bucket of full, BSWA and FAM on the model's own stories.
int run_perplexity(const options& o) {
  const model m = model_from(o);
  const fam::index_t n = o.integer("tokens", 20000);
  const auto seed = std::uint64_t(o.integer("seed", 7));
  const fam::index_t B = o.integer("B", 64), M = o.integer("M", 3), F = o.integer("F", 16);
  const fam::index_t chunk = o.integer("chunk", B);
  const std::string svg_path = o.str("svg", "");
  const bool with_full = !o.flag("no-full");
  const backend_kind backend = backend_from(o);
  o.reject_unused();
  if (n < 256) throw std::runtime_error("--tokens: at least 256 (one position bucket)");

  std::printf("model: %s\n", m.description.c_str());
  std::printf(
      "stream: %lld tokens of the model's own stories, temperature 1, seed %llu\n"
      "attention backend: %s\n",
      (long long)n, (unsigned long long)seed, backend_name(backend));
  rng r(seed);
  const std::vector<int> stream = sample_stories(m.weights, n, 1.0, r);
  std::printf("it begins: %s...\n\n",
              m.tok.decode(std::vector<int>(stream.begin() + 1, stream.begin() + 40)).c_str());

  std::vector<attention_variant> variants;
  if (with_full) variants.push_back(attention_variant::full(n));
  variants.push_back(attention_variant::bswa(B, M));
  variants.push_back(attention_variant::fam(B, M, F, phi_init::derived));
  variants.push_back(attention_variant::fam(B, M, F, phi_init::zeros));
  const std::vector<fam::index_t> edges = bucket_edges(n);
  std::vector<bucket_nll> results;
  for (const attention_variant& v : variants) {
    std::fprintf(stderr, "%s\n", v.name().c_str());
    results.push_back(evaluate(m.weights, v, stream, edges, chunk, true, backend));
  }

  std::printf("perplexity per position bucket (position of the predicted token)\n%-12s %7s",
              "positions", "tokens");
  for (const attention_variant& v : variants) std::printf(" %22s", v.name().c_str());
  std::vector<std::string> labels;
  for (std::size_t b = 0; b + 1 < edges.size(); ++b) {
    labels.push_back(bucket_label(edges[b], edges[b + 1]));
    std::printf("\n%-12s %7lld", labels.back().c_str(), (long long)results[0].tokens[b]);
    for (const bucket_nll& res : results) std::printf(" %22.3f", res.perplexity(b));
  }
  std::printf("\n%-12s %7s", "tok/s", "");
  for (const bucket_nll& res : results) std::printf(" %22.0f", double(n - 1) / res.seconds);
  std::printf("\n");

  if (!svg_path.empty()) {
    std::vector<plot_series> series;
    for (std::size_t k = 0; k < variants.size(); ++k) {
      plot_series s{variants[k].name(), {}};
      for (std::size_t b = 0; b + 1 < edges.size(); ++b) s.y.push_back(results[k].perplexity(b));
      series.push_back(s);
    }
    std::ofstream(svg_path) << svg_line_chart(
        "Perplexity along the stream (" + m.description.substr(0, m.description.find(' ')) + ")",
        "position in the stream (tokens)", "perplexity", labels, series);
    std::printf("plot: %s\n", svg_path.c_str());
  }
  return 0;
}

/// max |Δ logits| per block after perturbing token 0's embedding, BSWA vs FAM.
int run_receptive(const options& o) {
  const model m = model_from(o);
  const fam::index_t B = o.integer("B", 16), M = o.integer("M", 1), F = o.integer("F", 4);
  const fam::index_t blocks = o.integer("blocks", 32);
  const double eps = o.real("eps", 0.1);
  const auto seed = std::uint64_t(o.integer("seed", 7));
  const backend_kind backend = backend_from(o);
  o.reject_unused();

  rng r(seed);
  const std::vector<int> tokens = sample_stories(m.weights, blocks * B, 1.0, r);
  const attention_variant bswa = attention_variant::bswa(B, M),
                          famv = attention_variant::fam(B, M, F);
  const std::vector<double> a = receptive_field(m.weights, bswa, tokens, eps, backend);
  const std::vector<double> b = receptive_field(m.weights, famv, tokens, eps, backend);
  std::printf("model: %s\nattention backend: %s\n", m.description.c_str(), backend_name(backend));
  std::printf("perturbation: token 0's embedding moved by %g of its norm\n", eps);
  std::printf("BSWA reach with N = %d layers: blocks 0..N*M = %lld\n\n", m.weights.cfg.n_layers,
              (long long)(m.weights.cfg.n_layers * M));
  std::printf("max |Δ logit| per block of %lld tokens\n%5s %11s %22s %22s\n", (long long)B, "block",
              "tokens", bswa.name().c_str(), famv.name().c_str());
  auto cell = [](double d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, d == 0.0 ? "0 (bitwise)" : "%.3e", d);
    return std::string(buf);
  };
  for (std::size_t k = 0; k < a.size(); ++k)
    std::printf("%5zu %5lld-%-5lld %22s %22s\n", k, (long long)(fam::index_t(k) * B),
                (long long)(fam::index_t(k + 1) * B - 1), cell(a[k]).c_str(), cell(b[k]).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    const options o(argc, argv, 2, {"random", "quiet", "no-full"});
    if (mode == "generate") return run_generate(o);
    if (mode == "check") return run_check(o);
    if (mode == "perplexity") return run_perplexity(o);
    if (mode == "receptive") return run_receptive(o);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "llama2 %s: %s\n", mode.c_str(), ex.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: llama2 generate|check|perplexity|receptive [options]\n"
               "  (see the top of examples/llama2/llama2.cpp or docs/llama2.md)\n");
  return 2;
}
