// Scaling: stream N tokens through one layer (full, bswa or fam) in blocks, inputs generated
// per block, and report the per-token time of the last blocks (median and fastest of the last 16,
// and the very last) and the peak resident memory.
// Run each configuration in a fresh process (scripts/bench does) so peaks do not mix.
//   fam_scaling <full|bswa|fam> <tokens> [D=64 B=256 M=3 F=64 H=4]
// Prints one JSON object per run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fam/backend/simd.hpp"
#include "fam/fam.hpp"

namespace {

long peak_rss_kib() {  // VmHWM from /proc/self/status
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, "VmHWM:", 6) == 0) kib = std::strtol(line + 6, nullptr, 10);
  std::fclose(f);
  return kib;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: fam_scaling <full|bswa|fam> <tokens> [D B M F H]\n");
    return 2;
  }
  const std::string variant = argv[1];
  const fam::index_t N = std::atoll(argv[2]);
  auto arg = [&](int i, fam::index_t d) { return argc > i ? std::atoll(argv[i]) : d; };
  const fam::index_t D = arg(3, 64), B = arg(4, 256),
                     M = variant == "full" ? (N + B - 1) / B : arg(5, 3);
  const fam::index_t F = variant == "fam" ? arg(6, 64) : 0, H = arg(7, 4);
  fam::attention_config<> cfg(D, B, M, F);
  cfg.set_heads(H, H);
  fam::layer_state<fam::attention_config<>> st;
  if (st.init(cfg) != fam::status::ok) return 1;
  std::vector<float> x(B * H * D), out(B * H * D), fam_rows(F * H * D, 0.01f);
  const auto fv = fam::make_view<const float>(fam_rows.data(), F, H, D);
  if (F > 0 && fam::begin_fam(st, fv, fv, fv) != fam::status::ok) return 1;
  fam::simd_backend<> be;
  unsigned seed = 1;
  std::vector<double> block_s;  // per-block times, in order
  for (fam::index_t done = 0; done < N; done += B) {
    const fam::index_t n = std::min(B, N - done);
    for (float& v : x)
      v = float((seed = seed * 1664525u + 1013904223u) >> 8) / float(1u << 24) - 0.5f;
    const auto X = fam::make_view<const float>(x.data(), n, H, D);
    const auto t0 = std::chrono::steady_clock::now();
    fam::index_t used = 0;
    if (fam::attend(st, X, X, X, fam::make_view(out.data(), n, H, D), {}, &used, be) !=
        fam::status::ok)
      return 1;
    if (st.phase() == fam::fam_phase::pending) {
      const auto uf = st.fam_output();  // weight-free update: the cost of the FAM rows is included
      if (fam::update_fam(st, uf, uf, uf) != fam::status::ok) return 1;
    }
    block_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // the median of the last (up to) 16 blocks: one block is a few milliseconds, easily disturbed
  std::vector<double> tail(
      block_s.end() - std::min<std::ptrdiff_t>(16, std::ptrdiff_t(block_s.size())), block_s.end());
  std::sort(tail.begin(), tail.end());
  const double median_s = tail.empty() ? 0.0 : tail[tail.size() / 2];
  // the fastest of them: on a shared host a neighbour's burst can cover all 16 (a fraction of a
  // second), while the work of a block does not change with the stream's length
  const double fastest_s = tail.empty() ? 0.0 : tail.front();
  const double last_block_s = block_s.empty() ? 0.0 : block_s.back();
  std::printf(
      "{\"variant\": \"%s\", \"tokens\": %lld, \"D\": %lld, \"B\": %lld, \"M\": %lld, \"F\": %lld, "
      "\"H\": %lld, \"us_per_token\": %.4f, \"fastest_us_per_token\": %.4f, "
      "\"last_block_us_per_token\": %.4f, \"peak_rss_mib\": %.1f, \"state_mib\": %.2f}\n",
      variant.c_str(), (long long)N, (long long)D, (long long)B, (long long)M, (long long)F,
      (long long)H, median_s / double(B) * 1e6, fastest_s / double(B) * 1e6,
      last_block_s / double(B) * 1e6, double(peak_rss_kib()) / 1024.0,
      double(fam::layer_state<fam::attention_config<>>::storage_bytes(cfg)) / (1 << 20));
  return 0;
}
