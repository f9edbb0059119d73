// A parallel-for for tests: runs the items in a shuffled order on `threads` new threads, so
// that any dependence of the results on schedule or thread count shows.
#ifndef FAM_TESTS_SUPPORT_SHUFFLED_HOOK_HPP_
#define FAM_TESTS_SUPPORT_SHUFFLED_HOOK_HPP_

#include <algorithm>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "fam/parallel.hpp"

namespace testing {

struct shuffled_hook {
  int threads;
  std::uint64_t seed;  ///< advanced by every call: each parallel-for gets its own order
  static void run(void* self, fam::index_t n, void (*task)(void*, fam::index_t), void* arg) {
    auto* h = static_cast<shuffled_hook*>(self);
    std::vector<fam::index_t> order(static_cast<std::size_t>(n));
    for (fam::index_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(h->seed++));
    std::vector<std::thread> pool;
    for (int t = 0; t < h->threads; ++t)
      pool.emplace_back([&order, task, arg, t, h] {
        for (std::size_t i = std::size_t(t); i < order.size(); i += std::size_t(h->threads))
          task(arg, order[i]);
      });
    for (std::thread& t : pool) t.join();
  }
  fam::parallel_hook hook() { return {this, &shuffled_hook::run}; }
};

}  // namespace testing

#endif  // FAM_TESTS_SUPPORT_SHUFFLED_HOOK_HPP_
