// Drives a layer_state through the public streaming API with a given chunking, using the
// weight-free FAM loop of SPEC §6 (Qf = Kf = Vf = Φ, Φ[t] = Uf) when F > 0.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <vector>

#include "fam/fam.hpp"
#include "support/util.hpp"

namespace testing {

using config = fam::attention_config<>;

/// Chunk size of the call that starts at token `done` of a sequence of `length`.
using chunker = std::function<fam::index_t(fam::index_t done, fam::index_t length)>;

inline chunker fixed_chunks(fam::index_t c) {
  return [c](fam::index_t, fam::index_t) { return c; };
}
inline chunker random_chunks(std::uint64_t seed, fam::index_t max_chunk) {
  auto gen = std::make_shared<rng>(seed);
  return [gen, max_chunk](fam::index_t, fam::index_t) { return gen->integer(1, max_chunk); };
}

struct stream_io {
  fam::index_t L, H, Hkv, D;
  std::vector<float> q, k, v;  // [L, H, D], [L, Hkv, D], [L, Hkv, D]
};

struct stream_result {
  std::vector<float> out, lse;  // [L, H, D], [L, H]
  std::vector<float> phi;       // [F, H, D] after the last complete block
  fam::index_t calls = 0;
};

/// Installs Φ (rows [F, H, D], H == Hkv) as Qf = Kf = Vf.
inline fam::status install_weight_free(fam::layer_state<config>& st, const std::vector<float>& phi,
                                       bool first) {
  const config& c = st.config();
  const auto view = fam::make_view<const float>(phi.data(), c.fam_len(), c.heads, c.head_dim());
  return first ? fam::begin_fam(st, view, view, view) : fam::update_fam(st, view, view, view);
}

/// Feeds io through `st` (already initialized, FAM not yet begun) in chunks.
/// `after_call` (optional) runs after every call, e.g. to poison dead ring rows.
inline stream_result stream(fam::layer_state<config>& st, const stream_io& io,
                            const std::vector<float>& phi0, const chunker& chunks,
                            const std::function<void(fam::layer_state<config>&)>& after_call = {}) {
  const config& c = st.config();
  stream_result r{std::vector<float>(io.L * io.H * io.D, -9.0f),
                  std::vector<float>(io.L * io.H, -9.0f), phi0, 0};
  if (c.fam_len() > 0) REQUIRE(install_weight_free(st, r.phi, true) == fam::status::ok);
  const auto q = fam::make_view<const float>(io.q.data(), io.L, io.H, io.D);
  const auto k = fam::make_view<const float>(io.k.data(), io.L, io.Hkv, io.D);
  const auto v = fam::make_view<const float>(io.v.data(), io.L, io.Hkv, io.D);
  const auto out = fam::make_view(r.out.data(), io.L, io.H, io.D);
  const auto lse = fam::make_lse_view(r.lse.data(), io.H);
  fam::index_t done = 0;
  while (done < io.L) {
    const fam::index_t want = std::min(chunks(done, io.L), io.L - done);
    fam::index_t got = -1;
    REQUIRE(fam::attend(st, q.rows_from(done, want), k.rows_from(done, want),
                        v.rows_from(done, want), out.rows_from(done, want), lse.rows_from(done),
                        &got) == fam::status::ok);
    REQUIRE(got >= 1);
    REQUIRE(got <= want);
    done += got;
    ++r.calls;
    if (st.phase() == fam::fam_phase::pending) {
      const auto uf = st.fam_output();  // Φ[t] = Uf (SPEC §6)
      for (fam::index_t i = 0; i < uf.rows; ++i)
        for (fam::index_t h = 0; h < uf.heads; ++h)
          std::copy_n(uf.at(i, h), io.D, &r.phi[(i * io.H + h) * io.D]);
      REQUIRE(install_weight_free(st, r.phi, false) == fam::status::ok);
    }
    if (after_call) after_call(st);
  }
  return r;
}

}  // namespace testing
