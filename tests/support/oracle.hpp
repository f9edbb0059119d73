// oracle.hpp: an independent float64 reference for the fam library (test support).
//
// Written straight from SPEC.md with plain loops, so that it can check every backend and double
// as a teaching implementation. It includes nothing from include/: every mask is written out
// inline as the inequality SPEC.md states. Nothing here is fast; everything here is meant to be
// obviously right.
//
// Layouts: every tensor is a contiguous row-major std::vector<double>. Token tensors are
// [rows, heads, D]: element (r, h, d) lives at (r * heads + h) * D + d. Model activations are
// [rows, dim]. Weights follow llama2.c: y = W x with W stored [out, in] row-major.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace oracle {

using vec = std::vector<double>;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

inline void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("oracle: ") + what);
}

inline std::size_t sz(int64_t n) { return static_cast<std::size_t>(n); }

// Offset of element (r, h, d) in a [rows, heads, D] tensor.
inline std::size_t at(int64_t r, int64_t h, int64_t d, int64_t heads, int64_t D) {
  return sz((r * heads + h) * D + d);
}

// Pointer to the D-vector of row r, head h in a [rows, heads, D] tensor.
inline const double* row_ptr(const vec& x, int64_t r, int64_t h, int64_t heads, int64_t D) {
  return x.data() + at(r, h, 0, heads, D);
}

// SPEC §1: query head h reads kv head h / (H / Hkv).
inline int kv_head(int h, int H, int Hkv) { return h / (H / Hkv); }

// Rows [r0, r1) of a row-major tensor whose rows are `width` wide.
inline vec slice_rows(const vec& x, int64_t r0, int64_t r1, int64_t width) {
  return vec(x.begin() + r0 * width, x.begin() + r1 * width);
}

