// Small macros shared by every header: host/device marking and internal asserts.
#ifndef FAM_DETAIL_MACROS_HPP_
#define FAM_DETAIL_MACROS_HPP_

#include <cassert>

#include "../version.hpp"

// One header serves CPU and CUDA: under nvcc the pure functions are callable on device too.
#if defined(__CUDACC__)
#define FAM_HOST_DEVICE __host__ __device__
#else
#define FAM_HOST_DEVICE
#endif

// For the small element loaders that micro-kernels call per vector: g++ may otherwise leave
// them out of line inside a large kernel, a call per vector.
#if defined(__GNUC__)
#define FAM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define FAM_ALWAYS_INLINE inline
#endif

// Internal invariants (never input validation: bad input gets a status code).
// Override by defining FAM_ASSERT before including any fam header; the tests make it throw.
#ifndef FAM_ASSERT
#define FAM_ASSERT(cond) assert(cond)
#endif

#define FAM_NAMESPACE_BEGIN \
  namespace fam {           \
  inline namespace FAM_ABI_NAMESPACE {
#define FAM_NAMESPACE_END \
  }                       \
  }

#endif  // FAM_DETAIL_MACROS_HPP_
