// TensorFlow ops of metrix-tf: the pairwise soft-label similarity
// (METRIX.md section 2) and its fused, low-memory per-row reductions.
//
//   SoftLabelSimilarity: similarity [M, N] = anchors @ candidates^T and
//     soft_labels [M, N], y_ij = lam_j [a_j == l_i] + (1 - lam_j) [b_j == l_i]
//     (NOT_A_PAIR = -1 on the diagonal with exclude_self), one GEMM call
//     per block of anchor rows followed by that block's soft labels. The
//     gradient is registered in Python (two matmuls).
//   SoftLabelExpReductions / SoftLabelContrastiveReductions: per-anchor-row
//     reductions over the entries with y != NOT_A_PAIR that never hold the
//     M x N matrices: each worker holds one strip of kRowBlock (64) anchor
//     rows x N candidates, built tile by tile with a GEMM. Their *Grad ops recompute the tiles
//     (a row pass for the anchors' gradient, a column pass for the
//     candidates'), on the same tile grid as the forward pass so that the
//     recomputed similarities are bit-identical to the forward ones.
//
// CPU kernels shard over blocks of anchor rows (or candidate tiles) on
// TensorFlow's intra-op thread pool; block and tile sizes depend on the
// shapes only, so results do not depend on the number of threads. The GPU kernels are registered in
// soft_label_similarity_ops_gpu.cc (GOOGLE_CUDA builds only).
#include <algorithm>
#include <limits>
#include <vector>

#include "cc/gemm.h"
#include "cc/soft_label_similarity_kernels.h"
#include "cc/soft_label_similarity_math.h"
#include "cc/soft_label_similarity_rows.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace metrix {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
namespace shape_inference = ::tensorflow::shape_inference;

// Fixed tile grid (never derived from the thread count).
constexpr int64_t kRowBlock = 64;
constexpr int64_t kColBlock = 256;

// ---------------------------------------------------------------- shapes --

// Inputs 0..5: anchors [M, D], anchor_labels [M], candidates [N, D],
// candidate_labels_a [N], candidate_labels_b [N], lam [N].
Status PairShapes(shape_inference::InferenceContext* c,
                  shape_inference::DimensionHandle* m,
                  shape_inference::DimensionHandle* n) {
  shape_inference::ShapeHandle anchors, candidates, vec;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &anchors));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &candidates));
  shape_inference::DimensionHandle d;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(anchors, 1), c->Dim(candidates, 1), &d));
  *m = c->Dim(anchors, 0);
  *n = c->Dim(candidates, 0);
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &vec));
  TF_RETURN_IF_ERROR(c->Merge(*m, c->Dim(vec, 0), m));
  for (int k = 3; k <= 5; ++k) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(k), 1, &vec));
    TF_RETURN_IF_ERROR(c->Merge(*n, c->Dim(vec, 0), n));
  }
  return Status();
}

std::string ShapeString(const Tensor& t) { return t.shape().DebugString(); }

// Run-time validation with messages that name the argument and quote the
// bad shape.
Status ValidatePairInputs(OpKernelContext* ctx) {
  const Tensor& anchors = ctx->input(0);
  const Tensor& anchor_labels = ctx->input(1);
  const Tensor& candidates = ctx->input(2);
  if (anchors.dims() != 2) {
    return InvalidArgument("anchors must have shape (M, D); received shape ",
                           ShapeString(anchors));
  }
  if (candidates.dims() != 2) {
    return InvalidArgument(
        "candidates must have shape (N, D); received shape ",
        ShapeString(candidates));
  }
  if (anchors.dim_size(1) != candidates.dim_size(1)) {
    return InvalidArgument(
        "anchors and candidates must have the same embedding size D; "
        "received anchors shape ",
        ShapeString(anchors), " and candidates shape ",
        ShapeString(candidates));
  }
  const int64_t m = anchors.dim_size(0);
  const int64_t n = candidates.dim_size(0);
  if (anchor_labels.dims() != 1 || anchor_labels.dim_size(0) != m) {
    return InvalidArgument("anchor_labels must have shape (M,) = (", m,
                           ",) to match anchors; received shape ",
                           ShapeString(anchor_labels));
  }
  const char* names[] = {"candidate_labels_a", "candidate_labels_b", "lam"};
  for (int k = 0; k < 3; ++k) {
    const Tensor& t = ctx->input(3 + k);
    if (t.dims() != 1 || t.dim_size(0) != n) {
      return InvalidArgument(names[k], " must have shape (N,) = (", n,
                             ",) to match candidates; received shape ",
                             ShapeString(t));
    }
  }
  return Status();
}

