// GPU kernels of the soft-label similarity ops (GOOGLE_CUDA builds only).
//
// The CUDA code lives in soft_label_similarity_kernels.cu and is compiled by
// nvcc without TensorFlow headers; this file, compiled by g++ with the
// TensorFlow flags, validates inputs, allocates outputs and hands the
// launchers raw device pointers and the op's CUDA stream. Scalar
// hyper-parameters stay in host memory.
#if GOOGLE_CUDA

#include <string>
#include <type_traits>

#include "cc/soft_label_similarity_kernels.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tsl/platform/tensor_float_32_utils.h"
#include "xla/stream_executor/stream.h"
#include "xla/stream_executor/stream_executor.h"

namespace metrix {
namespace {

using ::tensorflow::DEVICE_GPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;

// The op's stream, and TensorFlow's TensorFloat-32 setting (on by default,
// as for tf.matmul; tf.config.experimental.enable_tensor_float_32_execution).
template <typename T>
cuda::GpuContext GetGpuContext(OpKernelContext* ctx) {
  auto* stream = ctx->op_device_context()->stream();
  // Makes TensorFlow load its cuBLAS first, so that ours is the same library.
  stream->parent()->AsBlas();
  return cuda::GpuContext{stream->platform_specific_handle().stream,
                          std::is_same<T, float>::value &&
                              tsl::tensor_float_32_execution_enabled()};
}

Status LaunchStatus(int error, const char* what) {
  if (error == 0) return Status();
  return ::tensorflow::errors::Internal("metrix_tf: GPU ", what, " failed (",
                                        error, "): ", cuda::ErrorString(error));
}

// Workspace of one strip of the fused reductions (see
// soft_label_similarity_kernels.h), from TensorFlow's allocator.
template <typename T>
Status AllocateStrip(OpKernelContext* ctx, int64_t m, int64_t n,
                     Tensor* holder, cuda::StripWorkspace<T>* strip) {
  strip->rows = cuda::FusedStripRows(m, n);
  strip->data = nullptr;
  if (m == 0 || n == 0) return Status();
  TF_RETURN_IF_ERROR(ctx->allocate_temp(::tensorflow::DataTypeToEnum<T>::value,
                                        TensorShape({strip->rows * n}), holder));
  strip->data = holder->flat<T>().data();
  return Status();
}

// Same checks (and messages) as the CPU kernels.
Status ValidatePairInputs(OpKernelContext* ctx) {
  const Tensor& anchors = ctx->input(0);
  const Tensor& candidates = ctx->input(2);
  if (anchors.dims() != 2) {
    return InvalidArgument("anchors must have shape (M, D); received shape ",
                           anchors.shape().DebugString());
  }
  if (candidates.dims() != 2) {
    return InvalidArgument("candidates must have shape (N, D); received shape ",
                           candidates.shape().DebugString());
  }
  if (anchors.dim_size(1) != candidates.dim_size(1)) {
    return InvalidArgument(
        "anchors and candidates must have the same embedding size D; "
        "received anchors shape ",
        anchors.shape().DebugString(), " and candidates shape ",
        candidates.shape().DebugString());
  }
  const int64_t m = anchors.dim_size(0);
  const int64_t n = candidates.dim_size(0);
  if (ctx->input(1).dims() != 1 || ctx->input(1).dim_size(0) != m) {
    return InvalidArgument("anchor_labels must have shape (M,) = (", m,
                           ",) to match anchors; received shape ",
                           ctx->input(1).shape().DebugString());
  }
  const char* names[] = {"candidate_labels_a", "candidate_labels_b", "lam"};
  for (int k = 0; k < 3; ++k) {
    const Tensor& t = ctx->input(3 + k);
    if (t.dims() != 1 || t.dim_size(0) != n) {
      return InvalidArgument(names[k], " must have shape (N,) = (", n,
                             ",) to match candidates; received shape ",
                             t.shape().DebugString());
    }
  }
  for (int k = 6; k < ctx->num_inputs(); ++k) {
    const Tensor& t = ctx->input(k);
    const bool scalar = ctx->input_memory_type(k) == ::tensorflow::HOST_MEMORY;
    if (scalar ? t.dims() != 0 : (t.dims() != 1 || t.dim_size(0) != m)) {
      return InvalidArgument("input ", k, " must have shape ",
                             scalar ? "()" : "(M,)", "; received shape ",
                             t.shape().DebugString());
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
T HostScalar(OpKernelContext* ctx, int index) {
  return ctx->input(index).scalar<T>()();
}

template <typename T>
ExpParams<T> GetExpParams(OpKernelContext* ctx, bool mine) {
  return ExpParams<T>{HostScalar<T>(ctx, 6), HostScalar<T>(ctx, 7),
                      HostScalar<T>(ctx, 8), HostScalar<T>(ctx, 9),
                      HostScalar<T>(ctx, 10), mine};
}

template <typename T>
ContrastiveParams<T> GetContrastiveParams(OpKernelContext* ctx) {
  return ContrastiveParams<T>{HostScalar<T>(ctx, 6), HostScalar<T>(ctx, 7)};
}

class GpuOpBase : public OpKernel {
 public:
  explicit GpuOpBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("exclude_self", &exclude_self_));
    if (ctx->HasAttr("mine")) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("mine", &mine_));
    }
  }

