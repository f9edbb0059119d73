// The per-row operations of a Llama layer, on chunks of rows (tokens or FAM rows): x [rows, dim].
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "llama.hpp"

namespace llama2 {

/// x W^T for a projection W [out, in] stored as in llama2.c: [rows, in] -> [rows, out].
inline matrix linear(const matrix& x, const matrix& w) { return x * w.transpose(); }

/// RMSNorm of every row: x / sqrt(mean(x^2) + 1e-5) * w.
inline matrix rmsnorm(const matrix& x, const vector& w) {
  matrix y(x.rows(), x.cols());
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    const float inv = 1.0f / std::sqrt(x.row(i).squaredNorm() / float(x.cols()) + 1e-5f);
    y.row(i) = (x.row(i) * inv).cwiseProduct(w.transpose());
  }
  return y;
}

/// SwiGLU FFN of every row: w2 (silu(w1 x) * w3 x).
inline matrix swiglu(const matrix& x, const layer_weights& w) {
  const matrix a = linear(x, w.w1), g = linear(x, w.w3);                   // [rows, hidden]
  const matrix silu = (a.array() / (1.0f + (-a.array()).exp())).matrix();  // a * sigmoid(a)
  return linear(silu.cwiseProduct(g), w.w2);                               // [rows, dim]
}

/// Rotary position embedding on adjacent pairs: in each head, pair (2i, 2i+1) of row r turns by
/// (first_position + r) * 10000^(-2i/head_dim). The angle is formed in double: streams run far
/// past the trained positions, and at position 1e5 a float angle is only good to 0.008 rad.
class rope {
 public:
  explicit rope(int head_dim) {
    for (int i = 0; 2 * i < head_dim; ++i)
      inv_freq_.push_back(std::pow(10000.0, -2.0 * i / double(head_dim)));
  }

  /// x [rows, heads * head_dim] in place; row r sits at position first_position + r.
  void apply(matrix& x, std::int64_t first_position) const {
    const Eigen::Index hd = Eigen::Index(2 * inv_freq_.size()), heads = x.cols() / hd;
    for (Eigen::Index r = 0; r < x.rows(); ++r)
      for (std::size_t i = 0; i < inv_freq_.size(); ++i) {
        const double angle = double(first_position + r) * inv_freq_[i];
        const float c = float(std::cos(angle)), s = float(std::sin(angle));
        for (Eigen::Index h = 0; h < heads; ++h) {
          float& a = x(r, h * hd + 2 * Eigen::Index(i));
          float& b = x(r, h * hd + 2 * Eigen::Index(i) + 1);
          const float a0 = a, b0 = b;
          a = a0 * c - b0 * s;
          b = a0 * s + b0 * c;
        }
      }
  }

 private:
  std::vector<double> inv_freq_;  // [head_dim / 2]
};

/// log softmax(logits)[target], in double: a perplexity sums many of these.
inline double log_prob(const float* logits, int vocab, int target) {
  double m = logits[0];
  for (int i = 1; i < vocab; ++i) m = std::fmax(m, double(logits[i]));
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - m);
  return double(logits[target]) - m - std::log(sum);
}

}  // namespace llama2
