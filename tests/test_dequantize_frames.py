"""The frames kept as bytes, dequantized in one kernel
(native.dequantize_frames, through data.parsing.dequantize_frames): the bits
of TensorFlow's ops, the gather of sampled positions, padding per feature,
errors, and TensorFlow's ops where the kernel may not run."""

import numpy as np
import pytest
import tensorflow as tf

from youtube8m_willow.data.parsing import dequantize_frames
from youtube8m_willow.native import dequantize_frames as kernel
from youtube8m_willow.native import loading

SIZES = (6, 3)
FRAMES = 30


def test_kernel_is_built():
    assert loading.load("dequantize_frames") is not None, (
        "the dequantize_frames kernel is not built for this CPU and TensorFlow: "
        "python -m youtube8m_willow.native.build")


def batch(seed=0):
    """Random bytes, every value of them in the first video's frames (all
    real), and each feature with frame counts of its own: a video without
    frames, one whose audio ends first, one with a few."""
    rng = np.random.default_rng(seed)
    video_matrix = rng.integers(0, 256, (4, FRAMES, sum(SIZES)), dtype=np.uint8)
    video_matrix[0].flat[:256] = np.arange(256, dtype=np.uint8)
    counts = np.array([[FRAMES, FRAMES], [0, 0], [5, 2], [3, 3]], np.int32)
    return tf.constant(video_matrix), tf.constant(counts)


def both_paths(monkeypatch, *args, **kwargs):
    """``dequantize_frames`` through the kernel (which it must call once),
    then through TensorFlow's ops."""
    calls, dequantize = [], kernel.dequantize
    with monkeypatch.context() as patch:
        patch.setattr(kernel, "dequantize", lambda *a, **k: calls.append(1) or dequantize(*a, **k))
        fused = dequantize_frames(*args, **kwargs)
    assert len(calls) == 1
    with monkeypatch.context() as patch:
        patch.setattr(kernel, "available", lambda: False)
        plain = dequantize_frames(*args, **kwargs)
    return fused.numpy(), plain.numpy()


def test_all_frames_are_tensorflows_bits(monkeypatch):
    """Every value bitwise TensorFlow's, and 0.0 past each feature's frames."""
    video_matrix, counts = batch()
    fused, plain = both_paths(monkeypatch, video_matrix, counts, SIZES)
    np.testing.assert_array_equal(fused.view(np.uint32), plain.view(np.uint32))
    assert not fused[1].any() and not fused[2, 2:, 6:].any() and fused[2, 1, 6:].all()


def test_sampled_positions_are_gathered_with_their_padding(monkeypatch):
    """Positions repeated, out of order and past a video's frames: the bytes
    at them, zero where the position is padding."""
    video_matrix, counts = batch()
    positions = tf.constant([[29, 0, 0, 3], [0, 1, 2, 3], [4, 1, 5, 1], [2, 2, 6, 0]], tf.int32)
    fused, plain = both_paths(monkeypatch, video_matrix, counts, SIZES, positions)
    assert fused.shape == (4, 4, sum(SIZES))
    np.testing.assert_array_equal(fused.view(np.uint32), plain.view(np.uint32))
    np.testing.assert_array_equal(fused[0, 1], fused[0, 2])


def test_an_empty_batch_gives_no_frames(monkeypatch):
    video_matrix, counts = batch()
    fused, plain = both_paths(monkeypatch, video_matrix[:0], counts[:0], SIZES)
    assert fused.shape == plain.shape == (0, FRAMES, sum(SIZES))


def test_kernel_rejects_bad_positions_and_shapes():
    video_matrix, counts = batch()
    table = tf.zeros([256])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"positions\[1, 0\] = 30 is not in \[0, 30\)"):
        kernel.dequantize(video_matrix, counts, SIZES, table, tf.constant([[0], [30], [0], [0]]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"bytes must be \[videos, frames, 9\]"):
        kernel.dequantize(video_matrix[:, :, :8], counts, SIZES, table)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"feature_frames must be \[4, 2\]"):
        kernel.dequantize(video_matrix, counts[:, :1], SIZES, table)


def test_tensorflows_ops_where_the_kernel_may_not_run():
    """Not in a graph for export, nor under XLA (which runs TensorFlow's ops:
    XLA's own arithmetic for them rounds some values an ulp apart)."""
    video_matrix, counts = batch()
    assert kernel.available() == (not tf.config.list_logical_devices("GPU"))
    with loading.tensorflow_ops_only():
        assert not kernel.available()
    traced = tf.function(lambda m, c: dequantize_frames(m, c, SIZES), jit_compile=True)
    graph = traced.get_concrete_function(video_matrix, counts).graph
    assert "DequantizeFrames" not in {op.type for op in graph.get_operations()}
    np.testing.assert_allclose(traced(video_matrix, counts),
                               dequantize_frames(video_matrix, counts, SIZES), rtol=0, atol=3e-7)