 protected:
  bool exclude_self_ = false;
  bool mine_ = false;
};

template <typename T, typename L>
class SoftLabelSimilarityGpuOp : public GpuOpBase {
 public:
  using GpuOpBase::GpuOpBase;
  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    Tensor* s = nullptr;
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({in.m, in.n}), &s));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({in.m, in.n}), &y));
    OP_REQUIRES_OK(ctx, LaunchStatus(cuda::LaunchSoftLabelSimilarity<T, L>(
                                         GetGpuContext<T>(ctx), in, s->flat<T>().data(),
                                         y->flat<T>().data()),
                                     "SoftLabelSimilarity"));
  }
};

template <typename T, typename L>
class SoftLabelExpReductionsGpuOp : public GpuOpBase {
 public:
  using GpuOpBase::GpuOpBase;
  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    ExpOutputs<T> out;
    T** slots[] = {&out.lse_pos, &out.lse_neg, &out.min_pos,
                   &out.max_neg, &out.pos_count, &out.neg_count};
    for (int k = 0; k < 6; ++k) {
      Tensor* t = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(k, TensorShape({in.m}), &t));
      *slots[k] = t->flat<T>().data();
    }
    Tensor holder;
    cuda::StripWorkspace<T> strip;
    OP_REQUIRES_OK(ctx, AllocateStrip<T>(ctx, in.m, in.n, &holder, &strip));
    OP_REQUIRES_OK(ctx, LaunchStatus(cuda::LaunchExpReductions<T, L>(
                                         GetGpuContext<T>(ctx), in,
                                         GetExpParams<T>(ctx, mine_), out,
                                         strip),
                                     "SoftLabelExpReductions"));
  }
};

template <typename T, typename L>
class SoftLabelExpReductionsGradGpuOp : public GpuOpBase {
 public:
  using GpuOpBase::GpuOpBase;
  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    ExpGradInputs<T> grad{ctx->input(11).flat<T>().data(),
                          ctx->input(12).flat<T>().data(),
                          ctx->input(13).flat<T>().data(),
                          ctx->input(14).flat<T>().data(),
                          ctx->input(15).flat<T>().data(),
                          ctx->input(16).flat<T>().data()};
    Tensor* ga = nullptr;
    Tensor* gc = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &ga));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(2).shape(), &gc));
    Tensor holder;
    cuda::StripWorkspace<T> strip;
    OP_REQUIRES_OK(ctx, AllocateStrip<T>(ctx, in.m, in.n, &holder, &strip));
    OP_REQUIRES_OK(ctx, LaunchStatus(cuda::LaunchExpReductionsGrad<T, L>(
                                         GetGpuContext<T>(ctx), in,
                                         GetExpParams<T>(ctx, mine_), grad,
                                         ga->flat<T>().data(),
                                         gc->flat<T>().data(), strip),
                                     "SoftLabelExpReductionsGrad"));
  }
};

