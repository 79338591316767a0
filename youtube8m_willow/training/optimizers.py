"""The original's optimizers and learning-rate schedule on Keras 3."""

from __future__ import annotations

import keras
import tensorflow as tf

from youtube8m_willow.training.tf1_optimizers import RULES, TF1Optimizer


@keras.saving.register_keras_serializable(package="youtube8m_willow")
class StaircaseExampleDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``base * decay ** floor(step * batch_size / decay_examples)``.

    The starter code decays by examples seen, not steps, so the schedule does
    not change with the batch size. ``step`` is the global step before the
    update (TF1's ``exponential_decay(..., staircase=True)``).
    """

    def __init__(self, base_learning_rate: float, decay: float, decay_examples: float,
                 batch_size: int):
        self.base_learning_rate = float(base_learning_rate)
        self.decay = float(decay)
        self.decay_examples = float(decay_examples)
        self.batch_size = int(batch_size)

    def __call__(self, step):
        examples = tf.cast(step, tf.float32) * float(self.batch_size)
        periods = tf.floor(examples / self.decay_examples)
        return self.base_learning_rate * tf.pow(self.decay, periods)

    def get_config(self):
        return {"base_learning_rate": self.base_learning_rate, "decay": self.decay,
                "decay_examples": self.decay_examples, "batch_size": self.batch_size}


def _adam(lr, **clip):
    # TF1's AdamOptimizer constants (Keras' default epsilon is 1e-7).
    return keras.optimizers.Adam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8, **clip)


def optimizer_names() -> list[str]:
    return sorted(["AdamOptimizer", *RULES])


def create_optimizer(name: str, learning_rate, clip_gradient_norm: float = 0.0):
    """The optimizer of a TF1 class name, with TF1's defaults and slots.

    AdamOptimizer is Keras' Adam with TF1's constants (and TF1's fused kernel
    in the trainer); every other name is a ``TF1Optimizer`` running TF1's own
    kernel (``training.tf1_optimizers``). Gradients are clipped tensor by
    tensor (``clipnorm``), as the starter's ``clip_gradient_norms`` did; 0
    disables clipping. MomentumOptimizer, which the original could not build
    without a momentum, uses 0.9.
    """
    if name not in optimizer_names():
        raise ValueError(f"unknown --optimizer={name!r}; valid optimizers: "
                         f"{', '.join(optimizer_names())}")
    clip = {"clipnorm": clip_gradient_norm} if clip_gradient_norm > 0 else {}
    if name == "AdamOptimizer":
        return _adam(learning_rate, **clip)
    return TF1Optimizer(name, learning_rate, **clip)
