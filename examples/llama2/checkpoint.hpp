// Reading a llama2.c checkpoint, and a seeded random model of any shape for when none is at hand.
//
// File layout: seven little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; vocab_size < 0 means the classifier is stored separately), then float32
// arrays: embedding, attention norms, wq, wk, wv, wo, FFN norms, w1, w2, w3 (each stacked over
// the layers), final norm, two legacy RoPE tables [seq_len, head_dim/2], optional classifier.
#pragma once

#include <cmath>
#include <cstdint>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>

#include "llama.hpp"

namespace llama2 {

namespace detail {

/// Sequential reader of the float arrays of a checkpoint.
class float_reader {
 public:
  explicit float_reader(std::ifstream& in, const std::string& path) : in_(in), path_(path) {}

  matrix read(int rows, int cols) {
    matrix m(rows, cols);
    read_into(m.data(), std::streamsize(rows) * cols);
    return m;
  }
  void skip(std::streamsize floats) { in_.seekg(floats * std::streamsize(sizeof(float)), in_.cur); }

 private:
  void read_into(float* dst, std::streamsize n) {
    in_.read(reinterpret_cast<char*>(dst), n * std::streamsize(sizeof(float)));
    if (!in_) throw std::runtime_error(path_ + ": truncated checkpoint");
  }
  std::ifstream& in_;
  std::string path_;
};

}  // namespace detail

/// Loads a llama2.c checkpoint (throws std::runtime_error on a missing or malformed file).
inline llama_weights load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::int32_t header[7];
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  if (!in) throw std::runtime_error(path + ": no checkpoint header");
  llama_weights w;
  llama_config& c = w.cfg;
  c = {header[0], header[1], header[2], header[3], header[4], std::abs(header[5]), header[6]};
  const bool shared_classifier = header[5] > 0;
  if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.vocab_size <= 0 || c.seq_len <= 0 || c.dim % c.n_heads != 0 ||
      c.n_heads % c.n_kv_heads != 0 || c.head_dim() % 2 != 0)
    throw std::runtime_error(path + ": implausible checkpoint header");

  detail::float_reader r(in, path);
  w.embedding = r.read(c.vocab_size, c.dim);
  w.layers.resize(std::size_t(c.n_layers));
  // each array is stacked over the layers: read it for every layer before the next array
  for (auto& l : w.layers) l.ln1 = r.read(c.dim, 1);
  for (auto& l : w.layers) l.wq = r.read(c.dim, c.dim);
  for (auto& l : w.layers) l.wk = r.read(c.kv_dim(), c.dim);
  for (auto& l : w.layers) l.wv = r.read(c.kv_dim(), c.dim);
  for (auto& l : w.layers) l.wo = r.read(c.dim, c.dim);
  for (auto& l : w.layers) l.ln2 = r.read(c.dim, 1);
  for (auto& l : w.layers) l.w1 = r.read(c.hidden_dim, c.dim);
  for (auto& l : w.layers) l.w2 = r.read(c.dim, c.hidden_dim);
  for (auto& l : w.layers) l.w3 = r.read(c.hidden_dim, c.dim);
  w.final_norm = r.read(c.dim, 1);
  r.skip(2 * std::streamsize(c.seq_len) * (c.head_dim() / 2));  // legacy RoPE tables
  w.classifier = shared_classifier ? w.embedding : r.read(c.vocab_size, c.dim);
  return w;
}

/// The shape of stories260K (tinyllamas): what the random stand-in model copies.
inline llama_config stories260k_shape() { return {64, 172, 5, 8, 4, 512, 512}; }

/// A seeded random model: norms 1, projections N(0, 1/fan_in) so that activations keep their
/// scale through the layers (like a freshly initialised network), embedding N(0, 1).
inline llama_weights random_weights(const llama_config& c, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  auto gaussian = [&](int rows, int cols, double stddev) {
    std::normal_distribution<float> dist(0.0f, float(stddev));
    matrix m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
    return m;
  };
  auto proj = [&](int out, int in) { return gaussian(out, in, 1.0 / std::sqrt(double(in))); };
  llama_weights w;
  w.cfg = c;
  w.embedding = gaussian(c.vocab_size, c.dim, 1.0);
  for (int l = 0; l < c.n_layers; ++l) {
    layer_weights lw;
    lw.ln1 = vector::Ones(c.dim);
    lw.ln2 = vector::Ones(c.dim);
    lw.wq = proj(c.dim, c.dim);
    lw.wk = proj(c.kv_dim(), c.dim);
    lw.wv = proj(c.kv_dim(), c.dim);
    lw.wo = proj(c.dim, c.dim);
    lw.w1 = proj(c.hidden_dim, c.dim);
    lw.w2 = proj(c.dim, c.hidden_dim);
    lw.w3 = proj(c.hidden_dim, c.dim);
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = vector::Ones(c.dim);
  // Its own classifier, logits of std ~2: a tied one would score each token's own embedding
  // highest (|e|^2 = dim) and the random model would repeat one token forever.
  w.classifier = gaussian(c.vocab_size, c.dim, 2.0 / std::sqrt(double(c.dim)));
  return w;
}

}  // namespace llama2
