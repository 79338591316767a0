"""Frame statistics pooling: the YouTube-8M paper's best video-level
representation, ``[mu; sigma; top-k]`` over a video's frames
(Abu-El-Haija et al., 2016, section 4.2.1)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from youtube8m_willow.layers.core import divide_no_nan, register, sequence_mask


def _safe_sqrt(x):
    """``sqrt(x)`` whose gradient stays finite where ``x == 0``."""
    positive = x > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, x, ops.ones_like(x))),
                     ops.zeros_like(x))


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
        >>> tuple(FrameStatistics(2)(np.ones([1, 4, 3], "float32"), np.array([2])).shape)
        (1, 12)
    """

    def __init__(self, top_k: int = 5, **kwargs):
        super().__init__(**kwargs)
        if int(top_k) < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.top_k = int(top_k)

    def call(self, frames, num_frames):
        frames = ops.convert_to_tensor(frames)
        max_frames = ops.shape(frames)[1]
        num_frames = ops.minimum(ops.cast(num_frames, "int32"), max_frames)
        valid = sequence_mask(num_frames, max_frames)[:, :, None]
        mask = ops.cast(valid, frames.dtype)
        count = ops.cast(num_frames, frames.dtype)[:, None]
        mean = divide_no_nan(ops.sum(frames * mask, 1), count)
        centered = (frames - mean[:, None, :]) * mask
        variance = divide_no_nan(ops.sum(ops.square(centered), 1), count)
        top = self._top_values(frames, valid, num_frames)
        top = ops.reshape(top, (-1, frames.shape[-1] * self.top_k))
        return ops.concatenate([mean, _safe_sqrt(variance), top], 1)

    def _top_values(self, frames, valid, num_frames):
        """``[B, D, top_k]``: each dimension's largest valid values, descending."""
        lowest = ops.full_like(frames, np.finfo(keras.backend.standardize_dtype(frames.dtype)).min)
        candidates = ops.transpose(ops.where(valid, frames, lowest), (0, 2, 1))
        frames_known = frames.shape[1]
        available = (min(self.top_k, frames_known) if frames_known is not None
                     else ops.minimum(self.top_k, ops.shape(frames)[1]))  # a TF graph only
        top, _ = ops.top_k(candidates, k=available)
        # Rank j reads rank min(j, num_frames - 1): short videos repeat their minimum.
        ranks = ops.minimum(ops.arange(self.top_k, dtype="int32")[None, :],
                            ops.maximum(num_frames - 1, 0)[:, None])
        ranks = ops.broadcast_to(ranks[:, None, :], (ops.shape(top)[0], ops.shape(top)[1],
                                                     self.top_k))
        top = ops.take_along_axis(top, ranks, axis=2)
        return ops.where((num_frames > 0)[:, None, None], top, ops.zeros_like(top))

    def compute_output_shape(self, frames_shape, num_frames_shape=None):
        return (frames_shape[0], (2 + self.top_k) * frames_shape[-1])

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k}
