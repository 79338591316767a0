"""The gradient of slim's L2 penalties, added by the training step itself.

The objective's L2 term ``c * sum_i scale_i * sum(w_i ** 2) / 2`` has the
gradient ``c * scale_i * w_i`` for each penalized weight. Through the tape it
costs, per weight, a product the size of the weight and a sum with the
weight's other gradient (under bfloat16, with the float32 cast of that
gradient first): two or three passes, each writing a float32 tensor of the
weight's size. Here the step takes the tape's gradient of the rest of the
objective and adds the term itself: for a weight of at least
``FUSED_MIN_ELEMENTS``, one XLA-compiled pass reads the other gradient (its
bfloat16 tensor where it is a cast of one) and the weight, and writes the
sum. The values are the tape's up to rounding (XLA may fuse the multiply
and the add); the smaller weights' are the tape's ops.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from youtube8m_willow.layers.core import SlimL2
from youtube8m_willow.training import bfloat16_adam

# Weights this large get the compiled pass; the smaller ones add the term
# with TensorFlow's own ops (a pass over them costs less than a launch).
FUSED_MIN_ELEMENTS = 1 << 20


def slim_l2_scales(variables: Sequence, loss_count: int) -> list[float] | None:
    """Each variable's slim L2 scale (0 without a penalty), or None when the
    model's ``loss_count`` losses are not exactly those penalties (a
    regularizer of another kind, an activity regularizer, an added loss): the
    tape then differentiates the whole objective."""
    scales = []
    for variable in variables:
        regularizer = getattr(variable, "regularizer", None)
        if regularizer is not None and not isinstance(regularizer, SlimL2):
            return None
        scales.append(regularizer.scale if regularizer is not None else 0.0)
    if loss_count != sum(1 for scale in scales if scale):
        return None
    return scales


def plus_l2_terms(gradients: Sequence, variables: Sequence, scales: Sequence[float],
                  coefficient) -> list:
    """``gradient + coefficient * scale * w`` for each penalized weight
    (``coefficient``: the penalty's weight in the objective, times the loss
    scale where there is one); the other gradients as they are."""
    summed = []
    for gradient, variable, scale in zip(gradients, variables, scales):
        if scale:
            weight = tf.convert_to_tensor(variable.value)
            factor = tf.cast(coefficient, tf.float32) * scale
            gradient = _plus_scaled_weight(gradient, weight, factor)
        summed.append(gradient)
    return summed


def _plus_scaled_weight(gradient, weight, factor):
    if gradient is None:
        return factor * weight
    if (weight.shape.num_elements() or 0) < FUSED_MIN_ELEMENTS:
        return tf.cast(gradient, tf.float32) + factor * weight
    source = bfloat16_adam.bfloat16_source(gradient, FUSED_MIN_ELEMENTS)
    return _compiled_plus_scaled_weight(gradient if source is None else source, weight, factor)


@tf.function(jit_compile=True, autograph=False)
def _compiled_plus_scaled_weight(gradient, weight, factor):
    """``float32(gradient) + factor * weight`` in one pass."""
    return tf.cast(gradient, tf.float32) + factor * weight


def penalized_parts(gradient):
    """``(value, weight, factor)`` where ``gradient`` is the compiled pass's
    ``float32(value) + factor * weight`` (in a graph; ``value`` float32 or
    bfloat16), else None: an update that reads those instead need not make
    the sum (``training.penalized_adam``)."""
    if gradient is None or tf.executing_eagerly():
        return None
    op = gradient.op
    if op.type not in ("PartitionedCall", "StatefulPartitionedCall"):
        return None
    if _compiled_plus_scaled_weight.python_function.__name__ not in op.get_attr("f").name:
        return None
    return tuple(op.inputs)
