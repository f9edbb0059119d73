// Choosing the next token from logits: greedy at temperature 0, else a draw from
// softmax(logits / T) with a seeded generator (the seed is logged, so every run can be redone).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace llama2 {

/// xorshift64*: small, fast, and the same sequence on every platform (unlike std distributions).
class rng {
 public:
  explicit rng(std::uint64_t seed) : s_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  std::uint64_t next() {
    s_ ^= s_ >> 12, s_ ^= s_ << 25, s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  /// Uniform in [0, 1).
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_;
};

inline int argmax(const float* logits, int vocab) {
  int best = 0;
  for (int i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

/// The next token: argmax when temperature <= 0, else a draw from softmax(logits / temperature).
inline int sample(const float* logits, int vocab, double temperature, rng& r) {
  if (temperature <= 0.0) return argmax(logits, vocab);
  const double m = logits[argmax(logits, vocab)];
  std::vector<double> p(static_cast<std::size_t>(vocab));
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i)
    sum += p[std::size_t(i)] = std::exp((logits[i] - m) / temperature);
  double u = r.uniform() * sum;
  for (int i = 0; i < vocab; ++i)
    if ((u -= p[std::size_t(i)]) < 0.0) return i;
  return vocab - 1;  // u landed on the rounding slack at the end
}

}  // namespace llama2
