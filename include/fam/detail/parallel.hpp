// parallel_for over a backend's hook (see fam/parallel.hpp).
#ifndef FAM_DETAIL_PARALLEL_HPP_
#define FAM_DETAIL_PARALLEL_HPP_

#include "../parallel.hpp"

FAM_NAMESPACE_BEGIN
namespace detail {

/// Calls fn(i) for i in [0, n) through backend.parallel, or serially without a hook.
template <class Backend, class Fn>
void parallel_for(const Backend& backend, index_t n, const Fn& fn) noexcept {
  const parallel_hook& hook = backend.parallel;
  if (hook.run == nullptr || n <= 1) {
    for (index_t i = 0; i < n; ++i) fn(i);
    return;
  }
  hook.run(
      hook.context, n, [](void* arg, index_t i) { (*static_cast<const Fn*>(arg))(i); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace detail
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_PARALLEL_HPP_
