// Plain data passed to the soft-label similarity kernels, and the CUDA
// launchers. This header needs neither TensorFlow nor the CUDA headers, so
// the TensorFlow op file (g++), the CUDA kernels (nvcc) and the standalone
// CUDA test all include it.
#ifndef METRIX_TF_CC_SOFT_LABEL_SIMILARITY_KERNELS_H_
#define METRIX_TF_CC_SOFT_LABEL_SIMILARITY_KERNELS_H_

#include <cstdint>

namespace metrix {

// anchors [m, d], anchor_labels [m], candidates [n, d], label_a / label_b /
// lam [n], all row-major and dense.
template <typename T, typename L>
struct PairInputs {
  const T* anchors;
  const L* anchor_labels;
  const T* candidates;
  const L* label_a;
  const L* label_b;
  const T* lam;
  int64_t m;
  int64_t n;
  int64_t d;
  bool exclude_self;
};

// "exp" kind (multi-similarity, proxy anchor); see soft_label_similarity_ops.cc.
template <typename T>
struct ExpParams {
  T scale_pos;
  T shift_pos;
  T scale_neg;
  T shift_neg;
  T epsilon;
  bool mine;
};

// Per-row outputs of the "exp" kind, each [m].
template <typename T>
struct ExpOutputs {
  T* lse_pos;
  T* lse_neg;
  T* min_pos;
  T* max_neg;
  T* pos_count;
  T* neg_count;
};

// Per-row inputs of the "exp" backward, each [m].
template <typename T>
struct ExpGradInputs {
  const T* lse_pos;
  const T* lse_neg;
  const T* min_pos;
  const T* max_neg;
  const T* grad_lse_pos;
  const T* grad_lse_neg;
};

template <typename T>
struct ContrastiveParams {
  T pos_margin;
  T neg_margin;
};

template <typename T>
struct ContrastiveOutputs {
  T* pos_sum;
  T* pos_count;
  T* neg_sum;
  T* neg_count;
};

template <typename T>
struct ContrastiveGradInputs {
  const T* grad_pos_sum;
  const T* grad_neg_sum;
};

namespace cuda {

// The GPU path: the similarity GEMMs (forward S = A C^T, backward
// dS C and dS^T A) run in cuBLAS on the op's stream (cublas_gemm.h); only
// the soft-label epilogue, the per-row reductions and the per-entry
// gradient are kernels of ours (soft_label_similarity_kernels.cu).
//
// All launchers run asynchronously on `stream` (a cudaStream_t) and return
// 0 on success or an error code for ErrorString(). Pointers are device
// pointers; params are host values. `allow_tf32` lets float GEMMs use
// TensorFloat-32 tensor cores (TensorFlow's own matmul setting).
struct GpuContext {
  void* stream;
  bool allow_tf32;
};

// Description of an error code returned by a launcher or RowMajorGemm.
const char* ErrorString(int code);

// The fused reductions never hold the M x N matrices: they walk the anchors
// in strips of `rows` anchors x N candidates, each strip one cuBLAS GEMM into
// `data` (rows x N entries), reduced (forward) or turned into dL/dS in place
// and multiplied back (backward). Any rows >= 1 gives the same results up to
// float rounding; the op uses FusedStripRows.
template <typename T>
struct StripWorkspace {
  T* data;
  int64_t rows;
};

// Rows of a strip: a multiple of 64 anchors with at most kFusedStripEntries
// entries (256 MiB of float), at least 64, at most m. Measured on an H200
// (cc/cuda_kernel_bench.cu, M = N = 32768, D = 512): strips of 2^26 entries
// run the fused forward + backward 1.3 times as fast as strips of 2^24 (the
// GEMMs of taller strips use the GPU better), still 16 times less memory
// than one M x N matrix.
constexpr int64_t kFusedStripEntries = int64_t{1} << 26;
inline int64_t FusedStripRows(int64_t m, int64_t n) {
  int64_t rows = n > 0 ? (kFusedStripEntries / n) / 64 * 64 : m;
  if (rows < 64) rows = 64;
  if (rows > m) rows = m;
  return rows > 0 ? rows : 1;
}

// similarity [m, n] = anchors @ candidates^T (one cuBLAS GEMM) and
// soft_labels [m, n] (our epilogue kernel).
template <typename T, typename L>
int LaunchSoftLabelSimilarity(const GpuContext& gpu, const PairInputs<T, L>& in,
                              T* similarity, T* soft_labels);

template <typename T, typename L>
int LaunchExpReductions(const GpuContext& gpu, const PairInputs<T, L>& in,
                        const ExpParams<T>& params, const ExpOutputs<T>& out,
                        const StripWorkspace<T>& strip);

template <typename T, typename L>
int LaunchExpReductionsGrad(const GpuContext& gpu, const PairInputs<T, L>& in,
                            const ExpParams<T>& params,
                            const ExpGradInputs<T>& grad, T* grad_anchors,
                            T* grad_candidates, const StripWorkspace<T>& strip);

template <typename T, typename L>
int LaunchContrastiveReductions(const GpuContext& gpu,
                                const PairInputs<T, L>& in,
                                const ContrastiveParams<T>& params,
                                const ContrastiveOutputs<T>& out,
                                const StripWorkspace<T>& strip);

template <typename T, typename L>
int LaunchContrastiveReductionsGrad(const GpuContext& gpu,
                                    const PairInputs<T, L>& in,
                                    const ContrastiveParams<T>& params,
                                    const ContrastiveGradInputs<T>& grad,
                                    T* grad_anchors, T* grad_candidates,
                                    const StripWorkspace<T>& strip);

}  // namespace cuda
}  // namespace metrix

#endif  // METRIX_TF_CC_SOFT_LABEL_SIMILARITY_KERNELS_H_
