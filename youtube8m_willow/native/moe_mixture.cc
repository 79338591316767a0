// MoeMixture and its gradient: the MoE head's per-class mixture of experts
// (float32 or bfloat16 logits, computed in float32; CPU). For each video b
// and class c, with M mixtures:
//
//   g = softmax(gates[b, c, 0..M])      (M + 1 gates; the last one is the
//                                        "nothing" expert's)
//   s_m = sigmoid(experts[b, c, m])     (m < M)
//   p[b, c] = sum_m g_m * s_m
//
// from gates [B, C * (M + 1)] and experts [B, C * M], as the head's two dense
// layers write them (a class's gates, and its experts, side by side). The
// gradient from p's gradient d recomputes g, s and p from the logits:
//
//   a_j = d * s_j (a_M = 0),  q = sum_j a_j * g_j
//   gates' gradient   (a_j - q) * g_j          (the softmax's, as TensorFlow's)
//   experts' gradient (d * g_m) * s_m * (1 - s_m)  (the sigmoid's)
//
// TensorFlow's separate ops read a class's M + 1 gates as a row of a
// [B * C, M + 1] matrix, a softmax over 3 entries for WILLOW's 2 mixtures,
// which its kernels and XLA both run far below the memory's rate. Here each
// block of classes is first split into one array per gate and per expert, so
// every exponential, sum and product runs across classes in the CPU's full
// vector width; the results are written back interleaved. Every class is
// computed on its own (no sum runs across classes), so the values do not
// depend on the threads (the last few classes of the last block, fewer than
// a vector's width, take the scalar exponential: within an ulp of the other's).
// The softmax divides by its sum, as XLA does; the sigmoid is 1 / (1 + e^-x).
// Values match TensorFlow's ops to float32 rounding, not bit for bit.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tensorflow {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;
using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;
using Block = Eigen::Map<Eigen::ArrayXf>;

// Classes per block: a block's 4M + 3 arrays (SplitBlock) stay in L1 for the
// usual mixtures.
constexpr int64_t kBlock = 256;
constexpr int kMaxMixtures = 1 << 16;

absl::Status MixtureShape(InferenceContext* c, ShapeHandle* output) {
  int mixtures;
  TF_RETURN_IF_ERROR(c->GetAttr("num_mixtures", &mixtures));
  ShapeHandle gates, experts;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &gates));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &experts));
  DimensionHandle videos, classes, expert_classes;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(gates, 0), c->Dim(experts, 0), &videos));
  TF_RETURN_IF_ERROR(c->Divide(c->Dim(gates, 1), mixtures + 1, true, &classes));
  TF_RETURN_IF_ERROR(c->Divide(c->Dim(experts, 1), mixtures, true, &expert_classes));
  TF_RETURN_IF_ERROR(c->Merge(classes, expert_classes, &classes));
  *output = c->Matrix(videos, classes);
  return absl::OkStatus();
}

REGISTER_OP("MoeMixture")
    .Input("gates: T")
    .Input("experts: T")
    .Output("probabilities: float")
    .Attr("num_mixtures: int >= 1")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle output;
      TF_RETURN_IF_ERROR(MixtureShape(c, &output));
      c->set_output(0, output);
      return absl::OkStatus();
    });

REGISTER_OP("MoeMixtureGrad")
    .Input("gates: T")
    .Input("experts: T")
    .Input("probabilities_grad: float")
    .Output("gates_grad: T")
    .Output("experts_grad: T")
    .Attr("num_mixtures: int >= 1")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle output;
      TF_RETURN_IF_ERROR(MixtureShape(c, &output));
      TF_RETURN_IF_ERROR(c->Merge(c->input(2), output, &output));
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      return absl::OkStatus();
    });

// The logits' type to float and back. bfloat16 as TensorFlow's Cast does it
// (rounded to nearest even; NaN to 0x7fc0), written with integer operations
// that the compiler vectorizes.
inline float ToFloat(float x) { return x; }
inline float ToFloat(bfloat16 x) {
  return absl::bit_cast<float>(static_cast<uint32_t>(absl::bit_cast<uint16_t>(x)) << 16);
}
inline void FromFloat(float x, float* out) { *out = x; }
inline void FromFloat(float x, bfloat16* out) {
  const uint32_t bits = absl::bit_cast<uint32_t>(x);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint16_t result = x != x ? uint16_t{0x7fc0} : static_cast<uint16_t>(rounded);
  *out = absl::bit_cast<bfloat16>(result);
}

// Copies n entries between their interleaved layout (row[t * stride + k], of
// the logits' type T) and `stride` arrays of kBlock floats
// (arrays[k * kBlock + t]).
template <typename T>
__attribute__((always_inline)) inline void SplitLoop(const T* __restrict row, int stride,
                                                     int64_t n, float* __restrict arrays) {
  for (int64_t t = 0; t < n; ++t) {
    for (int k = 0; k < stride; ++k) arrays[k * kBlock + t] = ToFloat(row[t * stride + k]);
  }
}

