// llama2_showcase: fam inside a real (tiny) language model, in about a minute on two cores.
//
//   llama2_showcase [MODEL_DIR] [--small]
//
// MODEL_DIR (or the environment variable FAM_MODEL_DIR) holds stories260K.bin and tok512.bin
// from the tinyllamas release of llama2.c; without them a seeded random model of the same shape
// stands in. --small shrinks every part (ctest's smoke run).
//
// It prints: text from full attention, BSWA and FAM (the same random draws for all three),
// resident memory over a long stream, and the receptive field of BSWA vs FAM.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli.hpp"
#include "engine.hpp"
#include "generate.hpp"
#include "perplexity.hpp"
#include "progress.hpp"
#include "receptive_field.hpp"

namespace {

using namespace llama2;

/// Text of tokens [first, last) on one line: line breaks become spaces, BOS (a new story) ¶.
std::string excerpt(const tokenizer& tok, const std::vector<int>& tokens, std::size_t first,
                    std::size_t last) {
  std::string s;
  for (std::size_t i = first; i < last && i < tokens.size(); ++i) {
    if (tokens[i] == kBos) {
      s += " ¶ ";
      continue;
    }
    for (char ch : tok.decode(i == 0 ? kBos : tokens[i - 1], tokens[i])) s += ch == '\n' ? ' ' : ch;
  }
  return s;
}

void show_text(const model& m, fam::index_t length, fam::index_t window) {
  const fam::index_t B = 64, M = 3, F = 16;
  std::printf(
      "1. Text: %lld tokens sampled at temperature 0.8, seed 42, for each variant\n"
      "   (the same draws: a variant's text changes only where its logits do)\n\n",
      (long long)length);
  std::vector<int> full_tokens;
  for (const attention_variant& v :
       {attention_variant::full(length + 1), attention_variant::bswa(B, M),
        attention_variant::fam(B, M, F)}) {
    engine e(m.weights, v);
    rng r(42);
    const std::vector<int> t = generate(e, length, 0.8, r);
    if (full_tokens.empty()) full_tokens = t;
    std::size_t first_diff = 0;
    while (first_diff < t.size() && t[first_diff] == full_tokens[first_diff]) ++first_diff;
    std::printf("   %s", v.name().c_str());
    if (v.kind != attention_kind::full)
      std::printf(
          first_diff == t.size() ? " (same tokens as full)" : " (first token unlike full's: #%zu)",
          first_diff);
    std::printf("\n     tokens 0-%lld: %s\n", (long long)window - 1,
                excerpt(m.tok, t, 0, std::size_t(window)).c_str());
    std::printf("     tokens %lld-%lld: %s\n\n", (long long)(length - window),
                (long long)length - 1,
                excerpt(m.tok, t, std::size_t(length - window), std::size_t(length)).c_str());
  }
  if (m.real)
    std::printf(
        "   Full attention past the %d trained positions reads keys farther than it ever\n"
        "   saw; BSWA and FAM only read the last (M+1)*B = %lld tokens (plus F = %lld FAM\n"
        "   rows, which this model was never trained to use).\n\n",
        m.weights.cfg.seq_len, (long long)((M + 1) * B), (long long)F);
}

void show_memory(const model& m, const std::vector<fam::index_t>& marks) {
  const attention_variant v = attention_variant::fam(64, 3, 16);
  std::printf("2. Memory: one stream of %lld tokens with %s, sampled at temperature 1\n\n",
              (long long)marks.back(), v.name().c_str());
  engine e(m.weights, v);
  rng r(43);
  stopwatch clock;
  std::size_t next = 0;
  std::printf("   %10s %10s %10s\n", "tokens", "RSS MiB", "tok/s");
  generate(e, marks.back(), 1.0, r, [&](fam::index_t i, int) {
    if (i + 1 == marks[next]) {
      std::printf("   %10lld %10.1f %10.0f\n", (long long)(i + 1), double(rss_kib()) / 1024.0,
                  double(i + 1) / clock.seconds());
      std::fflush(stdout);
      ++next;
    }
    return true;
  });
  const llama_config& c = m.weights.cfg;
  std::printf(
      "\n   attention state: %.1f KiB for all %d layers, fixed at init; a full-attention\n"
      "   KV cache of %lld tokens would need %.1f MiB\n\n",
      double(e.state_bytes()) / 1024.0, c.n_layers, (long long)marks.back(),
      double(marks.back()) * c.n_layers * 2 * c.kv_dim() * 4 / (1024.0 * 1024.0));
}

void show_receptive_field(const model& m, fam::index_t blocks) {
  const fam::index_t B = 16, M = 1, F = 4;
  const attention_variant bswa = attention_variant::bswa(B, M),
                          famv = attention_variant::fam(B, M, F);
  std::printf(
      "3. Receptive field: token 0's embedding moved by 10%% of its norm; max |Δ logit|\n"
      "   per block of %lld tokens. BSWA with N = %d layers reaches block N*M = %lld.\n\n",
      (long long)B, m.weights.cfg.n_layers, (long long)(m.weights.cfg.n_layers * M));
  rng r(7);
  const std::vector<int> tokens = sample_stories(m.weights, blocks * B, 1.0, r);
  const std::vector<double> a = receptive_field(m.weights, bswa, tokens, 0.1);
  const std::vector<double> b = receptive_field(m.weights, famv, tokens, 0.1);
  std::printf("   %5s %14s %18s\n", "block", bswa.name().c_str(), famv.name().c_str());
  for (std::size_t k = 0; k < a.size(); ++k) {
    char left[32];
    std::snprintf(left, sizeof left, a[k] == 0.0 ? "0 (bitwise)" : "%.2e", a[k]);
    std::printf("   %5zu %14s %18.2e\n", k, left, b[k]);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const options o(argc, argv, 1, {"small"});
    const bool small = o.flag("small");
    o.reject_unused();
    std::string dir = o.positional().empty() ? "" : o.positional().front();
    if (dir.empty() && std::getenv("FAM_MODEL_DIR") != nullptr) dir = std::getenv("FAM_MODEL_DIR");
    if (!dir.empty() && !model_dir_complete(dir))
      std::printf("note: %s lacks %s or %s; using the random stand-in\n", dir.c_str(),
                  kCheckpointName, kTokenizerName);
    const model m = model_dir_complete(dir)
                        ? load_model(dir + "/" + kCheckpointName, dir + "/" + kTokenizerName)
                        : random_model(1234);
    stopwatch clock;
    std::printf("fam %d.%d.%d — llama2 showcase (attention backend: %s)\nmodel: %s\n\n",
                FAM_VERSION_MAJOR, FAM_VERSION_MINOR, FAM_VERSION_PATCH,
                backend_name(default_backend()), m.description.c_str());
    show_text(m, small ? 320 : 2400, small ? 32 : 48);
    show_memory(m, small ? std::vector<fam::index_t>{500, 1500, 3000}
                         : std::vector<fam::index_t>{2000, 20000, 50000});
    show_receptive_field(m, small ? 10 : 16);
    std::printf("done in %.1f s\n", clock.seconds());
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "llama2_showcase: %s\n", ex.what());
    return 1;
  }
  return 0;
}
