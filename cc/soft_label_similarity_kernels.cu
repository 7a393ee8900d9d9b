// CUDA kernels of the soft-label similarity ops (no TensorFlow headers: the
// TensorFlow side, soft_label_similarity_ops_gpu.cc, passes raw pointers and
// its cudaStream_t). Per-element math comes from the METRIX_HD functions of
// soft_label_similarity_math.h / _rows.h, shared with the CPU kernels.
//
// SoftLabelSimilarity: a 64 x 64 shared-memory tiled GEMM (256 threads,
//   4 x 4 outputs each) whose epilogue writes the soft labels.
// Fused reductions: one warp per anchor row (forward, grad_anchors) or per
//   candidate (grad_candidates). WarpDot gives every lane the bit-identical
//   similarity, in the same summation order in all three kernels, so the
//   backward recomputes exactly the forward's similarities.
#include <cuda_runtime.h>

#include <cstdint>

#include "cc/soft_label_similarity_kernels.h"
#include "cc/soft_label_similarity_math.h"
#include "cc/soft_label_similarity_rows.h"

namespace metrix {
namespace cuda {
namespace {

constexpr int kTile = 64;
constexpr int kTileK = 16;
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = 8;
constexpr unsigned kFullMask = 0xffffffffu;

template <typename T, typename L>
__global__ void SoftLabelSimilarityKernel(PairInputs<T, L> in, T* similarity,
                                          T* soft_labels) {
  __shared__ T a_tile[kTileK][kTile + 1];
  __shared__ T c_tile[kTileK][kTile + 1];
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile;
  T acc[4][4];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = T(0);
  for (int64_t k0 = 0; k0 < in.d; k0 += kTileK) {
    for (int l = threadIdx.x; l < kTile * kTileK; l += kThreads) {
      const int row = l / kTileK;
      const int k = l % kTileK;
      const int64_t gk = k0 + k;
      const int64_t gi = i0 + row;
      const int64_t gj = j0 + row;
      a_tile[k][row] =
          (gi < in.m && gk < in.d) ? in.anchors[gi * in.d + gk] : T(0);
      c_tile[k][row] =
          (gj < in.n && gk < in.d) ? in.candidates[gj * in.d + gk] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTileK; ++k) {
      T a[4], c[4];
      for (int r = 0; r < 4; ++r) a[r] = a_tile[k][ty + 16 * r];
      for (int q = 0; q < 4; ++q) c[q] = c_tile[k][tx + 16 * q];
      for (int r = 0; r < 4; ++r)
        for (int q = 0; q < 4; ++q) acc[r][q] += a[r] * c[q];
    }
    __syncthreads();
  }
  for (int r = 0; r < 4; ++r) {
    const int64_t i = i0 + ty + 16 * r;
    if (i >= in.m) continue;
    for (int q = 0; q < 4; ++q) {
      const int64_t j = j0 + tx + 16 * q;
      if (j >= in.n) continue;
      similarity[i * in.n + j] = acc[r][q];
      soft_labels[i * in.n + j] = PairSoftLabel(in, i, j);
    }
  }
}

// Dot product of two rows of length d by one warp; every lane returns the
// same value (xor butterfly: both partners add the same two numbers).
template <typename T>
__device__ __forceinline__ T WarpDot(const T* a, const T* b, int64_t d,
                                     int lane) {
  T sum = T(0);
  for (int64_t k = lane; k < d; k += 32) sum += a[k] * b[k];
  for (int offset = 16; offset > 0; offset /= 2) {
    sum += __shfl_xor_sync(kFullMask, sum, offset);
  }
  return sum;
}

template <typename T>
__device__ __forceinline__ T Infinity();
template <>
__device__ __forceinline__ float Infinity<float>() {
  return __int_as_float(0x7f800000);
}
template <>
__device__ __forceinline__ double Infinity<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}

template <typename T, typename L>
__global__ void ExpReductionsKernel(PairInputs<T, L> in, ExpParams<T> params,
                                    ExpOutputs<T> out) {
  const int lane = threadIdx.x % 32;
  const int64_t i =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= in.m) return;
  const T* a = in.anchors + i * in.d;
  T min_pos = Infinity<T>();
  T max_neg = -Infinity<T>();
  LogSumExpState<T> pos = LogSumExpInit<T>();
  LogSumExpState<T> neg = LogSumExpInit<T>();
  T pos_count = T(0), neg_count = T(0);
  auto accumulate = [&](T y, T s) {
    T w_pos, w_neg;
    MinedWeights(y, s, params, min_pos, max_neg, &w_pos, &w_neg);
    if (w_pos > T(0)) {
      LogSumExpAdd(&pos, w_pos,
                   PositiveExponent(s, params.scale_pos, params.shift_pos));
      pos_count += T(1);
    }
    if (w_neg > T(0)) {
      LogSumExpAdd(&neg, w_neg,
                   NegativeExponent(s, params.scale_neg, params.shift_neg));
      neg_count += T(1);
    }
  };
  for (int64_t j = 0; j < in.n; ++j) {
    const T s = WarpDot(a, in.candidates + j * in.d, in.d, lane);
    const T y = PairSoftLabel(in, i, j);
    if (IsHardPositive(y) && s < min_pos) min_pos = s;
    if (IsHardNegative(y) && s > max_neg) max_neg = s;
    if (!params.mine) accumulate(y, s);
  }
  if (params.mine) {  // The miner needs the row's extremes first.
    for (int64_t j = 0; j < in.n; ++j) {
      const T s = WarpDot(a, in.candidates + j * in.d, in.d, lane);
      accumulate(PairSoftLabel(in, i, j), s);
    }
  }
  if (lane == 0) {
    out.lse_pos[i] = LogSumExpValue(pos);
    out.lse_neg[i] = LogSumExpValue(neg);
    out.min_pos[i] = min_pos;
    out.max_neg[i] = max_neg;
    out.pos_count[i] = pos_count;
    out.neg_count[i] = neg_count;
  }
}

template <typename T, typename L>
__global__ void ContrastiveReductionsKernel(PairInputs<T, L> in,
                                            ContrastiveParams<T> params,
                                            ContrastiveOutputs<T> out) {
  const int lane = threadIdx.x % 32;
  const int64_t i =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= in.m) return;
  const T* a = in.anchors + i * in.d;
  T pos_sum = T(0), pos_count = T(0), neg_sum = T(0), neg_count = T(0);
  for (int64_t j = 0; j < in.n; ++j) {
    const T s = WarpDot(a, in.candidates + j * in.d, in.d, lane);
    const T y = PairSoftLabel(in, i, j);
    if (y < T(0)) continue;
    const T d = DistanceFromSimilarity(s);
    const T p = ContrastivePositiveTerm(PositiveWeight(y), d, params.pos_margin);
    const T q = ContrastiveNegativeTerm(NegativeWeight(y), d, params.neg_margin);
    if (p > T(0)) {
      pos_sum += p;
      pos_count += T(1);
    }
    if (q > T(0)) {
      neg_sum += q;
      neg_count += T(1);
    }
  }
  if (lane == 0) {
    out.pos_sum[i] = pos_sum;
    out.pos_count[i] = pos_count;
    out.neg_sum[i] = neg_sum;
    out.neg_count[i] = neg_count;
  }
}

