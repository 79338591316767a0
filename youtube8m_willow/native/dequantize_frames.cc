// DequantizeFrames: the float frames of a batch of frame-level records kept
// as their uint8 bytes (CPU):
//
//   out[b, n, c] = table[bytes[b, p, c]]   where p = positions[b, n] (or n)
//                                          is one of feature(c)'s frames of
//                                          video b: p < feature_frames[b, f]
//                = 0.0                     elsewhere (padding)
//
// table holds the 256 floats of the dequantization (TensorFlow's own op
// makes it, so the values are its bits); feature(c) is the feature of
// column c, the columns cut at feature_sizes. With positions, only those
// frames are read (the frames a model samples), gathered on the way. As
// TensorFlow's ops this is a gather of the bytes, the dequantization, a
// comparison and a select, each a pass over the batch; here one pass reads
// the bytes and writes the floats.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tensorflow {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

REGISTER_OP("DequantizeFrames")
    .Input("bytes: uint8")
    .Input("feature_frames: int32")
    .Input("positions: int32")
    .Input("table: float")
    .Output("frames: float")
    .Attr("feature_sizes: list(int)")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle bytes, positions;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &bytes));
      if (!c->RankKnown(c->input(2))) {  // [B, N, D] or [B, T, D]
        c->set_output(0, c->MakeShape({c->Dim(bytes, 0), c->UnknownDim(), c->Dim(bytes, 2)}));
      } else if (c->Rank(c->input(2)) == 2) {
        positions = c->input(2);
        c->set_output(0, c->MakeShape({c->Dim(bytes, 0), c->Dim(positions, 1),
                                       c->Dim(bytes, 2)}));
      } else {
        c->set_output(0, c->input(0));
      }
      return absl::OkStatus();
    });

class DequantizeFramesOp : public OpKernel {
 public:
  explicit DequantizeFramesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::vector<int64_t> sizes;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("feature_sizes", &sizes));
    for (int64_t size : sizes) {
      OP_REQUIRES(ctx, size > 0, absl::InvalidArgumentError("feature_sizes must be positive"));
      ends_.push_back((ends_.empty() ? 0 : ends_.back()) + size);
    }
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& bytes = ctx->input(0);
    const Tensor& feature_frames = ctx->input(1);
    const Tensor& positions = ctx->input(2);
    const Tensor& table = ctx->input(3);
    const int64_t features = static_cast<int64_t>(ends_.size());
    const int64_t width = ends_.empty() ? 0 : ends_.back();
    OP_REQUIRES(ctx, bytes.dims() == 3 && bytes.dim_size(2) == width,
                absl::InvalidArgumentError(absl::StrCat(
                    "bytes must be [videos, frames, ", width, "] (the feature sizes' sum), got ",
                    bytes.shape().DebugString())));
    const int64_t videos = bytes.dim_size(0), frames = bytes.dim_size(1);
    OP_REQUIRES(ctx, feature_frames.shape() == TensorShape({videos, features}),
                absl::InvalidArgumentError(absl::StrCat(
                    "feature_frames must be [", videos, ", ", features, "], got ",
                    feature_frames.shape().DebugString())));
    OP_REQUIRES(ctx, table.shape() == TensorShape({256}),
                absl::InvalidArgumentError("table must hold 256 floats"));
    const bool gathered = positions.dims() == 2;
    OP_REQUIRES(ctx, gathered ? positions.dim_size(0) == videos : positions.NumElements() == 0,
                absl::InvalidArgumentError(absl::StrCat(
                    "positions must be [", videos, ", samples] or empty, got ",
                    positions.shape().DebugString())));
    const int64_t samples = gathered ? positions.dim_size(1) : frames;
    const int32_t* position = gathered ? positions.flat<int32_t>().data() : nullptr;
    if (gathered) {
      for (int64_t i = 0; i < videos * samples; ++i) {
        OP_REQUIRES(ctx, position[i] >= 0 && position[i] < frames,
                    absl::InvalidArgumentError(absl::StrCat(
                        "positions[", i / samples, ", ", i % samples, "] = ", position[i],
                        " is not in [0, ", frames, ")")));
      }
    }
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({videos, samples, width}), &out));

    const uint8_t* in = bytes.flat<uint8_t>().data();
    const int32_t* counts = feature_frames.flat<int32_t>().data();
    const float* values = table.flat<float>().data();
    float* result = out->flat<float>().data();
    const Eigen::TensorOpCost cost(static_cast<double>(width), 4.0 * width, 2.0 * width);
    ctx->eigen_device<CPUDevice>().parallelFor(
        videos * samples, cost, [&](int64_t begin, int64_t end) {
          for (int64_t row = begin; row < end; ++row) {
            const int64_t b = row / samples, n = row % samples;
            const int64_t p = gathered ? position[row] : n;
            const uint8_t* source = in + (b * frames + p) * width;
            float* target = result + row * width;
            int64_t column = 0;
            for (int64_t f = 0; f < features; ++f) {
              const int64_t stop = ends_[f];
              if (p < counts[b * features + f]) {
                for (; column < stop; ++column) target[column] = values[source[column]];
              } else {
                std::fill(target + column, target + stop, 0.0f);
                column = stop;
              }
            }
          }
        });
  }

 private:
  std::vector<int64_t> ends_;  // each feature's last column + 1
};

REGISTER_KERNEL_BUILDER(Name("DequantizeFrames").Device(DEVICE_CPU), DequantizeFramesOp);

}  // namespace
}  // namespace tensorflow
