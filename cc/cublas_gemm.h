// Row-major GEMM through cuBLAS, loaded at run time.
//
// cuBLAS is not linked: the first call dlopen()s it, preferring the
// libcublas.so.12 that TensorFlow has already loaded (TensorFlow's GPU wheels
// take it from the nvidia-cublas-cu12 package), so the op and TensorFlow
// share one cuBLAS and one CUDA runtime. The search order is
// $METRIX_TF_CUBLAS, an already-loaded libcublas.so.12 / .13 / .so, then the
// same names through the normal library search, then
// <site-packages>/nvidia/cublas/lib/libcublas.so.12 next to this library.
// Only the stable cuBLAS v2 entry points are used, declared here, so the
// build needs no cuBLAS headers nor libraries.
#ifndef METRIX_TF_CC_CUBLAS_GEMM_H_
#define METRIX_TF_CC_CUBLAS_GEMM_H_

#include <cstdint>

namespace metrix {
namespace cuda {

// Error codes beyond cudaError_t (which are >= 0).
constexpr int kCublasNotFound = -1;    // see CublasLoadError()
constexpr int kGemmTooLarge = -2;      // a dimension does not fit cuBLAS' int
constexpr int kCublasErrorBase = -1000;  // -1000 - cublasStatus_t

// C [m, n] = alpha op(A) op(B) + beta C, all row-major with leading
// dimensions lda / ldb / ldc (op(A) is [m, k], op(B) is [k, n]), enqueued on
// `stream` for the current device. allow_tf32 applies to float only.
// Returns 0, kCublasNotFound, kGemmTooLarge or kCublasErrorBase - status.
template <typename T>
int RowMajorGemm(void* stream, bool allow_tf32, bool trans_a, bool trans_b,
                 int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                 int64_t lda, const T* b, int64_t ldb, T beta, T* c,
                 int64_t ldc);

// Why cuBLAS could not be loaded (empty when it was).
const char* CublasLoadError();

// The file cuBLAS was loaded from (empty before the first GEMM or on error).
const char* CublasPath();

}  // namespace cuda
}  // namespace metrix

#endif  // METRIX_TF_CC_CUBLAS_GEMM_H_
