"""The NetVLAD poolings' residuals and normalizations as one kernel
(native.vlad_descriptor, through kernels.normalized_vlad): TensorFlow's
values and gradients, the epsilon of TF1's L2 normalization and NaN as
there, shape errors, and the layers taking it only where it applies and
training alike through it."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import relative_error, traced_op_types, train_call_through

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.fisher import NetFV
from youtube8m_willow.layers.core import l2_normalize
from youtube8m_willow.layers.vlad import NetRVLAD, NetVLAD, NetVLAGD, normalize_descriptor
from youtube8m_willow.native import loading, vlad_descriptor


def test_kernel_is_built():
    assert loading.load("vlad_descriptor") is not None, (
        "the vlad_descriptor kernel is not built for this CPU and TensorFlow: "
        "python -m youtube8m_willow.native.build")


def tensorflow_descriptor(weighted, assignment_sum, scale, shift):
    """The same vector op by op, as the layers compute it without the kernel."""
    residuals = weighted * scale + assignment_sum[:, :, None] * shift
    return normalize_descriptor(tf.transpose(residuals, (0, 2, 1)))


def descriptor_and_gradients(descriptor, inputs, upstream):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = descriptor(*inputs)
        loss = tf.reduce_sum(out * upstream)
    return [out, *tape.gradient(loss, inputs)]


def inputs(videos=3, clusters=5, features=7, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=(videos, clusters, features)),
              rng.uniform(0.0, 4.0, (videos, clusters)),
              rng.uniform(0.5, 2.0, (clusters, features)),
              rng.normal(size=(clusters, features))]
    upstream = rng.normal(size=(videos, clusters * features))
    return [tf.constant(a.astype("float32")) for a in arrays], tf.constant(upstream, tf.float32)


NAMES = ["descriptor", "weighted gradient", "assignment sum gradient", "scale gradient",
         "shift gradient"]


@pytest.mark.parametrize("videos,clusters,features", [(3, 5, 7), (2, 16, 9), (4, 37, 64),
                                                      (1, 1, 3)])
def test_values_and_gradients_are_tensorflows(videos, clusters, features):
    """The vector and its four gradients against TensorFlow's ops, each to
    1e-5 of its own size (they agree to about 3e-7): a part tile of
    clusters, exactly one tile, more than two, and one cluster."""
    values, upstream = inputs(videos, clusters, features)
    fused = descriptor_and_gradients(kernels.normalized_vlad, values, upstream)
    expected = descriptor_and_gradients(tensorflow_descriptor, values, upstream)
    for name, want, got in zip(NAMES, expected, fused):
        assert got.shape == want.shape, name
        assert relative_error(want, got) < 1e-5, name


def tensorflow_second_order(weighted, assignment_sum, scale, shift, squares, square_scale):
    """NetFV's second-order form op by op: three terms, no intra-normalization,
    two L2 normalizations of the flattened vector."""
    residuals = weighted * scale + assignment_sum[:, :, None] * shift + squares * square_scale
    size = residuals.shape[1] * residuals.shape[2]
    flat = tf.reshape(tf.transpose(residuals, (0, 2, 1)), (-1, size))
    return l2_normalize(l2_normalize(flat, axis=1), axis=1)


def kernel_second_order(weighted, assignment_sum, scale, shift, squares, square_scale):
    return vlad_descriptor.normalize(weighted, assignment_sum, scale, shift, squares,
                                     square_scale, intra_normalize=False)


@pytest.mark.parametrize("videos,clusters,features", [(3, 5, 7), (4, 37, 64), (2, 1, 5)])
def test_the_second_order_form_is_tensorflows(videos, clusters, features):
    """With the squares' term and two normalizations of the whole video
    (NetFV's second order): the vector and its six gradients against
    TensorFlow's ops, each to 1e-5 of its own size; one video all zeros
    (under the epsilon) among them."""
    values, upstream = inputs(videos, clusters, features, seed=7)
    more, _ = inputs(videos, clusters, features, seed=8)
    values = [*values, tf.abs(more[0]), more[2]]
    zeros = [v.numpy() for v in values]
    for index in (0, 1, 4):
        zeros[index][-1] = 0.0
    values = [tf.constant(v) for v in zeros]
    fused = descriptor_and_gradients(kernel_second_order, values, upstream)
    expected = descriptor_and_gradients(tensorflow_second_order, values, upstream)
    np.testing.assert_array_equal(fused[0][-1], 0.0)
    names = [*NAMES, "squares gradient", "square scale gradient"]
    for name, want, got in zip(names, expected, fused):
        assert got.shape == want.shape, name
        assert relative_error(want, got) < 1e-5, name


def test_bfloat16_inputs_are_computed_in_float32():
    """bfloat16 sums and map give the float32 vector and gradients of the
    same (rounded) values, each rounded to bfloat16: within bfloat16's
    rounding (0.4%) of TensorFlow's float32 ops on them."""
    values, upstream = inputs(videos=4, clusters=37, features=64, seed=6)
    halves = [tf.cast(v, tf.bfloat16) for v in values]
    fused = descriptor_and_gradients(kernels.normalized_vlad, halves,
                                     tf.cast(upstream, tf.bfloat16))
    rounded = [tf.cast(h, tf.float32) for h in halves]
    expected = descriptor_and_gradients(tensorflow_descriptor, rounded, upstream)
    for name, want, got in zip(NAMES, expected, fused):
        assert got.dtype == tf.bfloat16, name
        assert relative_error(want, tf.cast(got, tf.float32)) < 1e-2, name


def test_the_norms_epsilon_holds_as_in_tensorflow():
    """A cluster whose residuals are all zero (no assignment, no shift) and
    a video whose residuals are all zero fall under TF1's epsilon (1e-12 on
    the squared sum): zeros out, and the gradient of a constant scale
    there, as TensorFlow's ops give."""
    values, upstream = inputs(videos=3, clusters=4, features=6, seed=1)
    weighted, assignment_sum, scale, shift = (v.numpy() for v in values)
    weighted[0, 2] = 0.0
    assignment_sum[0, 2] = 0.0
    weighted[2] = 0.0
    assignment_sum[2] = 0.0
    values = [tf.constant(v) for v in (weighted, assignment_sum, scale, shift)]
    fused = descriptor_and_gradients(kernels.normalized_vlad, values, upstream)
    expected = descriptor_and_gradients(tensorflow_descriptor, values, upstream)
    np.testing.assert_array_equal(fused[0].numpy().reshape(3, 6, 4)[0, :, 2], 0.0)
    np.testing.assert_array_equal(fused[0].numpy()[2], 0.0)
    assert np.abs(expected[1][2]).max() > 0  # the epsilon's gradient is not zero
    for name, want, got in zip(NAMES, expected, fused):
        assert relative_error(want, got) < 1e-5, name


def test_a_nan_sum_makes_its_video_nan_as_tensorflow():
    """A NaN in one video's sums makes that video's vector and every
    gradient NaN where TensorFlow's are; the other videos' vectors stay
    finite and equal TensorFlow's."""
    values, upstream = inputs(videos=3, clusters=4, features=6, seed=2)
    weighted = values[0].numpy()
    weighted[1, 3, 2] = np.nan
    values[0] = tf.constant(weighted)
    fused = descriptor_and_gradients(kernels.normalized_vlad, values, upstream)
    expected = descriptor_and_gradients(tensorflow_descriptor, values, upstream)
    assert np.isnan(fused[0][1]).all() and np.isnan(expected[0][1]).all()
    for video in (0, 2):
        assert relative_error(expected[0][video], fused[0][video]) < 1e-5
    for want, got in zip(expected[1:], fused[1:]):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_kernel_rejects_mismatched_shapes():
    (weighted, assignment_sum, scale, shift), upstream = inputs()
    kernel = loading.load("vlad_descriptor")
    none = tf.zeros([0])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"scale must be \[5, 7\], got \[5,6\]"):
        kernel.normalized_vlad(weighted, assignment_sum, scale[:, :6], shift, none, none)
    with pytest.raises(tf.errors.InvalidArgumentError, match="weighted must be"):
        kernel.normalized_vlad(weighted[0], assignment_sum, scale, shift, none, none)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one cluster"):
        kernel.normalized_vlad(weighted[:, :0], assignment_sum[:, :0], scale[:0], shift[:0],
                               none, none, intra_normalize=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"square_scale must be \[5, 7\]"):
        kernel.normalized_vlad(weighted, assignment_sum, scale, shift, weighted, scale[:2])
    descriptor, cluster_squares, video_squares = kernel.normalized_vlad(
        weighted, assignment_sum, scale, shift, none, none)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"descriptor_grad must be \[3, 35\]"):
        kernel.normalized_vlad_grad(weighted, assignment_sum, scale, shift, none, none,
                                    cluster_squares, video_squares, descriptor, upstream[:2])


