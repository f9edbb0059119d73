// The Llama model of llama2.c: its shape and its weights, in the layout of the checkpoint file
// (every projection W is [out, in] row-major, y = W x).
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <vector>

namespace llama2 {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using vector = Eigen::VectorXf;

/// The seven int32 of a checkpoint header.
struct llama_config {
  int dim = 0;         ///< width of the residual stream
  int hidden_dim = 0;  ///< width of the SwiGLU FFN
  int n_layers = 0;
  int n_heads = 0;     ///< H, query heads
  int n_kv_heads = 0;  ///< Hkv, key/value heads (GQA when < H)
  int vocab_size = 0;
  int seq_len = 0;  ///< the context length the model was trained with

  int head_dim() const { return dim / n_heads; }
  int kv_dim() const { return n_kv_heads * head_dim(); }
};

/// One decoder layer.
struct layer_weights {
  vector ln1, ln2;  // [dim]           RMSNorm before attention and before the FFN
  matrix wq;        // [dim, dim]
  matrix wk, wv;    // [kv_dim, dim]
  matrix wo;        // [dim, dim]
  matrix w1, w3;    // [hidden, dim]
  matrix w2;        // [dim, hidden]
};

struct llama_weights {
  llama_config cfg;
  matrix embedding;  // [vocab, dim]
  std::vector<layer_weights> layers;
  vector final_norm;  // [dim]
  matrix classifier;  // [vocab, dim] (a copy of the embedding when the checkpoint shares it)
};

/// Special tokens of the llama2.c vocabularies.
inline constexpr int kBos = 1;
inline constexpr int kEos = 2;

}  // namespace llama2
