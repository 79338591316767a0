// NormalizedSoftmaxPool and its gradient: the Soft-DBoF assignment from the
// frames' cluster projections to what the DBoF poolings keep of it, in
// training (float32, CPU):
//
//   y = BN(x) = (x - mean) * gamma / sqrt(variance + epsilon) + beta
//             (the batch's moments over its B*F frames, per cluster)
//   s = softmax(y) over the K clusters of each frame
//   sum[b, k] = sum_f s[b, f, k],  max[b, k] = max_f s[b, f, k]
//
// from x [B, F, K] alone. The assignments s are never stored: the gradient
// recomputes them from x, twice (once for batch norm's two sums, once for
// the gradient itself), and writes its x gradient in x's own buffer when
// nothing else holds it. So the pooling holds one [B, F, K] tensor through
// the step where TensorFlow's fused batch norm, softmax, sum and maximum
// hold three at the backward pass's peak with the layers' lean softmax
// gradient, about five with TensorFlow's own (Soft-DBoF's 8000 clusters over
// 80 x 300 frames: 768 MB each).
//
// The maximum's gradient goes to every frame at the maximum, shared equally
// between ties (as TensorFlow's gradient of reduce_max); a NaN maximum
// (count 0) makes it NaN, as there. The moments and sums are accumulated in
// float64; everything else is float32, as TensorFlow's own kernels compute it
// (the same values to float32 rounding, not the same bits).
#define EIGEN_USE_THREADS

#include <cmath>
#include <limits>
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
using Row = Eigen::Map<Eigen::ArrayXf>;
using ConstRow = Eigen::Map<const Eigen::ArrayXf>;
using DoubleRow = Eigen::Map<Eigen::ArrayXd>;

REGISTER_OP("NormalizedSoftmaxPool")
    .Input("x: float")
    .Input("gamma: float")
    .Input("beta: float")
    .Output("sum: float")
    .Output("max: float")
    .Output("max_count: float")
    .Output("mean: float")
    .Output("variance: float")
    .Attr("epsilon: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, vector;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
      DimensionHandle videos = c->Dim(x, 0), clusters = c->Dim(x, 2);
      for (int input = 1; input <= 2; ++input) {
        TF_RETURN_IF_ERROR(c->WithRank(c->input(input), 1, &vector));
        TF_RETURN_IF_ERROR(c->Merge(clusters, c->Dim(vector, 0), &clusters));
      }
      for (int output = 0; output < 3; ++output) c->set_output(output, c->Matrix(videos, clusters));
      c->set_output(3, c->Vector(clusters));
      c->set_output(4, c->Vector(clusters));
      return absl::OkStatus();
    });

REGISTER_OP("NormalizedSoftmaxPoolGrad")
    .Input("x: float")
    .Input("gamma: float")
    .Input("beta: float")
    .Input("mean: float")
    .Input("variance: float")
    .Input("max: float")
    .Input("max_count: float")
    .Input("sum_grad: float")
    .Input("max_grad: float")
    .Output("x_grad: float")
    .Output("gamma_grad: float")
    .Output("beta_grad: float")
    .Output("x_grad_sum: float")
    .Attr("epsilon: float")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(2));
      c->set_output(3, c->input(1));
      return absl::OkStatus();
    });

// The per-cluster batch norm of a frame: y = (x - mean) * scale + beta.
struct Normalization {
  std::vector<float> mean, inv_std, scale, beta;
  int64_t clusters;

  Normalization(const float* mean_in, const float* variance, const float* gamma,
                const float* beta_in, float epsilon, int64_t k)
      : mean(mean_in, mean_in + k), inv_std(k), scale(k), beta(beta_in, beta_in + k),
        clusters(k) {
    for (int64_t i = 0; i < k; ++i) {
      inv_std[i] = 1.0f / std::sqrt(variance[i] + epsilon);
      scale[i] = gamma[i] * inv_std[i];
    }
  }

  ConstRow Mean() const { return ConstRow(mean.data(), clusters); }
  ConstRow Scale() const { return ConstRow(scale.data(), clusters); }
  ConstRow Beta() const { return ConstRow(beta.data(), clusters); }
};