Status ValidateScalars(OpKernelContext* ctx, int first, int count,
                       const char* const* names) {
  for (int k = 0; k < count; ++k) {
    if (ctx->input(first + k).dims() != 0) {
      return InvalidArgument(names[k], " must be a scalar; received shape ",
                             ShapeString(ctx->input(first + k)));
    }
  }
  return Status();
}

Status ValidateRowVectors(OpKernelContext* ctx, int first, int count,
                          const char* const* names, int64_t m) {
  for (int k = 0; k < count; ++k) {
    const Tensor& t = ctx->input(first + k);
    if (t.dims() != 1 || t.dim_size(0) != m) {
      return InvalidArgument(names[k], " must have shape (M,) = (", m,
                             ",); received shape ", ShapeString(t));
    }
  }
  return Status();
}

template <typename T, typename L>
PairInputs<T, L> GetPairInputs(OpKernelContext* ctx, bool exclude_self) {
  PairInputs<T, L> in;
  in.anchors = ctx->input(0).flat<T>().data();
  in.anchor_labels = ctx->input(1).flat<L>().data();
  in.candidates = ctx->input(2).flat<T>().data();
  in.label_a = ctx->input(3).flat<L>().data();
  in.label_b = ctx->input(4).flat<L>().data();
  in.lam = ctx->input(5).flat<T>().data();
  in.m = ctx->input(0).dim_size(0);
  in.n = ctx->input(2).dim_size(0);
  in.d = ctx->input(0).dim_size(1);
  in.exclude_self = exclude_self;
  return in;
}

template <typename T>
T Scalar(OpKernelContext* ctx, int index) {
  return ctx->input(index).scalar<T>()();
}

// ------------------------------------------------------ CPU tile drivers --

template <typename F>
void ShardBlocks(OpKernelContext* ctx, int64_t blocks, int64_t cost_per_block,
                 F&& work) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  ::tensorflow::Shard(workers->num_threads, workers->workers, blocks,
                      cost_per_block, work);
}

// similarity tile anchors [i0, i0 + mb) x candidates [j0, j0 + nb).
template <typename T, typename L>
void SimilarityTile(const PairInputs<T, L>& in, int64_t i0, int64_t mb,
                    int64_t j0, int64_t nb, T* out, int64_t ld) {
  Gemm(false, true, mb, nb, in.d, in.anchors + i0 * in.d, in.d,
       in.candidates + j0 * in.d, in.d, false, out, ld);
}

int64_t NumBlocks(int64_t size, int64_t block) {
  return (size + block - 1) / block;
}

// Rows per GEMM call of the materialised op: about 16 blocks (work units
// for the thread pool; bigger calls run Eigen's GEMM faster), 16 to 512
// rows each.
int64_t MaterialisedRowBlock(int64_t m, int64_t n) {
  int64_t rows = (m + 15) / 16;
  rows = (rows + 15) / 16 * 16;
  return std::max<int64_t>(16, std::min<int64_t>(rows, 512));
}

// Soft labels of row i. The self-pair is patched after the loop so that
// the loop has no branch on j and vectorises; the entries are the same
// SoftLabel() values as everywhere else.
template <typename T, typename L>
void SoftLabelRow(const PairInputs<T, L>& in, int64_t i, T* y_row) {
  const L anchor_label = in.anchor_labels[i];
  const L* __restrict label_a = in.label_a;
  const L* __restrict label_b = in.label_b;
  const T* __restrict lam = in.lam;
  for (int64_t j = 0; j < in.n; ++j) {
    y_row[j] = SoftLabel<T, L>(anchor_label, label_a[j], label_b[j], lam[j], false);
  }
  if (in.exclude_self && i < in.n) y_row[i] = NotAPair<T>();
}

