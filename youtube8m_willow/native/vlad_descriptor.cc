// NormalizedVlad and its gradient: the tail of every NetVLAD-style pooling,
// from the assignment-weighted sums of the frames to the pooled vector
// (float32, CPU):
//
//   v[b, k, d] = weighted[b, k, d] * scale[k, d] + assignment_sum[b, k] * shift[k, d]
//   u[b, k, :] = v[b, k, :] / |v[b, k, :]|        (intra-normalization over d)
//   y[b, d * K + k] = u[b, k, d] / |u[b]|          (flattened in (d, k) order,
//                                                   L2-normalized)
//
// with TF1's L2 normalization, x * rsqrt(max(sum(x ** 2), 1e-12)), at both
// steps. scale and shift carry everything a pooling does to the sums per
// (cluster, feature): the input batch norm's map, NetVLAD's centers,
// NetVLAGD's gates, NetFV's variances.
//
// As TensorFlow's separate ops, this is about 25 passes over [B, K, D]
// tensors (forward and gradient, with two transposes); here it is five: the
// forward pass reads the sums twice and writes y, the gradient reads y and
// its gradient, then the sums once more and writes theirs. v and u are
// recomputed, never stored, by the one function ResidualRow, so the gradient
// sees the forward pass's bits. The squared sums are accumulated in float64;
// everything else is float32, rounded per operation as TensorFlow's own
// kernels round (the same values to float32 rounding, not the same bits).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>
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
using ConstRow = Eigen::Map<const Eigen::ArrayXf>;

// TF1's tf.nn.l2_normalize epsilon, on the squared sum.
constexpr float kEpsilon = 1e-12f;
// Clusters per tile of the transposed output: 16 floats, one cache line.
constexpr int64_t kTile = 16;

REGISTER_OP("NormalizedVlad")
    .Input("weighted: float")
    .Input("assignment_sum: float")
    .Input("scale: float")
    .Input("shift: float")
    .Output("descriptor: float")
    .Output("cluster_squares: float")
    .Output("video_squares: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle weighted, sum, matrix;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &weighted));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &sum));
      DimensionHandle videos = c->Dim(weighted, 0), clusters = c->Dim(weighted, 1),
                      features = c->Dim(weighted, 2), size;
      TF_RETURN_IF_ERROR(c->Merge(videos, c->Dim(sum, 0), &videos));
      TF_RETURN_IF_ERROR(c->Merge(clusters, c->Dim(sum, 1), &clusters));
      for (int input = 2; input <= 3; ++input) {
        TF_RETURN_IF_ERROR(c->WithRank(c->input(input), 2, &matrix));
        TF_RETURN_IF_ERROR(c->Merge(clusters, c->Dim(matrix, 0), &clusters));
        TF_RETURN_IF_ERROR(c->Merge(features, c->Dim(matrix, 1), &features));
      }
      TF_RETURN_IF_ERROR(c->Multiply(features, clusters, &size));
      c->set_output(0, c->Matrix(videos, size));
      c->set_output(1, c->Matrix(videos, clusters));
      c->set_output(2, c->Vector(videos));
      return absl::OkStatus();
    });

REGISTER_OP("NormalizedVladGrad")
    .Input("weighted: float")
    .Input("assignment_sum: float")
    .Input("scale: float")
    .Input("shift: float")
    .Input("cluster_squares: float")
    .Input("video_squares: float")
    .Input("descriptor: float")
    .Input("descriptor_grad: float")
    .Output("weighted_grad: float")
    .Output("assignment_sum_grad: float")
    .Output("scale_grad: float")
    .Output("shift_grad: float")
    .SetShapeFn([](InferenceContext* c) {
      for (int output = 0; output < 4; ++output) c->set_output(output, c->input(output));
      return absl::OkStatus();
    });

// Between a tile of `count` rows of n features (rows `stride` apart) and
// the same entries in (feature, cluster) order (features `clusters` apart).
// A full tile has a fixed count, so the compiler unrolls its inner loop.
template <bool kToTile, int64_t kCount>
void MoveFixed(float* __restrict tile, int64_t stride, float* __restrict major, int64_t clusters,
               int64_t n, int64_t count) {
  const int64_t c = kCount > 0 ? kCount : count;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      if (kToTile) {
        tile[j * stride + i] = major[i * clusters + j];
      } else {
        major[i * clusters + j] = tile[j * stride + i];
      }
    }
  }
}

