// network.hpp: a one-layer, one-head FAM network whose every weight is written by hand.
//
// The task: the stream holds one "pass key" token (one of kKeys words), then a long run of
// filler words from the same vocabulary, then a question token. The answer is the key.
//
// Every vector lives in one space of kD dimensions (model width = head width, one head):
//
//   dims [0, kKeys)  the vocabulary: word w is the unit vector e_w (keys and filler alike)
//   kKeyMark         "this word is the pass key"  (set on the key token only)
//   kFamFlag         "this row is FAM memory"     (set on every FAM row)
//   kQuestion        "what is the pass key?"      (set on the question token only)
//   kToFam, kToAsk   two address dimensions that only queries and keys use
//
// Attention is made hard: every logit is 0, G or 2G with G = kGap = 1000, and exp(-1000)
// underflows to exactly 0 in double (and in float), so each row copies exactly one value (or
// averages exactly equal-logit ones). Nothing leaks, nothing decays: the key survives any
// number of blocks bit for bit.
//
//   who asks            query     sees (logit)                       so it copies
//   FAM row, no key     G e_ToFam itself G, fillers 0                Φ[t-1]         (keeps)
//   FAM row, key seen   G e_ToFam key token 2G, itself G, fillers 0  the key token  (stores)
//   question token      G e_ToAsk FAM G, fillers 0                   Φ[t-1]         (answers)
//   question, key near  G e_ToAsk key token 2G, FAM G, fillers 0     the key token  (reads it)
//
// The last line is there for the controls: without FAM, the question still finds the key
// whenever the key is inside its BSWA window, so they fail only because the key is too far.
//
// The FAM update is Φ[t] = Uf·Wo with Wo = I (no residual, no FFN: the attention output is
// the new state), so the state is always e_FamFlag + (e_key once the key has been seen).
#pragma once

#include <vector>

#include "fam/fam.hpp"

namespace passkey {

using fam::index_t;

constexpr index_t kKeys = 128;  // possible pass keys (= vocabulary size); chance is 1/kKeys
constexpr index_t kKeyMark = kKeys;
constexpr index_t kFamFlag = kKeys + 1;
constexpr index_t kQuestion = kKeys + 2;
constexpr index_t kToFam = kKeys + 3;
constexpr index_t kToAsk = kKeys + 4;
constexpr index_t kD = kKeys + 5;  // model width = head dim D

constexpr float kGap = 1000.0f;     // G: logit gap that makes softmax exactly hard
constexpr double kScale = 1.0;      // logits are q.k as written, not divided by sqrt(D)
constexpr float kAnswerMin = 0.5f;  // a vocabulary weight below this is "no answer"

/// One weight: out[to] += w * in[from]. A matrix is a short list of them (all others are 0).
struct entry {
  index_t to, from;
  float w;
};
using weights = std::vector<entry>;

/// Wq: what each row looks for.
inline const weights& query_weights() {
  static const weights w = {
      {kToFam, kFamFlag, kGap},   // a FAM row asks for "FAM or key" (e_ToFam), strongly
      {kToAsk, kQuestion, kGap},  // the question asks for "FAM" (e_ToAsk), strongly
  };                              // filler and key tokens ask for nothing: q = 0
  return w;
}

/// Wk: how each row answers. Filler words have k = 0: orthogonal to every query.
inline const weights& key_weights() {
  static const weights w = {
      {kToFam, kFamFlag, 1.0f},  // FAM rows answer FAM rows (logit G) ...
      {kToAsk, kFamFlag, 1.0f},  // ... and the question (logit G)
      {kToFam, kKeyMark, 2.0f},  // the key token outbids the FAM's own rows (2G > G) ...
      {kToAsk, kKeyMark, 2.0f},  // ... and the FAM, for a question that can see it directly
  };
  return w;
}

/// Wv: what each row hands over when it is read.
inline const weights& value_weights() {
  static const weights w = [] {
    weights v;
    for (index_t c = 0; c < kKeys; ++c) v.push_back({c, c, 1.0f});  // the word itself
    v.push_back({kFamFlag, kFamFlag, 1.0f});  // a FAM row stays a FAM row when copied ...
    v.push_back({kFamFlag, kKeyMark, 1.0f});  // ... and the key token becomes one when stored
    return v;
  }();
  return w;
}

/// y [kD] = W x.
inline void project(const weights& w, const float* x, float* y) {
  for (index_t d = 0; d < kD; ++d) y[d] = 0.0f;
  for (const entry& e : w) y[e.to] += e.w * x[e.from];
}

/// A token of the stream: a filler word, the pass key (a word with the key mark), or the question.
struct token {
  enum kind_t { filler, pass_key, question } kind;
  index_t word;  // the vocabulary word (filler and pass_key)
};

/// x [kD]: the embedding of t.
inline void embed(const token& t, float* x) {
  for (index_t d = 0; d < kD; ++d) x[d] = 0.0f;
  if (t.kind == token::question) x[kQuestion] = 1.0f;
  if (t.kind != token::question) x[t.word] = 1.0f;
  if (t.kind == token::pass_key) x[kKeyMark] = 1.0f;
}

/// phi [kD]: the initial FAM row Φ[-1], empty memory (a FAM row that holds no word).
inline void initial_fam(float* phi) {
  for (index_t d = 0; d < kD; ++d) phi[d] = 0.0f;
  phi[kFamFlag] = 1.0f;
}

/// The answer read off the question's output [kD]: the vocabulary word with the largest
/// weight, or -1 when no word reaches kAnswerMin (the question found no stored key).
inline index_t decode(const float* out) {
  index_t best = 0;
  for (index_t c = 1; c < kKeys; ++c)
    if (out[c] > out[best]) best = c;
  return out[best] >= kAnswerMin ? best : -1;
}

}  // namespace passkey
