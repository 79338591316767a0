// RowBlockApplyAdam: TF1's ApplyAdam on rows [start, start + R) of a float32
// resource variable and its two Adam slots, in place, from the gradient of
// those rows alone ([R, H], float32 or bfloat16), optionally with an L2
// term and a clipping scale: g = (grad + l2 * var) * scale. CPU only.
//
// TensorFlow has no dense in-place update of part of a variable: its slice
// and scatter assignments switch the variable to copy-on-read mode (every
// later read copies it whole). This kernel locks and prepares the three
// variables as TF1's own ApplyAdam does (a variable whose buffer is still read
// elsewhere is copied first), then applies TF1's formula, expression for
// expression, to the rows: the same float32 operations in the same order, so
// the same bits as ApplyAdam on the whole variable (built without contracted
// multiply-adds, as TensorFlow's own kernels are). With l2 0 and scale 1 the
// gradient is taken as it is; otherwise as TensorFlow's separate ops would
// make it (l2 * var added, then the product with scale). A variable in
// copy-on-read mode would be copied whole for every block: the caller turns
// that mode off first (training/factored_adam.py).
//
// PenalizedSquaredNorm: sum((grad + l2 * weight)^2), each term rounded to
// float32 as that gradient is, summed in float64 over fixed blocks (the same
// result on any number of threads): the clipping norm of an L2-penalized
// weight's gradient without making it (training/penalized_adam.py).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tensorflow {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;

REGISTER_OP("RowBlockApplyAdam")
    .Input("var: resource")
    .Input("m: resource")
    .Input("v: resource")
    .Input("beta1_power: float")
    .Input("beta2_power: float")
    .Input("lr: float")
    .Input("beta1: float")
    .Input("beta2: float")
    .Input("epsilon: float")
    .Input("grad: T")
    .Input("start: int64")
    .Input("l2: float")
    .Input("scale: float")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("PenalizedSquaredNorm")
    .Input("grad: T")
    .Input("weight: float")
    .Input("l2: float")
    .Output("squared_norm: double")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn(shape_inference::ScalarShape);

// The blocks PenalizedSquaredNorm sums apart, then in order, and the
// interleaved float64 sums within each (the loop vectorizes; the order of
// the additions is fixed, whatever the threads and addresses).
constexpr int64_t kNormBlocks = 64;
constexpr int kLanes = 8;

inline float ToFloat(float x) { return x; }
inline float ToFloat(Eigen::bfloat16 x) { return static_cast<float>(x); }

struct AdamStep {
  float l2, scale, keep1, keep2, alpha, epsilon;
};

// TF1's ApplyAdam on n elements from g (plus l2 * var, times scale, where
// asked): m += (g - m)(1 - beta1), v += (g^2 - v)(1 - beta2),
// var -= m alpha / (sqrt(v) + epsilon), each operation rounded as there.
template <typename T, bool kL2, bool kScale>
void AdamRange(const T* __restrict g, float* __restrict var, float* __restrict m,
               float* __restrict v, int64_t n, const AdamStep& s) {
  for (int64_t i = 0; i < n; ++i) {
    float gradient = ToFloat(g[i]);
    if (kL2) gradient = gradient + s.l2 * var[i];
    if (kScale) gradient = gradient * s.scale;
    const float first = m[i] + (gradient - m[i]) * s.keep1;
    const float second = v[i] + (gradient * gradient - v[i]) * s.keep2;
    m[i] = first;
    v[i] = second;
    var[i] = var[i] - (first * s.alpha) / (std::sqrt(second) + s.epsilon);
  }
}

// sum((g + l2 * w)^2) over n elements, each term a float32, in float64.
template <typename T>
double PenalizedSquares(const T* __restrict g, const float* __restrict w, int64_t n, float l2) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float term = ToFloat(g[i + j]) + l2 * w[i + j];
      lanes[j] += static_cast<double>(term) * term;
    }
  }
  for (; i < n; ++i) {
    const float term = ToFloat(g[i]) + l2 * w[i];
    lanes[0] += static_cast<double>(term) * term;
  }
  double sum = 0.0;
  for (double lane : lanes) sum += lane;
  return sum;
}

