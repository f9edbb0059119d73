// Measuring a long run: resident memory (VmRSS of /proc/self/status), wall time, and a one-line
// progress bar on stderr.
#pragma once

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

namespace llama2 {

/// Resident set size in KiB, or -1 where /proc is not available.
inline long rss_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

class stopwatch {
 public:
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// [#####.....] done/total tokens, tokens/s, RSS; redrawn in place, at most ~10 times a second.
class progress_bar {
 public:
  explicit progress_bar(long long total, bool enabled = true) : total_(total), on_(enabled) {}

  void update(long long done) {
    if (!on_ || (done < total_ && clock_.seconds() < next_draw_)) return;
    next_draw_ = clock_.seconds() + 0.1;
    const int width = 30, filled = int(width * done / (total_ > 0 ? total_ : 1));
    std::fprintf(stderr, "\r[%s%s] %lld/%lld tokens  %.0f tok/s  RSS %.1f MiB ",
                 std::string(std::size_t(filled), '#').c_str(),
                 std::string(std::size_t(width - filled), '.').c_str(), done, total_,
                 double(done) / clock_.seconds(), double(rss_kib()) / 1024.0);
    if (done >= total_) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  long long total_;
  bool on_;
  stopwatch clock_;
  double next_draw_ = 0.0;
};

}  // namespace llama2
