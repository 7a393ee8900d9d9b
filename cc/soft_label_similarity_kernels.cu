// CUDA side of the soft-label similarity ops (no TensorFlow headers: the
// TensorFlow side, soft_label_similarity_ops_gpu.cc, passes raw pointers and
// its cudaStream_t). The GEMMs are cuBLAS (cublas_gemm.h); the kernels here
// are the soft-label epilogue, the per-row reductions and the per-entry
// gradient, built from the METRIX_HD functions of soft_label_similarity_math.h
// / _rows.h that the CPU kernels use.
//
// SoftLabelSimilarity: S = A C^T (one GEMM into the output), then the soft
//   labels (one elementwise kernel).
// Fused reductions, one strip of anchor rows at a time (StripWorkspace):
//   forward:  S_strip = A_strip C^T (GEMM), then one block of 256 threads
//             per anchor row reduces its row of S_strip (coalesced reads;
//             lanes merged by xor butterflies, then the 8 warps through
//             shared memory). A warp per row left the GPU mostly idle: a
//             strip of 2^24 entries had only 512 rows at N = 32768.
//   backward: S_strip again (the same GEMM call, so the same similarities as
//             the forward), dL/dS in place (elementwise kernel), then
//             grad_anchors[strip] = dS C and grad_candidates += dS^T A_strip
//             (two GEMMs).
#include <cuda_runtime.h>

#include <cstdint>

#include "cc/cublas_gemm.h"
#include "cc/soft_label_similarity_kernels.h"
#include "cc/soft_label_similarity_math.h"
#include "cc/soft_label_similarity_rows.h"

namespace metrix {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;

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

template <typename T>
__device__ __forceinline__ T ShuffleXor(T v, int offset) {
  return __shfl_xor_sync(kFullMask, v, offset);
}

template <typename T>
__device__ __forceinline__ LogSumExpState<T> ShuffleXor(LogSumExpState<T> v,
                                                        int offset) {
  LogSumExpState<T> other;
  other.max = __shfl_xor_sync(kFullMask, v.max, offset);
  other.sum = __shfl_xor_sync(kFullMask, v.sum, offset);
  return other;
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return fmin(a, b); }
};
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return fmax(a, b); }
};
struct LogSumExpOp {  // merges two log-sum-exp states
  template <typename T>
  __device__ LogSumExpState<T> operator()(LogSumExpState<T> a,
                                          const LogSumExpState<T>& b) const {
    LogSumExpMerge(&a, b);
    return a;
  }
};

// Reduces v over the block's kThreads threads (lanes by xor butterflies,
// then the warps' results through `shared`, kWarpsPerBlock entries); every
// thread returns the total. All threads of the block must call it.
template <typename S, typename Op>
__device__ __forceinline__ S BlockReduce(S v, S* shared, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, ShuffleXor(v, offset));
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
  __syncthreads();
  S total = shared[0];
  for (int w = 1; w < kWarpsPerBlock; ++w) total = op(total, shared[w]);
  __syncthreads();  // `shared` can be reused
  return total;
}

template <typename T, typename L>
__global__ void SoftLabelsKernel(PairInputs<T, L> in, T* soft_labels) {
  const int64_t total = in.m * in.n;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       e < total; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    soft_labels[e] = PairSoftLabel(in, e / in.n, e % in.n);
  }
}

