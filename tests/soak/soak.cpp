// soak: a long stream through a small multi-layer BSWA + FAM decoder stack (SPEC §4 layers with
// random weights), checking as it goes that
//  - no NaN or infinity appears (outputs, Φ);
//  - resident memory stays flat (RSS sampled from /proc/self/statm);
//  - a stack restored from save_state() blobs continues bitwise identically: every
//    --save-every tokens all layers are saved, the stream goes on for a while, then a second
//    stack restored from the blobs replays the same tokens and must give the same bits, and the
//    stream continues on the restored stack;
//  - rewinding speculative tokens changes nothing: every --rewind-every tokens a few tokens are
//    sent and taken back (fam::rewind), and the next chunk must match a fork made before them.
// Chunks cycle through 1, 2, ..., --chunk-max tokens, so decode and prefill both run.
//
//   soak [--tokens N] [--layers N] [--dim N] [--heads H] [--kv-heads H] [--head-dim D]
//        [--hidden N] [--block B] [--memory M] [--fam F] [--chunk-max N] [--save-every N]
//        [--rewind-every N] [--report-every N] [--backend reference|simd] [--seed N]
//        [--rss-slack-kib N]
//
// Prints one line per report (tokens, tokens/s over the interval, RSS) and a summary; exits 1
// on any failed check, 2 on a bad argument.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "fam/fam.hpp"
#if defined(FAM_SOAK_SIMD)
#include "fam/backend/simd.hpp"
#endif

namespace {

using fam::index_t;
using fam::status;
using cfg_t = fam::dynamic_config;
using state_t = fam::layer_state<cfg_t>;

struct options {
  index_t tokens = 200000, layers = 4, dim = 32, heads = 2, kv_heads = 1, head_dim = 16,
          hidden = 64, block = 32, memory = 2, fam = 4, chunk_max = 40, save_every = 50000,
          rewind_every = 7919, report_every = 50000, seed = 1, rss_slack_kib = 1024;
  std::string backend = "simd";
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "soak: %s\n(see the comment at the top of tests/soak/soak.cpp)\n",
               why.c_str());
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  struct flag {
    const char* name;
    index_t* value;
  } flags[] = {{"--tokens", &o.tokens},
               {"--layers", &o.layers},
               {"--dim", &o.dim},
               {"--heads", &o.heads},
               {"--kv-heads", &o.kv_heads},
               {"--head-dim", &o.head_dim},
               {"--hidden", &o.hidden},
               {"--block", &o.block},
               {"--memory", &o.memory},
               {"--fam", &o.fam},
               {"--chunk-max", &o.chunk_max},
               {"--save-every", &o.save_every},
               {"--rewind-every", &o.rewind_every},
               {"--report-every", &o.report_every},
               {"--seed", &o.seed},
               {"--rss-slack-kib", &o.rss_slack_kib}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage("missing value for " + a);
    const std::string v = argv[++i];
    if (a == "--backend") {
      o.backend = v;
      continue;
    }
    bool known = false;
    for (flag& f : flags)
      if (a == f.name) {
        char* end = nullptr;
        *f.value = std::strtoll(v.c_str(), &end, 10);
        if (end == v.c_str() || *end != '\0') usage("not an integer: " + a + " " + v);
        known = true;
      }
    if (!known) usage("unknown option " + a);
  }
  if (o.tokens < 0 || o.layers < 1 || o.dim < 1 || o.heads < 1 || o.kv_heads < 1 ||
      o.heads % o.kv_heads != 0 || o.head_dim < 2 || o.hidden < 1 || o.block < 1 || o.memory < 0 ||
      o.fam < 0 || o.chunk_max < 1 || o.save_every < 1 || o.rewind_every < 1 || o.report_every < 1)
    usage("a size out of range");
  if (o.backend != "reference" && o.backend != "simd") usage("--backend reference|simd");
#if !defined(FAM_SOAK_SIMD)
  if (o.backend == "simd") o.backend = "reference";
#endif
  return o;
}

long rss_kib() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int g_failures = 0;
void fail(const char* what, index_t at) {
  if (g_failures++ < 10)
    std::fprintf(stderr, "soak: FAILED at token %lld: %s\n", (long long)at, what);
}

// ---- the model ------------------------------------------------------------------------------

struct weights {
  std::vector<float> wq, wk, wv, wo, w1, w2;  // [out, in] row-major
};