// grad_anchors[i] = sum_j dS_ij candidates[j]: one warp per anchor row, each
// lane owning the columns k = lane (mod 32) of the output row.
template <typename T, typename L, typename Partial>
__global__ void GradAnchorsKernel(PairInputs<T, L> in, Partial partial,
                                  T* grad_anchors) {
  const int lane = threadIdx.x % 32;
  const int64_t i =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= in.m) return;
  const T* a = in.anchors + i * in.d;
  T* g = grad_anchors + i * in.d;
  for (int64_t k = lane; k < in.d; k += 32) g[k] = T(0);
  for (int64_t j = 0; j < in.n; ++j) {
    const T* c = in.candidates + j * in.d;
    const T p = partial(i, j, WarpDot(a, c, in.d, lane));
    if (p != T(0)) {
      for (int64_t k = lane; k < in.d; k += 32) g[k] += p * c[k];
    }
  }
}

// grad_candidates[j] = sum_i dS_ij anchors[i]: one warp per candidate.
template <typename T, typename L, typename Partial>
__global__ void GradCandidatesKernel(PairInputs<T, L> in, Partial partial,
                                     T* grad_candidates) {
  const int lane = threadIdx.x % 32;
  const int64_t j =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (j >= in.n) return;
  const T* c = in.candidates + j * in.d;
  T* g = grad_candidates + j * in.d;
  for (int64_t k = lane; k < in.d; k += 32) g[k] = T(0);
  for (int64_t i = 0; i < in.m; ++i) {
    const T* a = in.anchors + i * in.d;
    const T p = partial(i, j, WarpDot(a, c, in.d, lane));
    if (p != T(0)) {
      for (int64_t k = lane; k < in.d; k += 32) g[k] += p * a[k];
    }
  }
}

template <typename T, typename L>
struct ExpPartialFn {
  PairInputs<T, L> in;
  ExpParams<T> params;
  ExpGradInputs<T> grad;
  __device__ T operator()(int64_t i, int64_t j, T s) const {
    return ExpPartial(in, params, grad, i, j, s);
  }
};

