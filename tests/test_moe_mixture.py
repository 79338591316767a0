"""The MoE head's mixture in one kernel (native.moe_mixture, through
kernels.mixture_probabilities): the separate TensorFlow ops' values and
gradients for any number of mixtures and across the kernel's blocks of
classes, NaN and saturated logits as there, clear shape errors, and the
layers taking it for float32 and bfloat16 logits, outside XLA and exports."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import relative_error, traced_op_types

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.classifiers import MixtureOfExperts
from youtube8m_willow.native import loading, moe_mixture

ON_CPU = not tf.config.list_logical_devices("GPU")


def test_kernel_is_built():
    assert loading.load("moe_mixture") is not None, (
        "the moe_mixture kernel is not built for this CPU and TensorFlow: "
        "python -m youtube8m_willow.native.build")


def logits(videos, classes, mixtures, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    gates = rng.normal(size=(videos, classes * (mixtures + 1))).astype("float32") * scale
    experts = rng.normal(size=(videos, classes * mixtures)).astype("float32") * scale
    upstream = rng.normal(size=(videos, classes)).astype("float32")
    return gates, experts, upstream


def value_and_gradients(mixture, gates, experts, upstream, mixtures):
    gates, experts = tf.constant(gates), tf.constant(experts)
    with tf.GradientTape() as tape:
        tape.watch([gates, experts])
        probabilities = mixture(gates, experts, mixtures)
        loss = tf.reduce_sum(probabilities * upstream)
    return [probabilities.numpy(), *(g.numpy() for g in tape.gradient(loss, [gates, experts]))]


def kernel(gates, experts, mixtures):
    return moe_mixture.probabilities(gates, experts, mixtures)


# 1 to 4 mixtures (the strides the kernel unrolls, 2 to 5) and 6 (its plain
# loops, strides 7 and 6); 3 x 301 classes cross its blocks of 256.
@pytest.mark.parametrize("mixtures", [1, 2, 3, 4, 6])
def test_values_and_gradients_are_the_separate_ops(mixtures):
    gates, experts, upstream = logits(3, 301, mixtures, seed=mixtures)
    fused = value_and_gradients(kernel, gates, experts, upstream, mixtures)
    separate = value_and_gradients(kernels._mixture, gates, experts, upstream, mixtures)
    weights = np.exp(gates.reshape(-1, mixtures + 1))
    weights /= weights.sum(axis=1, keepdims=True)
    by_hand = np.sum(weights[:, :mixtures] / (1 + np.exp(-experts.reshape(-1, mixtures))), 1)
    np.testing.assert_allclose(fused[0], by_hand.reshape(3, 301), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fused[0], separate[0], rtol=1e-6, atol=1e-7)
    # The gates' gradient is a difference (a_j - q) * g_j: its error is relative
    # to the terms, so to the largest gradient, not entry by entry.
    for got, want in zip(fused[1:], separate[1:]):
        assert relative_error(want, got) < 1e-6


def test_gradient_by_hand():
    """One class, one mixture: p = g0 * s with g0 = e^a / (e^a + e^b),
    s = sigmoid(x); dp/da = g0 (1 - g0) s, dp/db = -g0 (1 - g0) s,
    dp/dx = g0 s (1 - s)."""
    a, b, x = 0.5, -1.0, 2.0
    g0 = np.exp(a) / (np.exp(a) + np.exp(b))
    s = 1 / (1 + np.exp(-x))
    p, gate_grad, expert_grad = value_and_gradients(
        kernel, np.array([[a, b]], "float32"), np.array([[x]], "float32"),
        np.ones((1, 1), "float32"), 1)
    np.testing.assert_allclose(p, [[g0 * s]], rtol=1e-6)
    np.testing.assert_allclose(gate_grad, [[g0 * (1 - g0) * s, -g0 * (1 - g0) * s]], rtol=1e-5)
    np.testing.assert_allclose(expert_grad, [[g0 * s * (1 - s)]], rtol=1e-5)


def test_nan_stays_in_its_class_and_saturated_logits_are_finite():
    """A NaN logit makes its class's probability NaN, as the separate ops
    do, and its class's gradients (there the separate ops keep some entries
    finite, by the order of their sums), and no other class's; logits of
    +-1e4 saturate the softmax and the sigmoids without overflow."""
    gates, experts, upstream = logits(2, 40, 2, seed=7)
    gates[1, 5 * 3 + 1] = np.nan
    gates[0, :9] = [1e4, -1e4, 0, -1e4, -1e4, 1e4, 0, 0, 0]
    experts[0, :6] = [1e4, -1e4, -1e4, 1e4, 200, -200]
    fused = value_and_gradients(kernel, gates, experts, upstream, 2)
    separate = value_and_gradients(kernels._mixture, gates, experts, upstream, 2)
    assert np.isnan(fused[0][1, 5]) and np.isnan(fused[0]).sum() == 1
    assert np.isnan(fused[1][1, 15:18]).all() and np.isnan(fused[1]).sum() == 3
    assert np.isnan(fused[2][1, 10:12]).all() and np.isnan(fused[2]).sum() == 2
    np.testing.assert_array_equal(np.isnan(fused[0]), np.isnan(separate[0]))
    for got, want in zip(fused, separate):
        kept = ~np.isnan(got)
        assert relative_error(want[kept], got[kept]) < 1e-6


@pytest.mark.parametrize("videos, classes", [(0, 6), (3, 0)])
def test_no_video_or_no_class_gives_empty_outputs(videos, classes):
    gates, experts, upstream = logits(videos, classes, 2)
    p, gate_grad, expert_grad = value_and_gradients(kernel, gates, experts, upstream, 2)
    assert p.shape == (videos, classes)
    assert gate_grad.shape == (videos, classes * 3) and expert_grad.shape == (videos, classes * 2)


def test_kernel_rejects_mismatched_shapes():
    gates, experts, upstream = logits(2, 5, 2)
    ops = loading.load("moe_mixture")
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                       match=r"gates must be .*; got \[2,14\] and \[2,10\] with num_mixtures 2"):
        ops.moe_mixture(gates[:, :14], experts, num_mixtures=2)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="must be matrices"):
        ops.moe_mixture(gates[0], experts[0], num_mixtures=2)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="gates must be"):
        ops.moe_mixture(gates, experts[:1], num_mixtures=2)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                       match=r"probabilities_grad must be \[B, C\] = \[2,5\], got \[2,4\]"):
        ops.moe_mixture_grad(gates, experts, upstream[:, :4], num_mixtures=2)


def test_the_head_runs_the_kernel_and_xla_where_it_cannot():
    """MixtureOfExperts traces the kernel (and its gradient op in training)
    for float32 and bfloat16 logits on a CPU (bfloat16 read as it is,
    computed in float32), the XLA-compiled loop for float16 logits, under
    XLA and within ``tensorflow_ops_only`` (an export)."""
    inputs = tf.constant(np.random.default_rng(3).normal(size=(4, 8)).astype("float32"))
    head = MixtureOfExperts(num_classes=5, num_mixtures=2)
    head(inputs)
    assert ("MoeMixture" in traced_op_types(head, inputs, False)) == ON_CPU
    assert kernels.fuses_mixture(tf.float32, tf.float32) == ON_CPU
    assert kernels.fuses_mixture(tf.bfloat16, tf.bfloat16) == ON_CPU
    assert not kernels.fuses_mixture(tf.float16, tf.float16)
    with kernels.tensorflow_ops_only():
        assert "MoeMixture" not in traced_op_types(head, inputs, False)
        assert not kernels.fuses_mixture(tf.float32, tf.float32)
    # Under XLA (--xla's compiled step) the head takes the compiled loop.
    assert "MoeMixture" not in traced_op_types(head, inputs, False, jit_compile=True)
    compiled = tf.function(lambda x: head(x), jit_compile=True)(inputs)
    np.testing.assert_allclose(compiled, head(inputs), rtol=1e-6, atol=1e-7)

    @tf.function
    def trained(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(head(x, training=True))
        return tape.gradient(loss, head.trainable_variables)

    graph = trained.get_concrete_function(inputs).graph
    assert ("MoeMixtureGrad" in {op.type for op in graph.get_operations()}) == ON_CPU


@pytest.mark.parametrize("dtype, through_kernel", [(tf.bfloat16, ON_CPU), (tf.float16, False)])
def test_half_precision_logits_are_mixed_in_float32(dtype, through_kernel):
    """bfloat16 logits go through the kernel as they are (no cast before
    it), computed in float32, and their gradients come back in bfloat16;
    float16 ones through the XLA loop. Both give the float32 mixture of the
    rounded logits."""
    gates, experts, upstream = logits(2, 9, 2, seed=11)
    gates, experts = (tf.cast(tf.cast(x, dtype), tf.float32).numpy() for x in (gates, experts))
    want = value_and_gradients(kernels._mixture, gates, experts, upstream, 2)

    def mixed(g, e, mixtures):
        return kernels.mixture_probabilities(tf.cast(g, dtype), tf.cast(e, dtype), mixtures)

    traced = tf.function(mixed).get_concrete_function(
        tf.TensorSpec([2, 27], tf.float32), tf.TensorSpec([2, 18], tf.float32), 2)
    fused = [op for op in traced.graph.get_operations() if op.type == "MoeMixture"]
    assert len(fused) == through_kernel
    assert all(x.dtype == dtype for op in fused for x in op.inputs)
    with tf.GradientTape() as tape:
        half = [tf.cast(tf.constant(x), dtype) for x in (gates, experts)]
        tape.watch(half)
        probabilities = kernels.mixture_probabilities(*half, 2)
        loss = tf.reduce_sum(probabilities * upstream)
    gradients = tape.gradient(loss, half)
    assert probabilities.dtype == tf.float32
    assert all(g.dtype == dtype for g in gradients)
    np.testing.assert_allclose(probabilities, want[0], rtol=1e-6, atol=1e-7)
    for got, expected in zip(gradients, want[1:]):
        assert relative_error(expected, tf.cast(got, tf.float32)) < 1e-2


@pytest.mark.parametrize("mixtures", [1, 2, 3, 6])
def test_bfloat16_logits_are_the_float32_kernels_rounded(mixtures):
    """The kernel on bfloat16 logits computes what it computes on their
    float32 values, bit for bit, and rounds the gradients as TensorFlow's
    cast does: across its blocks, for the unrolled strides and the plain
    loops."""
    gates, experts, upstream = logits(3, 301, mixtures, seed=20 + mixtures)
    half = [tf.cast(x, tf.bfloat16) for x in (gates, experts)]
    wide = [tf.cast(x, tf.float32).numpy() for x in half]
    fused = value_and_gradients(kernel, *wide, upstream, mixtures)
    with tf.GradientTape() as tape:
        tape.watch(half)
        probabilities = kernel(*half, mixtures)
        loss = tf.reduce_sum(probabilities * upstream)
    gradients = tape.gradient(loss, half)
    np.testing.assert_array_equal(probabilities, fused[0])
    for got, expected in zip(gradients, fused[1:]):
        assert got.dtype == tf.bfloat16
        np.testing.assert_array_equal(got, tf.cast(tf.constant(expected), tf.bfloat16))


def test_bfloat16_gradients_round_to_nearest_even():
    """With one mixture, gates of 0 and an expert of 0 (g = s = 1/2), each
    class's gradients are exactly d / 8 (the expert's and the first gate's)
    and -d / 8: values halfway between two bfloat16 numbers round to the
    even one, as TensorFlow's cast rounds them, and NaN stays NaN."""
    halfway = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)]  # to 1, 1 + 2**-6, -1
    values = np.array(halfway + [1 + 2**-9, 1 + 2**-8 + 2**-20, 3e37, np.nan], np.float32)
    ops = loading.load("moe_mixture")
    classes = len(values)
    gates_grad, experts_grad = ops.moe_mixture_grad(
        tf.zeros([1, 2 * classes], tf.bfloat16), tf.zeros([1, classes], tf.bfloat16),
        tf.constant(8 * values[None]), num_mixtures=1)
    # Compared in float32, which holds every bfloat16 exactly and whose NaNs
    # NumPy's comparison knows.
    expected = tf.cast(tf.cast(tf.constant(values), tf.bfloat16), tf.float32).numpy()
    np.testing.assert_array_equal(expected[:3], [1, 1 + 2**-6, -1])
    for got, want in [(experts_grad[0], expected), (gates_grad[0, 0::2], expected),
                      (gates_grad[0, 1::2], -expected)]:
        assert got.dtype == tf.bfloat16
        np.testing.assert_array_equal(tf.cast(got, tf.float32).numpy(), want)


def test_logits_of_two_dtypes_are_mixed_in_float32():
    """bfloat16 gates with float32 experts go to the kernel as float32,
    each gradient in its logits' dtype."""
    gates, experts, upstream = logits(2, 4, 2, seed=3)
    pair = [tf.cast(tf.constant(gates), tf.bfloat16), tf.constant(experts)]
    with tf.GradientTape() as tape:
        tape.watch(pair)
        probabilities = kernels.mixture_probabilities(*pair, 2)
        loss = tf.reduce_sum(probabilities * upstream)
    gradients = tape.gradient(loss, pair)
    assert [g.dtype for g in gradients] == [tf.bfloat16, tf.float32]
    want = value_and_gradients(kernels._mixture, tf.cast(pair[0], tf.float32).numpy(), experts,
                               upstream, 2)
    np.testing.assert_allclose(probabilities, want[0], rtol=1e-6, atol=1e-7)
