"""Label losses of the starter code, selected by ``--label_loss``.

Each loss maps ``(predictions [B, V] probabilities, labels [B, V] 0/1)`` to
a scalar: summed over classes, averaged over the batch.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from youtube8m_willow.errors import ConfigError
from youtube8m_willow.models.registry import model_class


class CrossEntropyLoss:
    """Weighted binary cross entropy (WILLOW's, alpha=0.5 is the starter's).

    ``-2 * (alpha * y * log(p + eps) + (1 - alpha) * (1 - y) * log(1 - p + eps))``
    with ``eps = 1e-5`` (the NeXtVLAD fork's: 1e-8).
    """

    def __init__(self, alpha: float = 0.5, epsilon: float = 1e-5):
        self.alpha = float(alpha)
        self.epsilon = float(epsilon)

    def __call__(self, predictions, labels):
        epsilon = self.epsilon
        labels = tf.cast(labels, tf.float32)
        # max(1 - p, 0) is 1 - p (p <= 1); it keeps TensorFlow's graph
        # optimizer from folding (1 - p) + eps into (1 + eps) - p inside a
        # tf.function, where float32 rounds 1 + 1e-8 to 1: a prediction
        # saturated at 1 then gave log(0), NaN for a positive label (0 * -inf).
        complement = tf.maximum(1.0 - predictions, 0.0)
        loss = 2.0 * (self.alpha * labels * tf.math.log(predictions + epsilon)
                      + (1.0 - self.alpha) * (1.0 - labels) * tf.math.log(complement + epsilon))
        return tf.reduce_mean(tf.reduce_sum(-loss, axis=1))


class HingeLoss:
    """``sum_v max(0, b - (2y - 1) * p)`` with ``b = 1``, mean over the batch."""

    def __init__(self, b: float = 1.0, **unused):
        self.b = float(b)

    def __call__(self, predictions, labels):
        labels = tf.cast(labels, tf.float32)
        signs = 2.0 * labels - 1.0
        hinge = tf.maximum(0.0, self.b - signs * predictions)
        return tf.reduce_mean(tf.reduce_sum(hinge, axis=1))


class SoftmaxLoss:
    """Softmax cross entropy against labels normalized to sum to 1."""

    def __init__(self, **unused):
        pass

    def __call__(self, predictions, labels):
        epsilon = 1e-7
        labels = tf.cast(labels, tf.float32)
        norm_labels = labels / tf.maximum(tf.reduce_sum(labels, axis=1, keepdims=True), epsilon)
        log_softmax = tf.nn.log_softmax(predictions, axis=1)
        return tf.reduce_mean(-tf.reduce_sum(norm_labels * log_softmax, axis=1))


_LOSSES: dict[str, Callable[..., Callable]] = {
    "CrossEntropyLoss": CrossEntropyLoss,
    "HingeLoss": lambda alpha=0.5, epsilon=None: HingeLoss(),
    "SoftmaxLoss": lambda alpha=0.5, epsilon=None: SoftmaxLoss(),
}


def loss_names() -> list[str]:
    return sorted(_LOSSES)


def create_loss(name: str, alpha: float = 0.5, model: str | None = None):
    """The loss named by ``--label_loss`` as the original code of ``model``
    (a --model name) computed it: CrossEntropyLoss's epsilon is the model's
    ``cross_entropy_epsilon`` where it has one (the NeXtVLAD fork's 1e-8).
    An unknown name lists the valid ones."""
    if name not in _LOSSES:
        raise ConfigError(f"unknown --label_loss={name!r}; valid losses: {', '.join(loss_names())}")
    epsilon = model_class(model).cross_entropy_epsilon if model else None
    return _LOSSES[name](alpha=alpha, **({"epsilon": epsilon} if epsilon is not None else {}))