template <typename T, typename L>
struct ContrastivePartialFn {
  PairInputs<T, L> in;
  ContrastiveParams<T> params;
  ContrastiveGradInputs<T> grad;
  __device__ T operator()(int64_t i, int64_t j, T s) const {
    return ContrastivePartial(in, params, grad, i, j, s);
  }
};

unsigned WarpBlocks(int64_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

int LastError() { return static_cast<int>(cudaGetLastError()); }

template <typename T, typename L, typename Partial>
int LaunchGrads(cudaStream_t stream, const PairInputs<T, L>& in,
                const Partial& partial, T* grad_anchors, T* grad_candidates) {
  if (in.m > 0 && in.d > 0) {
    GradAnchorsKernel<<<WarpBlocks(in.m), kWarpsPerBlock * 32, 0, stream>>>(
        in, partial, grad_anchors);
  }
  if (in.n > 0 && in.d > 0) {
    GradCandidatesKernel<<<WarpBlocks(in.n), kWarpsPerBlock * 32, 0, stream>>>(
        in, partial, grad_candidates);
  }
  return LastError();
}

}  // namespace

template <typename T, typename L>
int LaunchSoftLabelSimilarity(void* stream, const PairInputs<T, L>& in,
                              T* similarity, T* soft_labels) {
  if (in.m == 0 || in.n == 0) return 0;
  const dim3 grid(static_cast<unsigned>((in.n + kTile - 1) / kTile),
                  static_cast<unsigned>((in.m + kTile - 1) / kTile));
  SoftLabelSimilarityKernel<<<grid, kThreads, 0,
                              static_cast<cudaStream_t>(stream)>>>(
      in, similarity, soft_labels);
  return LastError();
}

template <typename T, typename L>
int LaunchExpReductions(void* stream, const PairInputs<T, L>& in,
                        const ExpParams<T>& params, const ExpOutputs<T>& out) {
  if (in.m == 0) return 0;
  ExpReductionsKernel<<<WarpBlocks(in.m), kWarpsPerBlock * 32, 0,
                        static_cast<cudaStream_t>(stream)>>>(in, params, out);
  return LastError();
}

template <typename T, typename L>
int LaunchExpReductionsGrad(void* stream, const PairInputs<T, L>& in,
                            const ExpParams<T>& params,
                            const ExpGradInputs<T>& grad, T* grad_anchors,
                            T* grad_candidates) {
  ExpPartialFn<T, L> partial{in, params, grad};
  return LaunchGrads(static_cast<cudaStream_t>(stream), in, partial,
                     grad_anchors, grad_candidates);
}

template <typename T, typename L>
int LaunchContrastiveReductions(void* stream, const PairInputs<T, L>& in,
                                const ContrastiveParams<T>& params,
                                const ContrastiveOutputs<T>& out) {
  if (in.m == 0) return 0;
  ContrastiveReductionsKernel<<<WarpBlocks(in.m), kWarpsPerBlock * 32, 0,
                                static_cast<cudaStream_t>(stream)>>>(
      in, params, out);
  return LastError();
}

template <typename T, typename L>
int LaunchContrastiveReductionsGrad(void* stream, const PairInputs<T, L>& in,
                                    const ContrastiveParams<T>& params,
                                    const ContrastiveGradInputs<T>& grad,
                                    T* grad_anchors, T* grad_candidates) {
  ContrastivePartialFn<T, L> partial{in, params, grad};
  return LaunchGrads(static_cast<cudaStream_t>(stream), in, partial,
                     grad_anchors, grad_candidates);
}

#define METRIX_INSTANTIATE(T, L)                                              \
  template int LaunchSoftLabelSimilarity<T, L>(void*, const PairInputs<T, L>&, \
                                               T*, T*);                       \
  template int LaunchExpReductions<T, L>(void*, const PairInputs<T, L>&,      \
                                         const ExpParams<T>&,                 \
                                         const ExpOutputs<T>&);               \
  template int LaunchExpReductionsGrad<T, L>(                                 \
      void*, const PairInputs<T, L>&, const ExpParams<T>&,                    \
      const ExpGradInputs<T>&, T*, T*);                                       \
  template int LaunchContrastiveReductions<T, L>(                             \
      void*, const PairInputs<T, L>&, const ContrastiveParams<T>&,            \
      const ContrastiveOutputs<T>&);                                          \
  template int LaunchContrastiveReductionsGrad<T, L>(                         \
      void*, const PairInputs<T, L>&, const ContrastiveParams<T>&,            \
      const ContrastiveGradInputs<T>&, T*, T*);

METRIX_INSTANTIATE(float, int32_t)
METRIX_INSTANTIATE(float, int64_t)
METRIX_INSTANTIATE(double, int32_t)
METRIX_INSTANTIATE(double, int64_t)
#undef METRIX_INSTANTIATE

}  // namespace cuda
}  // namespace metrix