template <typename T>
__attribute__((always_inline)) inline void JoinLoop(const float* __restrict arrays, int stride,
                                                    int64_t n, T* __restrict row) {
  for (int64_t t = 0; t < n; ++t) {
    for (int k = 0; k < stride; ++k) FromFloat(arrays[k * kBlock + t], &row[t * stride + k]);
  }
}

// A copy loop with the usual strides (up to 4 mixtures) as constants, which
// the compiler vectorizes with permutes; other strides run as plain loops.
#define WITH_CONSTANT_STRIDE(loop, in, stride, n, out) \
  switch (stride) {                                    \
    case 1: return loop(in, 1, n, out);                \
    case 2: return loop(in, 2, n, out);                \
    case 3: return loop(in, 3, n, out);                \
    case 4: return loop(in, 4, n, out);                \
    case 5: return loop(in, 5, n, out);                \
    default: return loop(in, stride, n, out);          \
  }

template <typename T>
void Split(const T* row, int stride, int64_t n, float* arrays) {
  WITH_CONSTANT_STRIDE(SplitLoop<T>, row, stride, n, arrays)
}

template <typename T>
void Join(const float* arrays, int stride, int64_t n, T* row) {
  WITH_CONSTANT_STRIDE(JoinLoop<T>, arrays, stride, n, row)
}

// One block of n classes (at most kBlock), split into arrays: the M + 1 gate
// logits become the softmax's g, the M expert logits their sigmoids s; p is
// the mixture. The gradient's arrays follow: M + 1 for the gates, M for the
// experts.
class SplitBlock {
 public:
  explicit SplitBlock(int mixtures)
      : mixtures_(mixtures), buffer_((4 * mixtures + 3) * kBlock) {}

  // Reads classes [first, first + n) and computes g, s and p.
  template <typename T>
  void Mix(const T* gates, const T* experts, int64_t first, int64_t n) {
    n_ = n;
    const int m = mixtures_;
    Split(gates + first * (m + 1), m + 1, n, Array(0));
    Split(experts + first * m, m, n, Array(m + 1));
    Block largest = P();
    largest = Gate(0);
    for (int j = 1; j <= m; ++j) largest = largest.max(Gate(j));
    for (int j = 0; j <= m; ++j) Gate(j) = (Gate(j) - largest).exp();
    Block total = P();  // the softmax's sum, in p's array until p is made
    total = Gate(0);
    for (int j = 1; j <= m; ++j) total += Gate(j);
    for (int j = 0; j <= m; ++j) Gate(j) /= total;
    for (int i = 0; i < m; ++i) Sigmoid(i) = 1.0f / (1.0f + (-Sigmoid(i)).exp());
    Block p = P();
    p = Gate(0) * Sigmoid(0);
    for (int i = 1; i < m; ++i) p += Gate(i) * Sigmoid(i);
  }

  // After Mix: the logits' gradients from p's gradient d (n floats),
  // written interleaved at gates_grad and experts_grad (the block's first).
  template <typename T>
  void Gradient(const float* d, T* gates_grad, T* experts_grad) {
    const int m = mixtures_;
    const Eigen::Map<const Eigen::ArrayXf> grad(d, n_);
    Block q = P();  // q = sum_j a_j * g_j, in p's array (p is not needed again)
    q = (grad * Sigmoid(0)) * Gate(0);
    for (int i = 1; i < m; ++i) q += (grad * Sigmoid(i)) * Gate(i);
    for (int j = 0; j < m; ++j) GateGrad(j) = (grad * Sigmoid(j) - q) * Gate(j);
    GateGrad(m) = (-q) * Gate(m);  // the "nothing" gate: a_M = 0
    for (int i = 0; i < m; ++i) {
      ExpertGrad(i) = (grad * Gate(i)) * Sigmoid(i) * (1.0f - Sigmoid(i));
    }
    Join(Array(2 * m + 2), m + 1, n_, gates_grad);
    Join(Array(3 * m + 3), m, n_, experts_grad);
  }

  Block P() { return Block(Array(2 * mixtures_ + 1), n_); }

 private:
  Block Gate(int j) { return Block(Array(j), n_); }
  Block Sigmoid(int i) { return Block(Array(mixtures_ + 1 + i), n_); }
  Block GateGrad(int j) { return Block(Array(2 * mixtures_ + 2 + j), n_); }
  Block ExpertGrad(int i) { return Block(Array(3 * mixtures_ + 3 + i), n_); }
  float* Array(int k) { return buffer_.data() + k * kBlock; }

  int mixtures_;
  int64_t n_ = 0;
  // 64-byte aligned (each array is kBlock floats, a multiple of 64 bytes): Eigen's
  // vector loops then start at each array's first entry, with no scalar prologue.
  std::vector<float, Eigen::aligned_allocator<float>> buffer_;
};

