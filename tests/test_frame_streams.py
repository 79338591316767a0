"""The LF models' input preparation as one kernel (native.frame_streams,
through BatchNorm.standardize in training and BatchNorm.inference_parts in
inference): TensorFlow's streams, float64-accurate moments, the edge cases
of TF1's fused batch norm, shape errors, and the models taking it only
where it applies."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import relative_error, traced_op_types

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import BatchNorm, l2_normalize
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.native import frame_streams, loading

EPSILON = 1e-3


def test_kernel_is_built():
    assert loading.load("frame_streams") is not None, (
        "the frame_streams kernel is not built for this CPU and TensorFlow: "
        "python -m youtube8m_willow.native.build")


def frames(rows, width, seed=0, zero_rows=3):
    """Quantization-range values, the first ``zero_rows`` rows zero (padding
    frames), columns offset apart so that their moments differ."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (rows, width)) + np.linspace(-1.0, 1.0, width)
    x[:zero_rows] = 0.0
    return tf.constant(x.astype("float32"))


def tensorflow_streams(x, sizes, l2_first):
    """The same op by op, as BatchNorm.standardize computes it without the kernel."""
    rows = l2_normalize(x) if l2_first else x
    width = x.shape[1]
    standardized, mean, variance = kernels.normalize_batch(
        rows, tf.ones([width]), tf.zeros([width]), EPSILON)
    return tf.split(standardized, sizes, axis=1), mean, variance


@pytest.mark.parametrize("l2_first", [True, False])
@pytest.mark.parametrize("rows,sizes", [(600, [40, 8]), (257, [13]), (5, [2, 3, 4])])
def test_streams_and_moments_are_tensorflows(rows, sizes, l2_first):
    """Each stream against TensorFlow's ops to 1e-5 of its size, across
    whole and part blocks of rows; the moments to 1e-6 of float64's (the
    fused batch norm's float32 sums are further off)."""
    x = frames(rows, sum(sizes))
    streams, mean, variance = frame_streams.standardize(x, sizes, l2_first, EPSILON)
    want_streams, _, _ = tensorflow_streams(x, sizes, l2_first)
    assert [s.shape for s in streams] == [(rows, size) for size in sizes]
    for want, got in zip(want_streams, streams):
        assert relative_error(want, got) < 1e-5
    x64 = x.numpy().astype(np.float64)
    if l2_first:
        x64 = x64 / np.sqrt(np.maximum((x64 ** 2).sum(1, keepdims=True), 1e-12))
    assert relative_error(x64.mean(0), mean) < 1e-6
    assert relative_error(x64.var(0, ddof=1), variance) < 1e-6


def test_one_row_and_no_row_as_the_fused_batch_norm():
    """One row: zero variance, uncorrected (as TF1's kernel reports it); no
    row: empty streams and NaN moments (0 / 0), as there."""
    for rows in (1, 0):
        x = frames(2, 5, zero_rows=0)[:rows]
        got = frame_streams.standardize(x, [3, 2], False, EPSILON)
        want = tensorflow_streams(x, [3, 2], False)
        for want_stream, stream in zip(want[0], got[0]):
            np.testing.assert_array_equal(stream, want_stream)
        for want_moment, moment in zip(want[1:], got[1:]):
            np.testing.assert_array_equal(moment, want_moment)


def test_a_nan_frame_spreads_as_in_tensorflow():
    """A NaN in one frame: NaN in its row (the L2 norm) and in every
    column's moments, as on TensorFlow's path."""
    x = frames(20, 6).numpy()
    x[7, 2] = np.nan
    got = frame_streams.standardize(tf.constant(x), [6], True, EPSILON)
    want = tensorflow_streams(tf.constant(x), [6], True)
    np.testing.assert_array_equal(np.isnan(got[0][0]), np.isnan(want[0][0]))
    np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(want[1]))


def test_kernel_rejects_mismatched_shapes():
    kernel = loading.load("frame_streams")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"frames must be \[rows, 7\] \(the stream sizes' sum\), got \[4,6\]"):
        kernel.frame_streams(tf.zeros([4, 6]), num_streams=2, stream_sizes=[4, 3],
                             l2_normalize=True, epsilon=EPSILON)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="rank 2|frames must"):
        kernel.frame_streams(tf.zeros([6]), num_streams=1, stream_sizes=[6],
                             l2_normalize=False, epsilon=EPSILON)


