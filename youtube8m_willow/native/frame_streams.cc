// FrameStreams: the LF models' input preparation, from the sampled frames
// [R, D] (float32, CPU) to the streams the poolings read:
//
//   x'[r] = x[r] * rsqrt(max(sum_d x[r, d] ** 2, 1e-12))   (with l2_normalize:
//                                                           TF1's l2_normalize)
//   with standardize (training):
//     mean[d], variance[d]: the moments of x' over the R rows
//     y[r, d] = (x'[r, d] - mean[d]) * rsqrt(variance[d] + epsilon)
//   without (inference, where input_bn's map from its moving statistics is
//   folded into the poolings): y = x', and mean and variance are zeros
//   streams: y's columns cut at stream_sizes ([R, 1024] rgb, [R, 128] audio)
//
// With standardize it returns mean and the variance Bessel-corrected
// (R / (R - 1); none for one row), as TF1's fused batch norm reports them
// for the moving averages. As TensorFlow's ops this is the input scaling's
// square, sum and multiply, the batch norm's passes over [R, D] and the
// split's copy; here one pass reads the frames for the row norms and the
// moments, and a second reads them again and writes the streams (without
// standardize, the one pass that writes them). With standardize the frames
// are data and the op has no gradient; without, its gradient is TensorFlow's
// L2 scaling's and split's (registered in frame_streams.py).
//
// The row norms and the moments are accumulated in float64, over fixed
// blocks of rows merged in order, so the result does not depend on the
// number of threads; the rest is float32, rounded per operation as
// TensorFlow's kernels round (the same values to float32 rounding).
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

// TF1's tf.nn.l2_normalize epsilon, on the squared sum.
constexpr float kL2Epsilon = 1e-12f;
// Rows per block of the moments' sums: each block's float64 sums are its
// own, merged in block order.
constexpr int64_t kBlockRows = 256;

REGISTER_OP("FrameStreams")
    .Input("frames: float")
    .Output("streams: num_streams * float")
    .Output("mean: float")
    .Output("variance: float")
    .Attr("num_streams: int >= 1")
    .Attr("stream_sizes: list(int)")
    .Attr("l2_normalize: bool")
    .Attr("epsilon: float")
    .Attr("standardize: bool = true")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle frames;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &frames));
      std::vector<int64_t> sizes;
      TF_RETURN_IF_ERROR(c->GetAttr("stream_sizes", &sizes));
      int num_streams;
      TF_RETURN_IF_ERROR(c->GetAttr("num_streams", &num_streams));
      if (static_cast<size_t>(num_streams) != sizes.size()) {
        return absl::InvalidArgumentError("num_streams must be the number of stream_sizes");
      }
      for (int64_t size : sizes) {
        if (size <= 0) return absl::InvalidArgumentError("stream_sizes must be positive");
      }
      int64_t width = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        c->set_output(i, c->Matrix(c->Dim(frames, 0), sizes[i]));
        width += sizes[i];
      }
      DimensionHandle features;
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(frames, 1), width, &features));
      c->set_output(sizes.size(), c->Vector(features));
      c->set_output(sizes.size() + 1, c->Vector(features));
      return absl::OkStatus();
    });

// Independent float64 partial sums of a row's squares: the compiler
// vectorizes them (one running sum would be a chain of dependent adds).
constexpr int64_t kLanes = 16;

// The float32 factor of a row: TF1's l2_normalize of it, or 1.
float RowScale(const float* row, int64_t width, bool l2_normalize) {
  if (!l2_normalize) return 1.0f;
  double partial[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= width; d += kLanes) {
    for (int64_t lane = 0; lane < kLanes; ++lane) {
      partial[lane] += static_cast<double>(row[d + lane]) * row[d + lane];
    }
  }
  for (; d < width; ++d) partial[0] += static_cast<double>(row[d]) * row[d];
  double squares = 0.0;
  for (double part : partial) squares += part;
  return 1.0f / std::sqrt(std::max(static_cast<float>(squares), kL2Epsilon));
}

