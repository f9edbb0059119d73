// Autoregressive generation: start from BOS, feed every sampled token back, one token per call.
#pragma once

#include <vector>

#include "engine.hpp"
#include "sampler.hpp"

namespace llama2 {

/// Resets the engine and samples up to `steps` tokens after BOS. on_token(i, token) runs after
/// the i-th token (0-based) was drawn; returning false stops early. Nothing is kept here, so a
/// stream of any length runs in the engine's fixed memory. Returns the tokens drawn.
template <class OnToken>
fam::index_t generate(engine& e, fam::index_t steps, double temperature, rng& r, OnToken on_token) {
  e.reset();
  int token = kBos;
  const int vocab = e.config().vocab_size;
  for (fam::index_t i = 0; i < steps; ++i) {
    const matrix logits = e.forward(&token, 1);  // [1, vocab]
    token = sample(logits.data(), vocab, temperature, r);
    if (!on_token(i, token)) return i + 1;
  }
  return steps;
}

/// The tokens themselves.
inline std::vector<int> generate(engine& e, fam::index_t steps, double temperature, rng& r) {
  std::vector<int> out;
  generate(e, steps, temperature, r, [&](fam::index_t, int token) {
    out.push_back(token);
    return true;
  });
  return out;
}

}  // namespace llama2