// One frame's assignments s (K floats) from its projections x. Neither
// inlined nor specialized: the forward pass and both gradient passes run
// this one code, so the
// gradient finds the forward pass's maxima among its own bits.
__attribute__((noipa)) void SoftmaxRow(const float* x, const Normalization& norm, float* s) {
  Row y(s, norm.clusters);
  y = (ConstRow(x, norm.clusters) - norm.Mean()) * norm.Scale() + norm.Beta();
  const float largest = y.maxCoeff();
  y = (y - largest).exp();
  y *= 1.0f / y.sum();
}

// Adds a frame's assignments s to the video's running sum and maximum (with
// the count of frames at it). A NaN assignment makes the maximum NaN, at no
// frame (count 0). Plain loops, which the compiler vectorizes.
void AddAndTrackMaximum(const float* __restrict s, int64_t k, double* __restrict sum,
                        float* __restrict top, float* __restrict ties) {
  for (int64_t i = 0; i < k; ++i) sum[i] += s[i];
  for (int64_t i = 0; i < k; ++i) {
    const float v = s[i], t = top[i];
    const bool above = v > t, nan = v != v;
    ties[i] = above ? 1.0f : nan ? 0.0f : ties[i] + (v == t ? 1.0f : 0.0f);
    top[i] = (above || nan) ? v : t;
  }
}

// The gradient of a frame's assignments from the gradients of the video's
// sum and maximum: g = to_sum + (s at the maximum ? at_max : elsewhere).
void PoolingGradient(const float* __restrict s, int64_t k, const float* __restrict to_sum,
                     const float* __restrict top, const float* __restrict at_max,
                     const float* __restrict elsewhere, float* __restrict g) {
  for (int64_t i = 0; i < k; ++i) g[i] = to_sum[i] + (s[i] == top[i] ? at_max[i] : elsewhere[i]);
}

// The softmax's gradient in place: g = s * (g - <g, s>).
void SoftmaxGradient(const float* __restrict s, int64_t k, float dot, float* __restrict g) {
  for (int64_t i = 0; i < k; ++i) g[i] = s[i] * (g[i] - dot);
}

// Adds a frame's g_y and g_y * x_hat to batch norm's sums of its gradient.
void AddNormalizationSums(const float* __restrict g, const float* __restrict x,
                          const Normalization& norm, double* __restrict g_sum,
                          double* __restrict g_x_hat_sum) {
  const float* __restrict mean = norm.mean.data();
  const float* __restrict inv_std = norm.inv_std.data();
  for (int64_t i = 0; i < norm.clusters; ++i) {
    g_sum[i] += g[i];
    g_x_hat_sum[i] += g[i] * ((x[i] - mean[i]) * inv_std[i]);
  }
}

// Batch norm's gradient of a frame's projections x (out may be x itself):
// scale * (g_y - mean(g_y) - x_hat * mean(g_y * x_hat)).
void NormalizationGradient(const float* g, const float* x, const Normalization& norm,
                           const float* g_mean, const float* g_x_hat_mean, float* out) {
  for (int64_t i = 0; i < norm.clusters; ++i) {
    const float x_hat = (x[i] - norm.mean[i]) * norm.inv_std[i];
    out[i] = norm.scale[i] * (g[i] - g_mean[i] - x_hat * g_x_hat_mean[i]);
  }
}

struct Dims {
  int64_t videos, frames, clusters;
  int64_t Rows() const { return videos * frames; }
};

absl::Status CheckVector(const Tensor& t, const char* name, int64_t k) {
  if (t.dims() == 1 && t.dim_size(0) == k) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(name, " must be [", k, "], got ", t.shape().DebugString()));
}

absl::Status CheckMatrix(const Tensor& t, const char* name, const Dims& d) {
  if (t.dims() == 2 && t.dim_size(0) == d.videos && t.dim_size(1) == d.clusters) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(name, " must be [", d.videos, ", ", d.clusters,
                                                 "], got ", t.shape().DebugString()));
}

