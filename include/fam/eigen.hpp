// Opt-in interop with Eigen: views from row-major Eigen::Map / matrices, and one head of a
// view as an Eigen::Map. Include only where Eigen is available.
#ifndef FAM_EIGEN_HPP_
#define FAM_EIGEN_HPP_

#include <Eigen/Core>

#include "view.hpp"

FAM_NAMESPACE_BEGIN

/// Row-major float matrix with a run-time outer stride, the shape of one head of a view.
template <class T>
using head_map = Eigen::Map<
    std::conditional_t<std::is_const_v<T>,
                       const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                       Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>,
    0, Eigen::OuterStride<>>;

/// A [rows, heads, head_dim] view of a row-major matrix whose rows are tokens and whose
/// columns are heads * head_dim (the usual output of a Q/K/V projection).
template <class Derived>
auto as_view(Eigen::PlainObjectBase<Derived>& m, index_t heads) noexcept {
  static_assert(Derived::IsRowMajor, "fam: as_view needs a row-major Eigen matrix");
  return tensor_view<float>{m.data(),         m.rows(),        heads,
                            m.cols() / heads, m.outerStride(), m.cols() / heads};
}
template <class Derived>
auto as_view(const Eigen::PlainObjectBase<Derived>& m, index_t heads) noexcept {
  static_assert(Derived::IsRowMajor, "fam: as_view needs a row-major Eigen matrix");
  return tensor_view<const float>{m.data(),         m.rows(),        heads,
                                  m.cols() / heads, m.outerStride(), m.cols() / heads};
}
template <class MatrixType, int Options, class StrideType>
auto as_view(const Eigen::Map<MatrixType, Options, StrideType>& m, index_t heads) noexcept {
  static_assert(MatrixType::IsRowMajor, "fam: as_view needs a row-major Eigen::Map");
  using T = std::remove_pointer_t<decltype(m.data())>;
  return tensor_view<T>{m.data(),         m.rows(),        heads,
                        m.cols() / heads, m.outerStride(), m.cols() / heads};
}

/// Head h of a view as an Eigen map: [rows, head_dim], outer stride = the view's row stride.
template <class T>
head_map<T> head_matrix(const tensor_view<T>& v, index_t h) noexcept {
  return head_map<T>(v.at(0, h), v.rows, v.head_dim, Eigen::OuterStride<>(v.row_stride));
}

FAM_NAMESPACE_END

#endif  // FAM_EIGEN_HPP_