// Calls row_fn(i, s_row) for every anchor row, with the row's similarities
// held in a per-worker strip of kRowBlock x N.
template <typename T, typename L, typename RowFn>
void ForEachSimilarityRow(OpKernelContext* ctx, const PairInputs<T, L>& in,
                          const RowFn& row_fn) {
  if (in.m == 0) return;
  const int64_t blocks = NumBlocks(in.m, kRowBlock);
  const int64_t cost = kRowBlock * in.n * (2 * in.d + 20);
  ShardBlocks(ctx, blocks, cost, [&](int64_t b0, int64_t b1) {
    std::vector<T> strip(static_cast<size_t>(kRowBlock * std::max<int64_t>(in.n, 1)));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kRowBlock;
      const int64_t mb = std::min(kRowBlock, in.m - i0);
      for (int64_t j0 = 0; j0 < in.n; j0 += kColBlock) {
        SimilarityTile(in, i0, mb, j0, std::min(kColBlock, in.n - j0),
                       strip.data() + j0, in.n);
      }
      for (int64_t r = 0; r < mb; ++r) row_fn(i0 + r, strip.data() + r * in.n);
    }
  });
}

// Backward of a per-row reduction whose d loss / d s_ij = partial(i, j, s):
// grad_anchors = dS @ candidates and grad_candidates = dS^T @ anchors, with
// dS recomputed tile by tile on the forward pass's tile grid.
template <typename T, typename L, typename PartialFn>
void FusedBackward(OpKernelContext* ctx, const PairInputs<T, L>& in,
                   const PartialFn& partial, T* grad_anchors,
                   T* grad_candidates) {
  const int64_t m = in.m, n = in.n, d = in.d;
  std::fill(grad_anchors, grad_anchors + m * d, T(0));
  std::fill(grad_candidates, grad_candidates + n * d, T(0));
  if (m == 0 || n == 0 || d == 0) return;
  const int64_t tile_cost = kRowBlock * kColBlock * (4 * d + 40);
  auto dS_tile = [&](int64_t i0, int64_t mb, int64_t j0, int64_t nb, T* tile) {
    SimilarityTile(in, i0, mb, j0, nb, tile, nb);
    for (int64_t r = 0; r < mb; ++r) {
      T* row = tile + r * nb;
      for (int64_t c = 0; c < nb; ++c) row[c] = partial(i0 + r, j0 + c, row[c]);
    }
  };
  // Row pass: grad_anchors[i0:i0+mb] = sum over tiles dS_tile @ C_tile.
  ShardBlocks(ctx, NumBlocks(m, kRowBlock), tile_cost * NumBlocks(n, kColBlock),
              [&](int64_t b0, int64_t b1) {
                std::vector<T> tile(kRowBlock * kColBlock);
                for (int64_t b = b0; b < b1; ++b) {
                  const int64_t i0 = b * kRowBlock;
                  const int64_t mb = std::min(kRowBlock, m - i0);
                  for (int64_t j0 = 0; j0 < n; j0 += kColBlock) {
                    const int64_t nb = std::min(kColBlock, n - j0);
                    dS_tile(i0, mb, j0, nb, tile.data());
                    Gemm(false, false, mb, d, nb, tile.data(), nb,
                         in.candidates + j0 * d, d, true,
                         grad_anchors + i0 * d, d);
                  }
                }
              });
  // Column pass: grad_candidates[j0:j0+nb] = sum over blocks dS^T @ A_block.
  ShardBlocks(ctx, NumBlocks(n, kColBlock), tile_cost * NumBlocks(m, kRowBlock),
              [&](int64_t t0, int64_t t1) {
                std::vector<T> tile(kRowBlock * kColBlock);
                for (int64_t t = t0; t < t1; ++t) {
                  const int64_t j0 = t * kColBlock;
                  const int64_t nb = std::min(kColBlock, n - j0);
                  for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
                    const int64_t mb = std::min(kRowBlock, m - i0);
                    dS_tile(i0, mb, j0, nb, tile.data());
                    Gemm(true, false, nb, d, mb, tile.data(), nb,
                         in.anchors + i0 * d, d, true,
                         grad_candidates + j0 * d, d);
                  }
                }
              });
}