inline double dot(const double* a, const double* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline void check_heads(int H, int Hkv, int D) {
  require(H >= 1 && Hkv >= 1 && D >= 1, "H, Hkv and D must be >= 1");
  require(H % Hkv == 0, "H must be a multiple of Hkv (SPEC §1)");
}

// ---------------------------------------------------------------------------------------------
// One attention row: softmax(scale * q.K^T) V over an explicit list of visible keys (SPEC §2).
// ---------------------------------------------------------------------------------------------

struct row_result {
  vec out;     // [D]
  double lse;  // log sum_j exp(scale * q.k_j); -infinity when no key is visible
};

// keys[j], vals[j] point at D-vectors. The max logit is subtracted before exp (SPEC §7.6), so
// logits of magnitude 1e4 stay finite. No visible key: out = 0, lse = -infinity.
inline row_result attend_row(const double* q, const std::vector<const double*>& keys,
                             const std::vector<const double*>& vals, int64_t D, double scale) {
  row_result res{vec(sz(D), 0.0), -std::numeric_limits<double>::infinity()};
  if (keys.empty()) return res;

  vec logit(keys.size());
  double mx = -std::numeric_limits<double>::infinity();
  for (std::size_t j = 0; j < keys.size(); ++j) {
    logit[j] = scale * dot(q, keys[j], D);
    mx = std::max(mx, logit[j]);
  }
  double sum = 0.0;
  for (std::size_t j = 0; j < keys.size(); ++j) {
    const double p = std::exp(logit[j] - mx);
    sum += p;
    for (int64_t d = 0; d < D; ++d) res.out[sz(d)] += p * vals[j][d];
  }
  for (double& o : res.out) o /= sum;
  res.lse = mx + std::log(sum);
  return res;
}

// ---------------------------------------------------------------------------------------------
// SPEC §2: token attention with the full causal, token window and BSWA masks.
// ---------------------------------------------------------------------------------------------

enum class mask { full, window, bswa };

struct attn_result {
  vec out;  // [L, H, D]
  vec lse;  // [L, H]
};

// Does query token n see key token m? (SPEC §2, written as the inequalities themselves.)
inline bool token_visible(mask kind, int64_t W, int64_t B, int64_t M, int64_t n, int64_t m) {
  switch (kind) {
    case mask::full:
      return m <= n;
    case mask::window:
      return n - W < m && m <= n;
    case mask::bswa:
      return m <= n && m / B + M >= n / B;  // block(m) + M >= block(n); n, m >= 0
  }
  return false;
}

// W is used only for mask::window, B and M only for mask::bswa.
inline attn_result token_attention(mask kind, int64_t W, int64_t B, int64_t M, int64_t L, int H,
                                   int Hkv, int D, double scale, const vec& q /*[L,H,D]*/,
                                   const vec& k /*[L,Hkv,D]*/, const vec& v /*[L,Hkv,D]*/) {
  check_heads(H, Hkv, D);
  require(L >= 0, "L must be >= 0");
  require(kind != mask::window || W >= 1, "window needs W >= 1");
  require(kind != mask::bswa || (B >= 1 && M >= 0), "bswa needs B >= 1 and M >= 0");
  require(q.size() == sz(L * H * D), "q must be [L, H, D]");
  require(k.size() == sz(L * Hkv * D) && v.size() == k.size(), "k, v must be [L, Hkv, D]");

  attn_result res{vec(sz(L * H * D), 0.0), vec(sz(L * H), 0.0)};
  for (int64_t n = 0; n < L; ++n) {
    for (int h = 0; h < H; ++h) {
      const int g = kv_head(h, H, Hkv);
      std::vector<const double*> keys, vals;  // the visible key rows, gathered explicitly
      for (int64_t m = 0; m < L; ++m) {
        if (!token_visible(kind, W, B, M, n, m)) continue;
        keys.push_back(row_ptr(k, m, g, Hkv, D));
        vals.push_back(row_ptr(v, m, g, Hkv, D));
      }
      const row_result r = attend_row(row_ptr(q, n, h, H, D), keys, vals, D, scale);
      std::copy(r.out.begin(), r.out.end(), res.out.begin() + at(n, h, 0, H, D));
      res.lse[sz(n * H + h)] = r.lse;
    }
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// SPEC §3: one fused FAM attention for one block.
// Key columns: [memory (Lm rows) | FAM (F rows) | block (b rows)].
//   token row i : all memory, all FAM, block keys 0..i (causal)
//   FAM row r   : no memory,  all FAM, all b block keys
// ---------------------------------------------------------------------------------------------

struct fam_block_result {
  vec ut;     // [b, H, D]  token outputs
  vec uf;     // [F, H, D]  FAM outputs
  vec lse_t;  // [b, H]
  vec lse_f;  // [F, H]
};

inline fam_block_result fam_block(int64_t Lm, int64_t F, int64_t b, int H, int Hkv, int D,
                                  double scale, const vec& km, const vec& vm,  // [Lm, Hkv, D]
                                  const vec& qf, const vec& kf,
                                  const vec& vf,  // qf [F, H, D], kf/vf [F, Hkv, D]
                                  const vec& q, const vec& k,
                                  const vec& v) {  // q [b, H, D], k/v [b, Hkv, D]
  check_heads(H, Hkv, D);
  require(Lm >= 0 && F >= 0 && b >= 0, "Lm, F, b must be >= 0");
  require(km.size() == sz(Lm * Hkv * D) && vm.size() == km.size(), "km, vm must be [Lm, Hkv, D]");
  require(qf.size() == sz(F * H * D), "qf must be [F, H, D]");
  require(kf.size() == sz(F * Hkv * D) && vf.size() == kf.size(), "kf, vf must be [F, Hkv, D]");
  require(q.size() == sz(b * H * D), "q must be [b, H, D]");
  require(k.size() == sz(b * Hkv * D) && v.size() == k.size(), "k, v must be [b, Hkv, D]");

  fam_block_result res{vec(sz(b * H * D), 0.0), vec(sz(F * H * D), 0.0), vec(sz(b * H), 0.0),
                       vec(sz(F * H), 0.0)};
  for (int h = 0; h < H; ++h) {
    const int g = kv_head(h, H, Hkv);  // FAM rows use the same kv head as token rows (SPEC §3)

    // Token rows: memory columns, FAM columns, block columns 0..i.
    for (int64_t i = 0; i < b; ++i) {
      std::vector<const double*> keys, vals;
      for (int64_t j = 0; j < Lm; ++j) {
        keys.push_back(row_ptr(km, j, g, Hkv, D));
        vals.push_back(row_ptr(vm, j, g, Hkv, D));
      }
      for (int64_t r = 0; r < F; ++r) {
        keys.push_back(row_ptr(kf, r, g, Hkv, D));
        vals.push_back(row_ptr(vf, r, g, Hkv, D));
      }
      for (int64_t j = 0; j <= i; ++j) {
        keys.push_back(row_ptr(k, j, g, Hkv, D));
        vals.push_back(row_ptr(v, j, g, Hkv, D));
      }
      const row_result rr = attend_row(row_ptr(q, i, h, H, D), keys, vals, D, scale);
      std::copy(rr.out.begin(), rr.out.end(), res.ut.begin() + at(i, h, 0, H, D));
      res.lse_t[sz(i * H + h)] = rr.lse;
    }

    // FAM rows: no memory, all FAM columns (bidirectional), all b block columns.
    for (int64_t r = 0; r < F; ++r) {
      std::vector<const double*> keys, vals;
      for (int64_t r2 = 0; r2 < F; ++r2) {
        keys.push_back(row_ptr(kf, r2, g, Hkv, D));
        vals.push_back(row_ptr(vf, r2, g, Hkv, D));
      }
      for (int64_t j = 0; j < b; ++j) {
        keys.push_back(row_ptr(k, j, g, Hkv, D));
        vals.push_back(row_ptr(v, j, g, Hkv, D));
      }
      const row_result rr = attend_row(row_ptr(qf, r, h, H, D), keys, vals, D, scale);
      std::copy(rr.out.begin(), rr.out.end(), res.uf.begin() + at(r, h, 0, H, D));
      res.lse_f[sz(r * H + h)] = rr.lse;
    }
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// SPEC §6: the weight-free FAM loop (MHA only). Per block t: Qf = Kf = Vf = Phi[t-1]; tokens see
// memory blocks max(0, t-M)..t-1, Phi[t-1] and their own block causally. A complete block sets
// Phi[t] = Uf; a partial last block leaves Phi alone.
// ---------------------------------------------------------------------------------------------

struct fam_seq_result {
  vec out;  // [L, H, D]
  vec lse;  // [L, H]
  vec phi;  // [F, H, D] state after the last complete block
};

inline fam_seq_result fam_weight_free(int64_t B, int64_t M, int64_t F, int64_t L, int H, int D,
                                      double scale, const vec& q, const vec& k, const vec& v,
                                      const vec& phi0 /*[F,H,D]*/) {
  require(B >= 1 && M >= 0 && F >= 0 && L >= 0, "need B >= 1, M >= 0, F >= 0, L >= 0");
  require(H >= 1 && D >= 1, "H and D must be >= 1");
  require(q.size() == sz(L * H * D) && k.size() == q.size() && v.size() == q.size(),
          "q, k, v must be [L, H, D]");
  require(phi0.size() == sz(F * H * D), "phi0 must be [F, H, D]");

  const int64_t row = int64_t{H} * D;  // width of one token row
  fam_seq_result res{vec(sz(L * row), 0.0), vec(sz(L * H), 0.0), phi0};
  for (int64_t t = 0; t * B < L; ++t) {
    const int64_t n0 = t * B;                            // first token of block t
    const int64_t b = std::min(B, L - n0);               // tokens in block t (b < B: partial)
    const int64_t m0 = std::max<int64_t>(0, t - M) * B;  // first memory token
    const vec km = slice_rows(k, m0, n0, row), vm = slice_rows(v, m0, n0, row);  // [Lm, H, D]
    const vec qb = slice_rows(q, n0, n0 + b, row), kb = slice_rows(k, n0, n0 + b, row),
              vb = slice_rows(v, n0, n0 + b, row);  // [b, H, D]
    const vec& phi = res.phi;                       // Phi[t-1] is Qf, Kf and Vf
    const fam_block_result fb =
        fam_block(n0 - m0, F, b, H, H, D, scale, km, vm, phi, phi, phi, qb, kb, vb);

    std::copy(fb.ut.begin(), fb.ut.end(), res.out.begin() + n0 * row);
    std::copy(fb.lse_t.begin(), fb.lse_t.end(), res.lse.begin() + n0 * H);
    if (b == B) res.phi = fb.uf;  // only a complete block updates Phi (no residual, SPEC §6)
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// SPEC §4: a dense float64 model with FAM: a stack of pre-norm (llama style) decoder layers.
// ---------------------------------------------------------------------------------------------

struct layer_weights {  // llama2.c layout: y = W x, W is [out, in] row-major
  vec ln1;              // [dim]   RMSNorm weight (eps 1e-5)
  vec wq;               // [H*hd, dim]
  vec wk, wv;           // [Hkv*hd, dim]
  vec wo;               // [dim, H*hd]
  vec ln2;              // [dim]
  vec w1, w3;           // [hidden, dim]
  vec w2;               // [dim, hidden]    FFN(x) = w2 (silu(w1 x) * (w3 x))
};

struct model_shape {
  int dim, hidden, H, Hkv, head_dim;
  int64_t B, M, F;
};

struct model_result {
  std::vector<vec> layer_out;                 // [n_layers][L, dim]
  std::vector<vec> phi;                       // [n_layers][F, dim] after the last complete block
  std::vector<std::vector<vec>> phi_history;  // [n_layers][completed blocks][F, dim]
};

// y = x / sqrt(mean(x^2) + 1e-5) * w
inline vec rmsnorm(const vec& x, const vec& w) {
  double ss = 0.0;
  for (double xi : x) ss += xi * xi;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + 1e-5);
  vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

// y = W x with W [out, in] row-major.
inline vec matvec(const vec& W, const vec& x, int64_t out, int64_t in) {
  vec y(sz(out));
  for (int64_t o = 0; o < out; ++o) y[sz(o)] = dot(W.data() + o * in, x.data(), in);
  return y;
}

inline double silu(double x) { return x / (1.0 + std::exp(-x)); }

// FFN(x) = w2 (silu(w1 x) * (w3 x)).   x: [dim] -> [dim]
inline vec ffn(const layer_weights& w, const vec& x, int dim, int hidden) {
  const vec a = matvec(w.w1, x, hidden, dim), g = matvec(w.w3, x, hidden, dim);
  vec h(sz(hidden));
  for (int i = 0; i < hidden; ++i) h[sz(i)] = silu(a[sz(i)]) * g[sz(i)];
  return matvec(w.w2, h, dim, hidden);
}

// RoPE in place on x = [heads, hd]: pair (2i, 2i+1) of every head turns by pos * 10000^(-2i/hd).
inline void rope(vec& x, int heads, int hd, int64_t pos) {
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; 2 * i + 1 < hd; ++i) {
      const double angle = static_cast<double>(pos) * std::pow(10000.0, -2.0 * i / hd);
      const double c = std::cos(angle), s = std::sin(angle);
      double& a = x[sz(h * hd + 2 * i)];
      double& b = x[sz(h * hd + 2 * i + 1)];
      const double a0 = a, b0 = b;
      a = a0 * c - b0 * s;
      b = a0 * s + b0 * c;
    }
  }
}

// SPEC §1 and §4: positions. Token n sits at n + offset; FAM row r used with block t (the rows of
// Phi[t-1]) sits at t*B - F + r + offset.
inline int64_t token_position(int64_t n, int64_t offset) { return n + offset; }
inline int64_t fam_position(int64_t t, int64_t B, int64_t F, int64_t r, int64_t offset) {
  return t * B - F + r + offset;
}

// What one layer produces for one block.
struct layer_block_result {
  vec out;       // [b, dim]  Out = FFN(LN2(A)) + A
  vec phi_next;  // [F, dim]  Phi[t] = FFN(LN2(Af)) + Af (use only when the block is complete)
};

// One layer on block t (SPEC §4). x_blk: [b, dim] this block's inputs; phi: [F, dim] = Phi[t-1].
// kc, vc: [L, Hkv*hd] this layer's token keys (after RoPE) and values; the block's rows are
// written here, and the memory rows of blocks max(0, t-M)..t-1 are read from here.
inline layer_block_result layer_block(const model_shape& s, const layer_weights& w, int64_t t,
                                      int64_t b, int64_t offset, const vec& x_blk, const vec& phi,
                                      bool fresh, vec& kc, vec& vc) {
  const int64_t F = s.F, hd = s.head_dim, qw = s.H * hd, kw = s.Hkv * hd, n0 = t * s.B;

  // Z = [Phi[t-1]; X]: rows 0..F-1 are FAM rows, rows F..F+b-1 the block tokens.
  // Q, K, V = RoPE(LN1(Z) Wq), RoPE(LN1(Z) Wk), LN1(Z) Wv.
  vec Q(sz((F + b) * qw)), K(sz((F + b) * kw)), V(sz((F + b) * kw));  // [F+b, H|Hkv, hd]
  for (int64_t j = 0; j < F + b; ++j) {
    const bool fam = j < F;
    const vec z =
        fam ? slice_rows(phi, j, j + 1, s.dim) : slice_rows(x_blk, j - F, j - F + 1, s.dim);
    const int64_t pos =
        fam ? fam_position(t, s.B, F, j, offset) : token_position(n0 + j - F, offset);
    const vec zn = rmsnorm(z, w.ln1);
    vec qj = matvec(w.wq, zn, qw, s.dim), kj = matvec(w.wk, zn, kw, s.dim);
    const vec vj = matvec(w.wv, zn, kw, s.dim);
    rope(qj, s.H, s.head_dim, pos);
    rope(kj, s.Hkv, s.head_dim, pos);
    std::copy(qj.begin(), qj.end(), Q.begin() + j * qw);
    std::copy(kj.begin(), kj.end(), K.begin() + j * kw);
    std::copy(vj.begin(), vj.end(), V.begin() + j * kw);
  }
  // The block's token keys/values join this layer's cache (FAM keys never do, SPEC §3).
  std::copy(K.begin() + F * kw, K.end(), kc.begin() + n0 * kw);
  std::copy(V.begin() + F * kw, V.end(), vc.begin() + n0 * kw);

  // SPEC §3 attention, scale 1/sqrt(hd). In Z order: FAM row r sees Z rows 0..F+b-1; token i
  // (Z row F+i) sees the memory tokens m0..n0-1 and Z rows 0..F+i.
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const int64_t m0 = std::max<int64_t>(0, t - s.M) * s.B;
  vec U(sz((F + b) * qw));  // [F+b, H, hd]
  for (int64_t j = 0; j < F + b; ++j) {
    const bool fam = j < F;
    for (int h = 0; h < s.H; ++h) {
      const int g = kv_head(h, s.H, s.Hkv);
      std::vector<const double*> keys, vals;
      if (!fam) {  // memory columns: token rows only
        for (int64_t m = m0; m < n0; ++m) {
          keys.push_back(row_ptr(kc, m, g, s.Hkv, hd));
          vals.push_back(row_ptr(vc, m, g, s.Hkv, hd));
        }
      }
      const int64_t last = fam ? F + b - 1 : j;  // FAM: everything; token: causal
      for (int64_t c = 0; c <= last; ++c) {
        keys.push_back(row_ptr(K, c, g, s.Hkv, hd));
        vals.push_back(row_ptr(V, c, g, s.Hkv, hd));
      }
      const row_result rr = attend_row(row_ptr(Q, j, h, s.H, hd), keys, vals, hd, scale);
      std::copy(rr.out.begin(), rr.out.end(), U.begin() + at(j, h, 0, s.H, hd));
    }
  }

  // Output projection, residual, FFN: A = Ut Wo + X, Af = Uf Wo + (fresh ? 0 : Phi[t-1]).
  layer_block_result res{vec(sz(b * s.dim)), vec(sz(F * s.dim))};
  for (int64_t j = 0; j < F + b; ++j) {
    const bool fam = j < F;
    vec a = matvec(w.wo, slice_rows(U, j, j + 1, qw), s.dim, qw);
    if (!fam || !fresh) {
      const double* resid = fam ? phi.data() + j * s.dim : x_blk.data() + (j - F) * s.dim;
      for (int d = 0; d < s.dim; ++d) a[sz(d)] += resid[d];
    }
    const vec f = ffn(w, rmsnorm(a, w.ln2), s.dim, s.hidden);
    double* dst = fam ? res.phi_next.data() + j * s.dim : res.out.data() + (j - F) * s.dim;
    for (int d = 0; d < s.dim; ++d) dst[d] = f[sz(d)] + a[sz(d)];
  }
  return res;
}

// x: [L, dim] layer-0 input. phi0[l]: [F, dim] initial state of layer l. fresh[l]: layer l's state
// is fresh (zero residual on its first update). position_offset shifts every position.
inline model_result fam_model(const model_shape& s, const std::vector<layer_weights>& layers,
                              int64_t L, const vec& x, const std::vector<vec>& phi0,
                              const std::vector<bool>& fresh, int64_t position_offset) {
  check_heads(s.H, s.Hkv, s.head_dim);
  require(s.dim >= 1 && s.hidden >= 1, "dim and hidden must be >= 1");
  require(s.B >= 1 && s.M >= 0 && s.F >= 0 && L >= 0, "need B >= 1, M >= 0, F >= 0, L >= 0");
  require(x.size() == sz(L * s.dim), "x must be [L, dim]");
  require(phi0.size() == layers.size() && fresh.size() == layers.size(),
          "need one phi0 and one fresh flag per layer");
  const int64_t qw = int64_t{s.H} * s.head_dim, kw = int64_t{s.Hkv} * s.head_dim;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const layer_weights& w = layers[l];
    require(phi0[l].size() == sz(s.F * s.dim), "phi0[l] must be [F, dim]");
    require(w.ln1.size() == sz(s.dim) && w.ln2.size() == sz(s.dim), "ln1, ln2 must be [dim]");
    require(w.wq.size() == sz(qw * s.dim) && w.wo.size() == sz(s.dim * qw), "bad wq or wo shape");
    require(w.wk.size() == sz(kw * s.dim) && w.wv.size() == sz(kw * s.dim), "bad wk or wv shape");
    require(w.w1.size() == sz(int64_t{s.hidden} * s.dim) && w.w3.size() == w.w1.size() &&
                w.w2.size() == w.w1.size(),
            "bad w1, w2 or w3 shape");
  }

  model_result res;
  vec x_in = x;  // [L, dim] input of the current layer
  for (std::size_t l = 0; l < layers.size(); ++l) {
    vec phi = phi0[l];  // [F, dim]
    bool is_fresh = fresh[l];
    vec kc(sz(L * kw)), vc(sz(L * kw));  // this layer's token keys / values
    vec out(sz(L * s.dim));              // [L, dim]
    std::vector<vec> history;
    for (int64_t t = 0; t * s.B < L; ++t) {
      const int64_t n0 = t * s.B, b = std::min(s.B, L - n0);
      const vec x_blk = slice_rows(x_in, n0, n0 + b, s.dim);
      const layer_block_result r =
          layer_block(s, layers[l], t, b, position_offset, x_blk, phi, is_fresh, kc, vc);
      std::copy(r.out.begin(), r.out.end(), out.begin() + n0 * s.dim);
      if (b == s.B) {  // only a complete block updates Phi; the first update clears fresh
        phi = r.phi_next;
        is_fresh = false;
        history.push_back(phi);
      }
    }
    res.layer_out.push_back(out);
    res.phi.push_back(phi);
    res.phi_history.push_back(history);
    x_in = out;  // layer l+1 reads layer l's Out
  }
  return res;
}

}  // namespace oracle
