// mask_picture.hpp: a mask as a picture. Rows are queries and columns keys, each a fam::node
// (token n, or FAM row r of block t); a cell is coloured when the query sees the key. The
// visibility comes from the caller, normally the library's own fam::visible().
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "fam/mask.hpp"
#include "svg.hpp"

namespace picture {

using fam::index_t;
using fam::node;

// Colours: token reads token, token reads a FAM row, a FAM row reads (to update), not visible.
inline const char* const kTokenColour = "#2b6cb0";
inline const char* const kFamReadColour = "#dd8a2e";
inline const char* const kFamWriteColour = "#a33b3b";
inline const char* const kHiddenColour = "#eeeeee";
inline const char* const kFamLabelColour = "#fbe3c4";

/// Tokens 0..L-1.
inline std::vector<node> tokens(index_t L) {
  std::vector<node> v;
  for (index_t n = 0; n < L; ++n) v.push_back(node::tok(n));
  return v;
}

/// The paper's layout (Fig. 2b): the F FAM rows of block t just before block t's tokens.
inline std::vector<node> fam_layout(index_t B, index_t F, index_t L) {
  std::vector<node> v;
  for (index_t n = 0; n < L; ++n) {
    if (n % B == 0)
      for (index_t r = 0; r < F; ++r) v.push_back(node::fam_of(n / B, r));
    v.push_back(node::tok(n));
  }
  return v;
}

/// Where a new block starts along an axis: before its first FAM row or first token.
inline std::vector<int> block_breaks(const std::vector<node>& axis, index_t B) {
  std::vector<int> breaks;
  for (std::size_t i = 1; i < axis.size(); ++i) {
    const node& a = axis[i - 1];
    const node& b = axis[i];
    const index_t block_a = a.is_fam ? a.fam_block : a.token / B;
    const index_t block_b = b.is_fam ? b.fam_block : b.token / B;
    if (block_a != block_b) breaks.push_back(int(i));
  }
  return breaks;
}

inline std::string label(const node& x, const char* fam_name) {
  return x.is_fam ? fam_name + std::to_string(x.fam_row) : std::to_string(x.token);
}

/// The picture of `sees(query, key)` over rows x cols; B draws the block boundaries.
template <class Sees>
svg::grid grid(const std::string& title, const std::vector<node>& rows,
               const std::vector<node>& cols, Sees sees, index_t B, const char* fam_name = "φ") {
  svg::grid g;
  g.title = title;
  g.rows = int(rows.size());
  g.cols = int(cols.size());
  g.fill = [=](int i, int j) -> std::string {
    if (!sees(rows[std::size_t(i)], cols[std::size_t(j)])) return kHiddenColour;
    if (rows[std::size_t(i)].is_fam) return kFamWriteColour;
    return cols[std::size_t(j)].is_fam ? kFamReadColour : kTokenColour;
  };
  g.row_label = [=](int i) { return label(rows[std::size_t(i)], fam_name); };
  g.col_label = [=](int j) { return label(cols[std::size_t(j)], fam_name); };
  g.row_label_fill = [=](int i) -> std::string {
    return rows[std::size_t(i)].is_fam ? kFamLabelColour : "white";
  };
  g.row_breaks = block_breaks(rows, B);
  g.col_breaks = block_breaks(cols, B);
  g.legend = {{kTokenColour, "token sees token"}};
  bool fam_rows = false, fam_cols = false;
  for (const node& x : rows) fam_rows = fam_rows || x.is_fam;
  for (const node& x : cols) fam_cols = fam_cols || x.is_fam;
  const std::string f = fam_name;
  if (fam_cols)
    g.legend.push_back({kFamReadColour, "token reads " + f + " (the state before its block)"});
  if (fam_rows)
    g.legend.push_back({kFamWriteColour, f + " row reads " + f + " and its block (the update)"});
  g.legend.push_back({kHiddenColour, "not visible"});
  return g;
}

/// The same picture as text ('x' visible, '.' not); returns the number of visible cells.
template <class Sees>
long print(const std::vector<node>& rows, const std::vector<node>& cols, Sees sees,
           const char* fam_name = "f") {
  long visible = 0;
  for (const node& q : rows) {
    std::printf("%4s ", label(q, fam_name).c_str());
    for (const node& k : cols) {
      const bool v = sees(q, k);
      visible += v ? 1 : 0;
      std::printf("%c", v ? 'x' : '.');
    }
    std::printf("\n");
  }
  return visible;
}

}  // namespace picture