void matvec(const std::vector<float>& w, const float* x, index_t out, index_t in, float* y) {
  for (index_t o = 0; o < out; ++o) {
    const float* row = w.data() + o * in;
    float s = 0.0f;
    for (index_t i = 0; i < in; ++i) s += row[i] * x[i];
    y[o] = s;
  }
}

void rmsnorm(const float* x, index_t n, float* y) {
  float ss = 0.0f;
  for (index_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / float(n) + 1e-5f);
  for (index_t i = 0; i < n; ++i) y[i] = x[i] * inv;
}

void rope(float* x, index_t heads, index_t hd, index_t pos) {
  for (index_t h = 0; h < heads; ++h)
    for (index_t i = 0; 2 * i + 1 < hd; ++i) {
      const double angle = double(pos) * std::pow(10000.0, -2.0 * double(i) / double(hd));
      const float c = float(std::cos(angle)), s = float(std::sin(angle));
      float& a = x[h * hd + 2 * i];
      float& b = x[h * hd + 2 * i + 1];
      const float a0 = a, b0 = b;
      a = a0 * c - b0 * s;
      b = a0 * s + b0 * c;
    }
}

/// The stack and every buffer it needs, allocated once.
class stack {
 public:
  stack(const options& o, const std::vector<weights>& w, const cfg_t& cfg) : o_(o), w_(w) {
    layers_.resize(static_cast<std::size_t>(o.layers));
    for (state_t& s : layers_)
      if (s.init(cfg) != status::ok) usage("this configuration is not valid");
    const index_t C = std::max(o.chunk_max, o.fam) + 1;
    q_.resize(std::size_t(C * o.heads * o.head_dim));
    k_.resize(std::size_t(C * o.kv_heads * o.head_dim));
    v_.resize(k_.size());
    u_.resize(q_.size());
    x_.resize(std::size_t(C * o.dim));
    y_.resize(x_.size());
    norm_.resize(std::size_t(o.dim));
    hid_.resize(std::size_t(o.hidden));
    phi_.resize(std::size_t(o.fam * o.dim));
    fq_.resize(std::size_t(o.fam * o.heads * o.head_dim));
    fk_.resize(std::size_t(o.fam * o.kv_heads * o.head_dim));
    fv_.resize(fk_.size());
    tmp_.resize(std::size_t(o.dim));
  }
  std::vector<state_t>& layers() { return layers_; }