template <typename T>
class RowBlockApplyAdamOp : public OpKernel {
 public:
  explicit RowBlockApplyAdamOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    for (int input = 3; input <= 12; ++input) {
      if (input == 9) continue;  // grad
      OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(ctx->input(input).shape()),
                  absl::InvalidArgumentError(absl::StrCat(
                      "input ", input, " must be a scalar, got ",
                      ctx->input(input).shape().DebugString())));
    }
    auto locks = MaybeLockVariableInputMutexesInOrder<CPUDevice, float>(
        ctx, /*do_lock=*/true, /*sparse=*/false, {0, 1, 2});
    Tensor var, m, v;
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 0, true, false, &var));
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 1, true, false, &m));
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 2, true, false, &v));
    for (const Tensor* t : {&var, &m, &v}) {
      OP_REQUIRES(ctx, t->IsInitialized() && t->dtype() == DT_FLOAT,
                  absl::InvalidArgumentError(
                      "var, m and v must be initialized float32 variables"));
    }
    const Tensor& grad = ctx->input(9);
    OP_REQUIRES(ctx, var.dims() == 2 && var.shape() == m.shape() && var.shape() == v.shape(),
                absl::InvalidArgumentError(absl::StrCat(
                    "var, m and v must be matrices of one shape, got ",
                    var.shape().DebugString(), ", ", m.shape().DebugString(), ", ",
                    v.shape().DebugString())));
    OP_REQUIRES(ctx, grad.dims() == 2 && grad.dim_size(1) == var.dim_size(1),
                absl::InvalidArgumentError(absl::StrCat(
                    "grad must be [rows, ", var.dim_size(1), "], got ",
                    grad.shape().DebugString())));
    const int64_t start = ctx->input(10).scalar<int64_t>()();
    const int64_t rows = grad.dim_size(0);
    const int64_t cols = var.dim_size(1);
    OP_REQUIRES(ctx, start >= 0 && start <= var.dim_size(0) && rows <= var.dim_size(0) - start,
                absl::InvalidArgumentError(absl::StrCat(
                    "rows [", start, ", ", start + rows, ") are outside the variable's ",
                    var.dim_size(0), " rows")));
    auto scalar = [ctx](int input) { return ctx->input(input).scalar<float>()(); };
    const float beta1_power = scalar(3), beta2_power = scalar(4), lr = scalar(5);
    const float beta1 = scalar(6), beta2 = scalar(7), epsilon = scalar(8);
    // TF1's ApplyAdam: alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t).
    const float alpha =
        lr * Eigen::numext::sqrt(1.0f - beta2_power) / (1.0f - beta1_power);
    const float l2 = scalar(11), scale = scalar(12);
    float* var_rows = var.flat<float>().data() + start * cols;
    float* m_rows = m.flat<float>().data() + start * cols;
    float* v_rows = v.flat<float>().data() + start * cols;
    const T* g_rows = grad.flat<T>().data();
    const float keep1 = 1.0f - beta1, keep2 = 1.0f - beta2;
    const bool with_l2 = l2 != 0.0f, scaled = scale != 1.0f;
    auto shard = [=](int64_t begin, int64_t end) {
      const AdamStep step{l2, scale, keep1, keep2, alpha, epsilon};
      float *w = var_rows + begin, *first = m_rows + begin, *second = v_rows + begin;
      const T* g = g_rows + begin;
      const int64_t n = end - begin;
      if (with_l2 && scaled) AdamRange<T, true, true>(g, w, first, second, n, step);
      if (with_l2 && !scaled) AdamRange<T, true, false>(g, w, first, second, n, step);
      if (!with_l2 && scaled) AdamRange<T, false, true>(g, w, first, second, n, step);
      if (!with_l2 && !scaled) AdamRange<T, false, false>(g, w, first, second, n, step);
    };
    // Per element: 4 floats read, 3 written, about 20 operations.
    const Eigen::TensorOpCost cost(16, 12, 20);
    ctx->eigen_device<CPUDevice>().parallelFor(rows * cols, cost, shard);
  }
};

template <typename T>
class PenalizedSquaredNormOp : public OpKernel {
 public:
  explicit PenalizedSquaredNormOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    const Tensor& weight = ctx->input(1);
    OP_REQUIRES(ctx, grad.shape() == weight.shape(),
                absl::InvalidArgumentError(absl::StrCat(
                    "grad and weight must have one shape, got ", grad.shape().DebugString(),
                    " and ", weight.shape().DebugString())));
    OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(ctx->input(2).shape()),
                absl::InvalidArgumentError("l2 must be a scalar"));
    const float l2 = ctx->input(2).scalar<float>()();
    const T* g = grad.flat<T>().data();
    const float* w = weight.flat<float>().data();
    const int64_t size = grad.NumElements();
    const int64_t block = (size + kNormBlocks - 1) / kNormBlocks;
    std::vector<double> sums(kNormBlocks, 0.0);
    auto shard = [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b) {
        const int64_t begin = std::min(size, b * block), end = std::min(size, (b + 1) * block);
        sums[b] = PenalizedSquares(g + begin, w + begin, end - begin, l2);
      }
    };
    const Eigen::TensorOpCost cost(8.0 * block, 0, 4.0 * block);
    ctx->eigen_device<CPUDevice>().parallelFor(kNormBlocks, cost, shard);
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({}), &out));
    double total = 0.0;
    for (double sum : sums) total += sum;
    out->scalar<double>()() = total;
  }
};

#define REGISTER(T)                                                                        \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name("RowBlockApplyAdam").Device(DEVICE_CPU).TypeConstraint<T>("T"),                \
      RowBlockApplyAdamOp<T>);                                                             \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name("PenalizedSquaredNorm").Device(DEVICE_CPU).TypeConstraint<T>("T"),             \
      PenalizedSquaredNormOp<T>);
REGISTER(float);
REGISTER(Eigen::bfloat16);
#undef REGISTER

}  // namespace
}  // namespace tensorflow
