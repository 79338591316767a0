"""The fused batch norm, softmax and pooling over frames of the DBoF layers
in training (native.softmax_pool, through kernels.normalized_softmax_pool):
TensorFlow's values and gradients, ties and NaN as there, one tensor of the
projections' size held where TensorFlow's path holds three, and the layers
taking it only where it applies."""

import os
import sys

import forked
import numpy as np
import pytest
import tensorflow as tf
from conftest import (REPO, peak_tensor_bytes, relative_error, traced_op_types,
                      train_call_through)

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import l2_normalize
from youtube8m_willow.layers.dbof import GatedDBoF, SoftDBoF
from youtube8m_willow.native import build, loading, softmax_pool

EPSILON = 1e-3


def test_kernel_is_built():
    assert loading.load("softmax_pool") is not None, (
        "the softmax_pool kernel is not built for this CPU and TensorFlow: "
        "python -m youtube8m_willow.native.build")


def tensorflow_pool(x, gamma, beta, epsilon=EPSILON):
    """The same outputs op by op: TF1's fused batch norm, softmax, sum and max."""
    videos, frames, clusters = x.shape
    flat = tf.reshape(x, [-1, clusters])
    normalized, mean, variance = kernels.normalize_batch(flat, gamma, beta, epsilon)
    s = tf.reshape(tf.nn.softmax(normalized), [videos, frames, clusters])
    return tf.reduce_sum(s, 1), tf.reduce_max(s, 1), mean, variance


def fused_pool(x, gamma, beta):
    """The kernel's outputs, the variance Bessel-corrected as
    ``tensorflow_pool``'s."""
    return kernels.normalized_softmax_pool(x, gamma, beta, EPSILON)


def pool_and_gradients(pool, x, gamma, beta, weights):
    with tf.GradientTape() as tape:
        tape.watch([x, gamma, beta])
        summed, maximum, mean, variance = pool(x, gamma, beta)
        loss = tf.reduce_sum(summed * weights[0]) + tf.reduce_sum(maximum * weights[1])
    return [summed, maximum, mean, variance, *tape.gradient(loss, [x, gamma, beta])]


def inputs(videos=3, frames=7, clusters=1100, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(videos, frames, clusters)).astype("float32") * 2 + 0.5
    x[1, 3] = x[1, 5] = x[1, 1]  # three tied frames: every cluster's maximum may be shared
    gamma = rng.uniform(0.5, 2.0, clusters).astype("float32")
    beta = rng.normal(size=clusters).astype("float32")
    weights = [tf.constant(rng.normal(size=(videos, clusters)).astype("float32")) for _ in range(2)]
    return tf.constant(x), tf.constant(gamma), tf.constant(beta), weights


@pytest.mark.parametrize("clusters", [1, 5, 1100])
def test_values_and_gradients_are_tensorflows(clusters):
    """Sum, max, the moments (Bessel-corrected variance) and the gradients
    in the projections, gamma and beta, against TensorFlow's ops, each
    array to 1e-5 of its own size (they agree to about 1e-6): with tied
    frames, and at a width (1100) not a multiple of any vector."""
    x, gamma, beta, weights = inputs(clusters=clusters)
    fused = pool_and_gradients(fused_pool, x, gamma, beta, weights)
    expected = pool_and_gradients(tensorflow_pool, x, gamma, beta, weights)
    names = ["sum", "max", "mean", "variance", "x gradient", "gamma gradient", "beta gradient"]
    for name, want, got in zip(names, expected, fused):
        if clusters == 1 and name in ("x gradient", "gamma gradient", "beta gradient"):
            np.testing.assert_array_equal(got, 0.0)  # a softmax over one cluster is constant
            continue
        assert relative_error(want, got) < 1e-5, name


