"""Frame statistics pooling: the YouTube-8M paper's best video-level
representation, ``[mu; sigma; top-k]`` over a video's frames
(Abu-El-Haija et al., 2016, section 4.2.1)."""

from __future__ import annotations

import keras
import tensorflow as tf

from youtube8m_willow.layers.core import register


def _safe_sqrt(x):
    """``sqrt(x)`` whose gradient stays finite where ``x == 0``."""
    positive = x > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x))


@register
class FrameStatistics(keras.layers.Layer):
    """Pools each video's valid frames (the first ``num_frames``; padding never
    contributes) into per-dimension statistics:

    - mean over the valid frames (``D``);
    - population standard deviation (``D``);
    - the ``top_k`` largest values of each dimension, descending, laid out
      dimension-major (``k*D``: the k values of dimension 0 first); a video
      with fewer than ``k`` valid frames repeats its smallest value.

    A video with no valid frame gives zeros (no NaN).

    Args:
        top_k: number of largest values kept per dimension.

    Input: ``frames`` ``[B, T, D]`` and ``num_frames`` ``[B]``.
    Output: ``[B, (2 + top_k) * D]``.

    Example:
        >>> FrameStatistics(2)(tf.ones([1, 4, 3]), tf.constant([2])).shape
        TensorShape([1, 12])
    """

    def __init__(self, top_k: int = 5, **kwargs):
        super().__init__(**kwargs)
        if int(top_k) < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.top_k = int(top_k)

    def call(self, frames, num_frames):
        frames = tf.convert_to_tensor(frames)
        max_frames = tf.shape(frames)[1]
        num_frames = tf.minimum(tf.cast(num_frames, tf.int32), max_frames)
        valid = tf.sequence_mask(num_frames, max_frames)[:, :, None]
        mask = tf.cast(valid, frames.dtype)
        count = tf.cast(num_frames, frames.dtype)[:, None]
        mean = tf.math.divide_no_nan(tf.reduce_sum(frames * mask, 1), count)
        centered = (frames - mean[:, None, :]) * mask
        variance = tf.math.divide_no_nan(tf.reduce_sum(tf.square(centered), 1), count)
        top = self._top_values(frames, valid, num_frames)
        top = tf.reshape(top, [-1, frames.shape[-1] * self.top_k])
        return tf.concat([mean, _safe_sqrt(variance), top], 1)

    def _top_values(self, frames, valid, num_frames):
        """``[B, D, top_k]``: each dimension's largest valid values, descending."""
        lowest = tf.fill(tf.shape(frames), frames.dtype.min)
        candidates = tf.transpose(tf.where(valid, frames, lowest), perm=[0, 2, 1])
        available = tf.minimum(self.top_k, tf.shape(frames)[1])
        top = tf.math.top_k(candidates, k=available).values
        # Rank j reads rank min(j, num_frames - 1): short videos repeat their minimum.
        ranks = tf.minimum(tf.range(self.top_k)[None, :], tf.maximum(num_frames - 1, 0)[:, None])
        top = tf.gather(top, ranks, axis=2, batch_dims=1)
        return tf.where((num_frames > 0)[:, None, None], top, tf.zeros_like(top))

    def compute_output_shape(self, frames_shape, num_frames_shape=None):
        return (frames_shape[0], (2 + self.top_k) * frames_shape[-1])

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k}