// ------------------------------------------------- SoftLabelSimilarity --

template <typename T, typename L>
class SoftLabelSimilarityCpuOp : public OpKernel {
 public:
  explicit SoftLabelSimilarityCpuOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("exclude_self", &exclude_self_));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    Tensor* similarity = nullptr;
    Tensor* soft_labels = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({in.m, in.n}),
                                             &similarity));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({in.m, in.n}),
                                             &soft_labels));
    if (in.m == 0 || in.n == 0) return;
    T* s = similarity->flat<T>().data();
    T* y = soft_labels->flat<T>().data();
    // One GEMM call per block of rows against all candidates (Eigen blocks
    // it for the caches itself; small tiles would repack the candidates
    // too often), then the block's soft labels. The block size depends on
    // the shape only, never on the thread count.
    const int64_t rows = MaterialisedRowBlock(in.m, in.n);
    const int64_t cost = rows * in.n * (2 * in.d + 8);
    ShardBlocks(ctx, NumBlocks(in.m, rows), cost,
                [&](int64_t b0, int64_t b1) {
                  for (int64_t b = b0; b < b1; ++b) {
                    const int64_t i0 = b * rows;
                    const int64_t mb = std::min(rows, in.m - i0);
                    SimilarityTile(in, i0, mb, 0, in.n, s + i0 * in.n, in.n);
                    for (int64_t i = i0; i < i0 + mb; ++i) {
                      SoftLabelRow(in, i, y + i * in.n);
                    }
                  }
                });
  }

 private:
  bool exclude_self_;
};

// ---------------------------------------------- SoftLabelExpReductions --

constexpr int kExpScalars = 5;  // inputs 6..10
const char* const kExpScalarNames[kExpScalars] = {
    "scale_pos", "shift_pos", "scale_neg", "shift_neg", "epsilon"};

template <typename T>
ExpParams<T> GetExpParams(OpKernelContext* ctx, bool mine) {
  ExpParams<T> p;
  p.scale_pos = Scalar<T>(ctx, 6);
  p.shift_pos = Scalar<T>(ctx, 7);
  p.scale_neg = Scalar<T>(ctx, 8);
  p.shift_neg = Scalar<T>(ctx, 9);
  p.epsilon = Scalar<T>(ctx, 10);
  p.mine = mine;
  return p;
}

template <typename T, typename L>
class SoftLabelExpReductionsCpuOp : public OpKernel {
 public:
  explicit SoftLabelExpReductionsCpuOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("exclude_self", &exclude_self_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mine", &mine_));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    OP_REQUIRES_OK(ctx, ValidateScalars(ctx, 6, kExpScalars, kExpScalarNames));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    const ExpParams<T> params = GetExpParams<T>(ctx, mine_);
    ExpOutputs<T> out;
    T** slots[] = {&out.lse_pos, &out.lse_neg,   &out.min_pos,
                   &out.max_neg, &out.pos_count, &out.neg_count};
    for (int k = 0; k < 6; ++k) {
      Tensor* t = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(k, TensorShape({in.m}), &t));
      *slots[k] = t->flat<T>().data();
    }
    ForEachSimilarityRow(ctx, in, [&](int64_t i, const T* s_row) {
      ExpRow(in, i, s_row, params, out);
    });
  }

 private:
  bool exclude_self_;
  bool mine_;
};

template <typename T, typename L>
class SoftLabelExpReductionsGradCpuOp : public OpKernel {
 public:
  explicit SoftLabelExpReductionsGradCpuOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("exclude_self", &exclude_self_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mine", &mine_));
  }