@pytest.mark.parametrize("kernel_runs", [True, False])
def test_the_frames_are_data(kernel_runs, monkeypatch):
    """``BatchNorm.standardize`` sends no gradient back to the frames, through
    the kernel (which has none) as through TensorFlow's ops; gamma and beta
    get theirs through the maps."""
    monkeypatch.setattr(frame_streams, "available", lambda: kernel_runs)
    x, layer = frames(10, 4), BatchNorm()
    with tf.GradientTape() as tape:
        tape.watch(x)
        [(rows, affine)] = layer.standardize(x, l2_first=True)
        loss = tf.reduce_sum(affine.apply(rows) * tf.range(4.0))
    frames_gradient, gamma_gradient, beta_gradient = tape.gradient(
        loss, [x, layer.gamma, layer.beta])
    assert frames_gradient is None
    np.testing.assert_allclose(beta_gradient, 10 * np.arange(4.0))
    np.testing.assert_allclose(gamma_gradient, np.sum(rows.numpy() * np.arange(4.0), 0),
                               atol=1e-5)


def test_batch_norm_standardizes_alike_through_the_kernel(monkeypatch):
    """``BatchNorm.standardize`` through the kernel and through TensorFlow's
    ops: the same blocks to 1e-5 of their size, the same maps, moving
    statistics to 1e-6."""
    x = frames(90, 12)
    results = []
    for kernel_runs in (True, False):
        monkeypatch.setattr(frame_streams, "available", lambda: kernel_runs)
        layer = BatchNorm()
        layer.build((None, 12))
        layer.gamma.assign(np.linspace(0.5, 2.0, 12))
        blocks = layer.standardize(x, [9, 3], l2_first=True)
        results.append((blocks, [v.numpy() for v in (layer.moving_mean, layer.moving_variance)]))
    (fused, fused_moving), (plain, plain_moving) = results
    for (block, affine), (want_block, want_affine) in zip(fused, plain):
        assert relative_error(want_block, block) < 1e-5
        np.testing.assert_array_equal(affine.scale, want_affine.scale)
        np.testing.assert_array_equal(affine.offset, want_affine.offset)
    for moved, want in zip(fused_moving, plain_moving):
        np.testing.assert_allclose(moved, want, rtol=1e-6)


def small_lf(**fields) -> ModelConfig:
    values = dict(model="NetVLADModelLF", frame_features=True, num_classes=6,
                  feature_names=("rgb", "audio"), feature_sizes=(16, 8), max_frames=10,
                  iterations=5, netvlad_cluster_size=4, netvlad_hidden_size=8)
    return ModelConfig(**{**values, **fields})


def traced_model_ops(model, training, jit_compile=False) -> set:
    batch = {"video_matrix": tf.zeros([2, 10, model.config.feature_size]),
             "num_frames": tf.constant([10, 4])}
    return traced_op_types(model, batch, training, jit_compile)


@pytest.mark.parametrize("rows,sizes", [(600, [40, 8]), (5, [2, 3, 4]), (0, [3, 2])])
def test_scaled_streams_are_tensorflows(rows, sizes):
    """Without standardize (inference): the L2-normalized rows' columns to
    1e-6 of their size (the row norms in float64), and without the L2
    scaling the columns themselves, bit for bit; no rows: empty streams."""
    x = frames(rows, sum(sizes))
    for l2_first in (True, False):
        streams = frame_streams.scale(x, sizes, l2_first)
        want = tf.split(l2_normalize(x) if l2_first else x, sizes, axis=1)
        assert [s.shape for s in streams] == [(rows, size) for size in sizes]
        for want_stream, stream in zip(want, streams):
            if l2_first and rows:
                assert relative_error(want_stream, stream) < 1e-6
            else:
                np.testing.assert_array_equal(stream, want_stream)


