// attention_picture.hpp: the hand-wired network's attention weights on a short stream, drawn
// as a heatmap over the FAM layout (φ row of each block before its tokens): who copies whom.
// The weights are computed here from the network's q and k and fam::visible(), densely.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "../common/mask_picture.hpp"
#include "../common/svg.hpp"
#include "network.hpp"

namespace passkey {

inline svg::grid attention_picture() {
  // three blocks of a tiny stream: the key (word 7) at token 1, the question at the end
  constexpr index_t B = 4, M = 1, F = 1, L = 3 * B, key_pos = 1, key_word = 7;
  const fam::mask_spec mask = fam::mask_spec::fam(B, M, F);
  const std::vector<fam::node> axis = picture::fam_layout(B, F, L);

  // q and k of every node. A FAM node of block t is Φ[t-1]: empty before the key's block is
  // done, e_FamFlag + e_key after.
  std::vector<std::vector<float>> q, k;
  for (const fam::node& x : axis) {
    std::vector<float> e(kD), qx(kD), kx(kD);
    if (x.is_fam) {
      initial_fam(e.data());
      if (x.fam_block > key_pos / B) e[key_word] = 1.0f;
    } else {
      const index_t n = x.token, filler_word = (3 * n + 5) % kKeys;
      embed(n == key_pos ? token{token::pass_key, key_word}
            : n == L - 1 ? token{token::question, 0}
                         : token{token::filler, filler_word},
            e.data());
    }
    project(query_weights(), e.data(), qx.data());
    project(key_weights(), e.data(), kx.data());
    q.push_back(qx), k.push_back(kx);
  }

  // softmax over the visible columns of each row: [rows][cols]
  const std::size_t n = axis.size();
  std::vector<std::vector<double>> w(n, std::vector<double>(n, -1.0));  // -1: not visible
  for (std::size_t i = 0; i < n; ++i) {
    double m = -INFINITY, sum = 0.0;
    std::vector<double> logit(n);
    for (std::size_t j = 0; j < n; ++j) {
      if (!fam::visible(mask, axis[i], axis[j])) continue;
      logit[j] = 0.0;
      for (index_t d = 0; d < kD; ++d)
        logit[j] += kScale * double(q[i][std::size_t(d)]) * k[j][std::size_t(d)];
      m = std::fmax(m, logit[j]);
    }
    for (std::size_t j = 0; j < n; ++j)
      if (fam::visible(mask, axis[i], axis[j])) sum += (w[i][j] = std::exp(logit[j] - m));
    for (std::size_t j = 0; j < n; ++j)
      if (w[i][j] >= 0.0) w[i][j] /= sum;
  }

  svg::grid g = picture::grid(
      "passkey network: attention weights (key at token 1, question at 11)", axis, axis,
      [](fam::node, fam::node) { return true; }, B);
  g.fill = [w](int i, int j) {
    const double x = w[std::size_t(i)][std::size_t(j)];
    return x < 0.0 ? std::string(picture::kHiddenColour)
                   : svg::shade(std::sqrt(x));  // √: 1/7 shows
  };
  auto name = [axis](int i) {
    const fam::node& x = axis[std::size_t(i)];
    return x.is_fam             ? "φ"
           : x.token == key_pos ? "key"
           : x.token == L - 1   ? "ask"
                                : std::to_string(x.token);
  };
  g.row_label = name;
  g.col_label = name;
  g.legend = {{svg::shade(1.0), "weight 1: the row copies this value"},
              {svg::shade(std::sqrt(1.0 / 7)),
               "weight 1/7 (filler rows: q = 0, uniform over what they see)"},
              {"#ffffff", "weight 0 (visible, exp(-1000) = 0)"},
              {picture::kHiddenColour, "not visible"}};
  return g;
}

}  // namespace passkey