template <bool kToTile>
void Move(float* tile, int64_t stride, float* major, int64_t clusters, int64_t n, int64_t count) {
  if (count == kTile) return MoveFixed<kToTile, kTile>(tile, stride, major, clusters, n, count);
  MoveFixed<kToTile, 0>(tile, stride, major, clusters, n, count);
}

// A tile's rows in scratch: each padded by one cache line, so that rows of
// 1024 floats (4 KB apart) do not all fall in one set of the L1 cache.
int64_t TileStride(int64_t features) { return features + 16; }

struct Dims {
  int64_t videos, clusters, features;
  int64_t Rows() const { return videos * clusters; }
  int64_t Size() const { return clusters * features; }
  int64_t Tiles() const { return (clusters + kTile - 1) / kTile; }
};

// One row of v (features floats). Neither inlined nor specialized: the
// forward pass and the gradient run this one code, so both see the same bits.
__attribute__((noipa)) void ResidualRow(const float* __restrict weighted, float sum,
                                        const float* __restrict scale,
                                        const float* __restrict shift, int64_t n,
                                        float* __restrict v) {
  for (int64_t i = 0; i < n; ++i) v[i] = weighted[i] * scale[i] + sum * shift[i];
}

// TF1's rsqrt(max(squares, 1e-12)), and whether the maximum took the sum
// (TensorFlow's gradient of maximum goes to its first input on ties).
float InverseNorm(float squares) { return 1.0f / std::sqrt(std::max(squares, kEpsilon)); }
bool NormIsLive(float squares) { return squares >= kEpsilon; }

double SquaredSum(const float* x, int64_t n) {
  return ConstRow(x, n).cast<double>().square().sum();
}

double Dot(const float* x, const float* y, int64_t n) {
  return (ConstRow(x, n).cast<double>() * ConstRow(y, n).cast<double>()).sum();
}

// x *= factor, in place.
void Scale(float* __restrict x, float factor, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

// The gradient of x -> x * r (r = InverseNorm of its squared sum) at x * r =
// normalized: r * g - coefficient * normalized, where coefficient is r times
// <g, normalized> (0 where the norm's epsilon held), written over g.
void NormalizationGradient(const float* __restrict normalized, float r, float coefficient,
                           int64_t n, float* __restrict g) {
  for (int64_t i = 0; i < n; ++i) g[i] = r * g[i] - coefficient * normalized[i];
}

absl::Status CheckShape(const Tensor& t, const char* name, std::initializer_list<int64_t> dims) {
  if (t.shape() == TensorShape(dims)) return absl::OkStatus();
  std::string expected;
  for (int64_t dim : dims) absl::StrAppend(&expected, expected.empty() ? "" : ", ", dim);
  return absl::InvalidArgumentError(absl::StrCat(name, " must be [", expected, "], got ",
                                                 t.shape().DebugString()));
}

// weighted [B, K, D] and the three inputs after it, checked.
absl::Status ReadDims(OpKernelContext* ctx, Dims* d) {
  const Tensor& weighted = ctx->input(0);
  if (weighted.dims() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weighted must be [videos, clusters, features], got ", weighted.shape().DebugString()));
  }
  *d = {weighted.dim_size(0), weighted.dim_size(1), weighted.dim_size(2)};
  TF_RETURN_IF_ERROR(CheckShape(ctx->input(1), "assignment_sum", {d->videos, d->clusters}));
  TF_RETURN_IF_ERROR(CheckShape(ctx->input(2), "scale", {d->clusters, d->features}));
  return CheckShape(ctx->input(3), "shift", {d->clusters, d->features});
}

// Runs work(begin, end) over [0, n) units on the CPU's threads.
template <typename Fn>
void ParallelFor(OpKernelContext* ctx, int64_t n, double bytes, double ops, Fn work) {
  const Eigen::TensorOpCost cost(bytes, bytes, ops);
  ctx->eigen_device<CPUDevice>().parallelFor(n, cost, work);
}

// What both kernels read: the sums and the per-(cluster, feature) map.
struct Inputs {
  const float *weighted, *sum, *scale, *shift;
  Dims d;

  Inputs(OpKernelContext* ctx, const Dims& dims)
      : weighted(ctx->input(0).flat<float>().data()),
        sum(ctx->input(1).flat<float>().data()),
        scale(ctx->input(2).flat<float>().data()),
        shift(ctx->input(3).flat<float>().data()),
        d(dims) {}

  // Row (b, k) of v into out.
  void Residual(int64_t b, int64_t k, float* out) const {
    const int64_t row = b * d.clusters + k;
    ResidualRow(weighted + row * d.features, sum[row], scale + k * d.features,
                shift + k * d.features, d.features, out);
  }
};

// Both kernels: the four inputs they share, checked before Run.
class VladKernel : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    Dims d;
    OP_REQUIRES_OK(ctx, ReadDims(ctx, &d));
    Run(ctx, Inputs(ctx, d));
  }

 protected:
  virtual void Run(OpKernelContext* ctx, const Inputs& in) = 0;
};

