// model.hpp: a small float32 model with FAM (test support). A stack of pre-norm (llama style)
// decoder layers written with Eigen, the fp32 twin of oracle::fam_model (SPEC §4): RMSNorm
// (eps 1e-5), Wq/Wk/Wv/Wo, SwiGLU FFN w2(silu(w1 x) * w3 x), RoPE on adjacent pairs, scale
// 1/sqrt(head_dim), GQA. It drives the library only through the public FAM protocol of
// stream.hpp: begin_fam, attend (with `consumed`), fam_output, update_fam; Φ lives in the
// layer_state (phi_dim = dim), so save/restore of the states is the whole model state.
//
// Any chunking gives bitwise identical numbers: every per-token step (norm, projection, RoPE,
// FFN) runs one row at a time on a freshly allocated (so equally aligned) Eigen vector. A
// whole-matrix product would not do: Eigen picks a GEMV, a coefficient-based or a blocked GEMM
// kernel by size, and they round differently, so a row's result would depend on its chunk
// (with Eigen 3.4 and g++ -O2, every row of a 74-row X·Wᵀ differs from the same row's own product).
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <vector>

#include "fam/eigen.hpp"
#include "fam/fam.hpp"
#include "support/oracle.hpp"
#include "support/util.hpp"

namespace testing::model {

using fam::index_t;
using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using fvec = Eigen::VectorXf;
using config = fam::dynamic_config;
using state = fam::layer_state<config>;

inline void require_ok(fam::status s) {
  INFO("fam status: ", fam::to_string(s));
  REQUIRE(s == fam::status::ok);
}

// ---------------------------------------------------------------------------------------------
// Weights: drawn as floats, kept in both precisions so that the fp32 model and the fp64 oracle
// compute with exactly the same numbers.
// ---------------------------------------------------------------------------------------------

/// One layer in float, in the oracle's llama2.c layout: y = W x, W is [out, in].
struct layer_weights {
  fvec ln1, ln2;  // [dim]
  matrix wq;      // [H*hd, dim]
  matrix wk, wv;  // [Hkv*hd, dim]
  matrix wo;      // [dim, H*hd]
  matrix w1, w3;  // [hidden, dim]
  matrix w2;      // [dim, hidden]
};

inline matrix to_matrix(const std::vector<double>& w, index_t rows, index_t cols) {
  matrix m(rows, cols);  // the doubles hold floats: the cast is exact
  for (index_t i = 0; i < rows * cols; ++i) m.data()[i] = static_cast<float>(w[std::size_t(i)]);
  return m;
}

inline fvec to_fvec(const std::vector<double>& w) { return to_matrix(w, index_t(w.size()), 1); }

inline layer_weights to_float(const oracle::model_shape& s, const oracle::layer_weights& w) {
  const index_t qw = index_t{s.H} * s.head_dim, kw = index_t{s.Hkv} * s.head_dim;
  return {to_fvec(w.ln1),
          to_fvec(w.ln2),
          to_matrix(w.wq, qw, s.dim),
          to_matrix(w.wk, kw, s.dim),
          to_matrix(w.wv, kw, s.dim),
          to_matrix(w.wo, s.dim, qw),
          to_matrix(w.w1, s.hidden, s.dim),
          to_matrix(w.w3, s.hidden, s.dim),
          to_matrix(w.w2, s.dim, s.hidden)};
}

/// Uniform floats in [lo, hi) as doubles (exactly representable in float).
inline std::vector<double> random_floats(rng& r, index_t n, double lo, double hi) {
  return to_double(r.floats(std::size_t(n), lo, hi));
}

/// Weight ranges as in the oracle's own model tests: norms around 1, projections that keep the
/// logits O(1) so that softmax is neither uniform nor one-hot.
inline std::vector<oracle::layer_weights> random_weights(const oracle::model_shape& s, int n_layers,
                                                         rng& r) {
  const index_t dim = s.dim, hid = s.hidden, qw = index_t{s.H} * s.head_dim,
                kw = index_t{s.Hkv} * s.head_dim;
  std::vector<oracle::layer_weights> layers;
  for (int l = 0; l < n_layers; ++l) {
    oracle::layer_weights w;
    w.ln1 = random_floats(r, dim, 0.5, 1.5);
    w.ln2 = random_floats(r, dim, 0.5, 1.5);
    w.wq = random_floats(r, qw * dim, -0.6, 0.6);
    w.wk = random_floats(r, kw * dim, -0.6, 0.6);
    w.wv = random_floats(r, kw * dim, -0.6, 0.6);
    w.wo = random_floats(r, dim * qw, -0.4, 0.4);
    w.w1 = random_floats(r, hid * dim, -0.4, 0.4);
    w.w3 = random_floats(r, hid * dim, -0.4, 0.4);
    w.w2 = random_floats(r, dim * hid, -0.4, 0.4);
    layers.push_back(w);
  }
  return layers;
}

// ---------------------------------------------------------------------------------------------
// Per-row operations (one token or one FAM row at a time)
// ---------------------------------------------------------------------------------------------

/// x / sqrt(mean(x^2) + 1e-5) * w
inline fvec rmsnorm(const fvec& x, const fvec& w) {
  const float inv = 1.0f / std::sqrt(x.squaredNorm() / static_cast<float>(x.size()) + 1e-5f);
  return (x * inv).cwiseProduct(w);
}

/// w2 (silu(w1 x) * (w3 x))
inline fvec ffn(const layer_weights& w, const fvec& x) {
  const fvec a = w.w1 * x, g = w.w3 * x;
  const fvec silu = a.array() / (1.0f + (-a.array()).exp());
  return w.w2 * silu.cwiseProduct(g);
}

/// RoPE of x = [heads, hd] at `pos`: pair (2i, 2i+1) of each head turns by pos * 10000^(-2i/hd).
/// The angle is formed in double (positions are exact there), the rotation done in float.
inline fvec rope(fvec x, index_t heads, index_t hd, index_t pos) {
  for (index_t i = 0; 2 * i + 1 < hd; ++i) {
    const double angle =
        static_cast<double>(pos) * std::pow(10000.0, -2.0 * double(i) / double(hd));
    const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
    for (index_t h = 0; h < heads; ++h) {
      float& a = x[h * hd + 2 * i];
      float& b = x[h * hd + 2 * i + 1];
      const float a0 = a, b0 = b;
      a = a0 * c - b0 * s;
      b = a0 * s + b0 * c;
    }
  }
  return x;
}

/// y.row(i) = fn(x.row(i), i), one row at a time: each row is copied into its own aligned
/// vector so that its result does not depend on its neighbours (see the header comment).
template <class Fn>
matrix map_rows(const matrix& x, index_t out_cols, Fn fn) {
  matrix y(x.rows(), out_cols);
  for (index_t i = 0; i < x.rows(); ++i) {
    const fvec row = x.row(i).transpose();
    y.row(i) = fn(row, i).transpose();
  }
  return y;
}

// ---------------------------------------------------------------------------------------------
// One layer: its weights and its streaming state
// ---------------------------------------------------------------------------------------------

class fam_layer {
 public:
  fam_layer(const oracle::model_shape& s, const layer_weights& w, index_t position_offset)
      : s_(s), w_(&w) {
    config cfg(s.head_dim, s.B, s.M, s.F);
    cfg.set_heads(s.H, s.Hkv);
    cfg.position_offset = position_offset;
    cfg.phi_dim = s.dim;  // the state keeps Φ: it is the residual of the next update
    require_ok(st_.init(cfg));
  }

