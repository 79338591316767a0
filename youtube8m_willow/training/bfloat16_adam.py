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

Only under bfloat16, and only for weights of at least
``updates.LARGE_GRADIENT_ELEMENTS`` whose gradient ``factored_adam`` does
not take (it takes Gated NetVLAD's hidden weight's on a machine without a
GPU, where its kernel is built): float32 training keeps TF1's own kernel,
bit for bit the original's.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from youtube8m_willow.training.gradient_forms import GradientForm, clip_scale

# The row blocks the norm is taken over: each one cast to float32 alone.
NORM_BLOCKS = 8


@dataclass(frozen=True)
class Bfloat16Gradient(GradientForm):
    """A float32 weight's gradient as the bfloat16 tensor it was cast from,
    and the factor its clipping multiplies it by (1 when within the norm)."""

    value: tf.Tensor
    scale: tf.Tensor

    def apply(self, var, m, v, *, beta1_power, beta2_power, lr, beta1, beta2,
              epsilon) -> None:
        """One Adam step of the resources ``var``, ``m``, ``v``, with
        ``tf.raw_ops.ResourceApplyAdam``'s arguments, in one compiled pass."""
        alpha = lr * tf.sqrt(1.0 - beta2_power) / (1.0 - beta1_power)
        _adam_pass(var, m, v, self.value, self.scale, alpha, beta1, beta2, epsilon)


def bfloat16_source(gradient, min_elements: int):
    """The bfloat16 tensor that a float32 ``gradient`` of at least
    ``min_elements`` is a cast of (in a graph), else None."""
    if gradient is None or tf.executing_eagerly() or gradient.dtype != tf.float32:
        return None
    if (gradient.shape.num_elements() or 0) < min_elements or gradient.op.type != "Cast":
        return None
    source = gradient.op.inputs[0]
    return source if source.dtype == tf.bfloat16 else None


def clipped(value: tf.Tensor, clip_norm: float) -> Bfloat16Gradient:
    """``value`` (bfloat16) with the scale of ``clip_by_norm(float32(value),
    clip_norm)``: ``c / max(|g|, c)`` (1 without clipping)."""
    return Bfloat16Gradient(
        value, clip_scale(clip_norm, lambda: tf.sqrt(2.0 * _blockwise_l2_loss(value))))


def _blockwise_l2_loss(value: tf.Tensor) -> tf.Tensor:
    """``l2_loss(float32(value))`` summed over row blocks."""
    rows = value.shape[0]
    blocks = NORM_BLOCKS if value.shape.rank and rows and rows % NORM_BLOCKS == 0 else 1
    return tf.add_n([tf.nn.l2_loss(tf.cast(block, tf.float32))
                     for block in tf.split(value, blocks)])


@tf.function(jit_compile=True, autograph=False)
def _adam_pass(var, m, v, value, scale, alpha, beta1, beta2, epsilon):
    """TF1's ApplyAdam on the resources ``var``, ``m``, ``v`` with the
    gradient ``float32(value) * scale``, in one compiled pass."""
    gradient = tf.cast(value, tf.float32) * scale
    read = lambda handle: tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32)
    new_m = read(m) + (gradient - read(m)) * (1.0 - beta1)
    new_v = read(v) + (tf.square(gradient) - read(v)) * (1.0 - beta2)
    new_var = read(var) - (new_m * alpha) / (tf.sqrt(new_v) + epsilon)
    tf.raw_ops.AssignVariableOp(resource=m, value=new_m)
    tf.raw_ops.AssignVariableOp(resource=v, value=new_v)
    tf.raw_ops.AssignVariableOp(resource=var, value=new_var)