def test_an_offset_is_pooled_as_if_added_to_the_projections():
    """``pool(x, ..., offset)`` gives what TensorFlow's ops give for ``x +
    offset``: sum, max, the moments (the mean with the offset) and the
    gradients of ``x``, gamma and beta to 1e-5 of each array's size; the
    offset's gradient is the sum over frames of ``x``'s, rounding noise
    next to it, as on TensorFlow's path (the batch norm cancels the
    offset)."""
    x, gamma, beta, weights = inputs(clusters=40)
    offset = tf.constant(np.random.default_rng(9).normal(size=40).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, gamma, beta, offset])
        fused = kernels.normalized_softmax_pool(x, gamma, beta, EPSILON, offset)
        expected = tensorflow_pool(x + offset, gamma, beta)
        losses = [tf.reduce_sum(out[0] * weights[0]) + tf.reduce_sum(out[1] * weights[1])
                  for out in (fused, expected)]
    fused_grads, expected_grads = (tape.gradient(loss, [x, gamma, beta, offset])
                                   for loss in losses)
    for want, got in zip([*expected, *expected_grads[:3]], [*fused, *fused_grads[:3]]):
        assert relative_error(want, got) < 1e-5
    # The kernel's float64 sums of its own x gradient, rounded once: these
    # sums are about 1e-7 (noise), so a tolerance of 1e-12 tells them from
    # zeros.
    x_grad_sum = np.sum(fused_grads[0].numpy().astype(np.float64), axis=(0, 1))
    np.testing.assert_allclose(fused_grads[3], x_grad_sum, rtol=1e-6, atol=1e-12)
    assert np.abs(x_grad_sum).max() > 1e-10
    scale = np.abs(fused_grads[0].numpy()).sum(axis=(0, 1))
    assert (np.abs(fused_grads[3]) < 1e-4 * scale).all()
    assert (np.abs(expected_grads[3]) < 1e-4 * scale).all()


def test_tied_frames_share_the_maximums_gradient():
    """Three identical frames are all at every cluster's maximum of their
    video or at none: the gradient of the maximum alone reaches them equally
    (a third each), and their gradient rows are equal."""
    x, gamma, beta, _ = inputs()
    with tf.GradientTape() as tape:
        tape.watch(x)
        _, maximum, _, _ = kernels.normalized_softmax_pool(x, gamma, beta, EPSILON)
        loss = tf.reduce_sum(maximum[1])
    gradient = tape.gradient(loss, x).numpy()
    np.testing.assert_array_equal(gradient[1, 3], gradient[1, 1])
    np.testing.assert_array_equal(gradient[1, 5], gradient[1, 1])
    assert np.abs(gradient[1, 1]).max() > 0


def test_a_nan_projection_makes_the_outputs_nan_as_tensorflow():
    """A NaN projection makes its cluster's moments NaN, so every frame has
    a NaN assignment. The kernel's softmax then makes the frame's whole row
    NaN, TensorFlow's that cluster's entry (and zeros): the pooled outputs
    are NaN wherever TensorFlow's are (and their L2 normalization NaN
    everywhere on both paths), and all gradients are NaN on both. Nothing
    finite but wrong comes out."""
    x, gamma, beta, weights = inputs(clusters=40)
    x = tf.tensor_scatter_nd_update(x, [[0, 2, 7]], [np.nan])
    fused = pool_and_gradients(fused_pool, x, gamma, beta, weights)
    expected = pool_and_gradients(tensorflow_pool, x, gamma, beta, weights)
    for want, got in zip(expected[:2], fused[:2]):
        assert np.isnan(want).any() and np.isnan(got[np.isnan(want)]).all()
        assert np.isnan(l2_normalize(got, axis=1)).all()
    for want, got in zip(expected[4:], fused[4:]):
        assert np.isnan(want).all() and np.isnan(got).all()


