"""Adam from a weight's bfloat16 gradient (``--precision=bfloat16``).

Under mixed precision a float32 weight is cast to bfloat16 for its matmul,
and its gradient is computed in bfloat16, then cast back to float32 for the
update. For Gated NetVLAD's hidden layer that float32 copy is 1.1 GB (the
bfloat16 gradient 0.57 GB), and the update reads it three times: for its
clipping norm, to scale it, and in Adam.

Here a large weight's update reads the bfloat16 gradient instead, and the
float32 copy is never made:

- the clipping norm: TensorFlow's ``L2Loss`` over row blocks, each cast to
  float32 on its own (a block at a time, not the whole copy);
- then one XLA-compiled pass casts the gradient, scales it and applies TF1's
  Adam formula (``training.updates.apply_adam``) to the weight and both
  slots in place.

A weight with an L2 term (the MoE's, ``--moe_l2``) has the gradient
``float32(bfloat16 gradient) + c * weight``, an ``AddN``: it is updated the
same way, the term computed inside the norm's blocks and the compiled pass
from the weight itself (``l2_term``).

Only under bfloat16, and only for weights of at least
``updates.LARGE_GRADIENT_ELEMENTS``: float32 training keeps TF1's own kernel,
bit for bit the original's.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

# The row blocks the norm is taken over: each one cast to float32 alone.
NORM_BLOCKS = 8


@dataclass(frozen=True)
class Bfloat16Gradient:
    """A float32 weight's gradient as the bfloat16 tensor it was cast from,
    the factor its clipping multiplies it by (1 when within the norm), and
    the scalar ``decay`` of an L2 term ``decay * weight`` added to the cast
    (None without one)."""

    value: tf.Tensor
    scale: tf.Tensor
    decay: tf.Tensor | None = None


def bfloat16_source(gradient, min_elements: int):
    """The bfloat16 tensor that a float32 ``gradient`` of at least
    ``min_elements`` is a cast of, alone or plus an L2 term (``l2_term``),
    in a graph; else None."""
    if gradient is None or tf.executing_eagerly() or gradient.dtype != tf.float32:
        return None
    if (gradient.shape.num_elements() or 0) < min_elements:
        return None
    cast = _cast_term(gradient)
    if cast is None:
        return None
    source = cast.op.inputs[0]
    return source if source.dtype == tf.bfloat16 else None


def _cast_term(gradient):
    """``gradient`` if it is a Cast; its Cast term if it is the AddN of a Cast
    and an L2 term; else None."""
    if gradient.op.type == "Cast":
        return gradient
    if gradient.op.type != "AddN" or len(gradient.op.inputs) != 2:
        return None
    first, second = gradient.op.inputs
    for cast, other in ((first, second), (second, first)):
        if cast.op.type == "Cast" and _decay_and_weight(other) is not None:
            return cast
    return None


def l2_term(gradient):
    """``(decay, weight)`` of a gradient that is ``cast + decay * weight``
    (``weight`` a read of a variable, ``decay`` a scalar), else None."""
    if gradient.op.type != "AddN":
        return None
    found = [_decay_and_weight(term) for term in gradient.op.inputs]
    return next((pair for pair in found if pair is not None), None)


def _decay_and_weight(term):
    if term.op.type != "Mul":
        return None
    first, second = term.op.inputs
    for weight, decay in ((first, second), (second, first)):
        if (weight.op.type == "ReadVariableOp" and decay.shape.rank == 0
                and weight.shape == term.shape):
            return decay, weight
    return None


def clipped(value: tf.Tensor, clip_norm: float, l2=None) -> Bfloat16Gradient:
    """``value`` (bfloat16) with the scale of ``clip_by_norm(g, clip_norm)``,
    ``g = float32(value)`` (plus ``decay * weight`` with ``l2``, a pair of
    ``l2_term``): ``c / max(|g|, c)`` (1 without clipping)."""
    decay, weight = l2 if l2 is not None else (None, None)
    if clip_norm <= 0:
        return Bfloat16Gradient(value, tf.constant(1.0), decay)
    norm = tf.sqrt(2.0 * _blockwise_l2_loss(value, decay, weight))
    return Bfloat16Gradient(value, clip_norm / tf.maximum(norm, clip_norm), decay)


def _blockwise_l2_loss(value: tf.Tensor, decay=None, weight=None) -> tf.Tensor:
    """``l2_loss(float32(value) [+ decay * weight])`` summed over row blocks."""
    rows = value.shape[0]
    blocks = NORM_BLOCKS if value.shape.rank and rows and rows % NORM_BLOCKS == 0 else 1
    values = tf.split(value, blocks)
    weights = tf.split(weight, blocks) if weight is not None else [None] * blocks
    return tf.add_n([tf.nn.l2_loss(_float32_gradient(block, decay, weight_block))
                     for block, weight_block in zip(values, weights)])


def _float32_gradient(value, decay, weight):
    """The float32 gradient: the cast, plus the L2 term where there is one."""
    gradient = tf.cast(value, tf.float32)
    return gradient if decay is None else decay * weight + gradient


@tf.function(jit_compile=True)
def _adam_pass(var, m, v, value, scale, decay, alpha, beta1, beta2, epsilon):
    """TF1's ApplyAdam on the resources ``var``, ``m``, ``v`` with the
    gradient ``(float32(value) [+ decay * var]) * scale``, in one compiled
    pass (``decay`` None: no L2 term)."""
    read = lambda handle: tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32)
    gradient = _float32_gradient(value, decay, None if decay is None else read(var)) * scale
    new_m = read(m) + (gradient - read(m)) * (1.0 - beta1)
    new_v = read(v) + (tf.square(gradient) - read(v)) * (1.0 - beta2)
    new_var = read(var) - (new_m * alpha) / (tf.sqrt(new_v) + epsilon)
    tf.raw_ops.AssignVariableOp(resource=m, value=new_m)
    tf.raw_ops.AssignVariableOp(resource=v, value=new_v)
    tf.raw_ops.AssignVariableOp(resource=var, value=new_var)


def apply(gradient: Bfloat16Gradient, var, m, v, *, beta1_power, beta2_power, lr, beta1,
          beta2, epsilon) -> None:
    """One Adam step of the resources ``var``, ``m``, ``v`` from ``gradient``,
    with ``tf.raw_ops.ResourceApplyAdam``'s arguments."""
    alpha = lr * tf.sqrt(1.0 - beta2_power) / (1.0 - beta1_power)
    _adam_pass(var, m, v, gradient.value, gradient.scale, gradient.decay, alpha, beta1, beta2,
               epsilon)
