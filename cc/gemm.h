// A small row-major GEMM for the CPU kernels, compiled once per instruction
// set and picked at run time.
//
// TensorFlow's compile flags (tf.sysconfig) target baseline x86-64 (SSE2),
// where Eigen's GEMM runs at about a quarter of the speed it reaches with
// AVX2 + FMA. gemm_kernels.cc is therefore compiled three times (generic,
// AVX2 + FMA, AVX-512), each copy with Eigen renamed into its own namespace
// so that no template instantiation is shared between the copies, and
// Gemm() dispatches on the CPU it runs on (__builtin_cpu_supports).
#ifndef METRIX_TF_CC_GEMM_H_
#define METRIX_TF_CC_GEMM_H_

#include <cstdint>

namespace metrix {

// c[m, n] = op(a) op(b) (or c += op(a) op(b) when accumulate), all
// row-major: op(a) is a[m, k] (lda) or, when transpose_a, the transpose of
// a[k, m]; likewise op(b) is b[k, n] or the transpose of b[n, k].
// Single-threaded: callers parallelise over blocks of rows.
template <typename T>
using GemmFunction = void (*)(bool transpose_a, bool transpose_b, int64_t m,
                              int64_t n, int64_t k, const T* a, int64_t lda,
                              const T* b, int64_t ldb, bool accumulate, T* c,
                              int64_t ldc);

void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
          int64_t k, const float* a, int64_t lda, const float* b,
          int64_t ldb, bool accumulate, float* c, int64_t ldc);
void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
          int64_t k, const double* a, int64_t lda, const double* b,
          int64_t ldb, bool accumulate, double* c, int64_t ldc);

// Which copy Gemm() uses on this CPU: "avx512", "avx2" or "generic".
const char* GemmInstructionSet();

}  // namespace metrix

#endif  // METRIX_TF_CC_GEMM_H_
