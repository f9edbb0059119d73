// 06 mask pictures: who sees whom under full causal, sliding-window, BSWA and FAM attention,
// drawn from the library's own fam::visible() (no mask is written by hand here).
//
//   06_mask_pictures [out_dir]     writes mask_{full,swa,bswa,fam}.svg into out_dir (default .)
//
// docs/img/ holds the committed output; docs/concepts.md explains each picture.
#include <cstdio>
#include <string>

#include "common/mask_picture.hpp"
#include "common/svg.hpp"
#include "fam/fam.hpp"

namespace {

using fam::index_t;
using fam::mask_spec;

// Small enough to read every cell, large enough to show three blocks.
constexpr index_t kTokens = 12;  // L
constexpr index_t kBlock = 4;    // B
constexpr index_t kMemory = 1;   // M
constexpr index_t kFam = 2;      // F
constexpr index_t kWindow = 4;   // W of the sliding window (the same span of keys as B)

/// visible() of one mask, as the predicate the picture wants.
auto sees(const mask_spec& s) {
  return [s](fam::node q, fam::node k) { return fam::visible(s, q, k); };
}

/// Draws one mask into out_dir/file and prints it; returns the number of visible cells.
/// Blocks (lines every B tokens) are drawn only for the masks that have them.
long draw(const std::string& out_dir, const char* file, const std::string& title,
          const mask_spec& s, const std::vector<fam::node>& axis) {
  const bool blocked = s.kind == fam::variant::bswa || s.kind == fam::variant::fam;
  std::printf("\n%s\n", title.c_str());
  const long cells = picture::print(axis, axis, sees(s));
  const std::string path = svg::join(out_dir, file);
  if (!svg::write_file(path, svg::heatmap(picture::grid(title, axis, axis, sees(s),
                                                        blocked ? kBlock : kTokens)))) {
    std::printf("cannot write %s\n", path.c_str());
    return -1;
  }
  std::printf("-> %s (%ld visible cells)\n", path.c_str(), cells);
  return cells;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : ".";
  const auto tokens = picture::tokens(kTokens);
  int failures = 0;
  auto expect = [&](long got, long want, const char* what) {
    if (got != want) std::printf("FAIL %s: %ld visible cells, expected %ld\n", what, got, want);
    failures += got != want;
  };

  // Token-only masks: a cell per query-key pair, as many as visible_pairs counts.
  const mask_spec full = mask_spec::full(), swa = mask_spec::sliding_window(kWindow),
                  bswa = mask_spec::bswa(kBlock, kMemory);
  expect(draw(out, "mask_full.svg", "full causal, L = 12", full, tokens),
         long(fam::visible_pairs(full, kTokens)), "full");
  expect(draw(out, "mask_swa.svg", "sliding window, W = 4", swa, tokens),
         long(fam::visible_pairs(swa, kTokens)), "swa");
  expect(draw(out, "mask_bswa.svg", "BSWA, B = 4, M = 1", bswa, tokens),
         long(fam::visible_pairs(bswa, kTokens)), "bswa");

  // FAM: the F rows of each block are prepended to it (paper Fig. 2b). Counting SPEC §3's table
  // for complete blocks: every token also sees its block's F FAM keys, and every FAM row sees
  // the F FAM keys and all B tokens of its block (never the memory).
  const mask_spec fam_mask = mask_spec::fam(kBlock, kMemory, kFam);
  const index_t blocks = kTokens / kBlock;
  const long fam_cells =
      long(fam::visible_pairs(bswa, kTokens) + kTokens * kFam + blocks * kFam * (kFam + kBlock));
  expect(draw(out, "mask_fam.svg", "FAM, B = 4, M = 1, F = 2 (φ rows before each block)", fam_mask,
              picture::fam_layout(kBlock, kFam, kTokens)),
         fam_cells, "fam");

  std::printf("\n%s\n", failures == 0 ? "all mask counts match" : "MASK COUNTS DIFFER");
  return failures == 0 ? 0 : 1;
}
