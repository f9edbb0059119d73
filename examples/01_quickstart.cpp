// 01 quickstart: one header, BSWA over a whole sequence, then FAM streamed block by block.
#include <cstdio>
#include <vector>

#include "fam/fam.hpp"

int main() {
  using config = fam::attention_config<8, 4, 1, 2>;  // D = 8, B = 4, M = 1, F = 2
  config cfg;
  cfg.set_heads(2, 1);  // MQA: two query heads share one kv head
  const fam::index_t L = 10, H = 2, D = 8;
  std::vector<float> q(L * H * D), k(L * D), v(L * D), out(L * H * D);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = float(i % 5) * 0.1f;
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = float(i % 3) * 0.2f, v[i] = float(i % 7);
  auto Q = fam::make_view<const float>(q.data(), L, H, D);
  auto K = fam::make_view<const float>(k.data(), L, 1, D);
  auto V = fam::make_view<const float>(v.data(), L, 1, D);

  // BSWA: each token sees its block (causally) and the previous M = 1 block.
  auto st =
      fam::attention(cfg, fam::mask_spec::bswa(4, 1), Q, K, V, fam::make_view(out.data(), L, H, D));
  std::printf("bswa: %s, out[9][0][0] = %.4f\n", fam::to_string(st), out[(9 * H) * D]);

  // FAM, weight-free (the state's projections are the FAM rows themselves): stream the tokens,
  // and install Uf as the next state whenever a block completes.
  fam::layer_state<config> layer;
  if (layer.init(cfg) != fam::status::ok) return 1;
  std::vector<float> phi(2 * H * D, 0.5f), phi_kv(2 * D, 0.5f);
  auto install = [&](bool first) {
    auto qf = fam::make_view<const float>(phi.data(), 2, H, D);
    auto kvf = fam::make_view<const float>(phi_kv.data(), 2, 1, D);
    return first ? fam::begin_fam(layer, qf, kvf, kvf) : fam::update_fam(layer, qf, kvf, kvf);
  };
  if (install(true) != fam::status::ok) return 1;
  for (fam::index_t done = 0, n = 0; done < L; done += n) {
    st = fam::attend(layer, Q.rows_from(done, L - done), K.rows_from(done, L - done),
                     V.rows_from(done, L - done),
                     fam::make_view(out.data(), L, H, D).rows_from(done, L - done), {}, &n);
    if (st != fam::status::ok) return 1;
    if (layer.phase() == fam::fam_phase::pending) {  // block complete: Φ[t] = Uf (head 0 as kv)
      auto uf = layer.fam_output();
      for (fam::index_t r = 0; r < 2; ++r)
        for (fam::index_t d = 0; d < D; ++d) {
          for (fam::index_t h = 0; h < H; ++h) phi[(r * H + h) * D + d] = uf.at(r, h)[d];
          phi_kv[r * D + d] = uf.at(r, 0)[d];
        }
      if (install(false) != fam::status::ok) return 1;
      std::printf("fam: block %lld done, Phi[0][0] = %.4f\n", (long long)(layer.tokens() / 4 - 1),
                  phi[0]);
    }
  }
  std::printf("fam: %lld tokens, out[9][0][0] = %.4f\n", (long long)layer.tokens(),
              out[(9 * H) * D]);
  return 0;
}
