// Per-element arithmetic of the soft-label similarity ops.
//
// Everything here is a small inline function marked __host__ __device__
// under nvcc, so the CPU kernels (soft_label_similarity_ops.cc), the CUDA
// kernels (soft_label_similarity_kernels.cu) and the standalone CUDA test
// (cuda_kernel_test.cu) share one definition of the math: the CPU tests
// cover the same formulas the GPU runs.
//
// Notation (METRIX.md section 2): s is the similarity of anchor i and
// candidate j, y their soft label, w+ = y and w- = 1 - y the pair weights
// (both 0 for NOT_A_PAIR entries).
#ifndef METRIX_TF_CC_SOFT_LABEL_SIMILARITY_MATH_H_
#define METRIX_TF_CC_SOFT_LABEL_SIMILARITY_MATH_H_

#include <math.h>

#if defined(__CUDACC__)
#define METRIX_HD __host__ __device__ __forceinline__
#else
#define METRIX_HD inline
#endif

namespace metrix {

// float and double overloads that exist on the host and on the device
// (an unqualified exp(float) could silently run in double on the host).
METRIX_HD float Exp(float x) { return expf(x); }
METRIX_HD double Exp(double x) { return ::exp(x); }
METRIX_HD float Log(float x) { return logf(x); }
METRIX_HD double Log(double x) { return ::log(x); }
METRIX_HD float Sqrt(float x) { return sqrtf(x); }
METRIX_HD double Sqrt(double x) { return ::sqrt(x); }

// Soft label of an excluded pair: neither positive nor negative.
template <typename T>
METRIX_HD T NotAPair() {
  return T(-1);
}

// y = lam [a == l] + (1 - lam) [b == l], written as
// [b == l] + lam ([a == l] - [b == l]) so that equal sources give exactly
// 0 or 1 whatever lam is (the pure-TF reference uses the same expression).
template <typename T, typename L>
METRIX_HD T SoftLabel(L anchor_label, L label_a, L label_b, T lam,
                      bool self_pair) {
  if (self_pair) return NotAPair<T>();
  const T same_a = label_a == anchor_label ? T(1) : T(0);
  const T same_b = label_b == anchor_label ? T(1) : T(0);
  return same_b + lam * (same_a - same_b);
}

template <typename T>
METRIX_HD T PositiveWeight(T y) {
  return y >= T(0) ? y : T(0);
}

template <typename T>
METRIX_HD T NegativeWeight(T y) {
  return y >= T(0) ? T(1) - y : T(0);
}

// Hard labels are the only ones the multi-similarity miner looks at.
template <typename T>
METRIX_HD bool IsHardPositive(T y) {
  return y == T(1);
}

template <typename T>
METRIX_HD bool IsHardNegative(T y) {
  return y == T(0);
}

// Multi-similarity miner (PML 1.3.0, strict inequalities): a hard positive
// is kept iff s - epsilon < max_neg, a hard negative iff
// s + epsilon > min_pos; fractional soft labels are always kept.
template <typename T>
METRIX_HD bool KeepPositive(T y, T s, T epsilon, T max_neg) {
  return !IsHardPositive(y) || (s - epsilon < max_neg);
}

template <typename T>
METRIX_HD bool KeepNegative(T y, T s, T epsilon, T min_pos) {
  return !IsHardNegative(y) || (s + epsilon > min_pos);
}

// Exponents of the "exp" kind: the positive term is
// exp(-scale_pos (s - shift_pos)), the negative exp(scale_neg (s - shift_neg)).
template <typename T>
METRIX_HD T PositiveExponent(T s, T scale_pos, T shift_pos) {
  return -scale_pos * (s - shift_pos);
}

template <typename T>
METRIX_HD T NegativeExponent(T s, T scale_neg, T shift_neg) {
  return scale_neg * (s - shift_neg);
}

// Online log-sum-exp state for log(1 + sum_j w_j exp(e_j)): the "1" is the
// term exp(0), so the running maximum starts at 0 and the running sum at 1.
template <typename T>
struct LogSumExpState {
  T max;
  T sum;
};

template <typename T>
METRIX_HD LogSumExpState<T> LogSumExpInit() {
  LogSumExpState<T> state;
  state.max = T(0);
  state.sum = T(1);
  return state;
}

template <typename T>
METRIX_HD void LogSumExpAdd(LogSumExpState<T>* state, T weight, T exponent) {
  if (!(weight > T(0))) return;
  if (exponent > state->max) {
    state->sum = state->sum * Exp(state->max - exponent) + weight;
    state->max = exponent;
  } else {
    state->sum += weight * Exp(exponent - state->max);
  }
}

// Adds the terms of `other` to `state` (both started from max 0), as if
// they had been added one by one: the GPU kernels reduce a row in several
// lanes and merge the lanes' states.
template <typename T>
METRIX_HD void LogSumExpMerge(LogSumExpState<T>* state,
                              const LogSumExpState<T>& other) {
  if (other.max > state->max) {
    state->sum = state->sum * Exp(state->max - other.max) + other.sum;
    state->max = other.max;
  } else {
    state->sum += other.sum * Exp(other.max - state->max);
  }
}

template <typename T>
METRIX_HD T LogSumExpValue(const LogSumExpState<T>& state) {
  return state.max + Log(state.sum);
}

// d lse / d s_ij for one entry: w exp(e - lse) * d e / d s.
template <typename T>
METRIX_HD T LogSumExpPartial(T weight, T exponent, T lse) {
  return weight > T(0) ? weight * Exp(exponent - lse) : T(0);
}

// 2 - 2 s at or below this bound is the rounding error of the similarity of
// two coincident unit vectors (64 machine epsilons; measured up to 20 in
// float32 for D = 512): their distance is exactly 0, as the reference's.
// The same rule as metrix_tf.ops.distance_from_similarity.
METRIX_HD float CoincidentBound(float) { return 64.0f * 1.1920928955078125e-7f; }
METRIX_HD double CoincidentBound(double) { return 64.0 * 2.220446049250313e-16; }

// Contrastive kind: d = sqrt(2 - 2 s), the Euclidean distance of two unit
// vectors with cosine similarity s; exactly 0 for coincident points.
template <typename T>
METRIX_HD T DistanceFromSimilarity(T s) {
  const T x = T(2) - T(2) * s;
  return x > CoincidentBound(s) ? Sqrt(x) : T(0);
}

// d d / d s = -1 / d, and 0 for coincident points (the 0-safe gradient:
// identical points give no gradient instead of infinity).
template <typename T>
METRIX_HD T DistanceGradient(T s) {
  const T x = T(2) - T(2) * s;
  return x > CoincidentBound(s) ? -T(1) / Sqrt(x) : T(0);
}

// w+ relu(d - pos_margin) and w- relu(neg_margin - d).
template <typename T>
METRIX_HD T ContrastivePositiveTerm(T weight, T d, T pos_margin) {
  const T hinge = d - pos_margin;
  return hinge > T(0) ? weight * hinge : T(0);
}

template <typename T>
METRIX_HD T ContrastiveNegativeTerm(T weight, T d, T neg_margin) {
  const T hinge = neg_margin - d;
  return hinge > T(0) ? weight * hinge : T(0);
}

// Gradient of pos_sum / neg_sum with respect to s for one entry.
template <typename T>
METRIX_HD T ContrastivePositivePartial(T weight, T s, T pos_margin) {
  const T d = DistanceFromSimilarity(s);
  return (weight > T(0) && d - pos_margin > T(0))
             ? weight * DistanceGradient(s)
             : T(0);
}

template <typename T>
METRIX_HD T ContrastiveNegativePartial(T weight, T s, T neg_margin) {
  const T d = DistanceFromSimilarity(s);
  return (weight > T(0) && neg_margin - d > T(0))
             ? -weight * DistanceGradient(s)
             : T(0);
}

}  // namespace metrix

#endif  // METRIX_TF_CC_SOFT_LABEL_SIMILARITY_MATH_H_
