// Named constants (no magic numbers in kernels).
#ifndef FAM_DETAIL_MATH_HPP_
#define FAM_DETAIL_MATH_HPP_

#include <limits>

#include "macros.hpp"

FAM_NAMESPACE_BEGIN
namespace detail {

inline constexpr double neg_inf = -std::numeric_limits<double>::infinity();

}  // namespace detail
FAM_NAMESPACE_END

#endif  // FAM_DETAIL_MATH_HPP_