class NormalizedVladOp : public VladKernel {
 public:
  using VladKernel::VladKernel;

 protected:
  void Run(OpKernelContext* ctx, const Inputs& in) override {
    const Dims& d = in.d;
    Tensor *descriptor, *cluster_squares, *video_squares;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({d.videos, d.Size()}), &descriptor));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({d.videos, d.clusters}),
                                             &cluster_squares));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({d.videos}), &video_squares));
    float* row_squares = cluster_squares->flat<float>().data();
    float* squares = video_squares->flat<float>().data();
    const int64_t n = d.features;

    // One video at a time, its sums read twice while they are in cache: each
    // row's squared sum and that of its intra-normalized row, then y, a tile
    // of clusters at a time, written transposed.
    float* out = descriptor->flat<float>().data();
    ParallelFor(ctx, d.videos, 8.0 * d.Size(), 14.0 * d.Size(), [&](int64_t begin, int64_t end) {
      const int64_t stride = TileStride(n);
      std::vector<float> tile(kTile * stride);
      for (int64_t b = begin; b < end; ++b) {
        double total = 0.0;
        for (int64_t k = 0; k < d.clusters; ++k) {
          float* v = tile.data();
          const int64_t row = b * d.clusters + k;
          in.Residual(b, k, v);
          row_squares[row] = static_cast<float>(SquaredSum(v, n));
          Scale(v, InverseNorm(row_squares[row]), n);
          total += SquaredSum(v, n);
        }
        squares[b] = static_cast<float>(total);
        const float video_r = InverseNorm(squares[b]);
        for (int64_t first = 0; first < d.clusters; first += kTile) {
          const int64_t count = std::min(kTile, d.clusters - first);
          for (int64_t j = 0; j < count; ++j) {
            float* u = tile.data() + j * stride;
            in.Residual(b, first + j, u);
            Scale(u, InverseNorm(row_squares[b * d.clusters + first + j]), n);
            Scale(u, video_r, n);
          }
          Move<false>(tile.data(), stride, out + b * d.Size() + first, d.clusters, n, count);
        }
      }
    });
  }
};

class NormalizedVladGradOp : public VladKernel {
 public:
  using VladKernel::VladKernel;

