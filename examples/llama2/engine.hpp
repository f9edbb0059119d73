// The inference engine: embedding, the decoder layers (each with its own fam::layer_state),
// final norm and classifier. Tokens go in in chunks of any size; logits come out.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "decoder_layer.hpp"
#include "llama.hpp"
#include "ops.hpp"
#include "variant.hpp"

namespace llama2 {

class engine {
 public:
  /// w must outlive the engine. The stream starts at token 0 with Φ[-1] installed.
  engine(const llama_weights& w, const attention_variant& v,
         backend_kind backend = default_backend())
      : w_(&w), v_(v), rope_(w.cfg.head_dim()) {
    layers_.reserve(w.layers.size());
    for (const layer_weights& lw : w.layers) layers_.emplace_back(w.cfg, lw, rope_, v, backend);
    phi0_ = initial_fam();
    reset();
  }
  engine(const engine&) = delete;  // the layers point at rope_
  engine& operator=(const engine&) = delete;

  /// Back to an empty stream (no allocation: the states were sized at construction).
  void reset() {
    for (std::size_t l = 0; l < layers_.size(); ++l) layers_[l].reset(phi0_[l]);
  }

  /// Logits [count, vocab] for the next `count` tokens of the stream.
  matrix forward(const int* tokens, fam::index_t count) {
    return forward_embedded(embed(tokens, count));
  }

  /// Same, from embeddings x [count, dim] (the receptive-field probe perturbs them).
  matrix forward_embedded(matrix x) {
    if (v_.capacity() > 0 && tokens() + x.rows() > v_.capacity())
      throw std::runtime_error("full attention holds " + std::to_string(v_.capacity()) +
                               " tokens; give it a larger capacity");
    for (decoder_layer& layer : layers_) x = layer.forward(x);
    return linear(rmsnorm(x, w_->final_norm), w_->classifier);
  }

  /// Embedding rows of tokens: [count, dim].
  matrix embed(const int* tokens, fam::index_t count) const {
    matrix x(count, w_->cfg.dim);
    for (fam::index_t i = 0; i < count; ++i) x.row(i) = w_->embedding.row(tokens[i]);
    return x;
  }

  /// Tokens of the stream so far.
  fam::index_t tokens() const { return layers_.front().state().tokens(); }
  const attention_variant& variant() const { return v_; }
  const llama_config& config() const { return w_->cfg; }

  /// RMS of Φ over every row of every layer (0 without FAM): how the memory's scale drifts as
  /// the residual Φ[t] = ... + Φ[t-1] accumulates block after block.
  double phi_rms() const {
    double sum = 0.0;
    std::size_t n = 0;
    for (const decoder_layer& l : layers_) {
      const fam::tensor_view<const float> phi = l.state().phi();  // [F, 1, dim], contiguous
      for (fam::index_t i = 0; i < phi.rows * phi.head_dim; ++i, ++n)
        sum += double(phi.data[i]) * phi.data[i];
    }
    return n > 0 ? std::sqrt(sum / double(n)) : 0.0;
  }

  /// Bytes of attention state (rings, FAM projections, Φ) over all layers: fixed at construction.
  std::size_t state_bytes() const {
    std::size_t bytes = 0;
    for (const decoder_layer& l : layers_)
      bytes += decoder_layer::state_type::storage_bytes(l.state().config());
    return bytes;
  }

 private:
  /// Φ[-1] of every layer, [layers][F, dim] (see phi_init).
  std::vector<matrix> initial_fam() const {
    const fam::index_t F = v_.F;
    std::vector<matrix> phi(layers_.size(), matrix::Zero(F, w_->cfg.dim));
    if (F == 0 || v_.init == phi_init::zeros) return phi;
    matrix p(F, w_->cfg.dim);  // P: F copies of the BOS embedding
    for (fam::index_t r = 0; r < F; ++r) p.row(r) = w_->embedding.row(kBos);
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      phi[l] = p;
      p = layers_[l].forward_fam_rows(p);  // Φ⁽ˡ⁺¹⁾ = Layer_l(Φ⁽ˡ⁾)
    }
    return phi;
  }

  const llama_weights* w_;
  attention_variant v_;
  rope rope_;
  std::vector<decoder_layer> layers_;
  std::vector<matrix> phi0_;  // [layers][F, dim]
};

}  // namespace llama2
