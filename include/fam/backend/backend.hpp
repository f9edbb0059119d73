// Backend policy tags. A backend is a tag type (holding only a parallel-for hook); the
// algorithm calls the kernel entry
// points (kernel::attend_rows) with the tag, and overload resolution picks the implementation.
// A custom backend derives from an existing tag and overloads only what it changes; anything
// it does not overload falls back to its base (xsimd's requires_arch idea).
#ifndef FAM_BACKEND_BACKEND_HPP_
#define FAM_BACKEND_BACKEND_HPP_

#include <type_traits>

#include "../parallel.hpp"

FAM_NAMESPACE_BEGIN

/// Root of every backend tag. Its only state is the optional parallel-for hook.
struct backend_tag {
  parallel_hook parallel;  ///< default: run work items serially on the calling thread
};

namespace detail {
template <class Backend>
constexpr void check_backend() noexcept {
  static_assert(std::is_base_of_v<backend_tag, Backend>,
                "fam: no implementation for this backend (a backend must derive from "
                "fam::reference_backend or another fam backend tag)");
}
}  // namespace detail

FAM_NAMESPACE_END

#endif  // FAM_BACKEND_BACKEND_HPP_
