// Status codes returned by every public call. The library never throws and never aborts on
// bad input: it returns one of these, before touching any output or state.
#ifndef FAM_STATUS_HPP_
#define FAM_STATUS_HPP_

#include "detail/macros.hpp"

FAM_NAMESPACE_BEGIN

enum class status : int {
  ok = 0,
  invalid_argument,    ///< a size, scale or window outside its documented range
  invalid_layout,      ///< a view whose strides do not describe a valid [rows, heads, D] layout
  null_pointer,        ///< a null pointer where the size is non-zero
  shape_mismatch,      ///< views disagree with the configuration or with each other
  unsupported,         ///< valid, but not supported by this backend (e.g. head_dim too large)
  too_large,           ///< an offset would overflow the index type
  out_of_memory,       ///< allocation failed (only ever at construction)
  buffer_too_small,    ///< caller storage or a save buffer is smaller than required
  not_initialized,     ///< a state used before init()
  fam_not_installed,   ///< F > 0 and no FAM state was installed before the first token
  fam_update_pending,  ///< a block completed; install the new FAM before more tokens
  no_update_pending,   ///< update_fam() called when no block completed
  out_of_range,        ///< rewind past the start of the current block
  corrupt_state,       ///< a state blob that is truncated or fails its checksum
  incompatible_state,  ///< a well-formed blob for another configuration, version or byte order
};

/// A short English description, for messages.
constexpr const char* to_string(status s) noexcept {
  switch (s) {
    case status::ok:
      return "ok";
    case status::invalid_argument:
      return "invalid argument";
    case status::invalid_layout:
      return "invalid layout (head-dim stride must be 1, strides positive)";
    case status::null_pointer:
      return "null pointer with non-zero size";
    case status::shape_mismatch:
      return "shape mismatch";
    case status::unsupported:
      return "unsupported by this backend";
    case status::too_large:
      return "sizes overflow the index type";
    case status::out_of_memory:
      return "out of memory";
    case status::buffer_too_small:
      return "buffer too small";
    case status::not_initialized:
      return "state not initialized";
    case status::fam_not_installed:
      return "no FAM state installed";
    case status::fam_update_pending:
      return "FAM update pending: install the new FAM first";
    case status::no_update_pending:
      return "no FAM update pending";
    case status::out_of_range:
      return "out of range";
    case status::corrupt_state:
      return "corrupt state blob";
    case status::incompatible_state:
      return "incompatible state blob";
  }
  return "unknown status";
}

FAM_NAMESPACE_END

// Return early from a status-returning function when `cond` is false.
#define FAM_CHECK(cond, code) \
  do {                        \
    if (!(cond)) return code; \
  } while (0)
// Propagate a non-ok status.
#define FAM_TRY(expr)                                                 \
  do {                                                                \
    const ::fam::status fam_try_status_ = (expr);                     \
    if (fam_try_status_ != ::fam::status::ok) return fam_try_status_; \
  } while (0)

#endif  // FAM_STATUS_HPP_
