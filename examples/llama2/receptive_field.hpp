// How far back a model can see, measured (SPEC §7.5): perturb the embedding of token 0 and
// record, for every later block, the largest change of any logit of its tokens.
// Under BSWA with N layers the change climbs M blocks per layer and stops after block N·M:
// later blocks never read a key that depends on token 0, so their logits are bitwise equal.
// Under FAM the feedback rows carry it from block to block, with no limit.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "engine.hpp"

namespace llama2 {

/// max |Δ logits| per block of v.B tokens when token 0's embedding e0 moves by
/// eps·|e0| in a fixed random direction. Both runs feed the tokens in the same chunks (one block
/// per call), so unchanged inputs give bitwise unchanged outputs.
inline std::vector<double> receptive_field(const llama_weights& w, const attention_variant& v,
                                           const std::vector<int>& tokens, double eps,
                                           backend_kind backend = default_backend()) {
  const fam::index_t L = fam::index_t(tokens.size()), B = v.B;
  engine e(w, v, backend);
  const matrix x = e.embed(tokens.data(), L);  // [L, dim]
  matrix x_moved = x;
  std::mt19937 gen(1);  // the direction is part of the experiment: fixed
  std::normal_distribution<float> normal;
  vector u(w.cfg.dim);
  for (Eigen::Index d = 0; d < u.size(); ++d) u[d] = normal(gen);
  x_moved.row(0) += (eps * x.row(0).norm() / u.norm()) * u.transpose();

  auto run = [&](const matrix& in) {
    e.reset();
    matrix logits(L, w.cfg.vocab_size);
    for (fam::index_t first = 0; first < L; first += B) {
      const fam::index_t c = std::min(B, L - first);
      logits.middleRows(first, c) = e.forward_embedded(in.middleRows(first, c));
    }
    return logits;
  };
  const matrix delta = (run(x_moved) - run(x)).cwiseAbs();  // [L, vocab]
  std::vector<double> per_block;
  for (fam::index_t first = 0; first < L; first += B)
    per_block.push_back(delta.middleRows(first, std::min(B, L - first)).maxCoeff());
  return per_block;
}

}  // namespace llama2
