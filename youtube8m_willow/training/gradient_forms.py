"""The forms a large gradient takes between its clipping and Adam.

``updates.clip_each`` hands such a gradient on as the parts its update
reads instead of a clipped float32 copy, with the factor its clipping
multiplies it by: ``bfloat16_adam.Bfloat16Gradient`` (its bfloat16 tensor),
``factored_adam.FactoredGradient`` (the two factors of a matmul gradient)
and ``penalized_adam.PenalizedGradient`` (``g`` and ``w`` of ``g + c * w``).
Each is a frozen dataclass of tensors that says what its update reads
(``tensors``) and applies TF1's Adam from its parts (``apply``), so
``updates`` treats them alike.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf


class GradientForm:
    """Base of the gradient forms: dataclasses whose fields are the tensors
    their update reads, the clipping ``scale`` among them."""

    def tensors(self) -> list[tf.Tensor]:
        """The tensors the update reads, in field order."""
        return [getattr(self, field.name) for field in dataclasses.fields(self)]

    def apply(self, var, m, v, **hyper) -> None:
        """TF1's Adam on the resources ``var``, ``m``, ``v`` from this
        gradient, with ``tf.raw_ops.ResourceApplyAdam``'s hyperparameters."""
        raise NotImplementedError


def clip_scale(clip_norm: float, norm: Callable[[], tf.Tensor]) -> tf.Tensor:
    """``clip_by_norm``'s factor ``c / max(|g|, c)`` (exactly 1 within the
    norm) from ``norm()`` (float32); 1 without clipping (``clip_norm`` 0:
    ``norm`` is not called, so the norm is not computed)."""
    if clip_norm <= 0:
        return tf.constant(1.0)
    return clip_norm / tf.maximum(norm(), clip_norm)
