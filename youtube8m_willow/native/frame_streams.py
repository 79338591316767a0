"""The ``FrameStreams`` kernel (``frame_streams.cc``): the LF models' input
preparation.

``standardize(frames, sizes, l2_normalize, epsilon)`` (training) takes the
sampled frames ``[R, D]`` (float32), L2-normalizes each (TF1's
``l2_normalize``, where asked), standardizes every column with the rows'
moments (TF1's fused batch norm in training, without its affine map) and
cuts the columns into streams of ``sizes``. Returns ``(streams, mean,
variance)``, the variance Bessel-corrected as the fused batch norm reports
it. ``scale(frames, sizes, l2_normalize)`` (inference, where the moving
statistics' map is folded into the poolings) gives the streams of the
frames L2-normalized alone, in one pass. Gradient: none where the op
standardizes (training's frames are data, as on TensorFlow's path); without,
that of TensorFlow's L2 scaling and split (a model's input gradient in
inference, as the ops it replaces give).
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.native.loading import load, runs_here


def available() -> bool:
    """Loaded, and a kernel may run here: no GPU, not under XLA, not for an
    export (``loading.runs_here``)."""
    return runs_here("frame_streams")


def standardize(frames, sizes: list[int], l2_normalize: bool, epsilon: float):
    return _frame_streams(frames, sizes, l2_normalize, epsilon, True)


def scale(frames, sizes: list[int], l2_normalize: bool) -> list:
    streams, _, _ = _frame_streams(frames, sizes, l2_normalize, 0.0, False)
    return streams


def _frame_streams(frames, sizes: list[int], l2_normalize: bool, epsilon: float,
                   standardize_: bool):
    """The op: ``(streams as a list, mean, variance)``."""
    streams, mean, variance = load("frame_streams").frame_streams(
        frames, num_streams=len(sizes), stream_sizes=[int(s) for s in sizes],
        l2_normalize=l2_normalize, epsilon=epsilon, standardize=standardize_)
    return list(streams), mean, variance


@tf.RegisterGradient("FrameStreams")
def _frame_streams_gradient(op, *output_gradients):
    if op.get_attr("standardize"):
        return [None]
    frames, sizes = op.inputs[0], op.get_attr("stream_sizes")
    gradients = [tf.zeros_like(stream) if gradient is None else gradient
                 for stream, gradient in zip(op.outputs[:len(sizes)], output_gradients)]
    with tf.GradientTape() as tape:
        tape.watch(frames)
        rows = frames
        if op.get_attr("l2_normalize"):  # TF1's l2_normalize, as the op computes it
            squares = tf.reduce_sum(tf.square(frames), axis=1, keepdims=True)
            rows = frames * tf.math.rsqrt(tf.maximum(squares, 1e-12))
        streams = tf.split(rows, sizes, axis=1)
    return [tape.gradient(streams, frames, output_gradients=gradients)]
