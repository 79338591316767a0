"""The ``RowBlockApplyAdam`` and ``PenalizedSquaredNorm`` kernels
(``row_block_adam.cc``).

``apply(var, m, v, grad, start, l2=0, scale=1, **hyper)`` runs TF1's
ApplyAdam on rows ``[start, start + len(grad))`` of the float32 matrix
``var`` and its slots ``m``, ``v`` (resource handles), in place, with
``ResourceApplyAdam``'s hyperparameters, from the gradient ``(grad + l2 *
var) * scale`` (``grad`` float32 or bfloat16): bit for bit what
``ResourceApplyAdam`` does to those rows with that gradient made by
TensorFlow's separate ops. ``squared_norm(grad, weight, l2)`` is
``sum((grad + l2 * weight) ** 2)`` in float64.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.native.loading import load, runs_here


def available() -> bool:
    """Loaded, and a kernel may run here: no GPU, not under XLA, not for an
    export (``loading.runs_here``)."""
    return runs_here("row_block_adam")


def apply(var, m, v, grad, start, l2=0.0, scale=1.0, **hyper) -> None:
    load("row_block_adam").row_block_apply_adam(
        var=var, m=m, v=v, grad=grad, start=tf.cast(start, tf.int64),
        l2=tf.cast(l2, tf.float32), scale=tf.cast(scale, tf.float32), **hyper)


def squared_norm(grad, weight, l2) -> tf.Tensor:
    return load("row_block_adam").penalized_squared_norm(grad=grad, weight=weight,
                                                          l2=tf.cast(l2, tf.float32))
