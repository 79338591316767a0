"""The ``RowBlockApplyAdam`` kernel (``row_block_adam.cc``), loaded once.

``apply(var, m, v, grad, start, **hyper)`` runs TF1's ApplyAdam on rows
``[start, start + len(grad))`` of the float32 matrix ``var`` and its slots
``m``, ``v`` (resource handles), in place, with ``ResourceApplyAdam``'s
hyperparameters: bit for bit what ``ResourceApplyAdam`` does to those rows.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.native.loading import load


def available() -> bool:
    return load("row_block_adam") is not None


def apply(var, m, v, grad, start, **hyper) -> None:
    load("row_block_adam").row_block_apply_adam(var=var, m=m, v=v, grad=grad,
                                                start=tf.cast(start, tf.int64), **hyper)
