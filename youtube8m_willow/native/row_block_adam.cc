// RowBlockApplyAdam: TF1's ApplyAdam on rows [start, start + R) of a float32
// resource variable and its two Adam slots, in place, from the gradient of
// those rows alone ([R, H]). CPU only.
//
// TensorFlow has no dense in-place update of part of a variable: its slice
// and scatter assignments switch the variable to copy-on-read mode (every
// later read copies it whole). This kernel locks and prepares the three
// variables as TF1's own ApplyAdam does (a variable whose buffer is still read
// elsewhere is copied first), then applies TF1's formula, expression for
// expression, to the rows: the same float32 operations in the same order, so
// the same bits as ApplyAdam on the whole variable (built without contracted
// multiply-adds, as TensorFlow's own kernels are). A variable in copy-on-read
// mode would be copied whole for every block: the caller turns that mode off
// first (training/factored_adam.py).
#define EIGEN_USE_THREADS

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
    .Input("grad: float")
    .Input("start: int64")
    .SetShapeFn(shape_inference::NoOutputs);

class RowBlockApplyAdamOp : public OpKernel {
 public:
  explicit RowBlockApplyAdamOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    for (int input = 3; input <= 10; ++input) {
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
    float* var_rows = var.flat<float>().data() + start * cols;
    float* m_rows = m.flat<float>().data() + start * cols;
    float* v_rows = v.flat<float>().data() + start * cols;
    const float* g_rows = grad.flat<float>().data();
    using Map = Eigen::TensorMap<Eigen::Tensor<float, 1, Eigen::RowMajor>, Eigen::Unaligned>;
    using ConstMap =
        Eigen::TensorMap<Eigen::Tensor<const float, 1, Eigen::RowMajor>, Eigen::Unaligned>;
    auto shard = [=](int64_t begin, int64_t end) {
      const int64_t size = end - begin;
      Map var_part(var_rows + begin, size), m_part(m_rows + begin, size),
          v_part(v_rows + begin, size);
      ConstMap g(g_rows + begin, size);
      m_part += (g - m_part) * (1.0f - beta1);
      v_part += (g.square() - v_part) * (1.0f - beta2);
      var_part -= (m_part * alpha) / (v_part.sqrt() + epsilon);
    };
    // Per element: 4 floats read, 3 written, about 20 operations.
    const Eigen::TensorOpCost cost(16, 12, 20);
    ctx->eigen_device<CPUDevice>().parallelFor(rows * cols, cost, shard);
  }
};

REGISTER_KERNEL_BUILDER(Name("RowBlockApplyAdam").Device(DEVICE_CPU), RowBlockApplyAdamOp);

}  // namespace
}  // namespace tensorflow
