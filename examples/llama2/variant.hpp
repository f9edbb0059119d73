// The attention variants the engine runs, all on fam::layer_state (one per layer):
//   full  BSWA whose ring holds the whole stream (SPEC §7.1: M >= nblocks-1 is full attention)
//   bswa  blocks of B tokens, each reading its own block causally and the M blocks before it
//   fam   BSWA plus F feedback-memory rows per layer, updated at every block end (SPEC §3-§4)
#pragma once

#include <string>

#include "fam/fam.hpp"
#include "llama.hpp"

namespace llama2 {

enum class attention_kind { full, bswa, fam };

/// Where the initial FAM state Φ[-1] of each layer comes from. The model was never trained with
/// FAM, so there is no learned prompt; both choices are guesses.
enum class phi_init {
  derived,  ///< SPEC §4: P = F copies of the BOS embedding, Φ⁽ˡ⁺¹⁾ = Layer_l(Φ⁽ˡ⁾) on the F rows
  zeros,    ///< Φ = 0 in every layer: keys and values 0, a "null" slot the tokens may attend to
};

struct attention_variant {
  attention_kind kind = attention_kind::bswa;
  fam::index_t B = 64, M = 3, F = 0;
  phi_init init = phi_init::derived;

  static attention_variant full(fam::index_t capacity) {
    const fam::index_t B = 256;  // any B: the ring holds every block of the stream
    return {attention_kind::full, B, (capacity + B - 1) / B, 0, phi_init::derived};
  }
  static attention_variant bswa(fam::index_t B, fam::index_t M) {
    return {attention_kind::bswa, B, M, 0, phi_init::derived};
  }
  static attention_variant fam(fam::index_t B, fam::index_t M, fam::index_t F,
                               phi_init init = phi_init::derived) {
    return {attention_kind::fam, B, M, F, init};
  }

  /// Tokens a full-attention stream may hold (0 for the constant-memory variants).
  fam::index_t capacity() const { return kind == attention_kind::full ? (M + 1) * B : 0; }

  std::string name() const {
    switch (kind) {
      case attention_kind::full:
        return "full";
      case attention_kind::bswa:
        return "BSWA B=" + std::to_string(B) + " M=" + std::to_string(M);
      case attention_kind::fam:
        return "FAM B=" + std::to_string(B) + " M=" + std::to_string(M) +
               " F=" + std::to_string(F) + (init == phi_init::zeros ? " Φ=0" : "");
    }
    return "?";
  }

  /// The fam configuration of one layer of model `c`. The state keeps Φ (phi_dim = dim): it is
  /// the residual of the next FAM update.
  fam::dynamic_config config(const llama_config& c) const {
    fam::dynamic_config cfg(c.head_dim(), B, M, F);
    cfg.set_heads(c.n_heads, c.n_kv_heads);
    cfg.phi_dim = F > 0 ? c.dim : 0;
    return cfg;
  }
};

}  // namespace llama2
