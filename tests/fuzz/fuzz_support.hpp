// Shared pieces of the fuzz targets: a reader that turns the fuzzer's bytes into decisions
// (zeros once the bytes run out, so every input is a complete, deterministic program), a small
// PRNG for bulk values, failure reporting, and FAM_ASSERT turned on whatever NDEBUG says.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

// Internal invariants of the library abort with a message in every fuzz build.
#ifndef FAM_ASSERT
#define FAM_ASSERT(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) ::fuzz::fail("%s:%d: FAM_ASSERT(%s) failed", __FILE__, __LINE__, #cond); \
  } while (0)
#endif

namespace fuzz {

/// Prints the reason and aborts: libFuzzer records the input as a crash, the replay fails.
[[noreturn]] inline void fail(const char* fmt, ...) {
  std::va_list args;
  va_start(args, fmt);
  std::fputs("FUZZ FAILURE: ", stderr);
  std::vfprintf(stderr, fmt, args);
  std::fputc('\n', stderr);
  va_end(args);
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(cond, ...)                                                       \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ::fuzz::fail(__VA_ARGS__);                                                    \
    }                                                                               \
  } while (0)

/// The fuzzer's bytes, read front to back; reads past the end give zeros.
class bytes_in {
 public:
  bytes_in(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

  std::size_t left() const { return n_; }
  bool empty() const { return n_ == 0; }

  std::uint8_t byte() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  std::uint64_t u64(int bytes = 8) {
    std::uint64_t u = 0;
    for (int i = 0; i < bytes; ++i) u |= std::uint64_t(byte()) << (8 * i);
    return u;
  }
  bool flag() { return (byte() & 1u) != 0; }
  /// An integer in [lo, hi] (inclusive; hi - lo < 2^32).
  std::int64_t range(std::int64_t lo, std::int64_t hi) {
    if (hi <= lo) return lo;
    const std::uint64_t span = static_cast<std::uint64_t>(hi - lo) + 1;
    const std::uint64_t raw = span <= 256 ? byte() : span <= 65536 ? u64(2) : u64(4);
    return lo + static_cast<std::int64_t>(raw % span);
  }
  /// The rest of the bytes.
  const std::uint8_t* rest(std::size_t* size) {
    *size = n_;
    const std::uint8_t* r = p_;
    p_ += n_;
    n_ = 0;
    return r;
  }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

/// splitmix64: bulk values from a seed the fuzzer picks.
class prng {
 public:
  explicit prng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [-1, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1p-52 - 1.0; }

 private:
  std::uint64_t s_;
};

/// A special value by code: the values that break arithmetic.
inline float special_value(std::uint8_t code) {
  switch (code % 12) {
    case 0:
      return std::numeric_limits<float>::quiet_NaN();
    case 1:
      return std::numeric_limits<float>::infinity();
    case 2:
      return -std::numeric_limits<float>::infinity();
    case 3:
      return std::numeric_limits<float>::max();
    case 4:
      return -std::numeric_limits<float>::max();
    case 5:
      return 1e30f;
    case 6:
      return -1e20f;
    case 7:
      return std::numeric_limits<float>::denorm_min();
    case 8:
      return -0.0f;
    case 9:
      return 65504.0f;  // the largest fp16
    case 10:
      return 1e4f;
    default:
      return -3e38f;
  }
}

inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
/// Bitwise equal, except that any NaN equals any NaN (payloads are not part of the contract).
inline bool same_value(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || same_bits(a, b);
}

}  // namespace fuzz