  /// Installs each layer's initial Φ (fresh).
  void begin(const std::vector<std::vector<float>>& phi0) {
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      std::copy(phi0[l].begin(), phi0[l].end(), phi_.begin());
      install(l, true);
    }
  }

  /// Runs `c` tokens (embeddings in `in` [c, dim]) through every layer; `out` gets the last
  /// layer's outputs. Returns false on a library error.
  template <class Backend>
  bool forward(const float* in, index_t c, float* out, const Backend& be) {
    std::copy(in, in + c * o_.dim, x_.begin());
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      if (!layer(l, c, be)) return false;
      std::copy(y_.begin(), y_.begin() + c * o_.dim, x_.begin());
    }
    std::copy(x_.begin(), x_.begin() + c * o_.dim, out);
    return true;
  }

  double max_phi() const {
    double m = 0.0;
    for (const state_t& s : layers_) {
      const auto p = s.phi();
      for (index_t r = 0; r < p.rows; ++r)
        for (index_t d = 0; d < p.head_dim; ++d) m = std::max(m, std::fabs(double(p.at(r, 0)[d])));
    }
    return m;
  }

 private:
  /// Projects Φ (phi_, [F, dim]) into Qf, Kf, Vf at the FAM positions and installs it.
  void install(std::size_t l, bool first) {
    state_t& st = layers_[l];
    const weights& w = w_[l];
    const index_t F = o_.fam, H = o_.heads, Hkv = o_.kv_heads, hd = o_.head_dim, dim = o_.dim;
    for (index_t r = 0; r < F; ++r) {
      rmsnorm(phi_.data() + r * dim, dim, norm_.data());
      matvec(w.wq, norm_.data(), H * hd, dim, fq_.data() + r * H * hd);
      matvec(w.wk, norm_.data(), Hkv * hd, dim, fk_.data() + r * Hkv * hd);
      matvec(w.wv, norm_.data(), Hkv * hd, dim, fv_.data() + r * Hkv * hd);
      rope(fq_.data() + r * H * hd, H, hd, st.fam_position(r));
      rope(fk_.data() + r * Hkv * hd, Hkv, hd, st.fam_position(r));
    }
    const auto qv = fam::make_view<const float>(fq_.data(), F, H, hd);
    const auto kv = fam::make_view<const float>(fk_.data(), F, Hkv, hd);
    const auto vv = fam::make_view<const float>(fv_.data(), F, Hkv, hd);
    const auto pv = fam::make_view<const float>(phi_.data(), F, 1, dim);
    const status s =
        first ? fam::begin_fam(st, qv, kv, vv, pv) : fam::update_fam(st, qv, kv, vv, pv);
    if (s != status::ok) fail(fam::to_string(s), st.tokens());
  }

  /// Φ[t] = FFN(norm(Af)) + Af, Af = Uf Wo + (fresh ? 0 : Φ[t-1]) (SPEC §4), then install.
  void update(std::size_t l) {
    state_t& st = layers_[l];
    const weights& w = w_[l];
    const index_t F = o_.fam, H = o_.heads, hd = o_.head_dim, dim = o_.dim;
    const auto uf = st.fam_output();
    const auto old = st.phi();
    for (index_t r = 0; r < F; ++r) {
      float* af = phi_.data() + r * dim;
      matvec(w.wo, uf.at(r, 0), dim, H * hd, af);  // Uf rows are [H, hd] contiguous
      if (!st.fresh())
        for (index_t d = 0; d < dim; ++d) af[d] += old.at(r, 0)[d];
      ffn_add(w, af);
    }
    install(l, false);
  }

  /// x += W2 silu(W1 norm(x))
  void ffn_add(const weights& w, float* x) {
    rmsnorm(x, o_.dim, norm_.data());
    matvec(w.w1, norm_.data(), o_.hidden, o_.dim, hid_.data());
    for (float& h : hid_) h = h / (1.0f + std::exp(-h));
    matvec(w.w2, hid_.data(), o_.dim, o_.hidden, tmp_.data());
    for (index_t d = 0; d < o_.dim; ++d) x[d] += tmp_[std::size_t(d)];
  }

  template <class Backend>
  bool layer(std::size_t l, index_t c, const Backend& be) {
    state_t& st = layers_[l];
    const weights& w = w_[l];
    const index_t H = o_.heads, Hkv = o_.kv_heads, hd = o_.head_dim, dim = o_.dim;
    for (index_t i = 0; i < c; ++i) {
      rmsnorm(x_.data() + i * dim, dim, norm_.data());
      matvec(w.wq, norm_.data(), H * hd, dim, q_.data() + i * H * hd);
      matvec(w.wk, norm_.data(), Hkv * hd, dim, k_.data() + i * Hkv * hd);
      matvec(w.wv, norm_.data(), Hkv * hd, dim, v_.data() + i * Hkv * hd);
      rope(q_.data() + i * H * hd, H, hd, st.token_position(i));
      rope(k_.data() + i * Hkv * hd, Hkv, hd, st.token_position(i));
    }
    const auto qv = fam::make_view<const float>(q_.data(), c, H, hd);
    const auto kv = fam::make_view<const float>(k_.data(), c, Hkv, hd);
    const auto vv = fam::make_view<const float>(v_.data(), c, Hkv, hd);
    const auto uv = fam::make_view(u_.data(), c, H, hd);
    for (index_t done = 0, n = 0; done < c; done += n) {
      const status s =
          fam::attend(st, qv.rows_from(done, c - done), kv.rows_from(done, c - done),
                      vv.rows_from(done, c - done), uv.rows_from(done, c - done), {}, &n, be);
      if (s != status::ok) {
        fail(fam::to_string(s), st.tokens());
        return false;
      }
      if (st.phase() == fam::fam_phase::pending) update(l);
    }
    for (index_t i = 0; i < c; ++i) {
      float* y = y_.data() + i * dim;
      matvec(w.wo, u_.data() + i * H * hd, dim, H * hd, y);
      for (index_t d = 0; d < dim; ++d) y[d] += x_[std::size_t(i * dim + d)];
      ffn_add(w, y);
    }
    return true;
  }

  const options& o_;
  const std::vector<weights>& w_;
  std::vector<state_t> layers_;
  std::vector<float> q_, k_, v_, u_, x_, y_, norm_, hid_, phi_, tmp_;  // chunk rows, scratch
  std::vector<float> fq_, fk_, fv_;                                    // FAM projections
};

// ---- the soak ---------------------------------------------------------------------------------