absl::Status ReadDims(const Tensor& x, Dims* d) {
  if (x.dims() != 3 || x.dim_size(1) == 0 || x.dim_size(2) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "x must be [videos, frames, clusters] with at least one frame and one cluster, got ",
        x.shape().DebugString()));
  }
  *d = {x.dim_size(0), x.dim_size(1), x.dim_size(2)};
  return absl::OkStatus();
}

// Runs video(b) for every video on the CPU's threads.
template <typename Fn>
void ForEachVideo(OpKernelContext* ctx, const Dims& d, double ops_per_entry, Fn video) {
  const Eigen::TensorOpCost cost(4.0 * d.frames * d.clusters, 0,
                                 ops_per_entry * d.frames * d.clusters);
  ctx->eigen_device<CPUDevice>().parallelFor(d.videos, cost, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) video(b);
  });
}

// Two K-float scratch rows per video, each 64-byte aligned (TensorFlow's
// CPU allocator aligns to 64 bytes; rows are padded to 16 floats): Eigen's
// vectorized sums start at the first aligned entry, so the softmax's sum (and
// with it every assignment's bits) would otherwise depend on its row's address.
class Scratch {
 public:
  absl::Status Allocate(OpKernelContext* ctx, const Dims& d) {
    row_ = (d.clusters + 15) / 16 * 16;
    return ctx->allocate_temp(DT_FLOAT, TensorShape({d.videos, 2 * row_}), &rows_);
  }
  float* First(int64_t b) { return rows_.flat<float>().data() + b * 2 * row_; }
  float* Second(int64_t b) { return First(b) + row_; }

 private:
  Tensor rows_;
  int64_t row_ = 0;
};

// Per-cluster sums over all frames of per-video partial sums [B, K].
std::vector<double> SumOverVideos(const std::vector<double>& partial, const Dims& d) {
  std::vector<double> total(d.clusters, 0.0);
  DoubleRow sum(total.data(), d.clusters);
  for (int64_t b = 0; b < d.videos; ++b) {
    sum += Eigen::Map<const Eigen::ArrayXd>(partial.data() + b * d.clusters, d.clusters);
  }
  return total;
}

// The batch's mean and (population) variance per cluster, in float64.
void Moments(OpKernelContext* ctx, const float* x, const Dims& d, float* mean, float* variance) {
  const int64_t k = d.clusters;
  std::vector<double> partial(d.videos * k, 0.0);
  ForEachVideo(ctx, d, 1, [&](int64_t b) {
    DoubleRow acc(partial.data() + b * k, k);
    for (int64_t f = 0; f < d.frames; ++f) {
      acc += ConstRow(x + (b * d.frames + f) * k, k).cast<double>();
    }
  });
  std::vector<double> mean64 = SumOverVideos(partial, d);
  for (double& m : mean64) m /= d.Rows();
  std::fill(partial.begin(), partial.end(), 0.0);
  const Eigen::Map<const Eigen::ArrayXd> centre(mean64.data(), k);
  ForEachVideo(ctx, d, 3, [&](int64_t b) {
    DoubleRow acc(partial.data() + b * k, k);
    for (int64_t f = 0; f < d.frames; ++f) {
      acc += (ConstRow(x + (b * d.frames + f) * k, k).cast<double>() - centre).square();
    }
  });
  std::vector<double> squares = SumOverVideos(partial, d);
  for (int64_t i = 0; i < k; ++i) {
    mean[i] = static_cast<float>(mean64[i]);
    variance[i] = static_cast<float>(squares[i] / d.Rows());
  }
}

// Both kernels: batch norm's epsilon, and x [B, F, K] checked before Run.
class PoolKernel : public OpKernel {
 public:
  explicit PoolKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
  }

  void Compute(OpKernelContext* ctx) override {
    Dims d;
    OP_REQUIRES_OK(ctx, ReadDims(ctx->input(0), &d));
    Run(ctx, ctx->input(0), d);
  }

 protected:
  virtual void Run(OpKernelContext* ctx, const Tensor& x, const Dims& d) = 0;

  float epsilon_;
};

