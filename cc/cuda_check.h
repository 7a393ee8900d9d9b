// CHECK_CUDA for the standalone CUDA programs (cuda_kernel_test.cu,
// cuda_kernel_bench.cu): exits with status 2 and names the failing call when
// a CUDA call, a cuBLAS GEMM or one of our launchers returns an error code.
#ifndef METRIX_TF_CC_CUDA_CHECK_H_
#define METRIX_TF_CC_CUDA_CHECK_H_

#include <cstdio>
#include <cstdlib>

#include "cc/soft_label_similarity_kernels.h"

#define CHECK_CUDA(expr)                                                 \
  do {                                                                   \
    const int error = static_cast<int>(expr);                            \
    if (error != 0) {                                                    \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, \
                   metrix::cuda::ErrorString(error));                    \
      std::exit(2);                                                      \
    }                                                                    \
  } while (0)

#endif  // METRIX_TF_CC_CUDA_CHECK_H_
