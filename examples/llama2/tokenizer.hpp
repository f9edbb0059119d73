// The llama2.c tokenizer file, for decoding only (generation starts from BOS, and the
// perplexity stream is the model's own samples, so nothing needs encoding).
//
// File layout: int32 max_token_length, then per token: float32 score, int32 length, bytes.
// Pieces like "<0x0A>" stand for one raw byte; after BOS the leading space of a piece is
// dropped (SentencePiece adds one at the start of a text).
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "llama.hpp"

namespace llama2 {

class tokenizer {
 public:
  /// Loads a llama2.c tokenizer with `vocab_size` pieces (throws std::runtime_error).
  static tokenizer load(const std::string& path, int vocab_size) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    std::int32_t max_len = 0;
    in.read(reinterpret_cast<char*>(&max_len), sizeof(max_len));
    tokenizer t;
    for (int i = 0; i < vocab_size; ++i) {
      float score = 0;
      std::int32_t len = 0;
      in.read(reinterpret_cast<char*>(&score), sizeof(score));
      in.read(reinterpret_cast<char*>(&len), sizeof(len));
      if (!in || len < 0 || len > max_len) throw std::runtime_error(path + ": malformed tokenizer");
      std::string piece(std::size_t(len), '\0');
      in.read(piece.data(), len);
      if (!in) throw std::runtime_error(path + ": truncated tokenizer");
      t.pieces_.push_back(std::move(piece));
    }
    return t;
  }

  /// Made-up pieces (syllables) for the random stand-in model: its text is noise, but readable.
  static tokenizer synthetic(int vocab_size) {
    static const char* const kOnset[] = {"b", "d", "f", "g", "k", "l", "m", "n",
                                         "p", "r", "s", "t", "v", "w", "z", "sh"};
    static const char* const kVowel[] = {"a", "e", "i", "o", "u", "ai", "oo", "y"};
    tokenizer t;
    for (int i = 0; i < vocab_size; ++i) {
      const bool word_start = i % 3 == 0;  // a third of the pieces begin a word
      t.pieces_.push_back(std::string(word_start ? " " : "") + kOnset[i % 16] +
                          kVowel[(i / 16) % 8]);
    }
    return t;
  }

  /// The text of `token` when it follows `prev`. BOS reads as a paragraph break, EOS as nothing.
  std::string decode(int prev, int token) const {
    if (token == kBos) return "\n\n";
    if (token == kEos || token < 0 || token >= int(pieces_.size())) return "";
    const std::string& p = pieces_[std::size_t(token)];
    unsigned byte = 0;
    if (p.size() == 6 && std::sscanf(p.c_str(), "<0x%02X>", &byte) == 1)
      return std::string(1, char(byte));
    if (prev == kBos && !p.empty() && p[0] == ' ') return p.substr(1);
    return p;
  }

  /// The text of a token sequence (the first token is decoded as if it followed BOS).
  std::string decode(const std::vector<int>& tokens) const {
    std::string s;
    int prev = kBos;
    for (int t : tokens) s += decode(prev, t), prev = t;
    return s;
  }

 private:
  std::vector<std::string> pieces_;
};

}  // namespace llama2
