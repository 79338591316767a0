"""Adam on an L2-penalized weight from the rest of its gradient.

Such a weight's gradient is ``g + c * w``: the tape's gradient ``g`` of the
rest of the objective (float32, or the bfloat16 tensor of a bfloat16
matmul) and the penalty's ``c * w`` (``training.l2_gradient``). Made whole,
the update reads it three times more than it needs: one pass writes the sum,
``l2_loss`` reads it for the clipping norm, the clipping multiplies it (a
read and a write) and Adam reads it. For the Model Garden comparison's MoE
weights (``[2048, 19310]`` and ``[2048, 15448]``, 71M parameters) that is
most of the step's memory traffic besides Adam's own.

Here, for a weight of at least ``l2_gradient.FUSED_MIN_ELEMENTS`` with such
a term, two kernels of ``native.row_block_adam`` read ``g`` and ``w``
instead:

- ``PenalizedSquaredNorm``: the squared norm of ``g + c * w`` (each term as
  float32, summed in float64), for the clipping scale;
- ``RowBlockApplyAdam`` over all rows: TF1's Adam from ``(g + c * w) *
  scale``, in place.

The update is that of TensorFlow's separate ops (``c * w`` added, then the
product with the scale) bit for bit, given the scale; the scale itself
differs from ``l2_loss``'s in the last digits, and only when clipping. The
compiled pass that would add the term fuses the multiply and the add where
XLA chooses to: a few ulps from both. Only on a machine without a GPU (the
kernels are the CPU's), with the kernels built for this CPU, for matrices, in the
in-place Adam update without float16 loss scaling. Only a gradient that is
still the compiled pass's output takes it: one summed over replicas comes
out of the all-reduce instead, and keeps the whole-gradient path.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from youtube8m_willow.native import row_block_adam
from youtube8m_willow.training import l2_gradient
from youtube8m_willow.training.gradient_forms import GradientForm, clip_scale


@dataclass(frozen=True)
class PenalizedGradient(GradientForm):
    """A weight's gradient ``value + factor * weight`` as its parts, and the
    factor its clipping multiplies it by (1 when within the norm)."""

    value: tf.Tensor
    weight: tf.Tensor
    factor: tf.Tensor
    scale: tf.Tensor

    def apply(self, var, m, v, **hyper) -> None:
        """TF1's Adam on the resources ``var``, ``m``, ``v``
        (``tf.raw_ops.ResourceApplyAdam``'s hyperparameters), in one pass.
        The kernel reads the term's ``w`` from ``var`` itself, as the step
        read it for ``weight``: nothing writes a weight between its reads and
        its update."""
        row_block_adam.apply(var, m, v, self.value, 0, l2=self.factor, scale=self.scale,
                             **hyper)


def parts(gradient):
    """``(value, weight, factor)`` of a matrix's gradient made by
    ``l2_gradient``'s compiled pass, where the kernels run; else None."""
    found = l2_gradient.penalized_parts(gradient)
    if found is None or found[1].shape.rank != 2:
        return None
    if not row_block_adam.available():
        return None
    return found


def clipped(value, weight, factor, clip_norm: float) -> PenalizedGradient:
    """The parts with the scale of ``clip_by_norm(value + factor * weight,
    clip_norm)``: ``c / max(|g|, c)`` (1 without clipping)."""
    def norm():
        return tf.cast(tf.sqrt(row_block_adam.squared_norm(value, weight, factor)), tf.float32)

    return PenalizedGradient(value, weight, factor, clip_scale(clip_norm, norm))