  void Compute(OpKernelContext* ctx) override {
    static const char* const kRowNames[] = {"lse_pos", "lse_neg", "min_pos",
                                            "max_neg", "grad_lse_pos",
                                            "grad_lse_neg"};
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    OP_REQUIRES_OK(ctx, ValidateScalars(ctx, 6, kExpScalars, kExpScalarNames));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    OP_REQUIRES_OK(ctx, ValidateRowVectors(ctx, 11, 6, kRowNames, in.m));
    const ExpParams<T> params = GetExpParams<T>(ctx, mine_);
    ExpGradInputs<T> grad;
    grad.lse_pos = ctx->input(11).flat<T>().data();
    grad.lse_neg = ctx->input(12).flat<T>().data();
    grad.min_pos = ctx->input(13).flat<T>().data();
    grad.max_neg = ctx->input(14).flat<T>().data();
    grad.grad_lse_pos = ctx->input(15).flat<T>().data();
    grad.grad_lse_neg = ctx->input(16).flat<T>().data();
    Tensor* grad_anchors = nullptr;
    Tensor* grad_candidates = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(),
                                             &grad_anchors));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(2).shape(),
                                             &grad_candidates));
    FusedBackward(
        ctx, in,
        [&](int64_t i, int64_t j, T s) {
          return ExpPartial(in, params, grad, i, j, s);
        },
        grad_anchors->flat<T>().data(), grad_candidates->flat<T>().data());
  }

 private:
  bool exclude_self_;
  bool mine_;
};

// -------------------------------------- SoftLabelContrastiveReductions --

const char* const kContrastiveScalarNames[2] = {"pos_margin", "neg_margin"};

template <typename T>
ContrastiveParams<T> GetContrastiveParams(OpKernelContext* ctx) {
  ContrastiveParams<T> p;
  p.pos_margin = Scalar<T>(ctx, 6);
  p.neg_margin = Scalar<T>(ctx, 7);
  return p;
}

template <typename T, typename L>
class SoftLabelContrastiveReductionsCpuOp : public OpKernel {
 public:
  explicit SoftLabelContrastiveReductionsCpuOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("exclude_self", &exclude_self_));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    OP_REQUIRES_OK(ctx, ValidateScalars(ctx, 6, 2, kContrastiveScalarNames));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    const ContrastiveParams<T> params = GetContrastiveParams<T>(ctx);
    ContrastiveOutputs<T> out;
    T** slots[] = {&out.pos_sum, &out.pos_count, &out.neg_sum,
                   &out.neg_count};
    for (int k = 0; k < 4; ++k) {
      Tensor* t = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(k, TensorShape({in.m}), &t));
      *slots[k] = t->flat<T>().data();
    }
    ForEachSimilarityRow(ctx, in, [&](int64_t i, const T* s_row) {
      ContrastiveRow(in, i, s_row, params, out);
    });
  }

 private:
  bool exclude_self_;
};

template <typename T, typename L>
class SoftLabelContrastiveReductionsGradCpuOp : public OpKernel {
 public:
  explicit SoftLabelContrastiveReductionsGradCpuOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("exclude_self", &exclude_self_));
  }

  void Compute(OpKernelContext* ctx) override {
    static const char* const kRowNames[] = {"grad_pos_sum", "grad_neg_sum"};
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    OP_REQUIRES_OK(ctx, ValidateScalars(ctx, 6, 2, kContrastiveScalarNames));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    OP_REQUIRES_OK(ctx, ValidateRowVectors(ctx, 8, 2, kRowNames, in.m));
    const ContrastiveParams<T> params = GetContrastiveParams<T>(ctx);
    ContrastiveGradInputs<T> grad;
    grad.grad_pos_sum = ctx->input(8).flat<T>().data();
    grad.grad_neg_sum = ctx->input(9).flat<T>().data();
    Tensor* grad_anchors = nullptr;
    Tensor* grad_candidates = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(),
                                             &grad_anchors));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(2).shape(),
                                             &grad_candidates));
    FusedBackward(
        ctx, in,
        [&](int64_t i, int64_t j, T s) {
          return ContrastivePartial(in, params, grad, i, j, s);
        },
        grad_anchors->flat<T>().data(), grad_candidates->flat<T>().data());
  }

 private:
  bool exclude_self_;
};

}  // namespace
}  // namespace metrix