@pytest.mark.parametrize("l2_first", [True, False])
@pytest.mark.parametrize("kernel_runs", [True, False])
def test_inference_parts_are_the_inference_batch_norm(kernel_runs, l2_first, monkeypatch):
    """``BatchNorm.inference_parts``: each block's map applied gives
    inference mode's output of the (L2-normalized) rows to 1e-6 of its
    size, through the kernel and through TensorFlow's ops; the moving
    statistics stay; the frames, gamma and beta get the gradients they get
    through ``call`` (the kernel's gradient: TensorFlow's L2 scaling's)."""
    monkeypatch.setattr(frame_streams, "available", lambda: kernel_runs)
    x, layer = frames(90, 12), BatchNorm()
    layer.build((None, 12))
    rng = np.random.default_rng(1)
    for weight in (layer.gamma, layer.beta, layer.moving_mean):
        weight.assign(rng.uniform(-1.0, 1.0, 12))
    layer.moving_variance.assign(rng.uniform(0.1, 2.0, 12))
    moving = [v.numpy() for v in (layer.moving_mean, layer.moving_variance)]
    upstream = tf.constant(rng.standard_normal((90, 12)).astype("float32"))

    def loss_and_gradients(outputs_of):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = outputs_of(x)
            loss = tf.reduce_sum(tf.concat(outputs, 1) * upstream)
        return outputs, tape.gradient(loss, [x, layer.gamma, layer.beta])

    parts = layer.inference_parts(x, [9, 3], l2_first=l2_first)
    got, gradients = loss_and_gradients(lambda rows: [
        affine.apply(block) for block, affine in layer.inference_parts(rows, [9, 3], l2_first)])
    want, want_gradients = loss_and_gradients(lambda rows: tf.split(
        layer(l2_normalize(rows) if l2_first else rows, training=False), [9, 3], axis=1))
    assert [block.shape for block, _ in parts] == [(90, 9), (90, 3)]
    for got_block, want_block in zip(got, want):
        assert relative_error(want_block, got_block) < 1e-6
    for kept, before in zip((layer.moving_mean, layer.moving_variance), moving):
        np.testing.assert_array_equal(kept, before)
    for gradient, want_gradient in zip(gradients, want_gradients):
        assert relative_error(want_gradient, gradient) < 1e-5


def test_models_take_the_kernel_only_where_it_applies():
    """An LF model with input_bn traces the kernel in training and in
    inference on a machine without a GPU, the L2 input scaling in it; not
    under XLA, for an export, nor without input_bn. With another input
    scaling the model scales the frames first."""
    on_cpu = not tf.config.list_logical_devices("GPU")
    model = create_model(small_lf()).build_for_config()
    assert model.scales_own_frames(True) and model.scales_own_frames(False)
    assert ("FrameStreams" in traced_model_ops(model, True)) == on_cpu
    assert ("FrameStreams" in traced_model_ops(model, False)) == on_cpu
    assert "FrameStreams" not in traced_model_ops(model, True, jit_compile=True)
    assert "FrameStreams" not in traced_model_ops(model, False, jit_compile=True)
    with kernels.tensorflow_ops_only():
        assert "FrameStreams" not in traced_model_ops(model, True)
        assert "FrameStreams" not in traced_model_ops(model, False)
    plain = create_model(small_lf(netvlad_add_batch_norm=False)).build_for_config()
    assert not plain.scales_own_frames(True) and not plain.scales_own_frames(False)
    assert "FrameStreams" not in traced_model_ops(plain, True)
    assert "FrameStreams" not in traced_model_ops(plain, False)
    eigen = create_model(small_lf(input_scaling="eigen", feature_sizes=(1024, 8)))
    eigen.build_for_config()
    assert not eigen.scales_own_frames(True)
    assert ("FrameStreams" in traced_model_ops(eigen, True)) == on_cpu
    assert ("FrameStreams" in traced_model_ops(eigen, False)) == on_cpu


@pytest.mark.parametrize("model_name", ["NetVLADModelLF", "NetFVModelLF", "GatedDbofModelLF"])
def test_inference_folds_input_bn_with_the_same_predictions(model_name, monkeypatch):
    """Inference with input_bn's moving map folded into the poolings
    (through the kernel, and through TensorFlow's ops) predicts what the
    map applied to the frames predicts (the graph before the fold), to
    1e-6, with moving statistics away from their initial values."""
    model = create_model(small_lf(model=model_name)).build_for_config()
    rng = np.random.default_rng(2)
    bn = model.input_bn
    bn.moving_mean.assign(rng.uniform(-0.1, 0.1, bn.moving_mean.shape))
    bn.moving_variance.assign(rng.uniform(0.001, 0.01, bn.moving_variance.shape))
    bn.gamma.assign(rng.uniform(0.5, 1.5, bn.gamma.shape))
    batch = {"video_matrix": tf.constant(rng.uniform(-2, 2, (3, 10, 24)).astype("float32")),
             "num_frames": tf.constant([10, 4, 7]), "sampling_seed": tf.constant([1, 2])}
    predictions = {}
    for name, folds, kernel_runs in [("unfolded", False, False), ("kernel", True, True),
                                     ("ops", True, False)]:
        monkeypatch.setattr(type(model), "folds_input_bn", lambda self, training, f=folds: f)
        monkeypatch.setattr(frame_streams, "available", lambda runs=kernel_runs: runs)
        predictions[name] = model(batch, training=False).numpy()
    np.testing.assert_allclose(predictions["kernel"], predictions["unfolded"], atol=1e-6)
    np.testing.assert_allclose(predictions["ops"], predictions["unfolded"], atol=1e-6)