// One block per anchor row r0 + blockIdx.x of the strip s (rows x n).
template <typename T, typename L>
__global__ void ExpStripKernel(PairInputs<T, L> in, ExpParams<T> params,
                               const T* s, int64_t r0, int64_t rows,
                               ExpOutputs<T> out) {
  __shared__ T shared[kWarpsPerBlock];
  __shared__ LogSumExpState<T> shared_lse[kWarpsPerBlock];
  const int64_t r = blockIdx.x;
  if (r >= rows) return;  // the whole block
  const int64_t i = r0 + r;
  const T* row = s + r * in.n;
  T min_pos = Infinity<T>();
  T max_neg = -Infinity<T>();
  if (params.mine) {  // The miner needs the row's extremes first.
    for (int64_t j = threadIdx.x; j < in.n; j += kThreads) {
      const T y = PairSoftLabel(in, i, j);
      if (IsHardPositive(y)) min_pos = fmin(min_pos, row[j]);
      if (IsHardNegative(y)) max_neg = fmax(max_neg, row[j]);
    }
    min_pos = BlockReduce(min_pos, shared, MinOp());
    max_neg = BlockReduce(max_neg, shared, MaxOp());
  }
  // Each thread starts from the empty sum (max 0, sum 0); the "1" of
  // log(1 + sum) is added once, by thread 0.
  LogSumExpState<T> pos{T(0), threadIdx.x == 0 ? T(1) : T(0)};
  LogSumExpState<T> neg{T(0), threadIdx.x == 0 ? T(1) : T(0)};
  T pos_count = T(0), neg_count = T(0);
  T lo = Infinity<T>(), hi = -Infinity<T>();
  for (int64_t j = threadIdx.x; j < in.n; j += kThreads) {
    const T sj = row[j];
    const T y = PairSoftLabel(in, i, j);
    if (IsHardPositive(y)) lo = fmin(lo, sj);
    if (IsHardNegative(y)) hi = fmax(hi, sj);
    T w_pos, w_neg;
    MinedWeights(y, sj, params, min_pos, max_neg, &w_pos, &w_neg);
    if (w_pos > T(0)) {
      LogSumExpAdd(&pos, w_pos,
                   PositiveExponent(sj, params.scale_pos, params.shift_pos));
      pos_count += T(1);
    }
    if (w_neg > T(0)) {
      LogSumExpAdd(&neg, w_neg,
                   NegativeExponent(sj, params.scale_neg, params.shift_neg));
      neg_count += T(1);
    }
  }
  pos = BlockReduce(pos, shared_lse, LogSumExpOp());
  neg = BlockReduce(neg, shared_lse, LogSumExpOp());
  pos_count = BlockReduce(pos_count, shared, SumOp());
  neg_count = BlockReduce(neg_count, shared, SumOp());
  lo = BlockReduce(lo, shared, MinOp());
  hi = BlockReduce(hi, shared, MaxOp());
  if (threadIdx.x == 0) {
    out.lse_pos[i] = LogSumExpValue(pos);
    out.lse_neg[i] = LogSumExpValue(neg);
    out.min_pos[i] = lo;
    out.max_neg[i] = hi;
    out.pos_count[i] = pos_count;
    out.neg_count[i] = neg_count;
  }
}

