// Perplexity along a long stream, per position bucket.
//
// The stream is the model's own writing: stories sampled at temperature 1 with full attention,
// each from BOS until the model emits BOS (or reaches its trained context), concatenated with
// BOS between them, as llama2.c concatenates TinyStories for training. Every variant then reads
// the same stream with teacher forcing; the bucket of a prediction is the stream position of the
// token it predicts.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "engine.hpp"
#include "ops.hpp"
#include "progress.hpp"
#include "sampler.hpp"

namespace llama2 {

/// `count` tokens of stories sampled from BOS at `temperature` (each at most seq_len tokens).
inline std::vector<int> sample_stories(const llama_weights& w, fam::index_t count,
                                       double temperature, rng& r) {
  engine e(w, attention_variant::full(w.cfg.seq_len));
  std::vector<int> stream;
  while (fam::index_t(stream.size()) < count) {
    e.reset();
    int token = kBos;
    stream.push_back(token);
    for (int pos = 0; pos + 1 < w.cfg.seq_len && fam::index_t(stream.size()) < count; ++pos) {
      const matrix logits = e.forward(&token, 1);
      token = sample(logits.data(), w.cfg.vocab_size, temperature, r);
      if (token == kBos) break;  // the story is over
      stream.push_back(token);
    }
  }
  return stream;
}

/// Position buckets [edges[i], edges[i+1]): 0, 256, 512, 1K, 2K, ... doubling up to `length`.
inline std::vector<fam::index_t> bucket_edges(fam::index_t length) {
  std::vector<fam::index_t> edges{0};
  for (fam::index_t e = 256; e < length; e *= 2) edges.push_back(e);
  edges.push_back(length);
  return edges;
}

/// "256-512", "1K-2K", ...
inline std::string bucket_label(fam::index_t lo, fam::index_t hi) {
  auto k = [](fam::index_t n) {
    return n >= 1024 && n % 1024 == 0 ? std::to_string(n / 1024) + "K" : std::to_string(n);
  };
  return k(lo) + "-" + k(hi);
}

struct bucket_nll {
  std::vector<double> nll;           // summed -log p per bucket
  std::vector<fam::index_t> tokens;  // predictions per bucket
  double seconds = 0;
  double perplexity(std::size_t b) const { return std::exp(nll[b] / double(tokens[b])); }
};

/// Negative log-likelihood of stream[1..] under variant v, fed in chunks of `chunk` tokens.
inline bucket_nll evaluate(const llama_weights& w, const attention_variant& v,
                           const std::vector<int>& stream, const std::vector<fam::index_t>& edges,
                           fam::index_t chunk, bool show_progress,
                           backend_kind backend = default_backend()) {
  engine e(w, v, backend);
  bucket_nll out;
  out.nll.assign(edges.size() - 1, 0.0);
  out.tokens.assign(edges.size() - 1, 0);
  const fam::index_t L = fam::index_t(stream.size()) - 1;  // tokens that predict a next one
  progress_bar bar(L, show_progress);
  stopwatch clock;
  std::size_t b = 0;
  for (fam::index_t first = 0; first < L; first += chunk) {
    const fam::index_t c = std::min(chunk, L - first);
    const matrix logits = e.forward(stream.data() + first, c);  // [c, vocab]
    for (fam::index_t i = 0; i < c; ++i) {
      const fam::index_t target = first + i + 1;  // position of the predicted token
      while (target >= edges[b + 1]) ++b;
      out.nll[b] -= log_prob(logits.row(i).data(), w.cfg.vocab_size, stream[std::size_t(target)]);
      ++out.tokens[b];
    }
    bar.update(first + c);
  }
  out.seconds = clock.seconds();
  return out;
}

}  // namespace llama2
