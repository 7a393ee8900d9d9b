// Per-row reductions shared by the TensorFlow CPU kernels and the standalone
// CUDA test (which uses them as its CPU oracle). They take one row of the
// similarity matrix (anchor i against candidates [0, n)) and build the soft
// labels on the fly from soft_label_similarity_math.h. The per-entry
// functions (PairSoftLabel, MinedWeights, ExpPartial, ContrastivePartial)
// are METRIX_HD: the CUDA kernels call the very same code.
#ifndef METRIX_TF_CC_SOFT_LABEL_SIMILARITY_ROWS_H_
#define METRIX_TF_CC_SOFT_LABEL_SIMILARITY_ROWS_H_

#include <cstdint>
#include <limits>

#include "cc/soft_label_similarity_kernels.h"
#include "cc/soft_label_similarity_math.h"

namespace metrix {

template <typename T, typename L>
METRIX_HD T PairSoftLabel(const PairInputs<T, L>& in, int64_t i, int64_t j) {
  return SoftLabel<T, L>(in.anchor_labels[i], in.label_a[j], in.label_b[j],
                         in.lam[j], in.exclude_self && i == j);
}

// Hardest pairs of row i: min similarity over hard positives (+inf if
// none), max over hard negatives (-inf if none).
template <typename T, typename L>
inline void HardestPairsRow(const PairInputs<T, L>& in, int64_t i,
                            const T* s_row, T* min_pos, T* max_neg) {
  T lo = std::numeric_limits<T>::infinity();
  T hi = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < in.n; ++j) {
    const T y = PairSoftLabel(in, i, j);
    const T s = s_row[j];
    if (IsHardPositive(y) && s < lo) lo = s;
    if (IsHardNegative(y) && s > hi) hi = s;
  }
  *min_pos = lo;
  *max_neg = hi;
}

// Weights of entry (i, j) after the optional miner.
template <typename T>
METRIX_HD void MinedWeights(T y, T s, const ExpParams<T>& params, T min_pos,
                         T max_neg, T* w_pos, T* w_neg) {
  *w_pos = PositiveWeight(y);
  *w_neg = NegativeWeight(y);
  if (params.mine) {
    if (!KeepPositive(y, s, params.epsilon, max_neg)) *w_pos = T(0);
    if (!KeepNegative(y, s, params.epsilon, min_pos)) *w_neg = T(0);
  }
}

// All "exp" outputs of row i (index i of each output array).
template <typename T, typename L>
inline void ExpRow(const PairInputs<T, L>& in, int64_t i, const T* s_row,
                   const ExpParams<T>& params, const ExpOutputs<T>& out) {
  T min_pos, max_neg;
  HardestPairsRow(in, i, s_row, &min_pos, &max_neg);
  LogSumExpState<T> pos = LogSumExpInit<T>();
  LogSumExpState<T> neg = LogSumExpInit<T>();
  T pos_count = 0, neg_count = 0;
  for (int64_t j = 0; j < in.n; ++j) {
    const T s = s_row[j];
    T w_pos, w_neg;
    MinedWeights(PairSoftLabel(in, i, j), s, params, min_pos, max_neg, &w_pos,
                 &w_neg);
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
  }
  out.lse_pos[i] = LogSumExpValue(pos);
  out.lse_neg[i] = LogSumExpValue(neg);
  out.min_pos[i] = min_pos;
  out.max_neg[i] = max_neg;
  out.pos_count[i] = pos_count;
  out.neg_count[i] = neg_count;
}

// d loss / d s_ij of the "exp" kind, loss = sum_i g_pos[i] lse_pos[i] +
// g_neg[i] lse_neg[i].
template <typename T, typename L>
METRIX_HD T ExpPartial(const PairInputs<T, L>& in, const ExpParams<T>& params,
                    const ExpGradInputs<T>& grad, int64_t i, int64_t j, T s) {
  T w_pos, w_neg;
  MinedWeights(PairSoftLabel(in, i, j), s, params, grad.min_pos[i],
               grad.max_neg[i], &w_pos, &w_neg);
  const T d_pos = LogSumExpPartial(
      w_pos, PositiveExponent(s, params.scale_pos, params.shift_pos),
      grad.lse_pos[i]);
  const T d_neg = LogSumExpPartial(
      w_neg, NegativeExponent(s, params.scale_neg, params.shift_neg),
      grad.lse_neg[i]);
  return -params.scale_pos * grad.grad_lse_pos[i] * d_pos +
         params.scale_neg * grad.grad_lse_neg[i] * d_neg;
}

template <typename T, typename L>
inline void ContrastiveRow(const PairInputs<T, L>& in, int64_t i,
                           const T* s_row, const ContrastiveParams<T>& params,
                           const ContrastiveOutputs<T>& out) {
  T pos_sum = 0, pos_count = 0, neg_sum = 0, neg_count = 0;
  for (int64_t j = 0; j < in.n; ++j) {
    const T y = PairSoftLabel(in, i, j);
    if (y < T(0)) continue;
    const T d = DistanceFromSimilarity(s_row[j]);
    const T pos = ContrastivePositiveTerm(PositiveWeight(y), d,
                                          params.pos_margin);
    const T neg = ContrastiveNegativeTerm(NegativeWeight(y), d,
                                          params.neg_margin);
    if (pos > T(0)) {
      pos_sum += pos;
      pos_count += T(1);
    }
    if (neg > T(0)) {
      neg_sum += neg;
      neg_count += T(1);
    }
  }
  out.pos_sum[i] = pos_sum;
  out.pos_count[i] = pos_count;
  out.neg_sum[i] = neg_sum;
  out.neg_count[i] = neg_count;
}

template <typename T, typename L>
METRIX_HD T ContrastivePartial(const PairInputs<T, L>& in,
                            const ContrastiveParams<T>& params,
                            const ContrastiveGradInputs<T>& grad, int64_t i,
                            int64_t j, T s) {
  const T y = PairSoftLabel(in, i, j);
  if (y < T(0)) return T(0);
  return grad.grad_pos_sum[i] *
             ContrastivePositivePartial(PositiveWeight(y), s,
                                        params.pos_margin) +
         grad.grad_neg_sum[i] *
             ContrastiveNegativePartial(NegativeWeight(y), s,
                                        params.neg_margin);
}

}  // namespace metrix

#endif  // METRIX_TF_CC_SOFT_LABEL_SIMILARITY_ROWS_H_
