// CUDA runtime errors as fam::status. Nothing is thrown across a stream: every runtime call of
// the adapter goes through FAM_CUDA_TRY, which maps a cudaError_t to the closest fam::status and
// keeps the exact cudaError_t for the calling thread (fam::cuda::last_error()).
#ifndef FAM_CUDA_ERROR_CUH_
#define FAM_CUDA_ERROR_CUH_

#include <cuda_runtime.h>

#include "../status.hpp"

FAM_NAMESPACE_BEGIN
namespace cuda {

namespace detail {
inline cudaError_t& last_error_slot() noexcept {
  static thread_local cudaError_t e = cudaSuccess;
  return e;
}
}  // namespace detail

/// The cudaError_t behind the last non-ok status that an adapter call on this thread returned
/// because of the CUDA runtime (cudaSuccess if none since clear_last_error()). fam::status has no
/// CUDA code of its own: a runtime failure is returned as out_of_memory (allocation), unsupported
/// (no device, no kernel image for this GPU, driver too old, a launch the GPU cannot do) or
/// invalid_argument (an argument the runtime rejected), and this says which error it was.
inline cudaError_t last_error() noexcept { return detail::last_error_slot(); }
inline void clear_last_error() noexcept { detail::last_error_slot() = cudaSuccess; }

/// The fam::status for a CUDA runtime error (ok for cudaSuccess).
inline status status_of(cudaError_t e) noexcept {
  switch (e) {
    case cudaSuccess:
      return status::ok;
    case cudaErrorMemoryAllocation:
      return status::out_of_memory;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidResourceHandle:
      return status::invalid_argument;
    default:  // no device, no image for this GPU, launch failures, sticky errors of the context
      return status::unsupported;
  }
}

/// Records e (when it is an error) and returns its status.
inline status record(cudaError_t e) noexcept {
  if (e != cudaSuccess) detail::last_error_slot() = e;
  return status_of(e);
}

}  // namespace cuda
FAM_NAMESPACE_END

/// Runs a CUDA runtime call; on error, records it and returns its fam::status.
#define FAM_CUDA_TRY(call)                                                       \
  do {                                                                           \
    const cudaError_t fam_cuda_err_ = (call);                                    \
    if (fam_cuda_err_ != cudaSuccess) return ::fam::cuda::record(fam_cuda_err_); \
  } while (0)

#endif  // FAM_CUDA_ERROR_CUH_
