// 03 receptive field: how far can one token reach through a stack of N layers?
//
// Under BSWA a token of block b sees blocks b-M..b, so one layer carries token j's influence M
// blocks forward and N layers carry it N·M blocks: outputs of blocks past block(j) + N·M never
// depend on token j, bitwise (SPEC §7.5). FAM adds a path around that limit: block t's FAM
// rows read the whole block and hand it on to block t+1, which hands it on again, so the
// influence reaches every later block.
//
// We measure both by perturbation: run a random-weight float64 stack (common/toy_stack.hpp,
// masks from fam::visible) twice, with token j nudged the second time, and see which blocks'
// outputs moved.
//
//   03_receptive_field [N=2] [B=4] [M=1] [F=2] [j=5] [out=.]   (a bare argument is `out`)
// writes receptive_field.svg (max |change| per block, BSWA and FAM) into `out`.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/svg.hpp"
#include "common/toy_stack.hpp"
#include "fam/fam.hpp"

namespace {

using fam::index_t;
using toy::vec;

constexpr int kDim = 8;             // model width of the toy layers
constexpr double kNudge = 1e-6;     // size of the perturbation of token j
constexpr index_t kFamHorizon = 4;  // FAM must reach kFamHorizon·N·M blocks past block(j)
constexpr double kLogFloor = -20;   // where "bitwise unchanged" sits on the log plot
constexpr std::uint64_t kSeed = 20240415;

/// max |a - b| over the outputs of each block: [blocks]
vec change_per_block(const std::vector<vec>& a, const std::vector<vec>& b, index_t B) {
  vec change(std::size_t((index_t(a.size()) + B - 1) / B), 0.0);
  for (std::size_t n = 0; n < a.size(); ++n)
    for (std::size_t d = 0; d < a[n].size(); ++d)
      change[n / std::size_t(B)] =
          std::fmax(change[n / std::size_t(B)], std::fabs(a[n][d] - b[n][d]));
  return change;
}

/// change[l][block] for every layer of the stack under `mask`.
std::vector<vec> measure(const fam::mask_spec& mask, index_t N, const std::vector<vec>& x,
                         index_t j) {
  const toy::stack net(mask, int(N), kDim, kSeed);
  std::vector<vec> nudged = x;
  for (double& v : nudged[std::size_t(j)]) v += kNudge;
  const auto base = net.run(x), moved = net.run(nudged);
  std::vector<vec> change;
  for (std::size_t l = 0; l < base.size(); ++l)
    change.push_back(change_per_block(base[l], moved[l], mask.block));
  return change;
}

void print_row(const char* name, index_t layer, const vec& change) {
  std::printf("%-5s layer %lld  ", name, (long long)layer);
  for (double c : change) std::printf("%3s", c != 0.0 ? "x" : ".");
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> arg = {{"N", "2"}, {"B", "4"}, {"M", "1"},
                                            {"F", "2"}, {"j", "5"}, {"out", "."}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto eq = a.find('=');
    if (eq == std::string::npos) {  // a bare argument is the output folder, as in 05 and 06
      arg["out"] = a;
      continue;
    }
    if (!arg.count(a.substr(0, eq)))
      return std::printf("usage: %s [N=2] [B=4] [M=1] [F=2] [j=5] [out=.]\n", argv[0]), 2;
    arg[a.substr(0, eq)] = a.substr(eq + 1);
  }
  const index_t N = std::atoll(arg["N"].c_str()), B = std::atoll(arg["B"].c_str()),
                M = std::atoll(arg["M"].c_str()), F = std::atoll(arg["F"].c_str()),
                j = std::atoll(arg["j"].c_str());
  if (N < 1 || B < 1 || M < 1 || F < 1 || j < 0)
    return std::printf("need N, B, M, F >= 1 and j >= 0\n"), 2;

  // Enough blocks after block(j) to watch FAM go kFamHorizon times further than BSWA can.
  const index_t bj = j / B, edge = bj + N * M, blocks = bj + kFamHorizon * N * M + 2;
  std::mt19937_64 rng(kSeed);
  std::normal_distribution<double> g;
  std::vector<vec> x(std::size_t(blocks * B), vec(kDim));  // [L][dim] token embeddings
  for (vec& row : x)
    for (double& v : row) v = g(rng);

  std::printf(
      "N = %lld layers, B = %lld, M = %lld (FAM: F = %lld); token j = %lld is in block %lld\n",
      (long long)N, (long long)B, (long long)M, (long long)F, (long long)j, (long long)bj);
  std::printf(
      "analytic, BSWA: layer l reaches blocks %lld .. %lld + l*M; the stack reaches "
      "block %lld = block(j) + N*M\n\n",
      (long long)bj, (long long)bj, (long long)edge);

  const std::vector<vec> bswa = measure(fam::mask_spec::bswa(B, M), N, x, j);
  const std::vector<vec> famc = measure(fam::mask_spec::fam(B, M, F), N, x, j);

  std::printf("measured (float64): x = the block's outputs moved, . = bitwise unchanged\n");
  std::printf("block          ");
  for (index_t b = 0; b < blocks; ++b) std::printf("%3lld", (long long)b);
  std::printf("\n");
  bool ok = true;
  for (index_t l = 0; l < N; ++l) {
    print_row("BSWA", l + 1, bswa[std::size_t(l)]);
    for (index_t b = 0; b < blocks; ++b)  // exactly blocks bj .. bj + (l+1)·M move
      ok =
          ok && (bswa[std::size_t(l)][std::size_t(b)] != 0.0) == (b >= bj && b <= bj + (l + 1) * M);
  }
  for (index_t l = 0; l < N; ++l) {
    print_row("FAM", l + 1, famc[std::size_t(l)]);
    for (index_t b = 0; b < blocks; ++b)  // every block from bj on moves
      ok = ok && (famc[std::size_t(l)][std::size_t(b)] != 0.0) == (b >= bj);
  }

  std::printf("\nmax |change| of layer %lld's outputs, per block (nudge %.0e)\n", (long long)N,
              kNudge);
  std::printf("block   BSWA       FAM\n");
  svg::series s_bswa{"BSWA", "#2b6cb0", {}, {}}, s_fam{"FAM", "#dd8a2e", {}, {}, "6 3"};
  for (index_t b = bj; b < blocks; ++b) {
    const double cb = bswa.back()[std::size_t(b)], cf = famc.back()[std::size_t(b)];
    std::printf("%5lld   %-9.2e  %-9.2e%s\n", (long long)b, cb, cf,
                b == edge ? "   <- block(j) + N*M" : "");
    auto log_or_floor = [](double c) {
      return c > 0 ? std::fmax(std::log10(c), kLogFloor) : kLogFloor;
    };
    s_bswa.x.push_back(double(b - bj)), s_bswa.y.push_back(log_or_floor(cb));
    s_fam.x.push_back(double(b - bj)), s_fam.y.push_back(log_or_floor(cf));
  }

  svg::plot p;
  p.title = "Token j nudged: how far the change reaches (N = " + arg["N"] + ", B = " + arg["B"] +
            ", M = " + arg["M"] + ", F = " + arg["F"] + ")";
  p.x_label = "blocks after block(j)";
  p.y_label = "log10 max |change| of layer N's outputs";
  p.lines = {s_bswa, s_fam};
  p.y_marks = {{kLogFloor, "bitwise unchanged"}};
  p.x_marks = {{double(N * M), "N·M"}};
  const std::string path = svg::join(arg["out"], "receptive_field.svg");
  if (!svg::write_file(path, svg::line_plot(p)))
    return std::printf("cannot write %s\n", path.c_str()), 1;
  std::printf("-> %s\n", path.c_str());

  std::printf(
      "\nBSWA stops at block(j) + N*M = %lld; FAM reaches block %lld (>= %lld*N*M past block(j)): "
      "%s\n",
      (long long)edge, (long long)(blocks - 1), (long long)kFamHorizon, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
