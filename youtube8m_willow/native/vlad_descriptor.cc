// NormalizedVlad and its gradient: the tail of every NetVLAD-style pooling,
// from the assignment-weighted sums of the frames to the pooled vector
// (float32, CPU):
//
//   v[b, k, d] = weighted[b, k, d] * scale[k, d] + assignment_sum[b, k] * shift[k, d]
//                (+ squares[b, k, d] * square_scale[k, d], where given)
//   u = v normalized per row (b, k) over d ("intra_normalize"), or per video
//   y[b, d * K + k] = u[b, k, d] / |u[b]|    (flattened in (d, k) order,
//                                             L2-normalized)
//
// with TF1's L2 normalization, x * rsqrt(max(sum(x ** 2), 1e-12)), at both
// steps. scale and shift (and square_scale) carry everything a pooling does
// to the sums per (cluster, feature): the input batch norm's map, NetVLAD's
// centers, NetVLAGD's gates, NetFV's variances. NetFV's second-order term is
// the form with squares (the assignment-weighted sums of the squared frames)
// and two normalizations of the whole video.
//
// As TensorFlow's separate ops, this is about 25 passes over [B, K, D]
// tensors (forward and gradient, with two transposes); here the forward pass
// reads the sums three times, while a video's are in cache, and writes y;
// the gradient reads y and its gradient, then the sums once more and writes
// theirs. v and u are recomputed, never stored, by the one function Residual,
// so the gradient sees the forward pass's bits. The squared sums, dot
// products and the map's gradient sums are accumulated in float64;
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
    .Input("squares: float")
    .Input("square_scale: float")
    .Output("descriptor: float")
    .Output("cluster_squares: float")
    .Output("video_squares: float")
    .Attr("intra_normalize: bool = true")
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
    .Input("squares: float")
    .Input("square_scale: float")
    .Input("cluster_squares: float")
    .Input("video_squares: float")
    .Input("descriptor: float")
    .Input("descriptor_grad: float")
    .Output("weighted_grad: float")
    .Output("assignment_sum_grad: float")
    .Output("scale_grad: float")
    .Output("shift_grad: float")
    .Output("squares_grad: float")
    .Output("square_scale_grad: float")
    .Attr("intra_normalize: bool = true")
    .SetShapeFn([](InferenceContext* c) {
      for (int output = 0; output < 6; ++output) c->set_output(output, c->input(output));
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

// One row of v (features floats), with or without the squares' term.
// Neither inlined nor specialized: the forward pass and the gradient run
// this one code, so both see the same bits.
__attribute__((noipa)) void ResidualRow(const float* __restrict weighted, float sum,
                                        const float* __restrict scale,
                                        const float* __restrict shift,
                                        const float* __restrict squares,
                                        const float* __restrict square_scale, int64_t n,
                                        float* __restrict v) {
  if (squares == nullptr) {
    for (int64_t i = 0; i < n; ++i) v[i] = weighted[i] * scale[i] + sum * shift[i];
  } else {
    for (int64_t i = 0; i < n; ++i) {
      v[i] = weighted[i] * scale[i] + sum * shift[i] + squares[i] * square_scale[i];
    }
  }
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

// The squared sum of x normalized with the squared sum `squares`
// (x * InverseNorm(squares), written over x).
double NormalizedSquaredSum(float* x, float squares, int64_t n) {
  Scale(x, InverseNorm(squares), n);
  return SquaredSum(x, n);
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

// Whether the squares' term is given: squares [B, K, D] (of rank 3, even
// with no video), not the empty vector that stands for none.
bool HasSquares(OpKernelContext* ctx) { return ctx->input(4).dims() == 3; }

// weighted [B, K, D] and the five inputs after it, checked: squares and
// square_scale are both empty vectors (no squares' term) or [B, K, D] and
// [K, D].
absl::Status ReadDims(OpKernelContext* ctx, Dims* d) {
  const Tensor& weighted = ctx->input(0);
  if (weighted.dims() != 3 || weighted.dim_size(1) == 0 || weighted.dim_size(2) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weighted must be [videos, clusters, features] with at least one cluster and one "
        "feature, got ", weighted.shape().DebugString()));
  }
  *d = {weighted.dim_size(0), weighted.dim_size(1), weighted.dim_size(2)};
  TF_RETURN_IF_ERROR(CheckShape(ctx->input(1), "assignment_sum", {d->videos, d->clusters}));
  TF_RETURN_IF_ERROR(CheckShape(ctx->input(2), "scale", {d->clusters, d->features}));
  TF_RETURN_IF_ERROR(CheckShape(ctx->input(3), "shift", {d->clusters, d->features}));
  if (!HasSquares(ctx) && ctx->input(4).NumElements() == 0 &&
      ctx->input(5).NumElements() == 0) {
    return absl::OkStatus();
  }
  TF_RETURN_IF_ERROR(CheckShape(ctx->input(4), "squares", {d->videos, d->clusters, d->features}));
  return CheckShape(ctx->input(5), "square_scale", {d->clusters, d->features});
}

// Runs work(begin, end) over [0, n) units on the CPU's threads.
template <typename Fn>
void ParallelFor(OpKernelContext* ctx, int64_t n, double bytes, double ops, Fn work) {
  const Eigen::TensorOpCost cost(bytes, bytes, ops);
  ctx->eigen_device<CPUDevice>().parallelFor(n, cost, work);
}

// What both kernels read: the sums and the per-(cluster, feature) map, and
// how the first normalization goes.
struct Inputs {
  const float *weighted, *sum, *scale, *shift;
  const float *squares = nullptr, *square_scale = nullptr;
  Dims d;
  bool intra, has_squares;

  Inputs(OpKernelContext* ctx, const Dims& dims, bool intra_normalize)
      : weighted(ctx->input(0).flat<float>().data()),
        sum(ctx->input(1).flat<float>().data()),
        scale(ctx->input(2).flat<float>().data()),
        shift(ctx->input(3).flat<float>().data()),
        d(dims),
        intra(intra_normalize),
        has_squares(HasSquares(ctx)) {
    if (has_squares) {
      squares = ctx->input(4).flat<float>().data();
      square_scale = ctx->input(5).flat<float>().data();
    }
  }

  // Row (b, k) of v into out.
  void Residual(int64_t b, int64_t k, float* out) const {
    const int64_t row = b * d.clusters + k, n = d.features;
    ResidualRow(weighted + row * n, sum[row], scale + k * n, shift + k * n,
                has_squares ? squares + row * n : nullptr,
                has_squares ? square_scale + k * n : nullptr, n, out);
  }

  // The first normalization's squared sum of each row of video b, from the
  // rows' own (cluster_squares): the row's, or the video's (their float64
  // sum) for every row.
  void FirstSquares(const float* cluster_squares, int64_t b, float* out) const {
    const float* video = cluster_squares + b * d.clusters;
    if (intra) {
      std::copy(video, video + d.clusters, out);
      return;
    }
    double total = 0.0;
    for (int64_t k = 0; k < d.clusters; ++k) total += video[k];
    std::fill(out, out + d.clusters, static_cast<float>(total));
  }
};

// Both kernels: the six inputs they share, checked before Run, and the
// first normalization's attribute.
class VladKernel : public OpKernel {
 public:
  explicit VladKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("intra_normalize", &intra_normalize_));
  }

  void Compute(OpKernelContext* ctx) override {
    Dims d;
    OP_REQUIRES_OK(ctx, ReadDims(ctx, &d));
    Run(ctx, Inputs(ctx, d, intra_normalize_));
  }

 protected:
  virtual void Run(OpKernelContext* ctx, const Inputs& in) = 0;

 private:
  bool intra_normalize_;
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

    // One video at a time, while its sums are in cache: each row's squared
    // sum and the squared sum of the rows after the first normalization
    // (with intra-normalization in the same read; over the whole video in
    // a second one, once every row's squares are known); then y, a tile of
    // clusters at a time, written transposed.
    float* out = descriptor->flat<float>().data();
    ParallelFor(ctx, d.videos, 8.0 * d.Size(), 20.0 * d.Size(), [&](int64_t begin, int64_t end) {
      const int64_t stride = TileStride(n);
      std::vector<float> tile(kTile * stride), first_squares(d.clusters);
      for (int64_t b = begin; b < end; ++b) {
        float* v = tile.data();
        double total = 0.0;
        for (int64_t k = 0; k < d.clusters; ++k) {
          const int64_t row = b * d.clusters + k;
          in.Residual(b, k, v);
          row_squares[row] = static_cast<float>(SquaredSum(v, n));
          if (in.intra) total += NormalizedSquaredSum(v, row_squares[row], n);
        }
        in.FirstSquares(row_squares, b, first_squares.data());
        for (int64_t k = 0; !in.intra && k < d.clusters; ++k) {
          in.Residual(b, k, v);
          total += NormalizedSquaredSum(v, first_squares[k], n);
        }
        squares[b] = static_cast<float>(total);
        const float video_r = InverseNorm(squares[b]);
        for (int64_t first = 0; first < d.clusters; first += kTile) {
          const int64_t count = std::min(kTile, d.clusters - first);
          for (int64_t j = 0; j < count; ++j) {
            float* u = tile.data() + j * stride;
            in.Residual(b, first + j, u);
            Scale(u, InverseNorm(first_squares[first + j]), n);
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
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(6), "cluster_squares", {d.videos, d.clusters}));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(7), "video_squares", {d.videos}));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(8), "descriptor", {d.videos, d.Size()}));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(9), "descriptor_grad", {d.videos, d.Size()}));
    const float* row_squares = ctx->input(6).flat<float>().data();
    const float* squares = ctx->input(7).flat<float>().data();
    const float* y = ctx->input(8).flat<float>().data();
    const float* y_grad = ctx->input(9).flat<float>().data();
    Tensor* grads[6];
    for (int i = 0; i < 6; ++i) {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, ctx->input(i).shape(), &grads[i]));
    }
    const int64_t n = d.features;

    // Pass A, per video: the second normalization's coefficient r <g, y>;
    // where the first normalization is the video's too, its coefficient
    // r <g_u, u>, with <g_u, u> = <g, y> (1 - <y, y>) (g_u is g made
    // orthogonal to y, which is u times the second norm's r).
    std::vector<float> video_coefficient(d.videos), first_coefficient(d.videos);
    ParallelFor(ctx, d.videos, 8.0 * d.Size(), 4.0 * d.Size(), [&](int64_t begin, int64_t end) {
      std::vector<float> first_squares(d.clusters);
      for (int64_t b = begin; b < end; ++b) {
        const float* video = y + b * d.Size();
        const double dot = Dot(video, y_grad + b * d.Size(), d.Size());
        const bool live = NormIsLive(squares[b]);
        video_coefficient[b] = live ? InverseNorm(squares[b]) * static_cast<float>(dot) : 0.0f;
        if (in.intra) continue;
        in.FirstSquares(row_squares, b, first_squares.data());
        const double first_dot = live ? dot * (1.0 - SquaredSum(video, d.Size())) : dot;
        first_coefficient[b] = NormIsLive(first_squares[0])
                                   ? InverseNorm(first_squares[0]) * static_cast<float>(first_dot)
                                   : 0.0f;
      }
    });

    // Pass B: a tile of clusters over every video at a time, so that the
    // tile's gradients of the map are its own sums.
    ParallelFor(ctx, d.Tiles(), 16.0 * d.videos * kTile * n, 20.0 * d.videos * kTile * n,
                [&](int64_t begin, int64_t end) {
      const int64_t stride = TileStride(n);
      std::vector<float> u(n), y_row(n), g(kTile * stride), first_squares(d.clusters);
      MapSums sums(kTile * n);
      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t first = tile * kTile, count = std::min(kTile, d.clusters - first);
        sums.Clear();
        for (int64_t b = 0; b < d.videos; ++b) {
          Move<true>(g.data(), stride, const_cast<float*>(y_grad) + b * d.Size() + first,
                     d.clusters, n, count);
          in.FirstSquares(row_squares, b, first_squares.data());
          const float video_r = InverseNorm(squares[b]);
          for (int64_t j = 0; j < count; ++j) {
            const int64_t k = first + j;
            float* g_row = g.data() + j * stride;
            in.Residual(b, k, u.data());
            const float r = InverseNorm(first_squares[k]);
            Scale(u.data(), r, n);
            std::copy(u.begin(), u.end(), y_row.begin());
            Scale(y_row.data(), video_r, n);
            NormalizationGradient(y_row.data(), video_r, video_coefficient[b], n, g_row);
            float coefficient = first_coefficient[b];
            if (in.intra) {
              const float dot = static_cast<float>(Dot(g_row, u.data(), n));
              coefficient = NormIsLive(first_squares[k]) ? r * dot : 0.0f;
            }
            NormalizationGradient(u.data(), r, coefficient, n, g_row);
            AccumulateRow(in, b, k, g_row, grads, sums, j * n);
          }
        }
        sums.Write(in, first, count, grads);
      }
    });
  }

 private:
  // A tile's running sums of the map's gradients over videos: scale's,
  // shift's and square_scale's, per (cluster, feature).
  struct MapSums {
    std::vector<double> scale, shift, square_scale;

    explicit MapSums(int64_t size) : scale(size), shift(size), square_scale(size) {}

    void Clear() {
      for (auto* sums : {&scale, &shift, &square_scale}) std::fill(sums->begin(), sums->end(), 0.0);
    }

    // The tile's rows of the map's gradients, from its sums.
    void Write(const Inputs& in, int64_t first, int64_t count, Tensor* const* grads) const {
      const int64_t size = count * in.d.features, offset = first * in.d.features;
      const std::vector<double>* sums[] = {&scale, &shift, &square_scale};
      const int outputs[] = {2, 3, 5};
      for (int i = 0; i < (in.has_squares ? 3 : 2); ++i) {
        float* out = grads[outputs[i]]->flat<float>().data() + offset;
        for (int64_t e = 0; e < size; ++e) out[e] = static_cast<float>((*sums[i])[e]);
      }
    }
  };

  // From row (b, k) of v's gradient g: the sums' gradient g * scale (and
  // the squares' g * square_scale), the assignment sum's <g, shift>, and
  // g * weighted, g * sum (and g * squares) added to the map's sums at
  // `at`.
  static void AccumulateRow(const Inputs& in, int64_t b, int64_t k, const float* __restrict g,
                            Tensor* const* grads, MapSums& sums, int64_t at) {
    const int64_t n = in.d.features, row = b * in.d.clusters + k;
    const float* __restrict scale = in.scale + k * n;
    const float* __restrict shift = in.shift + k * n;
    const float* __restrict weighted = in.weighted + row * n;
    float* __restrict weighted_grad = grads[0]->flat<float>().data() + row * n;
    double* __restrict scale_sum = sums.scale.data() + at;
    double* __restrict shift_sum = sums.shift.data() + at;
    const float sum = in.sum[row];
    for (int64_t i = 0; i < n; ++i) weighted_grad[i] = g[i] * scale[i];
    grads[1]->flat<float>()(row) = static_cast<float>(Dot(g, shift, n));
    for (int64_t i = 0; i < n; ++i) {
      scale_sum[i] += static_cast<double>(g[i] * weighted[i]);
      shift_sum[i] += static_cast<double>(g[i] * sum);
    }
    if (!in.has_squares) return;
    const float* __restrict square_scale = in.square_scale + k * n;
    const float* __restrict squares = in.squares + row * n;
    float* __restrict squares_grad = grads[4]->flat<float>().data() + row * n;
    double* __restrict square_scale_sum = sums.square_scale.data() + at;
    for (int64_t i = 0; i < n; ++i) {
      squares_grad[i] = g[i] * square_scale[i];
      square_scale_sum[i] += static_cast<double>(g[i] * squares[i]);
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("NormalizedVlad").Device(DEVICE_CPU), NormalizedVladOp);
REGISTER_KERNEL_BUILDER(Name("NormalizedVladGrad").Device(DEVICE_CPU), NormalizedVladGradOp);

}  // namespace
}  // namespace tensorflow
