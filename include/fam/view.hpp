// Non-owning strided views over caller memory (flashinfer's paged_kv_t idea, minus paging).
#ifndef FAM_VIEW_HPP_
#define FAM_VIEW_HPP_

#include <cstddef>
#include <type_traits>

#include "config.hpp"

FAM_NAMESPACE_BEGIN

/// A [rows, heads, head_dim] tensor in caller memory, unit stride on head_dim.
/// Element (r, h, d) is at data[r * row_stride + h * head_stride + d] (64-bit offsets).
/// Token-major [L, H, D] is the default layout (make_view); head-major is
/// {data, L, H, D, D, L * D}. Rows are tokens (or FAM rows), heads are query or kv heads.
template <class T>
struct tensor_view {
  T* data = nullptr;
  index_t rows = 0;
  index_t heads = 0;
  index_t head_dim = 0;
  index_t row_stride = 0;   ///< elements between consecutive rows
  index_t head_stride = 0;  ///< elements between consecutive heads

  /// Start of row r of head h (its head_dim elements are contiguous).
  constexpr T* at(index_t r, index_t h) const noexcept {
    return data + r * row_stride + h * head_stride;
  }
  /// Rows [first, first + count) of this view.
  constexpr tensor_view rows_from(index_t first, index_t count) const noexcept {
    return {count == 0 ? data : data + first * row_stride,
            count,
            heads,
            head_dim,
            row_stride,
            head_stride};
  }
  /// A read-only view of the same memory.
  constexpr operator tensor_view<const T>() const noexcept {  // NOLINT: implicit on purpose
    return {data, rows, heads, head_dim, row_stride, head_stride};
  }
};

/// Contiguous token-major view: [rows, heads, head_dim].
template <class T>
constexpr tensor_view<T> make_view(T* data, index_t rows, index_t heads,
                                   index_t head_dim) noexcept {
  return {data, rows, heads, head_dim, heads * head_dim, head_dim};
}

/// Optional log-sum-exp output, [rows, heads]: element (r, h) at data[r*row_stride +
/// h*head_stride]. A null data pointer means "not requested".
struct lse_view {
  float* data = nullptr;
  index_t row_stride = 0;
  index_t head_stride = 0;
  constexpr float* at(index_t r, index_t h) const noexcept {
    return data + r * row_stride + h * head_stride;
  }
  constexpr lse_view rows_from(index_t first) const noexcept {
    return {data == nullptr ? nullptr : data + first * row_stride, row_stride, head_stride};
  }
};

/// Contiguous [rows, heads] log-sum-exp output.
constexpr lse_view make_lse_view(float* data, index_t heads) noexcept { return {data, heads, 1}; }

namespace detail {

/// Checks that `v` describes `rows` x `heads` x `head_dim` elements that can be addressed:
/// non-negative sizes, unit head-dim stride (by construction), strides that keep the heads of a
/// row and the rows apart (no overlap), and no offset overflow.
template <class T>
status check_view(const tensor_view<T>& v, index_t rows, index_t heads, index_t head_dim) noexcept {
  // An empty tensor accepts any empty view, a default-constructed one included.
  if (rows == 0 && v.rows == 0) return status::ok;
  FAM_CHECK(v.rows == rows && v.heads == heads && v.head_dim == head_dim, status::shape_mismatch);
  if (rows == 0 || heads == 0 || head_dim == 0) return status::ok;
  FAM_CHECK(v.data != nullptr, status::null_pointer);
  FAM_CHECK(v.row_stride >= 0 && v.head_stride >= 0, status::invalid_layout);
  // Every offset must fit: each term below a quarter of the range, so their sums fit too.
  constexpr index_t kQuarter =
      std::numeric_limits<index_t>::max() / static_cast<index_t>(sizeof(T)) / 4;
  FAM_CHECK(v.row_stride == 0 || rows - 1 <= kQuarter / v.row_stride, status::too_large);
  FAM_CHECK(v.head_stride == 0 || heads - 1 <= kQuarter / v.head_stride, status::too_large);
  FAM_CHECK(head_dim <= kQuarter, status::too_large);
  // Heads of one row must not overlap, rows must not overlap one another.
  if (heads > 1) FAM_CHECK(v.head_stride >= head_dim, status::invalid_layout);
  if (rows > 1 && heads == 1) {
    FAM_CHECK(v.row_stride >= head_dim, status::invalid_layout);
  } else if (rows > 1) {
    const bool rows_outer = v.row_stride >= v.head_stride;
    if (rows_outer) {
      FAM_CHECK(v.row_stride >= (heads - 1) * v.head_stride + head_dim, status::invalid_layout);
    } else {
      FAM_CHECK(v.row_stride >= head_dim, status::invalid_layout);
      FAM_CHECK(v.head_stride >= (rows - 1) * v.row_stride + head_dim, status::invalid_layout);
    }
  }
  return status::ok;
}

/// An lse view is a [rows, heads] tensor of single floats: the same rules (or not requested).
inline status check_lse(const lse_view& lse, index_t rows, index_t heads) noexcept {
  if (lse.data == nullptr) return status::ok;
  return check_view(tensor_view<float>{lse.data, rows, heads, 1, lse.row_stride, lse.head_stride},
                    rows, heads, 1);
}

template <class T>
bool same_memory(const tensor_view<T>& a, const void* p) noexcept {
  return a.data != nullptr && static_cast<const void*>(a.data) == p;
}

}  // namespace detail

FAM_NAMESPACE_END

#endif  // FAM_VIEW_HPP_