  /// Installs Φ[-1] [F, dim] (protocol step 1). With F = 0 there is nothing to install.
  void begin(const matrix& phi0, bool fresh) {
    if (s_.F > 0) install(phi0, /*first=*/true, fresh);
  }

  /// The layer on the next c tokens: x [c, dim] -> Out [c, dim] (SPEC §4), in any chunking.
  matrix forward(const matrix& x) {
    const projections p = project(x, st_.token_position(0));
    matrix u(x.rows(), qw());  // [c, H*hd] attention outputs Ut
    attend_chunk(p, u);
    return residual_ffn(project_out(u) + x);
  }

  /// Φ as the state holds it: [F, dim].
  matrix phi() const { return Eigen::Map<const matrix>(st_.phi().data, s_.F, s_.dim); }

  state& layer_state() { return st_; }
  const state& layer_state() const { return st_; }

 private:
  struct projections {
    matrix q;     // [rows, H*hd]   RoPE'd
    matrix k, v;  // [rows, Hkv*hd] k RoPE'd
  };

  index_t qw() const { return index_t{s_.H} * s_.head_dim; }
  index_t kw() const { return index_t{s_.Hkv} * s_.head_dim; }

  /// Q, K, V of rows z [rows, dim]; row i sits at position first_position + i.
  projections project(const matrix& z, index_t first_position) const {
    const layer_weights& w = *w_;
    const matrix zn =
        map_rows(z, s_.dim, [&](const fvec& r, index_t) { return rmsnorm(r, w.ln1); });
    projections p;
    p.q = map_rows(zn, qw(), [&](const fvec& r, index_t i) {
      return rope(w.wq * r, s_.H, s_.head_dim, first_position + i);
    });
    p.k = map_rows(zn, kw(), [&](const fvec& r, index_t i) {
      return rope(w.wk * r, s_.Hkv, s_.head_dim, first_position + i);
    });
    p.v = map_rows(zn, kw(), [&](const fvec& r, index_t) -> fvec { return w.wv * r; });
    return p;
  }

  /// Attention outputs u [rows, H*hd] -> u·Wo [rows, dim] (each row is Wo u, Wo [dim, H*hd]).
  matrix project_out(const matrix& u) const {
    return map_rows(u, s_.dim, [&](const fvec& r, index_t) -> fvec { return w_->wo * r; });
  }

