// Run-time choice between the instruction-set copies of gemm_kernels.cc.
#include "cc/gemm.h"

#define METRIX_DECLARE_GEMM_COPY(isa)                                       \
  namespace isa {                                                           \
  void GemmFloat(bool, bool, int64_t, int64_t, int64_t, const float*,      \
                 int64_t, const float*, int64_t, bool, float*, int64_t);   \
  void GemmDouble(bool, bool, int64_t, int64_t, int64_t, const double*,    \
                  int64_t, const double*, int64_t, bool, double*, int64_t); \
  }

namespace metrix {

METRIX_DECLARE_GEMM_COPY(generic)
#if defined(METRIX_GEMM_HAVE_AVX2)
METRIX_DECLARE_GEMM_COPY(avx2)
#endif
#if defined(METRIX_GEMM_HAVE_AVX512)
METRIX_DECLARE_GEMM_COPY(avx512)
#endif

namespace {

enum class Isa { kGeneric, kAvx2, kAvx512 };

Isa DetectIsa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
#if defined(METRIX_GEMM_HAVE_AVX512)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("fma")) {
    return Isa::kAvx512;
  }
#endif
#if defined(METRIX_GEMM_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return Isa::kAvx2;
  }
#endif
#endif
  return Isa::kGeneric;
}

Isa ChosenIsa() {
  static const Isa isa = DetectIsa();
  return isa;
}

}  // namespace

void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
          int64_t k, const float* a, int64_t lda, const float* b,
          int64_t ldb, bool accumulate, float* c, int64_t ldc) {
  switch (ChosenIsa()) {
#if defined(METRIX_GEMM_HAVE_AVX512)
    case Isa::kAvx512:
      return avx512::GemmFloat(transpose_a, transpose_b, m, n, k, a, lda, b,
                               ldb, accumulate, c, ldc);
#endif
#if defined(METRIX_GEMM_HAVE_AVX2)
    case Isa::kAvx2:
      return avx2::GemmFloat(transpose_a, transpose_b, m, n, k, a, lda, b,
                             ldb, accumulate, c, ldc);
#endif
    default:
      return generic::GemmFloat(transpose_a, transpose_b, m, n, k, a, lda, b,
                                ldb, accumulate, c, ldc);
  }
}

void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
          int64_t k, const double* a, int64_t lda, const double* b,
          int64_t ldb, bool accumulate, double* c, int64_t ldc) {
  switch (ChosenIsa()) {
#if defined(METRIX_GEMM_HAVE_AVX512)
    case Isa::kAvx512:
      return avx512::GemmDouble(transpose_a, transpose_b, m, n, k, a, lda, b,
                                ldb, accumulate, c, ldc);
#endif
#if defined(METRIX_GEMM_HAVE_AVX2)
    case Isa::kAvx2:
      return avx2::GemmDouble(transpose_a, transpose_b, m, n, k, a, lda, b,
                              ldb, accumulate, c, ldc);
#endif
    default:
      return generic::GemmDouble(transpose_a, transpose_b, m, n, k, a, lda, b,
                                 ldb, accumulate, c, ldc);
  }
}

const char* GemmInstructionSet() {
  switch (ChosenIsa()) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

}  // namespace metrix
