"""The ``DequantizeFrames`` kernel (``dequantize_frames.cc``): the float
frames of a batch kept as uint8 bytes, in one pass.

``dequantize(video_matrix, feature_frames, feature_sizes, table, positions)``
gives ``table[byte]`` for each byte of a frame up to its feature's last
frame and 0.0 past it, gathering the frames at ``positions`` (``[B, N]``)
where given. ``table``: the 256 dequantized values, made by TensorFlow's own
op, so the floats are its bits. The frames are data: no gradient.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.native.loading import load, runs_here


def available() -> bool:
    """Loaded, and a kernel may run here: no GPU, not under XLA, not for an
    export (``loading.runs_here``)."""
    return runs_here("dequantize_frames")


def dequantize(video_matrix, feature_frames, feature_sizes, table, positions=None):
    if positions is None:
        positions = tf.zeros([0], tf.int32)
    return load("dequantize_frames").dequantize_frames(
        video_matrix, tf.cast(feature_frames, tf.int32), tf.cast(positions, tf.int32), table,
        feature_sizes=[int(size) for size in feature_sizes])


tf.no_gradient("DequantizeFrames")