// ------------------------------------------------------- registrations --

namespace tensorflow {
namespace {

#define METRIX_PAIR_INPUTS                                         \
  Input("anchors: T")                                              \
      .Input("anchor_labels: Tlabel")                              \
      .Input("candidates: T")                                      \
      .Input("candidate_labels_a: Tlabel")                         \
      .Input("candidate_labels_b: Tlabel")                         \
      .Input("lam: T")

#define METRIX_COMMON_ATTRS                 \
  Attr("T: {float, double}")                \
      .Attr("Tlabel: {int32, int64} = DT_INT32") \
      .Attr("exclude_self: bool = false")

Status RowOutputs(shape_inference::InferenceContext* c, int count) {
  shape_inference::DimensionHandle m, n;
  TF_RETURN_IF_ERROR(::metrix::PairShapes(c, &m, &n));
  for (int k = 0; k < count; ++k) c->set_output(k, c->Vector(m));
  return Status();
}

Status GradOutputs(shape_inference::InferenceContext* c) {
  shape_inference::DimensionHandle m, n;
  TF_RETURN_IF_ERROR(::metrix::PairShapes(c, &m, &n));
  c->set_output(0, c->input(0));
  c->set_output(1, c->input(2));
  return Status();
}

}  // namespace

REGISTER_OP("SoftLabelSimilarity")
    .METRIX_PAIR_INPUTS
    .Output("similarity: T")
    .Output("soft_labels: T")
    .METRIX_COMMON_ATTRS
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::DimensionHandle m, n;
      TF_RETURN_IF_ERROR(::metrix::PairShapes(c, &m, &n));
      c->set_output(0, c->Matrix(m, n));
      c->set_output(1, c->Matrix(m, n));
      return Status();
    })
    .Doc(R"doc(
Pairwise similarity anchors @ candidates^T and soft labels
y_ij = lam_j [label_a_j == anchor_label_i] + (1 - lam_j) [label_b_j == anchor_label_i],
with y_ii = -1 (NOT_A_PAIR) when exclude_self.
)doc");

REGISTER_OP("SoftLabelExpReductions")
    .METRIX_PAIR_INPUTS
    .Input("scale_pos: T")
    .Input("shift_pos: T")
    .Input("scale_neg: T")
    .Input("shift_neg: T")
    .Input("epsilon: T")
    .Output("lse_pos: T")
    .Output("lse_neg: T")
    .Output("min_pos: T")
    .Output("max_neg: T")
    .Output("pos_count: T")
    .Output("neg_count: T")
    .METRIX_COMMON_ATTRS
    .Attr("mine: bool = false")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      return RowOutputs(c, 6);
    })
    .Doc(R"doc(
Per-anchor log(1 + sum w+ exp(-scale_pos (s - shift_pos))) and
log(1 + sum w- exp(scale_neg (s - shift_neg))) without materialising M x N.
)doc");

REGISTER_OP("SoftLabelExpReductionsGrad")
    .METRIX_PAIR_INPUTS
    .Input("scale_pos: T")
    .Input("shift_pos: T")
    .Input("scale_neg: T")
    .Input("shift_neg: T")
    .Input("epsilon: T")
    .Input("lse_pos: T")
    .Input("lse_neg: T")
    .Input("min_pos: T")
    .Input("max_neg: T")
    .Input("grad_lse_pos: T")
    .Input("grad_lse_neg: T")
    .Output("grad_anchors: T")
    .Output("grad_candidates: T")
    .METRIX_COMMON_ATTRS
    .Attr("mine: bool = false")
    .SetShapeFn(GradOutputs);