class FrameStreamsOp : public OpKernel {
 public:
  explicit FrameStreamsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("stream_sizes", &sizes_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("l2_normalize", &l2_normalize_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("standardize", &standardize_));
    int num_streams;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_streams", &num_streams));
    OP_REQUIRES(ctx, static_cast<size_t>(num_streams) == sizes_.size(),
                absl::InvalidArgumentError("num_streams must be the number of stream_sizes"));
    for (int64_t size : sizes_) {
      OP_REQUIRES(ctx, size > 0, absl::InvalidArgumentError("stream_sizes must be positive"));
      width_ += size;
    }
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& frames = ctx->input(0);
    OP_REQUIRES(ctx, frames.dims() == 2 && frames.dim_size(1) == width_,
                absl::InvalidArgumentError(absl::StrCat(
                    "frames must be [rows, ", width_, "] (the stream sizes' sum), got ",
                    frames.shape().DebugString())));
    const int64_t rows = frames.dim_size(0);
    const float* x = frames.flat<float>().data();
    std::vector<float*> streams(sizes_.size());
    for (size_t i = 0; i < sizes_.size(); ++i) {
      Tensor* stream = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, TensorShape({rows, sizes_[i]}), &stream));
      streams[i] = stream->flat<float>().data();
    }
    Tensor *mean_out = nullptr, *variance_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(sizes_.size(), TensorShape({width_}), &mean_out));
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(sizes_.size() + 1, TensorShape({width_}), &variance_out));
    if (!standardize_) {
      std::fill_n(mean_out->flat<float>().data(), width_, 0.0f);
      std::fill_n(variance_out->flat<float>().data(), width_, 0.0f);
      WriteScaledStreams(ctx, x, rows, streams);
      return;
    }

    std::vector<float> row_scales(rows);
    std::vector<double> sums(2 * width_, 0.0);
    Moments(ctx, x, rows, row_scales.data(), sums.data());

    const double count = static_cast<double>(rows);
    const double correction = rows > 1 ? count / (count - 1.0) : 1.0;
    std::vector<float> mean(width_), inverse_std(width_);
    float* mean_data = mean_out->flat<float>().data();
    float* variance_data = variance_out->flat<float>().data();
    for (int64_t d = 0; d < width_; ++d) {  // no rows: 0 / 0, NaN
      const double m = sums[d] / count;
      const double variance = std::max(sums[width_ + d] / count - m * m, 0.0);
      mean[d] = mean_data[d] = static_cast<float>(m);
      variance_data[d] = static_cast<float>(variance * correction);
      inverse_std[d] = 1.0f / std::sqrt(static_cast<float>(variance) + epsilon_);
    }
    WriteStreams(ctx, x, rows, row_scales.data(), mean.data(), inverse_std.data(), streams);
  }

 private:
  // Each row's scale into row_scales, and sums[d], sums[width + d] the
  // float64 sums of x'[:, d] and x'[:, d] ** 2.
  void Moments(OpKernelContext* ctx, const float* x, int64_t rows, float* row_scales,
               double* sums) const {
    const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
    std::vector<double> block_sums(blocks * 2 * width_, 0.0);
    const Eigen::TensorOpCost cost(4.0 * kBlockRows * width_, 0, 6.0 * kBlockRows * width_);
    ctx->eigen_device<CPUDevice>().parallelFor(blocks, cost, [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        double* first = block_sums.data() + block * 2 * width_;
        double* second = first + width_;
        const int64_t last = std::min(rows, (block + 1) * kBlockRows);
        for (int64_t r = block * kBlockRows; r < last; ++r) {
          const float* row = x + r * width_;
          const float scale = row_scales[r] = RowScale(row, width_, l2_normalize_);
          for (int64_t d = 0; d < width_; ++d) {
            const double value = row[d] * scale;
            first[d] += value;
            second[d] += value * value;
          }
        }
      }
    });
    for (int64_t block = 0; block < blocks; ++block) {
      const double* part = block_sums.data() + block * 2 * width_;
      for (int64_t i = 0; i < 2 * width_; ++i) sums[i] += part[i];
    }
  }

  // The streams of x' standardized with mean and inverse_std.
  void WriteStreams(OpKernelContext* ctx, const float* x, int64_t rows, const float* row_scales,
                    const float* mean, const float* inverse_std,
                    const std::vector<float*>& streams) const {
    const Eigen::TensorOpCost cost(4.0 * width_, 4.0 * width_, 3.0 * width_);
    ctx->eigen_device<CPUDevice>().parallelFor(rows, cost, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* row = x + r * width_;
        const float scale = row_scales[r];
        int64_t column = 0;
        for (size_t i = 0; i < sizes_.size(); ++i) {
          float* out = streams[i] + r * sizes_[i];
          for (int64_t j = 0; j < sizes_[i]; ++j, ++column) {
            out[j] = (row[column] * scale - mean[column]) * inverse_std[column];
          }
        }
      }
    });
  }

  // The streams of x' itself (no standardize), each row's scale computed as
  // the row is written: one pass.
  void WriteScaledStreams(OpKernelContext* ctx, const float* x, int64_t rows,
                          const std::vector<float*>& streams) const {
    const double per_row = (l2_normalize_ ? 3.0 : 1.0) * width_;
    const Eigen::TensorOpCost cost(4.0 * width_, 4.0 * width_, per_row);
    ctx->eigen_device<CPUDevice>().parallelFor(rows, cost, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* row = x + r * width_;
        const float scale = RowScale(row, width_, l2_normalize_);
        int64_t column = 0;
        for (size_t i = 0; i < sizes_.size(); ++i) {
          float* out = streams[i] + r * sizes_[i];
          for (int64_t j = 0; j < sizes_[i]; ++j, ++column) out[j] = row[column] * scale;
        }
      }
    });
  }

  std::vector<int64_t> sizes_;
  int64_t width_ = 0;
  bool l2_normalize_ = false;
  float epsilon_ = 0.0f;
  bool standardize_ = true;
};

REGISTER_KERNEL_BUILDER(Name("FrameStreams").Device(DEVICE_CPU), FrameStreamsOp);

}  // namespace
}  // namespace tensorflow