template <typename T, typename L>
class SoftLabelContrastiveReductionsGpuOp : public GpuOpBase {
 public:
  using GpuOpBase::GpuOpBase;
  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    ContrastiveOutputs<T> out;
    T** slots[] = {&out.pos_sum, &out.pos_count, &out.neg_sum, &out.neg_count};
    for (int k = 0; k < 4; ++k) {
      Tensor* t = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(k, TensorShape({in.m}), &t));
      *slots[k] = t->flat<T>().data();
    }
    Tensor holder;
    cuda::StripWorkspace<T> strip;
    OP_REQUIRES_OK(ctx, AllocateStrip<T>(ctx, in.m, in.n, &holder, &strip));
    OP_REQUIRES_OK(ctx, LaunchStatus(cuda::LaunchContrastiveReductions<T, L>(
                                         GetGpuContext<T>(ctx), in,
                                         GetContrastiveParams<T>(ctx), out,
                                         strip),
                                     "SoftLabelContrastiveReductions"));
  }
};

template <typename T, typename L>
class SoftLabelContrastiveReductionsGradGpuOp : public GpuOpBase {
 public:
  using GpuOpBase::GpuOpBase;
  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, ValidatePairInputs(ctx));
    const PairInputs<T, L> in = GetPairInputs<T, L>(ctx, exclude_self_);
    ContrastiveGradInputs<T> grad{ctx->input(8).flat<T>().data(),
                                  ctx->input(9).flat<T>().data()};
    Tensor* ga = nullptr;
    Tensor* gc = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &ga));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(2).shape(), &gc));
    Tensor holder;
    cuda::StripWorkspace<T> strip;
    OP_REQUIRES_OK(ctx, AllocateStrip<T>(ctx, in.m, in.n, &holder, &strip));
    OP_REQUIRES_OK(ctx, LaunchStatus(cuda::LaunchContrastiveReductionsGrad<T, L>(
                                         GetGpuContext<T>(ctx), in,
                                         GetContrastiveParams<T>(ctx), grad,
                                         ga->flat<T>().data(),
                                         gc->flat<T>().data(), strip),
                                     "SoftLabelContrastiveReductionsGrad"));
  }
};

}  // namespace
}  // namespace metrix

namespace tensorflow {

#define METRIX_REGISTER_GPU(T, L)                                             \
  REGISTER_KERNEL_BUILDER(Name("SoftLabelSimilarity")                         \
                              .Device(DEVICE_GPU)                             \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<L>("Tlabel"),                   \
                          ::metrix::SoftLabelSimilarityGpuOp<T, L>);          \
  REGISTER_KERNEL_BUILDER(Name("SoftLabelExpReductions")                      \
                              .Device(DEVICE_GPU)                             \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<L>("Tlabel")                    \
                              .HostMemory("scale_pos")                        \
                              .HostMemory("shift_pos")                        \
                              .HostMemory("scale_neg")                        \
                              .HostMemory("shift_neg")                        \
                              .HostMemory("epsilon"),                         \
                          ::metrix::SoftLabelExpReductionsGpuOp<T, L>);       \
  REGISTER_KERNEL_BUILDER(Name("SoftLabelExpReductionsGrad")                  \
                              .Device(DEVICE_GPU)                             \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<L>("Tlabel")                    \
                              .HostMemory("scale_pos")                        \
                              .HostMemory("shift_pos")                        \
                              .HostMemory("scale_neg")                        \
                              .HostMemory("shift_neg")                        \
                              .HostMemory("epsilon"),                         \
                          ::metrix::SoftLabelExpReductionsGradGpuOp<T, L>);   \
  REGISTER_KERNEL_BUILDER(Name("SoftLabelContrastiveReductions")              \
                              .Device(DEVICE_GPU)                             \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<L>("Tlabel")                    \
                              .HostMemory("pos_margin")                       \
                              .HostMemory("neg_margin"),                      \
                          ::metrix::SoftLabelContrastiveReductionsGpuOp<T, L>); \
  REGISTER_KERNEL_BUILDER(                                                    \
      Name("SoftLabelContrastiveReductionsGrad")                              \
          .Device(DEVICE_GPU)                                                 \
          .TypeConstraint<T>("T")                                             \
          .TypeConstraint<L>("Tlabel")                                        \
          .HostMemory("pos_margin")                                           \
          .HostMemory("neg_margin"),                                          \
      ::metrix::SoftLabelContrastiveReductionsGradGpuOp<T, L>);

METRIX_REGISTER_GPU(float, int32)
METRIX_REGISTER_GPU(float, int64_t)
METRIX_REGISTER_GPU(double, int32)
METRIX_REGISTER_GPU(double, int64_t)
#undef METRIX_REGISTER_GPU

}  // namespace tensorflow

#endif  // GOOGLE_CUDA
