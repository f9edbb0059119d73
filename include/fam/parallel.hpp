// Threads: the library creates none. A caller hands a parallel-for hook to a backend; the
// algorithm splits its work into independent items (sequence, head, query tile) that each
// write their own outputs, so any schedule and any thread count give the same bits.
#ifndef FAM_PARALLEL_HPP_
#define FAM_PARALLEL_HPP_

#include "config.hpp"

FAM_NAMESPACE_BEGIN

/// A caller-supplied parallel for: run(context, n, task, arg) must call task(arg, i) exactly
/// once for every i in [0, n), in any order and on any threads, and return when all are done.
/// task never throws. A default hook (run == nullptr) runs the items in order on the caller.
struct parallel_hook {
  void* context = nullptr;
  void (*run)(void* context, index_t n, void (*task)(void* arg, index_t i), void* arg) = nullptr;
};

FAM_NAMESPACE_END

#endif  // FAM_PARALLEL_HPP_