# Each pooling, and how many times its training call runs the kernel (NetFV:
# its first- and second-order terms).
POOLINGS = {"NetVLAD": (lambda: NetVLAD(20), 1),
            "NetVLAD without batch norm": (lambda: NetVLAD(20, add_batch_norm=False), 1),
            "NetRVLAD": (lambda: NetRVLAD(20), 1), "NetVLAGD": (lambda: NetVLAGD(20), 1),
            "NetFV": (lambda: NetFV(20), 2),
            "NetFV with centers of its own": (lambda: NetFV(20, couple_weights=False), 2)}


@pytest.mark.parametrize("name", POOLINGS)
def test_layers_train_alike_through_the_kernel(name, monkeypatch):
    """Each NetVLAD pooling (and NetFV, whose first-order term is one) gives
    the same output and weight gradients in training through the kernel as
    through TensorFlow's ops, to 1e-5 of each array's size."""
    frames = tf.constant(np.random.default_rng(4).normal(size=(4, 9, 24)).astype("float32"))
    make_layer, kernel_calls = POOLINGS[name]
    fused_layer, tf_layer = make_layer(), make_layer()
    fused_layer(frames[:1]), tf_layer(frames[:1])
    tf_layer.set_weights(fused_layer.get_weights())
    fused = train_call_through(fused_layer, frames, vlad_descriptor, "normalize", kernel_calls,
                               monkeypatch)
    expected = train_call_through(tf_layer, frames, vlad_descriptor, "normalize", 0, monkeypatch)
    assert len(fused) == len(fused_layer.trainable_weights) + 1
    for want, got in zip(expected, fused):
        assert relative_error(want, got) < 1e-5


