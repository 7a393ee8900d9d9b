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

// All launchers run asynchronously on `stream` (a cudaStream_t) and return
// 0 on success or the cudaError_t of the failed launch. Pointers are device
// pointers; params are host values.

// similarity [m, n] and soft_labels [m, n] in one tiled GEMM whose epilogue
// writes the soft labels.
template <typename T, typename L>
int LaunchSoftLabelSimilarity(void* stream, const PairInputs<T, L>& in,
                              T* similarity, T* soft_labels);

template <typename T, typename L>
int LaunchExpReductions(void* stream, const PairInputs<T, L>& in,
                        const ExpParams<T>& params, const ExpOutputs<T>& out);

template <typename T, typename L>
int LaunchExpReductionsGrad(void* stream, const PairInputs<T, L>& in,
                            const ExpParams<T>& params,
                            const ExpGradInputs<T>& grad, T* grad_anchors,
                            T* grad_candidates);

template <typename T, typename L>
int LaunchContrastiveReductions(void* stream, const PairInputs<T, L>& in,
                                const ContrastiveParams<T>& params,
                                const ContrastiveOutputs<T>& out);

template <typename T, typename L>
int LaunchContrastiveReductionsGrad(void* stream, const PairInputs<T, L>& in,
                                    const ContrastiveParams<T>& params,
                                    const ContrastiveGradInputs<T>& grad,
                                    T* grad_anchors, T* grad_candidates);

}  // namespace cuda
}  // namespace metrix

#endif  // METRIX_TF_CC_SOFT_LABEL_SIMILARITY_KERNELS_H_