// One block per anchor row r0 + blockIdx.x of the strip s (rows x n).
template <typename T, typename L>
__global__ void ContrastiveStripKernel(PairInputs<T, L> in,
                                       ContrastiveParams<T> params, const T* s,
                                       int64_t r0, int64_t rows,
                                       ContrastiveOutputs<T> out) {
  __shared__ T shared[kWarpsPerBlock];
  const int64_t r = blockIdx.x;
  if (r >= rows) return;  // the whole block
  const int64_t i = r0 + r;
  const T* row = s + r * in.n;
  T pos_sum = T(0), pos_count = T(0), neg_sum = T(0), neg_count = T(0);
  for (int64_t j = threadIdx.x; j < in.n; j += kThreads) {
    const T y = PairSoftLabel(in, i, j);
    if (y < T(0)) continue;
    const T d = DistanceFromSimilarity(row[j]);
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
  pos_sum = BlockReduce(pos_sum, shared, SumOp());
  pos_count = BlockReduce(pos_count, shared, SumOp());
  neg_sum = BlockReduce(neg_sum, shared, SumOp());
  neg_count = BlockReduce(neg_count, shared, SumOp());
  if (threadIdx.x == 0) {
    out.pos_sum[i] = pos_sum;
    out.pos_count[i] = pos_count;
    out.neg_sum[i] = neg_sum;
    out.neg_count[i] = neg_count;
  }
}

// s (rows x n) <- d loss / d s, in place.
template <typename T, typename Partial>
__global__ void PartialStripKernel(Partial partial, T* s, int64_t r0,
                                   int64_t rows, int64_t n) {
  const int64_t total = rows * n;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       e < total; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    s[e] = partial(r0 + e / n, e % n, s[e]);
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

unsigned RowBlocks(int64_t rows) { return static_cast<unsigned>(rows); }

// Elementwise kernels: a flat grid-stride loop over at most 65535 blocks.
// (A rows x columns grid without the per-entry division measured slower on
// an H200: the cost is the entries' arithmetic and memory, not the index.)
unsigned ElementBlocks(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 ? (blocks > 0 ? blocks : 1)
                                              : 65535);
}

int LastError() { return static_cast<int>(cudaGetLastError()); }

cudaStream_t Stream(const GpuContext& gpu) {
  return static_cast<cudaStream_t>(gpu.stream);
}

// Row-major C [m, n] = op(A) op(B) (+ C when accumulate). With k = 0 the
// product is zero (cuBLAS needs leading dimensions >= 1, so no call).
template <typename T>
int Gemm(const GpuContext& gpu, bool trans_a, bool trans_b, int64_t m,
         int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
         int64_t ldb, bool accumulate, T* c) {
  if (m == 0 || n == 0) return 0;
  if (k == 0) {
    if (accumulate) return 0;
    return static_cast<int>(
        cudaMemsetAsync(c, 0, sizeof(T) * m * n, Stream(gpu)));
  }
  return RowMajorGemm<T>(gpu.stream, gpu.allow_tf32, trans_a, trans_b, m, n,
                         k, T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c,
                         n);
}

// S_strip [rows, n] = anchors[r0 : r0 + rows] @ candidates^T.
template <typename T, typename L>
int StripSimilarity(const GpuContext& gpu, const PairInputs<T, L>& in,
                    int64_t r0, int64_t rows, T* s) {
  return Gemm<T>(gpu, false, true, rows, in.n, in.d, in.anchors + r0 * in.d,
                 in.d, in.candidates, in.d, false, s);
}

template <typename T, typename L, typename RowKernel>
int ForwardStrips(const GpuContext& gpu, const PairInputs<T, L>& in,
                  const StripWorkspace<T>& strip, RowKernel launch_rows) {
  const int64_t step = strip.rows > 0 ? strip.rows : 1;
  for (int64_t r0 = 0; r0 < in.m; r0 += step) {
    const int64_t rows = in.m - r0 < step ? in.m - r0 : step;
    if (int e = StripSimilarity(gpu, in, r0, rows, strip.data)) return e;
    launch_rows(r0, rows);
    if (int e = LastError()) return e;
  }
  return 0;
}

template <typename T, typename L, typename Partial>
int BackwardStrips(const GpuContext& gpu, const PairInputs<T, L>& in,
                   const Partial& partial, T* grad_anchors,
                   T* grad_candidates, const StripWorkspace<T>& strip) {
  if (in.d == 0) return 0;  // both gradients are empty
  if (in.m == 0 || in.n == 0) {  // an empty sum: zero gradients
    const cudaError_t ea = cudaMemsetAsync(grad_anchors, 0,
                                           sizeof(T) * in.m * in.d, Stream(gpu));
    if (ea != cudaSuccess) return static_cast<int>(ea);
    return static_cast<int>(cudaMemsetAsync(
        grad_candidates, 0, sizeof(T) * in.n * in.d, Stream(gpu)));
  }
  const int64_t step = strip.rows > 0 ? strip.rows : 1;
  for (int64_t r0 = 0; r0 < in.m; r0 += step) {
    const int64_t rows = in.m - r0 < step ? in.m - r0 : step;
    if (int e = StripSimilarity(gpu, in, r0, rows, strip.data)) return e;
    PartialStripKernel<<<ElementBlocks(rows * in.n), kThreads, 0,
                         Stream(gpu)>>>(partial, strip.data, r0, rows, in.n);
    if (int e = LastError()) return e;
    // grad_anchors[r0 : r0 + rows] = dS C.
    if (int e = Gemm<T>(gpu, false, false, rows, in.d, in.n, strip.data, in.n,
                        in.candidates, in.d, false,
                        grad_anchors + r0 * in.d)) {
      return e;
    }
    // grad_candidates (+)= dS^T anchors[r0 : r0 + rows].
    if (int e = Gemm<T>(gpu, true, false, in.n, in.d, rows, strip.data, in.n,
                        in.anchors + r0 * in.d, in.d, r0 > 0,
                        grad_candidates)) {
      return e;
    }
  }
  return 0;
}

}  // namespace

