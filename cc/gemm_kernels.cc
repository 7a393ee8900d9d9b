// One instruction-set copy of the GEMM declared in gemm.h. The build
// compiles this file once per copy with
//   -DMETRIX_GEMM_ISA=<name> -DMETRIX_EIGEN_NAMESPACE=<unique name>
// plus that instruction set's -m flags. Renaming the Eigen namespace keeps
// the copies' template instantiations apart: otherwise the linker would keep
// one AVX-512 (or one generic) instantiation for all of them.
#ifndef METRIX_GEMM_ISA
#error "compile with -DMETRIX_GEMM_ISA=generic|avx2|avx512"
#endif
#ifndef METRIX_EIGEN_NAMESPACE
#error "compile with -DMETRIX_EIGEN_NAMESPACE=<namespace for this copy>"
#endif

#include <cstdint>

#define Eigen METRIX_EIGEN_NAMESPACE
#include <Eigen/Core>
#undef Eigen

namespace metrix {
namespace METRIX_GEMM_ISA {

namespace E = ::METRIX_EIGEN_NAMESPACE;

template <typename T>
using RowMajor =
    E::Map<const E::Matrix<T, E::Dynamic, E::Dynamic, E::RowMajor>, 0,
           E::OuterStride<>>;
template <typename T>
using MutableRowMajor =
    E::Map<E::Matrix<T, E::Dynamic, E::Dynamic, E::RowMajor>, 0,
           E::OuterStride<>>;

template <typename T, typename A, typename B>
void Product(const A& a, const B& b, bool accumulate, T* c, int64_t m,
             int64_t n, int64_t ldc) {
  MutableRowMajor<T> out(c, m, n, E::OuterStride<>(ldc));
  if (accumulate) {
    out.noalias() += a * b;
  } else {
    out.noalias() = a * b;
  }
}

template <typename T>
void GemmImpl(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
              int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
              bool accumulate, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) MutableRowMajor<T>(c, m, n, E::OuterStride<>(ldc)).setZero();
    return;
  }
  const RowMajor<T> a_mk(a, m, k, E::OuterStride<>(lda));
  const RowMajor<T> a_km(a, k, m, E::OuterStride<>(lda));
  const RowMajor<T> b_kn(b, k, n, E::OuterStride<>(ldb));
  const RowMajor<T> b_nk(b, n, k, E::OuterStride<>(ldb));
  if (!transpose_a && !transpose_b) {
    Product<T>(a_mk, b_kn, accumulate, c, m, n, ldc);
  } else if (!transpose_a && transpose_b) {
    Product<T>(a_mk, b_nk.transpose(), accumulate, c, m, n, ldc);
  } else if (transpose_a && !transpose_b) {
    Product<T>(a_km.transpose(), b_kn, accumulate, c, m, n, ldc);
  } else {
    Product<T>(a_km.transpose(), b_nk.transpose(), accumulate, c, m, n, ldc);
  }
}

void GemmFloat(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
               int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, bool accumulate, float* c, int64_t ldc) {
  GemmImpl<float>(transpose_a, transpose_b, m, n, k, a, lda, b, ldb,
                  accumulate, c, ldc);
}

void GemmDouble(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
                int64_t k, const double* a, int64_t lda, const double* b,
                int64_t ldb, bool accumulate, double* c, int64_t ldc) {
  GemmImpl<double>(transpose_a, transpose_b, m, n, k, a, lda, b, ldb,
                   accumulate, c, ldc);
}

}  // namespace METRIX_GEMM_ISA
}  // namespace metrix