class NormalizedSoftmaxPoolOp : public PoolKernel {
 public:
  using PoolKernel::PoolKernel;

 protected:
  void Run(OpKernelContext* ctx, const Tensor& x, const Dims& d) override {
    OP_REQUIRES_OK(ctx, CheckVector(ctx->input(1), "gamma", d.clusters));
    OP_REQUIRES_OK(ctx, CheckVector(ctx->input(2), "beta", d.clusters));
    const TensorShape pooled({d.videos, d.clusters}), per_cluster({d.clusters});
    Tensor *sum, *max, *count, *mean, *variance;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, pooled, &sum));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, pooled, &max));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, pooled, &count));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, per_cluster, &mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, per_cluster, &variance));
    const float* xs = x.flat<float>().data();
    Moments(ctx, xs, d, mean->flat<float>().data(), variance->flat<float>().data());
    const Normalization norm(mean->flat<float>().data(), variance->flat<float>().data(),
                             ctx->input(1).flat<float>().data(),
                             ctx->input(2).flat<float>().data(), epsilon_, d.clusters);
    const int64_t k = d.clusters;
    float* sums = sum->flat<float>().data();
    float* maxima = max->flat<float>().data();
    float* counts = count->flat<float>().data();
    Scratch rows;
    OP_REQUIRES_OK(ctx, rows.Allocate(ctx, d));
    ForEachVideo(ctx, d, 40, [&](int64_t b) {
      float* scratch = rows.First(b);
      std::vector<double> total(k, 0.0);
      float* top = maxima + b * k;
      float* ties = counts + b * k;
      std::fill(top, top + k, -std::numeric_limits<float>::infinity());
      std::fill(ties, ties + k, 0.0f);
      for (int64_t f = 0; f < d.frames; ++f) {
        SoftmaxRow(xs + (b * d.frames + f) * k, norm, scratch);
        AddAndTrackMaximum(scratch, k, total.data(), top, ties);
      }
      Row(sums + b * k, k) = DoubleRow(total.data(), k).cast<float>();
    });
  }
};

class NormalizedSoftmaxPoolGradOp : public PoolKernel {
 public:
  using PoolKernel::PoolKernel;