REGISTER_OP("SoftLabelContrastiveReductions")
    .METRIX_PAIR_INPUTS
    .Input("pos_margin: T")
    .Input("neg_margin: T")
    .Output("pos_sum: T")
    .Output("pos_count: T")
    .Output("neg_sum: T")
    .Output("neg_count: T")
    .METRIX_COMMON_ATTRS
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      return RowOutputs(c, 4);
    })
    .Doc(R"doc(
Per-anchor sums of w+ relu(d - pos_margin) and w- relu(neg_margin - d),
d = sqrt(2 - 2 s) (exactly 0 for coincident points, see CoincidentBound),
and their non-zero counts, without materialising M x N.
)doc");

REGISTER_OP("SoftLabelContrastiveReductionsGrad")
    .METRIX_PAIR_INPUTS
    .Input("pos_margin: T")
    .Input("neg_margin: T")
    .Input("grad_pos_sum: T")
    .Input("grad_neg_sum: T")
    .Output("grad_anchors: T")
    .Output("grad_candidates: T")
    .METRIX_COMMON_ATTRS
    .SetShapeFn(GradOutputs);

#define METRIX_REGISTER_CPU(T, L)                                             \
  REGISTER_KERNEL_BUILDER(Name("SoftLabelSimilarity")                         \
                              .Device(DEVICE_CPU)                             \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<L>("Tlabel"),                   \
                          ::metrix::SoftLabelSimilarityCpuOp<T, L>);          \
  REGISTER_KERNEL_BUILDER(Name("SoftLabelExpReductions")                      \
                              .Device(DEVICE_CPU)                             \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<L>("Tlabel"),                   \
                          ::metrix::SoftLabelExpReductionsCpuOp<T, L>);       \
  REGISTER_KERNEL_BUILDER(Name("SoftLabelExpReductionsGrad")                  \
                              .Device(DEVICE_CPU)                             \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<L>("Tlabel"),                   \
                          ::metrix::SoftLabelExpReductionsGradCpuOp<T, L>);   \
  REGISTER_KERNEL_BUILDER(Name("SoftLabelContrastiveReductions")              \
                              .Device(DEVICE_CPU)                             \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<L>("Tlabel"),                   \
                          ::metrix::SoftLabelContrastiveReductionsCpuOp<T, L>); \
  REGISTER_KERNEL_BUILDER(                                                    \
      Name("SoftLabelContrastiveReductionsGrad")                              \
          .Device(DEVICE_CPU)                                                 \
          .TypeConstraint<T>("T")                                             \
          .TypeConstraint<L>("Tlabel"),                                       \
      ::metrix::SoftLabelContrastiveReductionsGradCpuOp<T, L>);

METRIX_REGISTER_CPU(float, int32)
METRIX_REGISTER_CPU(float, int64_t)
METRIX_REGISTER_CPU(double, int32)
METRIX_REGISTER_CPU(double, int64_t)
#undef METRIX_REGISTER_CPU

}  // namespace tensorflow

// Read with ctypes by metrix_tf/ops/_loader.py: the TensorFlow version whose
// headers this library was compiled against (the build passes
// -DMETRIX_TF_BUILT_FOR="\"<tf.__version__>\""), and the GEMM copy in use.
#ifndef METRIX_TF_BUILT_FOR
#define METRIX_TF_BUILT_FOR "unknown"
#endif

// The same version as bytes in the file, "METRIX_TF_BUILT_FOR=<version>;", which the loader
// finds before it loads the library: one built for another TensorFlow is never loaded (its
// static op and kernel registrations would run against that TensorFlow's ABI).
extern "C" __attribute__((visibility("default"), used)) const char metrix_tf_built_for_marker[] =
    "METRIX_TF_BUILT_FOR=" METRIX_TF_BUILT_FOR ";";

extern "C" {
__attribute__((visibility("default"))) const char* metrix_tf_built_for() {
  return METRIX_TF_BUILT_FOR;
}
__attribute__((visibility("default"))) const char* metrix_tf_gemm_isa() {
  return ::metrix::GemmInstructionSet();
}
__attribute__((visibility("default"))) int metrix_tf_has_cuda() {
#if defined(METRIX_TF_WITH_CUDA)  // set by setup.py with the CUDA kernels
  return 1;
#else
  return 0;
#endif
}
}