template <class Backend>
int soak(const options& o, const Backend& be) {
  std::mt19937_64 gen(static_cast<std::uint64_t>(o.seed));
  auto random = [&](std::size_t n, float scale) {
    std::uniform_real_distribution<float> d(-scale, scale);
    std::vector<float> x(n);
    for (float& f : x) f = d(gen);
    return x;
  };
  const index_t H = o.heads, Hkv = o.kv_heads, hd = o.head_dim, dim = o.dim;
  std::vector<weights> w(static_cast<std::size_t>(o.layers));
  for (weights& l : w) {
    const float si = 1.0f / std::sqrt(float(dim)), so = 1.0f / std::sqrt(float(H * hd));
    l.wq = random(std::size_t(H * hd * dim), si);
    l.wk = random(std::size_t(Hkv * hd * dim), si);
    l.wv = random(std::size_t(Hkv * hd * dim), si);
    l.wo = random(std::size_t(dim * H * hd), 0.5f * so);
    l.w1 = random(std::size_t(o.hidden * dim), si);
    l.w2 = random(std::size_t(dim * o.hidden), 0.5f / std::sqrt(float(o.hidden)));
  }
  constexpr index_t kVocab = 257;
  const std::vector<float> embed = random(std::size_t(kVocab * dim), 1.0f);
  std::vector<std::vector<float>> phi0;
  for (index_t l = 0; l < o.layers; ++l) phi0.push_back(random(std::size_t(o.fam * dim), 1.0f));
  auto token_at = [](index_t n) {  // the stream: a hash of the position
    std::uint64_t z = static_cast<std::uint64_t>(n) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
    return static_cast<index_t>((z ^ (z >> 32)) % kVocab);
  };

  cfg_t cfg(hd, o.block, o.memory, o.fam);
  cfg.set_heads(H, Hkv);
  cfg.phi_dim = dim;
  stack main(o, w, cfg), spare(o, w, cfg);
  stack* cur = &main;
  stack* other = &spare;
  cur->begin(phi0);

  const index_t C = o.chunk_max;
  std::vector<float> in(std::size_t(C * dim)), out(std::size_t(C * dim)),
      out2(std::size_t(C * dim));
  auto embed_chunk = [&](index_t first, index_t c, bool garbage) {
    for (index_t i = 0; i < c; ++i) {
      const index_t t =
          garbage ? (token_at(first + i + 7777777) + 13) % kVocab : token_at(first + i);
      std::copy_n(embed.begin() + t * dim, dim, in.begin() + i * dim);
    }
  };
  // save/restore: blobs of every layer, the tokens that follow, their outputs
  std::vector<std::vector<unsigned char>> blobs(static_cast<std::size_t>(o.layers));
  for (std::size_t l = 0; l < blobs.size(); ++l)
    blobs[l].resize(fam::serialized_size(cur->layers()[l]));
  const index_t verify_len = 2 * o.block + 3;
  std::vector<float> verify_out(std::size_t((verify_len + C) * dim));
  index_t verify_from = -1, verify_have = 0;
  std::vector<index_t> verify_chunks;

  index_t pos = 0, chunk_i = 0, restores = 0, rewinds = 0, next_save = o.save_every,
          next_rewind = o.rewind_every, next_report = o.report_every;
  long rss_first = -1, rss_max = 0, rss_last = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto t_last = t0;
  index_t pos_last = 0;
  std::printf(
      "soak: %lld tokens, %lld layers, dim %lld, H %lld, Hkv %lld, D %lld, B %lld, M %lld, "
      "F %lld, chunks 1..%lld, backend %s\n",
      (long long)o.tokens, (long long)o.layers, (long long)dim, (long long)H, (long long)Hkv,
      (long long)hd, (long long)o.block, (long long)o.memory, (long long)o.fam, (long long)C,
      o.backend.c_str());
  std::printf("%12s %10s %10s %12s %10s %10s\n", "tokens", "seconds", "cpu_s", "tokens/s",
              "rss_kib", "max|phi|");

  while (pos < o.tokens && g_failures == 0) {
    const index_t c = std::min<index_t>(1 + chunk_i++ % C, o.tokens - pos);
    state_t& first = cur->layers()[0];

    // speculative tokens sent and taken back (never completing a block)
    if (pos >= next_rewind && verify_from < 0) {
      next_rewind += o.rewind_every;
      const index_t room = o.block - first.block_offset() - 1;
      if (room >= 1 && first.phase() != fam::fam_phase::pending) {
        for (std::size_t l = 0; l < blobs.size(); ++l)
          if (fam::copy_state(other->layers()[l], cur->layers()[l]) != status::ok)
            fail("copy_state", pos);
        const index_t s = std::min<index_t>(room, 1 + rewinds % 3);
        embed_chunk(pos, s, true);
        if (!cur->forward(in.data(), s, out.data(), be)) break;
        for (state_t& st : cur->layers())
          if (fam::rewind(st, s) != status::ok) fail("rewind", pos);
        ++rewinds;
        embed_chunk(pos, c, false);
        if (!cur->forward(in.data(), c, out.data(), be) ||
            !other->forward(in.data(), c, out2.data(), be))
          break;
        if (std::memcmp(out.data(), out2.data(), sizeof(float) * std::size_t(c * dim)) != 0)
          fail("the stream after a rewind differs from the fork made before it", pos);
        pos += c;
        continue;
      }
    }

    // save every layer; remember what follows
    if (pos >= next_save && verify_from < 0) {
      next_save += o.save_every;
      for (std::size_t l = 0; l < blobs.size(); ++l)
        if (fam::save_state(cur->layers()[l], blobs[l].data(), blobs[l].size()) != status::ok)
          fail("save_state", pos);
      verify_from = pos;
      verify_have = 0;
      verify_chunks.clear();
    }

    embed_chunk(pos, c, false);
    if (!cur->forward(in.data(), c, out.data(), be)) break;
    for (index_t i = 0; i < c * dim; ++i)
      if (!std::isfinite(out[std::size_t(i)])) {
        fail("a non-finite output", pos + i / dim);
        break;
      }
    if (verify_from >= 0) {
      std::copy_n(out.begin(), c * dim, verify_out.begin() + verify_have * dim);
      verify_have += c;
      verify_chunks.push_back(c);
      if (verify_have >= verify_len) {  // restore, replay, compare, continue restored
        for (std::size_t l = 0; l < blobs.size(); ++l)
          if (fam::restore_state(other->layers()[l], blobs[l].data(), blobs[l].size()) !=
              status::ok)
            fail("restore_state", pos);
        index_t at = verify_from;
        for (index_t cc : verify_chunks) {
          embed_chunk(at, cc, false);
          if (!other->forward(in.data(), cc, out2.data(), be)) break;
          if (std::memcmp(out2.data(), verify_out.data() + (at - verify_from) * dim,
                          sizeof(float) * std::size_t(cc * dim)) != 0)
            fail("a restored stack does not continue bitwise identically", at);
          at += cc;
        }
        std::swap(cur, other);
        ++restores;
        verify_from = -1;
      }
    }
    pos += c;

    if (pos >= next_report || pos >= o.tokens) {
      next_report += o.report_every;
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - t_last).count();
      const double total = std::chrono::duration<double>(now - t0).count();
      rss_last = rss_kib();
      if (rss_first < 0) rss_first = rss_last;
      rss_max = std::max(rss_max, rss_last);
      const double mp = cur->max_phi();
      if (!std::isfinite(mp)) fail("a non-finite Φ", pos);
      std::printf("%12lld %10.1f %10.1f %12.0f %10ld %10.3g\n", (long long)pos, total,
                  double(std::clock()) / CLOCKS_PER_SEC,
                  double(pos - pos_last) / std::max(dt, 1e-9), rss_last, mp);
      std::fflush(stdout);
      t_last = now;
      pos_last = pos;
    }
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = double(std::clock()) / CLOCKS_PER_SEC;
  const long growth = rss_max - rss_first;
  if (growth > o.rss_slack_kib) fail("resident memory grew beyond the slack", pos);
  std::printf(
      "soak: %s: %lld tokens in %.1f s, %.1f s of CPU (%.0f tokens/s, %.0f per CPU "
      "second, %lld layers), %lld save/restore checks, %lld rewinds; RSS first report %ld "
      "KiB, max %ld KiB, last %ld KiB (growth %ld KiB, slack %lld)\n",
      g_failures == 0 ? "ok" : "FAILED", (long long)pos, total, cpu,
      double(pos) / std::max(total, 1e-9), double(pos) / std::max(cpu, 1e-9), (long long)o.layers,
      (long long)restores, (long long)rewinds, rss_first, rss_max, rss_last, growth,
      (long long)o.rss_slack_kib);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
#if defined(FAM_SOAK_SIMD)
  if (o.backend == "simd") return soak(o, fam::simd_backend<>{});
#endif
  return soak(o, fam::reference_backend{});
}
