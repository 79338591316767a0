"""Frame samplers (SPEC section 3): pick ``num_samples`` of each video's
``num_frames`` valid frames before pooling."""

from __future__ import annotations

import keras
import tensorflow as tf

from youtube8m_willow.layers.core import register

SAMPLING_METHODS = ("random", "sequence", "uniform")


def _uniform(shape, seed=None, sampling_seed=None):
    """U[0, 1) draws: stateless from ``sampling_seed`` (int [2]) when given,
    else TensorFlow's stateful op (seeded by ``seed``), as the original."""
    if sampling_seed is not None:
        return tf.random.stateless_uniform(shape, seed=tf.cast(sampling_seed, tf.int64))
    return tf.random.uniform(shape, seed=seed)


def random_indices(num_frames, num_samples: int, seed=None, sampling_seed=None):
    """``floor(u * num_frames)`` with u ~ U[0, 1): with replacement, unsorted."""
    batch = tf.shape(num_frames)[0]
    u = _uniform([batch, num_samples], seed, sampling_seed)
    frames = tf.cast(num_frames, tf.float32)[:, None]
    return tf.cast(u * frames, tf.int32)


def sequence_indices(num_frames, num_samples: int, seed=None, sampling_seed=None):
    """A random window of consecutive frames, clipped to the last valid one."""
    batch = tf.shape(num_frames)[0]
    num_frames = tf.cast(num_frames, tf.int32)
    starts_range = tf.cast(tf.maximum(num_frames - num_samples, 0) + 1, tf.float32)
    start = tf.cast(_uniform([batch], seed, sampling_seed) * starts_range, tf.int32)
    indices = start[:, None] + tf.range(num_samples)[None, :]
    return tf.minimum(indices, tf.maximum(num_frames - 1, 0)[:, None])


def uniform_indices(num_frames, num_samples: int, seed=None, sampling_seed=None):
    """Deterministic, evenly spread: ``floor(i * num_frames / num_samples)``."""
    steps = tf.range(num_samples, dtype=tf.int64)[None, :]
    frames = tf.cast(num_frames, tf.int64)[:, None]
    return tf.cast(steps * frames // num_samples, tf.int32)


_INDEXERS = {"random": random_indices, "sequence": sequence_indices,
             "uniform": uniform_indices}


def sample_frames(frames, num_frames, num_samples: int, method: str, seed=None,
                  sampling_seed=None):
    """Gathers ``[B, num_samples, D]`` frames from ``[B, T, D]`` (random
    methods: see ``_uniform`` for ``seed`` and ``sampling_seed``)."""
    if method not in _INDEXERS:
        raise ValueError(f"unknown frame sampling {method!r}; valid: {', '.join(SAMPLING_METHODS)}")
    indices = _INDEXERS[method](num_frames, num_samples, seed, sampling_seed)
    return tf.gather(frames, indices, batch_dims=1)


@register
class FrameSampler(keras.layers.Layer):
    """Samples ``num_samples`` frames per video, in training and inference
    alike (as the original did; use ``method="uniform"`` for determinism).

    Args:
        num_samples: frames kept per video (the original ``--iterations``).
        method: ``"random"``, ``"sequence"`` or ``"uniform"``.

    Input: ``frames`` ``[B, T, D]``, ``num_frames`` ``[B]`` and optionally
    ``sampling_seed`` (int ``[2]``: stateless draws, a function of it).
    Output: ``[B, num_samples, D]``.

    Example:
        >>> FrameSampler(4, "uniform")(tf.ones([2, 10, 3]), tf.constant([10, 5]))
    """

    def __init__(self, num_samples: int, method: str = "random", seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if method not in SAMPLING_METHODS:
            raise ValueError(f"unknown frame sampling {method!r}; valid: {', '.join(SAMPLING_METHODS)}")
        self.num_samples = int(num_samples)
        self.method = method
        self.seed = seed

    def call(self, frames, num_frames, sampling_seed=None):
        return sample_frames(frames, num_frames, self.num_samples, self.method, self.seed,
                             sampling_seed)

    def compute_output_shape(self, frames_shape, num_frames_shape=None):
        return (frames_shape[0], self.num_samples, frames_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_samples": self.num_samples, "method": self.method,
                "seed": self.seed}