 protected:
  void Run(OpKernelContext* ctx, const Tensor& x, const Dims& d) override {
    const char* vectors[] = {"gamma", "beta", "mean", "variance"};
    for (int i = 0; i < 4; ++i) {
      OP_REQUIRES_OK(ctx, CheckVector(ctx->input(1 + i), vectors[i], d.clusters));
    }
    const char* matrices[] = {"max", "max_count", "sum_grad", "max_grad"};
    for (int i = 0; i < 4; ++i) {
      OP_REQUIRES_OK(ctx, CheckMatrix(ctx->input(5 + i), matrices[i], d));
    }
    const int64_t k = d.clusters;
    const Normalization norm(ctx->input(3).flat<float>().data(),
                             ctx->input(4).flat<float>().data(),
                             ctx->input(1).flat<float>().data(),
                             ctx->input(2).flat<float>().data(), epsilon_, k);
    // Read before x_grad may take x's buffer.
    const float* xs = x.flat<float>().data();
    const float* maxima = ctx->input(5).flat<float>().data();
    const float* counts = ctx->input(6).flat<float>().data();
    const float* sum_grad = ctx->input(7).flat<float>().data();
    const float* max_grad = ctx->input(8).flat<float>().data();

    // The maximum's gradient of video b: at_max[k] to each frame at the
    // maximum (shared between ties), elsewhere[k] to the others (0, or NaN
    // where the maximum is NaN: no frame at it, as TensorFlow's 0 / 0).
    auto max_shares = [&](int64_t b, float* at_max, float* elsewhere) {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      for (int64_t i = 0; i < k; ++i) {
        const float ties = counts[b * k + i];
        at_max[i] = ties > 0 ? max_grad[b * k + i] / ties : nan;
        elsewhere[i] = ties > 0 ? 0.0f : nan;
      }
    };
    // g_y, the gradient of y = BN(x), of one frame of video b into y_grad.
    auto frame_gradient = [&](int64_t b, const float* x_row, const float* at_max,
                              const float* elsewhere, float* s, float* y_grad) {
      SoftmaxRow(x_row, norm, s);
      PoolingGradient(s, k, sum_grad + b * k, maxima + b * k, at_max, elsewhere, y_grad);
      const float dot = (ConstRow(y_grad, k) * ConstRow(s, k)).sum();
      SoftmaxGradient(s, k, dot, y_grad);
    };

    Scratch rows;
    OP_REQUIRES_OK(ctx, rows.Allocate(ctx, d));
    // Pass 1: batch norm's sums of g_y and g_y * x_hat over all frames.
    std::vector<double> beta_partial(d.videos * k, 0.0), gamma_partial(d.videos * k, 0.0);
    ForEachVideo(ctx, d, 50, [&](int64_t b) {
      float *s = rows.First(b), *g_y = rows.Second(b);
      std::vector<float> shares(2 * k);
      max_shares(b, shares.data(), shares.data() + k);
      for (int64_t f = 0; f < d.frames; ++f) {
        const float* x_row = xs + (b * d.frames + f) * k;
        frame_gradient(b, x_row, shares.data(), shares.data() + k, s, g_y);
        AddNormalizationSums(g_y, x_row, norm, beta_partial.data() + b * k,
                             gamma_partial.data() + b * k);
      }
    });
    const std::vector<double> beta_sum = SumOverVideos(beta_partial, d);
    const std::vector<double> gamma_sum = SumOverVideos(gamma_partial, d);
    Tensor *x_grad, *gamma_grad, *beta_grad;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({k}), &gamma_grad));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({k}), &beta_grad));
    std::vector<float> beta_mean(k), gamma_mean(k);
    for (int64_t i = 0; i < k; ++i) {
      gamma_grad->flat<float>()(i) = static_cast<float>(gamma_sum[i]);
      beta_grad->flat<float>()(i) = static_cast<float>(beta_sum[i]);
      beta_mean[i] = static_cast<float>(beta_sum[i] / d.Rows());
      gamma_mean[i] = static_cast<float>(gamma_sum[i] / d.Rows());
    }
    // Pass 2: x_grad = scale * (g_y - mean(g_y) - x_hat * mean(g_y * x_hat)),
    // each frame's row computed whole before it is written over x's, and
    // its sum over frames (the gradient of a per-cluster offset added to x,
    // which the batch norm cancels: rounding noise, as TensorFlow's).
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &x_grad));
    float* out = x_grad->flat<float>().data();
    std::vector<double> x_grad_partial(d.videos * k, 0.0);
    ForEachVideo(ctx, d, 50, [&](int64_t b) {
      float *s = rows.First(b), *g_y = rows.Second(b);
      std::vector<float> shares(2 * k);
      max_shares(b, shares.data(), shares.data() + k);
      DoubleRow column_sum(x_grad_partial.data() + b * k, k);
      for (int64_t f = 0; f < d.frames; ++f) {
        const int64_t row = (b * d.frames + f) * k;
        frame_gradient(b, xs + row, shares.data(), shares.data() + k, s, g_y);
        NormalizationGradient(g_y, xs + row, norm, beta_mean.data(), gamma_mean.data(),
                              out + row);
        column_sum += ConstRow(out + row, k).cast<double>();
      }
    });
    const std::vector<double> x_grad_total = SumOverVideos(x_grad_partial, d);
    Tensor* x_grad_sum;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({k}), &x_grad_sum));
    for (int64_t i = 0; i < k; ++i) {
      x_grad_sum->flat<float>()(i) = static_cast<float>(x_grad_total[i]);
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("NormalizedSoftmaxPool").Device(DEVICE_CPU), NormalizedSoftmaxPoolOp);
REGISTER_KERNEL_BUILDER(Name("NormalizedSoftmaxPoolGrad").Device(DEVICE_CPU),
                        NormalizedSoftmaxPoolGradOp);

}  // namespace
}  // namespace tensorflow
