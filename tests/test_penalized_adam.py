"""Adam on an L2-penalized weight from the parts of its gradient
(training.penalized_adam) and the kernels under it (native.row_block_adam):
TF1's update of the gradient TensorFlow's ops make, bit for bit given the
clipping scale, without making that gradient."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import train_small_moe

from youtube8m_willow.native import row_block_adam
from youtube8m_willow.training import l2_gradient, penalized_adam, updates

HYPER = dict(beta1_power=0.9 ** 3, beta2_power=0.999 ** 3, lr=0.01, beta1=0.9, beta2=0.999,
             epsilon=1e-8)


def _hyper():
    return {name: tf.constant(value, tf.float32) for name, value in HYPER.items()}


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("l2, scale", [(0.0, 1.0), (0.05, 1.0), (0.05, 0.37), (0.0, 0.37)])
def test_kernel_is_tf1_adam_of_the_penalized_scaled_gradient(dtype, l2, scale):
    """``RowBlockApplyAdam`` over all rows with ``l2`` and ``scale`` is
    ``ResourceApplyAdam`` of ``(float32(grad) + l2 * var) * scale`` made by
    TensorFlow's separate ops, bit for bit (the term and the product left
    out where they are 0 and 1, as the whole-gradient path leaves them)."""
    rng = np.random.default_rng(0)
    shape = (70, 48)
    var, m, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    v = np.abs(v)
    grad = tf.cast(rng.standard_normal(shape).astype(np.float32), dtype)
    with tf.device("CPU:0"):
        kernel = [tf.Variable(a) for a in (var, m, v)]
        reference = [tf.Variable(a) for a in (var, m, v)]
    row_block_adam.apply(*(k.handle for k in kernel), grad, 0, l2=l2, scale=scale, **_hyper())
    whole = tf.cast(grad, tf.float32)
    if l2:
        whole = whole + tf.constant(l2) * reference[0]
    if scale != 1.0:
        whole = whole * tf.constant(scale)
    tf.raw_ops.ResourceApplyAdam(var=reference[0].handle, m=reference[1].handle,
                                 v=reference[2].handle, grad=whole, use_locking=False,
                                 **_hyper())
    for after, expected, before in zip(kernel, reference, (var, m, v)):
        np.testing.assert_array_equal(after.numpy(), expected.numpy())
        assert not np.array_equal(after.numpy(), before)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_squared_norm_is_the_penalized_gradients(dtype):
    """``PenalizedSquaredNorm`` is the float64 sum of the squares of the
    float32 terms ``grad + l2 * weight`` (to 1e-12), and ``l2_loss``'s norm
    of that gradient to float32 rounding."""
    rng = np.random.default_rng(1)
    grad = tf.cast(rng.standard_normal((300, 70)).astype(np.float32), dtype)
    weight = rng.standard_normal((300, 70)).astype(np.float32)
    terms = tf.cast(grad, tf.float32).numpy() + np.float32(0.2) * weight
    squared = float(row_block_adam.squared_norm(grad, tf.constant(weight), 0.2))
    expected = np.sum(terms.astype(np.float64) ** 2)
    assert abs(squared - expected) <= 1e-12 * expected
    assert abs(squared - 2.0 * float(tf.nn.l2_loss(terms))) <= 1e-6 * expected


def test_squared_norm_rejects_a_weight_of_another_shape():
    with pytest.raises(tf.errors.InvalidArgumentError, match="grad and weight must have one shape"):
        row_block_adam.squared_norm(tf.zeros([4, 5]), tf.zeros([5, 4]), 0.1)


def train(monkeypatch, penalized: bool, clip_norm: float, precision: str = "float32",
          steps: int = 3):
    """The weights of a small MoE with an L2 term on its gates and experts
    (each through ``l2_gradient``'s compiled pass) after ``steps`` steps,
    with or without ``penalized_adam``; and how many updates took it."""
    monkeypatch.setattr(l2_gradient, "FUSED_MIN_ELEMENTS", 400)
    taken = []
    if penalized:
        original = penalized_adam.PenalizedGradient.apply
        monkeypatch.setattr(penalized_adam.PenalizedGradient, "apply",
                            lambda *a, **k: taken.append(1) or original(*a, **k))
    else:
        monkeypatch.setattr(penalized_adam, "parts", lambda gradient: None)
    # The large-gradient paths' threshold as it is: these weights stay below it.
    weights = train_small_moe(monkeypatch, updates.LARGE_GRADIENT_ELEMENTS, steps, moe_l2=0.05,
                              clip_gradient_norm=clip_norm, precision=precision,
                              regularization_penalty=3.0)
    return weights, len(taken)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("clip_norm", [0.0, 0.05], ids=["unclipped", "clipped"])
def test_training_with_the_parts_is_training_with_the_whole_gradient(monkeypatch, precision,
                                                                     clip_norm):
    """Three steps of the MoE's gates and experts (``[40, 30]`` and
    ``[40, 20]``, L2-penalized) through the kernels give the weights the
    whole-gradient path gives, to 1e-5 of each weight's size (that path's
    compiled sum may fuse the multiply and the add: a few ulps; clipped,
    the norms differ in the last digits too). Both weights took the
    kernels, once per trace."""
    with_parts, taken = train(monkeypatch, True, clip_norm, precision)
    whole, _ = train(monkeypatch, False, clip_norm, precision)
    assert taken == 2
    for got, want in zip(with_parts, whole):
        assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_only_graph_matrices_with_the_kernels_built_take_the_parts(monkeypatch):
    """A matrix's gradient from the compiled pass, in a graph: its parts. A
    vector's, one the tape made, an eager one, or any without the kernels:
    None (the whole-gradient path)."""
    matrix = tf.Variable(tf.ones([30, 40]))
    vector = tf.Variable(tf.ones([1200]))
    found = {}

    @tf.function
    def trace(gradient):
        summed = l2_gradient._compiled_plus_scaled_weight(gradient, matrix.value(),
                                                          tf.constant(0.1))
        found["matrix"] = penalized_adam.parts(summed)
        found["plain"] = penalized_adam.parts(gradient * 2.0)
        found["vector"] = penalized_adam.parts(l2_gradient._compiled_plus_scaled_weight(
            tf.ones([1200]), vector.value(), tf.constant(0.1)))
        return summed

    trace(tf.ones([30, 40]))
    assert [tuple(t.shape) for t in found["matrix"]] == [(30, 40), (30, 40), ()]
    assert found["plain"] is None and found["vector"] is None
    assert penalized_adam.parts(l2_gradient._compiled_plus_scaled_weight(
        tf.ones([30, 40]), matrix.value(), tf.constant(0.1))) is None  # eager
    monkeypatch.setattr(row_block_adam, "available", lambda: False)
    tf.function(trace.python_function)(tf.ones([30, 40]))
    assert found["matrix"] is None
