// Test helpers: seeded random tensors, float <-> double copies, and the tolerance check of the
// core tests (max|err| <= 1e-5 * (1 + max|V|), a NaN/Inf pattern mismatch always fails).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fam/view.hpp"

namespace testing {

/// Seed for the random sweeps: FAM_TEST_SEED from the environment, else a fixed default.
/// Every sweep logs the seed it used (doctest INFO / MESSAGE), so a failure can be replayed.
inline std::uint64_t base_seed() {
  const char* s = std::getenv("FAM_TEST_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 10) : 20240404ull;
}

struct rng {
  std::mt19937_64 gen;
  explicit rng(std::uint64_t seed) : gen(seed) {}
  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(gen);
  }
  std::int64_t integer(std::int64_t lo, std::int64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(gen);
  }
  std::vector<float> floats(std::size_t n, double lo = -1.0, double hi = 1.0) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(uniform(lo, hi));
    return v;
  }
};

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::fmax(m, std::fabs(static_cast<double>(x)));
  return m;
}

/// Compares an fp32 result with the float64 oracle: same NaN/Inf pattern, and
/// max|got - want| <= 1e-5 * (1 + v_scale). Reports the worst index.
inline bool close_to_oracle(const std::vector<float>& got, const std::vector<double>& want,
                            double v_scale, double rel = 1e-5) {
  if (got.size() != want.size()) {
    MESSAGE("size mismatch: ", got.size(), " vs ", want.size());
    return false;
  }
  double worst = 0.0;
  std::size_t worst_i = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (std::isnan(g) != std::isnan(w) || std::isinf(g) != std::isinf(w) ||
        (std::isinf(g) && (g > 0) != (w > 0))) {
      MESSAGE("NaN/Inf pattern differs at ", i, ": got ", g, ", want ", w);
      return false;
    }
    if (!std::isfinite(g)) continue;
    const double e = std::fabs(g - w);
    if (e > worst) worst = e, worst_i = i;
  }
  const double bound = rel * (1.0 + v_scale);
  if (worst > bound) {
    MESSAGE("max|err| = ", worst, " at ", worst_i, " (got ", got[worst_i], ", want ", want[worst_i],
            "), bound ", bound);
    return false;
  }
  return true;
}

/// Caller storage for a layer_state: `bytes` bytes aligned to 64.
struct aligned_bytes {
  std::vector<unsigned char> raw;
  unsigned char* data = nullptr;
  std::size_t size = 0;
  explicit aligned_bytes(std::size_t bytes) : raw(bytes + 64), size(bytes) {
    const auto p = reinterpret_cast<std::uintptr_t>(raw.data());
    data = raw.data() + (64 - p % 64) % 64;
  }
};

/// Bitwise equality of two float buffers (NaNs compared by bits too).
inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace testing