const char* ErrorString(int code) {
  if (code == 0) return "no error";
  if (code == kCublasNotFound) return CublasLoadError();
  if (code == kGemmTooLarge) {
    return "metrix_tf: a GEMM dimension exceeds cuBLAS' 32-bit int";
  }
  if (code <= kCublasErrorBase) return "metrix_tf: cuBLAS GEMM failed";
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

template <typename T, typename L>
int LaunchSoftLabelSimilarity(const GpuContext& gpu, const PairInputs<T, L>& in,
                              T* similarity, T* soft_labels) {
  if (in.m == 0 || in.n == 0) return 0;
  if (int e = StripSimilarity(gpu, in, 0, in.m, similarity)) return e;
  SoftLabelsKernel<<<ElementBlocks(in.m * in.n), kThreads, 0, Stream(gpu)>>>(
      in, soft_labels);
  return LastError();
}

template <typename T, typename L>
int LaunchExpReductions(const GpuContext& gpu, const PairInputs<T, L>& in,
                        const ExpParams<T>& params, const ExpOutputs<T>& out,
                        const StripWorkspace<T>& strip) {
  return ForwardStrips(gpu, in, strip, [&](int64_t r0, int64_t rows) {
    ExpStripKernel<<<RowBlocks(rows), kThreads, 0, Stream(gpu)>>>(
        in, params, strip.data, r0, rows, out);
  });
}

template <typename T, typename L>
int LaunchExpReductionsGrad(const GpuContext& gpu, const PairInputs<T, L>& in,
                            const ExpParams<T>& params,
                            const ExpGradInputs<T>& grad, T* grad_anchors,
                            T* grad_candidates,
                            const StripWorkspace<T>& strip) {
  return BackwardStrips(gpu, in, ExpPartialFn<T, L>{in, params, grad},
                        grad_anchors, grad_candidates, strip);
}

template <typename T, typename L>
int LaunchContrastiveReductions(const GpuContext& gpu,
                                const PairInputs<T, L>& in,
                                const ContrastiveParams<T>& params,
                                const ContrastiveOutputs<T>& out,
                                const StripWorkspace<T>& strip) {
  return ForwardStrips(gpu, in, strip, [&](int64_t r0, int64_t rows) {
    ContrastiveStripKernel<<<RowBlocks(rows), kThreads, 0, Stream(gpu)>>>(
        in, params, strip.data, r0, rows, out);
  });
}

template <typename T, typename L>
int LaunchContrastiveReductionsGrad(const GpuContext& gpu,
                                    const PairInputs<T, L>& in,
                                    const ContrastiveParams<T>& params,
                                    const ContrastiveGradInputs<T>& grad,
                                    T* grad_anchors, T* grad_candidates,
                                    const StripWorkspace<T>& strip) {
  return BackwardStrips(gpu, in, ContrastivePartialFn<T, L>{in, params, grad},
                        grad_anchors, grad_candidates, strip);
}

#define METRIX_INSTANTIATE(T, L)                                               \
  template int LaunchSoftLabelSimilarity<T, L>(                                \
      const GpuContext&, const PairInputs<T, L>&, T*, T*);                     \
  template int LaunchExpReductions<T, L>(                                      \
      const GpuContext&, const PairInputs<T, L>&, const ExpParams<T>&,         \
      const ExpOutputs<T>&, const StripWorkspace<T>&);                         \
  template int LaunchExpReductionsGrad<T, L>(                                  \
      const GpuContext&, const PairInputs<T, L>&, const ExpParams<T>&,         \
      const ExpGradInputs<T>&, T*, T*, const StripWorkspace<T>&);              \
  template int LaunchContrastiveReductions<T, L>(                              \
      const GpuContext&, const PairInputs<T, L>&, const ContrastiveParams<T>&, \
      const ContrastiveOutputs<T>&, const StripWorkspace<T>&);                 \
  template int LaunchContrastiveReductionsGrad<T, L>(                          \
      const GpuContext&, const PairInputs<T, L>&, const ContrastiveParams<T>&, \
      const ContrastiveGradInputs<T>&, T*, T*, const StripWorkspace<T>&);

METRIX_INSTANTIATE(float, int32_t)
METRIX_INSTANTIATE(float, int64_t)
METRIX_INSTANTIATE(double, int32_t)
METRIX_INSTANTIATE(double, int64_t)
#undef METRIX_INSTANTIATE

}  // namespace cuda
}  // namespace metrix
