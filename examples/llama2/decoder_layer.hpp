// One Llama decoder layer whose attention runs on a fam::layer_state, and the FAM layer of
// SPEC §4 around it. For block t of a layer with weights LN1, Wq, Wk, Wv, Wo, LN2, FFN:
//
//   tokens X [b, dim]:   Q, K, V = RoPE(LN1(X) Wq), RoPE(LN1(X) Wk), LN1(X) Wv
//                        Ut      = attention (ring of M blocks | FAM keys of Φ[t-1] | own block)
//                        A       = Ut Wo + X,        Out  = FFN(LN2(A)) + A
//   FAM rows Φ [F, dim]: Uf      = attention (FAM keys | the whole block t), at block end
//                        Af      = Uf Wo + (fresh ? 0 : Φ[t-1]),   Φ[t] = FFN(LN2(Af)) + Af
//
// fam computes both attentions; this file does everything else: projections, RoPE, residuals,
// FFN, and the protocol (begin_fam, attend until the block ends, fam_output, update_fam).
#pragma once

#include <stdexcept>
#include <string>

#include "backend.hpp"
#include "fam/eigen.hpp"
#include "fam/fam.hpp"
#include "llama.hpp"
#include "ops.hpp"
#include "variant.hpp"

namespace llama2 {

/// In this program a failed fam call is a bug, not a condition to recover from.
inline void check(fam::status s, const char* what) {
  if (s != fam::status::ok) throw std::runtime_error(std::string(what) + ": " + fam::to_string(s));
}

class decoder_layer {
 public:
  using state_type = fam::layer_state<fam::dynamic_config>;

  /// w and r must outlive the layer.
  decoder_layer(const llama_config& c, const layer_weights& w, const rope& r,
                const attention_variant& v, backend_kind backend)
      : c_(c), w_(&w), rope_(&r), cfg_(v.config(c)), backend_(backend) {
    check(st_.init(cfg_), "layer_state::init");
  }

  /// Back to token 0 with Φ[-1] = phi0 [F, dim] installed, fresh (protocol step 1).
  void reset(const matrix& phi0) {
    fam::reset(st_);
    if (F() > 0) install(phi0, /*first=*/true);
  }

  /// The layer on the next tokens x [c, dim] -> Out [c, dim].
  matrix forward(const matrix& x) {
    const qkv p = project(x, st_.token_position(0));
    matrix u(x.rows(), c_.dim);  // [c, H*hd] token outputs Ut
    attend(p, u);
    return residual_ffn(linear(u, w_->wo) + x);
  }

  /// The layer on F rows alone, bidirectional among themselves, at positions -F..-1 with the
  /// normal residual and FFN: how SPEC §4 derives layer l+1's initial state from layer l's.
  matrix forward_fam_rows(const matrix& phi) const {
    const qkv p = project(phi, -F());
    matrix uf(F(), c_.dim);  // [F, H*hd]
    fam::fam_block_args a;   // no memory and no block tokens: FAM rows see the FAM rows only
    a.qf = fam::as_view(p.q, c_.n_heads);
    a.kf = fam::as_view(p.k, c_.n_kv_heads);
    a.vf = fam::as_view(p.v, c_.n_kv_heads);
    a.uf = fam::as_view(uf, c_.n_heads);
    check(with_backend(backend_, [&](const auto& b) { return fam::fam_attention(cfg_, a, b); }),
          "fam_attention");
    return residual_ffn(linear(uf, w_->wo) + phi);
  }

  const state_type& state() const { return st_; }

 private:
  struct qkv {
    matrix q;     // [rows, H*hd]   rotated
    matrix k, v;  // [rows, Hkv*hd] k rotated (keys are stored after RoPE, SPEC §1)
  };

  fam::index_t F() const { return cfg_.fam_len(); }

  /// Q, K, V of rows z [rows, dim]; row i sits at position first_position + i.
  qkv project(const matrix& z, fam::index_t first_position) const {
    const matrix zn = rmsnorm(z, w_->ln1);
    qkv p{linear(zn, w_->wq), linear(zn, w_->wk), linear(zn, w_->wv)};
    rope_->apply(p.q, first_position);
    rope_->apply(p.k, first_position);
    return p;
  }

  /// a [rows, dim] -> FFN(LN2(a)) + a
  matrix residual_ffn(const matrix& a) const { return swiglu(rmsnorm(a, w_->ln2), *w_) + a; }

  /// Protocol steps 2-5: attend until the tokens are used up. With F > 0 a call stops at the
  /// token that completes a block (consumed says where), and the FAM update comes before the
  /// next token, which must already read Φ[t].
  void attend(const qkv& p, matrix& u) {
    const fam::index_t c = p.q.rows();
    const auto q = fam::as_view(p.q, c_.n_heads), k = fam::as_view(p.k, c_.n_kv_heads),
               v = fam::as_view(p.v, c_.n_kv_heads);
    const auto out = fam::as_view(u, c_.n_heads);
    for (fam::index_t done = 0; done < c;) {
      const fam::index_t rest = c - done;
      fam::index_t consumed = 0;
      check(with_backend(backend_,
                         [&](const auto& b) {
                           return fam::attend(st_, q.rows_from(done, rest), k.rows_from(done, rest),
                                              v.rows_from(done, rest), out.rows_from(done, rest),
                                              {}, &consumed, b);
                         }),
            "attend");
      done += consumed;
      if (st_.phase() == fam::fam_phase::pending) update_fam();
    }
  }

  /// Φ[t] = FFN(LN2(Af)) + Af with Af = Uf Wo + (fresh ? 0 : Φ[t-1]).
  void update_fam() {
    const fam::tensor_view<const float> uf = st_.fam_output();  // [F, H, hd], contiguous
    matrix af = linear(Eigen::Map<const matrix>(uf.data, F(), c_.dim), w_->wo);
    if (!st_.fresh()) af += Eigen::Map<const matrix>(st_.phi().data, F(), c_.dim);
    install(residual_ffn(af), /*first=*/false);
  }

  /// Projects Φ [F, dim] at the FAM positions (the last F positions before the next block) and
  /// hands it, with Φ itself, to begin_fam (fresh) or update_fam.
  void install(const matrix& phi, bool first) {
    const qkv p = project(phi, st_.fam_position(0));
    const auto qf = fam::as_view(p.q, c_.n_heads), kf = fam::as_view(p.k, c_.n_kv_heads),
               vf = fam::as_view(p.v, c_.n_kv_heads), phi_view = fam::as_view(phi, 1);
    check(first ? fam::begin_fam(st_, qf, kf, vf, phi_view, /*fresh=*/true)
                : fam::update_fam(st_, qf, kf, vf, phi_view),
          first ? "begin_fam" : "update_fam");
  }

  llama_config c_;
  const layer_weights* w_;
  const rope* rope_;
  fam::dynamic_config cfg_;
  backend_kind backend_;
  state_type st_;
};

}  // namespace llama2