 protected:
  void Run(OpKernelContext* ctx, const Inputs& in) override {
    const Dims& d = in.d;
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(4), "cluster_squares", {d.videos, d.clusters}));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(5), "video_squares", {d.videos}));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(6), "descriptor", {d.videos, d.Size()}));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(7), "descriptor_grad", {d.videos, d.Size()}));
    const float* row_squares = ctx->input(4).flat<float>().data();
    const float* squares = ctx->input(5).flat<float>().data();
    const float* y = ctx->input(6).flat<float>().data();
    const float* y_grad = ctx->input(7).flat<float>().data();
    Tensor *weighted_grad, *sum_grad, *scale_grad, *shift_grad;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &weighted_grad));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &sum_grad));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, ctx->input(2).shape(), &scale_grad));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, ctx->input(3).shape(), &shift_grad));
    const int64_t n = d.features;

    // Pass A: the global normalization's coefficient per video, r <g, y>.
    std::vector<float> video_coefficient(d.videos);
    ParallelFor(ctx, d.videos, 8.0 * d.Size(), 2.0 * d.Size(), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const double dot = Dot(y + b * d.Size(), y_grad + b * d.Size(), d.Size());
        video_coefficient[b] =
            NormIsLive(squares[b]) ? InverseNorm(squares[b]) * static_cast<float>(dot) : 0.0f;
      }
    });

    // Pass B: a tile of clusters over every video at a time, so that the
    // tile's scale and shift gradients are its own sums.
    float* out = weighted_grad->flat<float>().data();
    float* sums_out = sum_grad->flat<float>().data();
    ParallelFor(ctx, d.Tiles(), 16.0 * d.videos * kTile * n, 16.0 * d.videos * kTile * n,
                [&](int64_t begin, int64_t end) {
      const int64_t stride = TileStride(n);
      std::vector<float> u(n), y_row(n), g(kTile * stride);
      std::vector<double> scale_sum(kTile * n), shift_sum(kTile * n);
      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t first = tile * kTile, count = std::min(kTile, d.clusters - first);
        std::fill(scale_sum.begin(), scale_sum.end(), 0.0);
        std::fill(shift_sum.begin(), shift_sum.end(), 0.0);
        for (int64_t b = 0; b < d.videos; ++b) {
          Move<true>(g.data(), stride, const_cast<float*>(y_grad) + b * d.Size() + first,
                     d.clusters, n, count);
          const float video_r = InverseNorm(squares[b]);
          for (int64_t j = 0; j < count; ++j) {
            const int64_t k = first + j, row = b * d.clusters + k;
            float* g_row = g.data() + j * stride;
            in.Residual(b, k, u.data());
            const float r = InverseNorm(row_squares[row]);
            Scale(u.data(), r, n);
            std::copy(u.begin(), u.end(), y_row.begin());
            Scale(y_row.data(), video_r, n);
            NormalizationGradient(y_row.data(), video_r, video_coefficient[b], n, g_row);
            const float dot = static_cast<float>(Dot(g_row, u.data(), n));
            NormalizationGradient(u.data(), r, NormIsLive(row_squares[row]) ? r * dot : 0.0f,
                                  n, g_row);
            AccumulateRow(in, b, k, g_row, out + row * n, sums_out + row,
                          scale_sum.data() + j * n, shift_sum.data() + j * n);
          }
        }
        for (int64_t j = 0; j < count; ++j) {
          for (int64_t i = 0; i < n; ++i) {
            scale_grad->flat<float>()((first + j) * n + i) = static_cast<float>(scale_sum[j * n + i]);
            shift_grad->flat<float>()((first + j) * n + i) = static_cast<float>(shift_sum[j * n + i]);
          }
        }
      }
    });
  }

 private:
  // From row (b, k) of v's gradient g: the sums' gradient g * scale, the
  // assignment sum's <g, shift>, and g * weighted and g * sum added to the
  // scale's and shift's running sums.
  static void AccumulateRow(const Inputs& in, int64_t b, int64_t k, const float* __restrict g,
                            float* __restrict weighted_grad, float* __restrict sum_grad,
                            double* __restrict scale_sum, double* __restrict shift_sum) {
    const int64_t n = in.d.features, row = b * in.d.clusters + k;
    const float* __restrict scale = in.scale + k * n;
    const float* __restrict shift = in.shift + k * n;
    const float* __restrict weighted = in.weighted + row * n;
    const float sum = in.sum[row];
    for (int64_t i = 0; i < n; ++i) weighted_grad[i] = g[i] * scale[i];
    *sum_grad = static_cast<float>(Dot(g, shift, n));
    for (int64_t i = 0; i < n; ++i) {
      scale_sum[i] += static_cast<double>(g[i] * weighted[i]);
      shift_sum[i] += static_cast<double>(g[i] * sum);
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("NormalizedVlad").Device(DEVICE_CPU), NormalizedVladOp);
REGISTER_KERNEL_BUILDER(Name("NormalizedVladGrad").Device(DEVICE_CPU), NormalizedVladGradOp);

}  // namespace
}  // namespace tensorflow