  /// a [rows, dim] -> FFN(LN2(a)) + a.
  matrix residual_ffn(const matrix& a) const {
    return map_rows(a, s_.dim, [&](const fvec& r, index_t) -> fvec {
      return ffn(*w_, rmsnorm(r, w_->ln2)) + r;
    });
  }

  /// Protocol steps 2-5: attend until the chunk is used up; whenever a block completes the call
  /// stops there (consumed) and the FAM update comes before the next token.
  void attend_chunk(const projections& p, matrix& u) {
    const index_t c = p.q.rows();
    const auto q = fam::as_view(p.q, s_.H), k = fam::as_view(p.k, s_.Hkv),
               v = fam::as_view(p.v, s_.Hkv);
    const auto out = fam::as_view(u, s_.H);
    for (index_t done = 0; done < c;) {
      index_t consumed = 0;
      const index_t rest = c - done;
      require_ok(fam::attend(st_, q.rows_from(done, rest), k.rows_from(done, rest),
                             v.rows_from(done, rest), out.rows_from(done, rest), {}, &consumed));
      REQUIRE(consumed > 0);
      done += consumed;
      if (st_.phase() == fam::fam_phase::pending) update_fam();
    }
  }

  /// Φ[t] = FFN(LN2(Af)) + Af with Af = Uf·Wo + (fresh ? 0 : Φ[t-1]) (SPEC §4).
  void update_fam() {
    const auto uf = st_.fam_output();  // Uf [F, H, hd], contiguous
    matrix af = project_out(Eigen::Map<const matrix>(uf.data, s_.F, qw()));
    if (!st_.fresh()) af += phi();  // zero residual on the layer's first update
    install(residual_ffn(af), /*first=*/false, /*fresh=*/false);
  }

  /// Projects Φ [F, dim] at fam_position(r) and hands it to begin_fam or update_fam.
  void install(const matrix& phi, bool first, bool fresh) {
    const projections p = project(phi, st_.fam_position(0));
    const auto qf = fam::as_view(p.q, s_.H), kf = fam::as_view(p.k, s_.Hkv),
               vf = fam::as_view(p.v, s_.Hkv);
    const auto phi_view = fam::as_view(phi, 1);  // [F, 1, dim]
    require_ok(first ? fam::begin_fam(st_, qf, kf, vf, phi_view, fresh)
                     : fam::update_fam(st_, qf, kf, vf, phi_view));
  }

  oracle::model_shape s_;
  const layer_weights* w_;
  state st_;
};

// ---------------------------------------------------------------------------------------------
// The stack
// ---------------------------------------------------------------------------------------------

/// N layers fed chunk by chunk: layer 0 runs over the chunk, its output feeds layer 1, and so
/// on. Every layer's outputs are recorded, concatenated over the chunks.
class fam_model {
 public:
  /// The weights must outlive the model. States are initialized, nothing is installed.
  fam_model(const oracle::model_shape& s, const std::vector<layer_weights>& weights,
            index_t position_offset)
      : s_(s), outputs_(weights.size()) {
    layers_.reserve(weights.size());
    for (const layer_weights& w : weights) layers_.emplace_back(s, w, position_offset);
  }

  /// Installs Φ[-1] of every layer: phi0[l] is [F, dim] row-major.
  void begin(const std::vector<std::vector<float>>& phi0, const std::vector<bool>& fresh) {
    for (std::size_t l = 0; l < layers_.size(); ++l)
      layers_[l].begin(Eigen::Map<const matrix>(phi0[l].data(), s_.F, s_.dim), fresh[l]);
  }

  /// Tokens [first, first + count) of x [L, dim] through every layer; returns the last layer's
  /// output [count, dim].
  matrix feed(const std::vector<float>& x, index_t first, index_t count) {
    matrix h = Eigen::Map<const matrix>(x.data() + first * s_.dim, count, s_.dim);
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      h = layers_[l].forward(h);
      outputs_[l].insert(outputs_[l].end(), h.data(), h.data() + h.size());
    }
    return h;
  }

  /// Tokens [first, first + sum(chunks)) in the given chunk sizes.
  void feed_chunks(const std::vector<float>& x, index_t first, const std::vector<index_t>& chunks) {
    for (index_t c : chunks) {
      feed(x, first, c);
      first += c;
    }
  }

  std::size_t size() const { return layers_.size(); }
  fam_layer& layer(std::size_t l) { return layers_[l]; }
  const fam_layer& layer(std::size_t l) const { return layers_[l]; }
  /// Layer l's outputs so far: [tokens fed, dim].
  const std::vector<float>& output(std::size_t l) const { return outputs_[l]; }
  /// Layer l's Φ: [F, dim].
  std::vector<float> phi(std::size_t l) const {
    const matrix p = layers_[l].phi();
    return std::vector<float>(p.data(), p.data() + p.size());
  }

 private:
  oracle::model_shape s_;
  std::vector<fam_layer> layers_;
  std::vector<std::vector<float>> outputs_;  // [layers][tokens, dim]
};

}  // namespace testing::model