// The classes of all videos, [0, count), in blocks over the CPU's threads;
// per class, the bytes read and written and the operations (for the thread
// pool's split).
template <typename Fn>
void ForEachBlock(OpKernelContext* ctx, int64_t count, int mixtures, double bytes_read,
                  double bytes_written, double operations, Fn block) {
  const Eigen::TensorOpCost cost(bytes_read * kBlock, bytes_written * kBlock,
                                 operations * kBlock);
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  ctx->eigen_device<CPUDevice>().parallelFor(blocks, cost, [&](int64_t begin, int64_t end) {
    SplitBlock split(mixtures);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * kBlock;
      block(split, first, std::min(kBlock, count - first));
    }
  });
}

// Both kernels: the number of mixtures, and the logits' shapes checked
// before Run.
template <typename T>
class MixtureKernel : public OpKernel {
 public:
  explicit MixtureKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_mixtures", &mixtures_));
    OP_REQUIRES(ctx, mixtures_ <= kMaxMixtures,
                absl::InvalidArgumentError("num_mixtures must be at most 65536"));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& gates = ctx->input(0);
    const Tensor& experts = ctx->input(1);
    const std::string shapes =
        absl::StrCat("; got ", gates.shape().DebugString(), " and ",
                     experts.shape().DebugString(), " with num_mixtures ", mixtures_);
    OP_REQUIRES(ctx, gates.dims() == 2 && experts.dims() == 2,
                absl::InvalidArgumentError(absl::StrCat("gates and experts must be matrices",
                                                        shapes)));
    const int64_t videos = gates.dim_size(0), classes = gates.dim_size(1) / (mixtures_ + 1);
    OP_REQUIRES(ctx,
                gates.dim_size(1) == classes * (mixtures_ + 1) &&
                    experts.dim_size(0) == videos && experts.dim_size(1) == classes * mixtures_,
                absl::InvalidArgumentError(absl::StrCat(
                    "gates must be [B, C * (num_mixtures + 1)] and experts [B, C * num_mixtures]",
                    shapes)));
    Run(ctx, videos, classes, gates.flat<T>().data(), experts.flat<T>().data());
  }

 protected:
  virtual void Run(OpKernelContext* ctx, int64_t videos, int64_t classes, const T* gates,
                   const T* experts) = 0;

  int mixtures_;
};

template <typename T>
class MoeMixtureOp : public MixtureKernel<T> {
 public:
  using MixtureKernel<T>::MixtureKernel;

 protected:
  void Run(OpKernelContext* ctx, int64_t videos, int64_t classes, const T* gates,
           const T* experts) override {
    const int m = this->mixtures_;
    Tensor* output;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({videos, classes}), &output));
    float* p = output->flat<float>().data();
    const double logits = 2.0 * m + 1;
    ForEachBlock(ctx, videos * classes, m, logits * sizeof(T), sizeof(float), 20 * logits,
                 [&](SplitBlock& split, int64_t first, int64_t n) {
                   split.Mix(gates, experts, first, n);
                   Block(p + first, n) = split.P();
                 });
  }
};

template <typename T>
class MoeMixtureGradOp : public MixtureKernel<T> {
 public:
  using MixtureKernel<T>::MixtureKernel;

 protected:
  void Run(OpKernelContext* ctx, int64_t videos, int64_t classes, const T* gates,
           const T* experts) override {
    OP_REQUIRES(ctx, ctx->input(2).shape() == TensorShape({videos, classes}),
                absl::InvalidArgumentError(absl::StrCat(
                    "probabilities_grad must be [B, C] = ",
                    TensorShape({videos, classes}).DebugString(), ", got ",
                    ctx->input(2).shape().DebugString())));
    Tensor *gates_grad, *experts_grad;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &gates_grad));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &experts_grad));
    const float* d = ctx->input(2).flat<float>().data();
    T* dg = gates_grad->flat<T>().data();
    T* de = experts_grad->flat<T>().data();
    const int m = this->mixtures_;
    const double logits = 2.0 * m + 1;
    ForEachBlock(ctx, videos * classes, m, logits * sizeof(T) + sizeof(float),
                 logits * sizeof(T), 40 * logits,
                 [&](SplitBlock& split, int64_t first, int64_t n) {
                   split.Mix(gates, experts, first, n);
                   split.Gradient(d + first, dg + first * (m + 1), de + first * m);
                 });
  }
};

#define REGISTER(T)                                                                    \
  REGISTER_KERNEL_BUILDER(Name("MoeMixture").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
                          MoeMixtureOp<T>);                                            \
  REGISTER_KERNEL_BUILDER(                                                             \
      Name("MoeMixtureGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),                \
      MoeMixtureGradOp<T>);
REGISTER(float)
REGISTER(bfloat16)
#undef REGISTER

}  // namespace
}  // namespace tensorflow