def test_kernel_rejects_mismatched_shapes():
    x, gamma, beta, _ = inputs(clusters=6)
    kernel = loading.load("softmax_pool")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"gamma must be \[6\], got \[5\]"):
        kernel.normalized_softmax_pool(x, gamma[:5], beta, epsilon=EPSILON)
    with pytest.raises(tf.errors.InvalidArgumentError, match="x must be"):
        kernel.normalized_softmax_pool(x[:, :0], gamma, beta, epsilon=EPSILON)
    summed, maximum, count, mean, variance = kernel.normalized_softmax_pool(
        x, gamma, beta, epsilon=EPSILON)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"max_grad must be \[3, 6\]"):
        kernel.normalized_softmax_pool_grad(x, gamma, beta, mean, variance, maximum, count,
                                            summed, summed[:2], epsilon=EPSILON)


def held_tensors() -> tuple[float, float]:
    """The peak tensor bytes of forward and backward through the kernel and
    through TensorFlow's ops, in tensors of the projections' size, measured
    in this process."""
    x, gamma, beta, weights = inputs(videos=4, frames=50, clusters=2048)

    def held(pool):
        @tf.function
        def step(x):
            projections = x * 2.0  # made inside: the kernel may write over it
            with tf.GradientTape() as tape:
                tape.watch(projections)
                summed, maximum, _, _ = pool(projections, gamma, beta)
                loss = tf.reduce_sum(summed * weights[0]) + tf.reduce_sum(maximum * weights[1])
            return tf.reduce_sum(tape.gradient(loss, projections))
        return peak_tensor_bytes(step, x) / x.numpy().nbytes

    return held(fused_pool), held(tensorflow_pool)


def test_gradient_holds_one_tensor_of_the_projections_size():
    """Forward and backward through the pooling hold one tensor of the
    projections' size at their peak, the projections themselves (the
    gradient is written over them), where TensorFlow's batch norm, softmax,
    sum and maximum hold about five (1.0 to 1.3 against 4.8 to 5.1 tensors,
    measured). Measured in a fresh process: the allocator counts a tensor by
    the free chunk it takes, up to twice its size, which depends on what the
    process allocated before (1.56 tensors after some other tests)."""
    code = ("import sys; sys.path.insert(0, 'tests'); import test_softmax_pool as t; "
            "print(*t.held_tensors())")
    result = forked.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=str(REPO), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fused, own = map(float, result.stdout.split()[-2:])
    assert fused < 1.5 and own - fused >= 2.0, (fused, own)


def test_gradient_written_over_the_projections_is_tensorflows():
    """In a graph, where the gradient takes the projections' own buffer (the
    case the test above measures), it is TensorFlow's gradient to 1e-5 of
    its size, as are gamma's and beta's."""
    x, gamma, beta, weights = inputs(videos=4, frames=20, clusters=1100, seed=4)

    def gradients(pool):
        @tf.function
        def step(x):
            projections = x * 2.0  # made inside: the kernel may write over it
            with tf.GradientTape() as tape:
                tape.watch([projections, gamma, beta])
                summed, maximum, _, _ = pool(projections, gamma, beta)
                loss = tf.reduce_sum(summed * weights[0]) + tf.reduce_sum(maximum * weights[1])
            return tape.gradient(loss, [projections, gamma, beta])
        return step(x)

    fused = gradients(fused_pool)
    expected = gradients(tensorflow_pool)
    for want, got in zip(expected, fused):
        assert relative_error(want, got) < 1e-5


def layer_step(layer, frames, fused: bool, monkeypatch):
    """The layer's output, weight gradients and moving statistics after one
    training call, through the fused kernel (which it must call) or
    TensorFlow's ops."""
    step = train_call_through(layer, frames, softmax_pool, "pool", 1 if fused else 0,
                              monkeypatch)
    norm = layer.assignment.batch_norm
    return [*step, norm.moving_mean.numpy(), norm.moving_variance.numpy()]


@pytest.mark.parametrize("make_layer", [lambda: SoftDBoF(1030), lambda: SoftDBoF(7, max_pool=True),
                                        lambda: GatedDBoF(1030)])
