// Command-line plumbing shared by the engine and the showcase: `--key value` options, and
// choosing the model (a llama2.c checkpoint with its tokenizer, or the random stand-in).
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.hpp"
#include "checkpoint.hpp"
#include "tokenizer.hpp"
#include "variant.hpp"

namespace llama2 {

/// `--key value` options and `--flag`s (the flags are named up front), plus positionals.
class options {
 public:
  options(int argc, char** argv, int first, std::set<std::string> flags) {
    for (int i = first; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--", 0) != 0) {
        positional_.push_back(a);
      } else if (flags.count(a.substr(2))) {
        values_[a.substr(2)] = "1";
      } else if (i + 1 < argc) {
        values_[a.substr(2)] = argv[++i];
      } else {
        throw std::runtime_error(a + " needs a value");
      }
    }
  }

  bool has(const std::string& key) const { return values_.count(key) > 0; }
  std::string str(const std::string& key, const std::string& fallback) const {
    used_.insert(key);
    const auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  long long integer(const std::string& key, long long fallback) const {
    return has(key) ? std::stoll(str(key, "")) : (used_.insert(key), fallback);
  }
  double real(const std::string& key, double fallback) const {
    return has(key) ? std::stod(str(key, "")) : (used_.insert(key), fallback);
  }
  bool flag(const std::string& key) const { return str(key, "") == "1"; }
  const std::vector<std::string>& positional() const { return positional_; }

  /// Throws for an option nobody asked for (a typo would otherwise be silently ignored).
  void reject_unused() const {
    for (const auto& kv : values_)
      if (!used_.count(kv.first)) throw std::runtime_error("unknown option --" + kv.first);
  }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  mutable std::set<std::string> used_;
};

/// The file names of the tinyllamas release, looked up in a model directory.
inline constexpr const char* kCheckpointName = "stories260K.bin";
inline constexpr const char* kTokenizerName = "tok512.bin";

inline bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

struct model {
  llama_weights weights;
  tokenizer tok;
  std::string description;
  bool real = false;  ///< a trained checkpoint (not the random stand-in)
};

/// Model directory, if both files are there.
inline bool model_dir_complete(const std::string& dir) {
  return !dir.empty() && file_exists(dir + "/" + kCheckpointName) &&
         file_exists(dir + "/" + kTokenizerName);
}

inline model load_model(const std::string& checkpoint, const std::string& tokenizer_path) {
  model m;
  m.weights = load_checkpoint(checkpoint);
  m.tok = tokenizer::load(tokenizer_path, m.weights.cfg.vocab_size);
  m.real = true;
  const llama_config& c = m.weights.cfg;
  m.description = checkpoint.substr(checkpoint.find_last_of('/') + 1) + " (dim " +
                  std::to_string(c.dim) + ", " + std::to_string(c.n_layers) + " layers, " +
                  std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) +
                  " heads, trained on " + std::to_string(c.seq_len) + "-token sequences)";
  return m;
}

inline model random_model(std::uint64_t seed) {
  model m;
  m.weights = random_weights(stories260k_shape(), seed);
  m.tok = tokenizer::synthetic(m.weights.cfg.vocab_size);
  m.description = "random stand-in with the shape of stories260K (seed " + std::to_string(seed) +
                  "; its text is noise)";
  return m;
}

/// --model FILE --tokenizer FILE | --model-dir DIR | --random [--model-seed S].
inline model model_from(const options& o) {
  if (o.flag("random")) return random_model(std::uint64_t(o.integer("model-seed", 1234)));
  const std::string dir = o.str("model-dir", "");
  const std::string ckpt = o.str("model", dir.empty() ? "" : dir + "/" + kCheckpointName);
  const std::string tok = o.str("tokenizer", dir.empty() ? "" : dir + "/" + kTokenizerName);
  if (ckpt.empty() || tok.empty())
    throw std::runtime_error("give --model-dir DIR, or --model FILE --tokenizer FILE, or --random");
  return load_model(ckpt, tok);
}

/// --attn full|bswa|fam with --B --M --F --phi0 derived|zeros; `capacity` bounds full attention.
inline attention_variant variant_from(const options& o, fam::index_t capacity) {
  const std::string kind = o.str("attn", "fam");
  const fam::index_t B = o.integer("B", 64), M = o.integer("M", 3), F = o.integer("F", 16);
  const std::string init = o.str("phi0", "derived");
  if (init != "derived" && init != "zeros") throw std::runtime_error("--phi0 derived|zeros");
  if (kind == "full") return attention_variant::full(capacity);
  if (kind == "bswa") return attention_variant::bswa(B, M);
  if (kind == "fam")
    return attention_variant::fam(B, M, F, init == "zeros" ? phi_init::zeros : phi_init::derived);
  throw std::runtime_error("--attn full|bswa|fam");
}

/// --backend reference|simd (default: the fastest this build has).
inline backend_kind backend_from(const options& o) {
  return o.has("backend") ? parse_backend(o.str("backend", "")) : default_backend();
}

}  // namespace llama2