def test_layers_take_the_kernel_only_where_it_applies():
    """In float32 and bfloat16, training and inference, outside XLA, on a
    machine without a GPU: the kernel; in an XLA-compiled function:
    TensorFlow's ops (a compiled function cannot hold the kernel, and
    runs)."""
    frames = tf.constant(np.random.default_rng(5).normal(size=(2, 5, 8)).astype("float32"))
    layer = NetVLAD(16)
    layer(frames)
    on_cpu = not tf.config.list_logical_devices("GPU")
    for training in (True, False):
        assert ("NormalizedVlad" in traced_op_types(layer, frames, training)) == on_cpu
    assert "NormalizedVlad" not in traced_op_types(layer, frames, True, jit_compile=True)
    compiled = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    assert np.isfinite(compiled(frames).numpy()).all()
    for dtype in ("float32", "bfloat16"):
        assert kernels.fuses_vlad_descriptor(dtype) == on_cpu
    assert not kernels.fuses_vlad_descriptor("float16")


def test_a_graph_for_export_takes_tensorflows_ops():
    """Within ``tensorflow_ops_only`` (the SavedModel export) the layers
    trace none of the project's kernels, so TensorFlow Serving or a plain
    TensorFlow loads the export; after it, the kernel again."""
    frames = tf.constant(np.random.default_rng(5).normal(size=(2, 5, 8)).astype("float32"))
    layer = NetFV(4)
    layer(frames)
    on_cpu = not tf.config.list_logical_devices("GPU")
    with kernels.tensorflow_ops_only():
        assert "NormalizedVlad" not in traced_op_types(layer, frames, False)
        assert not kernels.fuses_softmax_pool("float32")
    assert ("NormalizedVlad" in traced_op_types(layer, frames, False)) == on_cpu


def test_an_empty_batch_gives_empty_outputs_and_zero_map_gradients():
    """No video: an empty vector, and zero gradients of the map (the squares'
    one included)."""
    values, _ = inputs(videos=2, clusters=5, features=7)
    empty = [values[0][:0], values[1][:0], values[2], values[3], values[0][:0], values[2]]
    fused = descriptor_and_gradients(kernel_second_order, empty, tf.zeros([0, 35]))
    assert fused[0].shape == (0, 35)
    for gradient in (fused[3], fused[4], fused[6]):
        np.testing.assert_array_equal(gradient, 0.0)