def test_layers_train_alike_through_the_kernel(make_layer, monkeypatch):
    """Soft-DBoF (with and without max pooling) and Gated DBoF give the same
    outputs, weight gradients and moving statistics in training through the
    kernel as through TensorFlow's ops, to 1e-5 of each array's size."""
    frames = tf.constant(np.random.default_rng(2).normal(size=(4, 9, 16)).astype("float32"))
    fused_layer, tf_layer = make_layer(), make_layer()
    fused_layer(frames[:1]), tf_layer(frames[:1])
    tf_layer.set_weights(fused_layer.get_weights())
    fused = layer_step(fused_layer, frames, True, monkeypatch)
    expected = layer_step(tf_layer, frames, False, monkeypatch)
    for want, got in zip(expected, fused):
        assert relative_error(want, got) < 1e-5


def test_layers_take_the_kernel_only_where_it_applies():
    """In training, float32, outside XLA, on a machine without a GPU: the
    kernel; in inference, in bfloat16 and in an XLA-compiled function:
    TensorFlow's ops (a compiled function cannot hold the kernel, and
    runs)."""
    frames = tf.constant(np.random.default_rng(3).normal(size=(2, 5, 8)).astype("float32"))
    layer = SoftDBoF(16)
    layer(frames)
    on_cpu = not tf.config.list_logical_devices("GPU")
    assert ("NormalizedSoftmaxPool" in traced_op_types(layer, frames, True)) == on_cpu
    assert "NormalizedSoftmaxPool" not in traced_op_types(layer, frames, False)
    assert "NormalizedSoftmaxPool" not in traced_op_types(layer, frames, True, jit_compile=True)
    compiled = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    assert np.isfinite(compiled(frames).numpy()).all()
    assert not kernels.fuses_softmax_pool("bfloat16")
    assert kernels.fuses_softmax_pool("float32") == on_cpu


@pytest.mark.parametrize("name", build.KERNELS)
def test_a_kernel_built_for_another_cpu_is_not_loaded(name, monkeypatch):
    """The kernels tuned to the CPU are compiled for the one they are built
    on; on another (a copied checkout) they are neither loaded nor taken as
    up to date."""
    assert build.tuned_to_cpu(name) == build.X86
    if not build.X86:
        return
    assert build.built_for_this_cpu(name)
    monkeypatch.setattr(build, "cpu_signature", lambda: "another cpu")
    assert not build.built_for_this_cpu(name)
    assert not build.up_to_date(name)
    assert loading.load.__wrapped__(name) is None


def test_a_kernel_of_another_source_is_not_loaded(tmp_path, monkeypatch, caplog):
    """A library compiled from another version of its source (a checkout
    updated without ``make``) may lack what the Python side asks of its
    op: it is neither loaded (a warning says to rebuild) nor taken as up to
    date; one compiled from the source as it is loads. Times do not
    matter, only the source's digest that the build stamps."""
    monkeypatch.setattr(build, "HERE", tmp_path)
    monkeypatch.setattr(build, "built_for_this_cpu", lambda name: True)
    monkeypatch.setattr(loading.tf, "load_op_library", lambda path: "loaded")
    source, library = tmp_path / "frame_streams.cc", build.library_path("frame_streams")
    source.write_text("// version 1")
    library.write_bytes(b"a library")
    build.source_stamp_path("frame_streams").write_text(build.source_digest("frame_streams"))
    os.utime(source, (4e9, 4e9))  # touched later: the same source
    assert build.built_from_current_source("frame_streams")
    assert loading.load.__wrapped__("frame_streams") == "loaded"
    source.write_text("// version 2")
    assert not build.built_from_current_source("frame_streams")
    assert not build.up_to_date("frame_streams")
    with caplog.at_level("WARNING"):
        assert loading.load.__wrapped__("frame_streams") is None
    assert "built from another version of frame_streams.cc" in caplog.text
    source.unlink()  # not shipped: nothing to compare
    assert build.built_from_current_source("frame_streams")
    build.source_stamp_path("frame_streams").unlink()
    assert build.built_from_current_source("frame_streams")
