"""Adam on a large weight from its gradient's two factors, block by block.

A matmul's weight gradient is ``x^T g`` (``x``: the layer's input ``[B, F]``,
``g``: the gradient at its output ``[B, H]``). For Gated NetVLAD's hidden
layer that product is 278528 x 1024 floats, 1.1 GB made only to be read by
the clipping norm, the clipping multiply and Adam. Here the update never
makes it whole:

- the clipping norm comes from the factors, ``|x^T g|^2 = sum((x x^T) *
  (g g^T))``, with ``x x^T`` summed over column chunks of ``x`` (one
  ``[B, F] x [F, B]`` matmul runs at a fraction of the machine's rate);
- then, for each block of ``BLOCK_ROWS`` rows, ``x[:, rows]^T g`` (oneDNN's
  matmul), and TF1's Adam on those rows of the weight and its slots from
  the block times the clipping scale, in place (``native.row_block_adam``,
  which casts the block and multiplies it).

The same bits as the whole-gradient update when the gradient is within the
clipping norm: a row block of the matmul is those rows of the whole one, and
the kernel is TF1's formula. When it is clipped, the norm's last digits may
differ (its float32 sums run in another order: 2e-7 relative in the tests;
more where the Gram matrices' terms cancel), and so may the scale's.

Under bfloat16 the gradient is the float32 cast of a bfloat16 matmul: each
block is made in bfloat16 (the kernel casts it), and the norm is that of the product of
the bfloat16 factors (not of the product rounded to bfloat16, as
``bfloat16_adam``'s is: about 2^-9 apart).

For a gradient that is exactly such a matmul (no other term added: not a
weight with an L2 penalty, not one used twice) of at least
``updates.LARGE_GRADIENT_ELEMENTS``, with a batch small against the weight
(``MAX_BATCH_SHARE``: else the Gram matrices cost more than they save), in
a graph, on a machine without a GPU (the kernel is the CPU's), where the
kernel is built for this CPU; anything else keeps TensorFlow's path
(``training.updates``).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from youtube8m_willow.native import row_block_adam
from youtube8m_willow.training import bfloat16_adam
from youtube8m_willow.training.gradient_forms import GradientForm, clip_scale

# Rows of the weight updated at once: 4 MB blocks for 1024 columns, which
# stay in cache between the matmul that makes them and Adam.
BLOCK_ROWS = 1024
# Column chunks of x for x x^T (one [B, F] x [F, B] matmul: 70 ms for
# Gated NetVLAD's hidden layer; 64 batched chunks: 30 ms).
GRAM_CHUNKS = 64
# The factors' elements B (F + H) at most this share of the weight's F H:
# the Gram matrices' matmuls and copies grow with B, the saving does not.
MAX_BATCH_SHARE = 1 / 8


@dataclass(frozen=True)
class FactoredGradient(GradientForm):
    """A weight's gradient ``inputs^T upstream`` as its two factors, and the
    factor its clipping multiplies it by (1 when within the norm)."""

    inputs: tf.Tensor
    upstream: tf.Tensor
    scale: tf.Tensor

    def apply(self, var, m, v, **hyper) -> None:
        """TF1's Adam on the resources ``var``, ``m``, ``v`` (``[F, H]``), a
        block of rows at a time (``tf.raw_ops.ResourceApplyAdam``'s
        hyperparameters)."""
        for handle in (var, m, v):
            # A variable that a sparse op once read copies itself on every
            # read and would be copied whole for every block: dense from here on.
            tf.raw_ops.DisableCopyOnRead(resource=handle)
        columns_first = tf.transpose(self.inputs)  # [F, B]: each block's rows contiguous
        upstream, scale = self.upstream, self.scale
        rows = self.inputs.shape[1]
        block = min(BLOCK_ROWS, rows)

        def update(start, size):
            # The block as the matmul makes it (bfloat16 or float32): the
            # kernel casts it and multiplies it by the scale.
            block_gradient = tf.matmul(columns_first[start:start + size], upstream)
            row_block_adam.apply(var, m, v, block_gradient, start, scale=scale, **hyper)

        def body(index):
            update(index * block, block)
            return (index + 1,)

        full_blocks = rows // block
        tf.while_loop(lambda index: index < full_blocks, body, [tf.constant(0)],
                      parallel_iterations=1)
        if rows % block:
            # The last rows (the function's automatic control dependencies
            # order it after the loop: both update the same variables).
            update(full_blocks * block, rows % block)


def factors(gradient, min_elements: int):
    """``(x, g)`` where the float32 ``gradient`` of at least ``min_elements``
    is the matmul ``x^T g``, or the float32 cast of a bfloat16 one (in a
    graph, with the kernel built), else None."""
    if gradient is None or tf.executing_eagerly() or gradient.dtype != tf.float32:
        return None
    if (gradient.shape.num_elements() or 0) < min_elements:
        return None
    source = bfloat16_adam.bfloat16_source(gradient, min_elements)
    op = (gradient if source is None else source).op
    if op.type != "MatMul":
        return None
    if not op.get_attr("transpose_a") or op.get_attr("transpose_b"):
        return None
    inputs, upstream = op.inputs
    if inputs.shape.rank != 2 or upstream.shape.rank != 2 or inputs.shape[0] is None:
        return None
    rows, columns = inputs.shape[1], upstream.shape[1]
    if inputs.shape[0] * (rows + columns) > MAX_BATCH_SHARE * rows * columns:
        return None
    if not row_block_adam.available():
        return None
    return inputs, upstream


def clipped(inputs, upstream, clip_norm: float) -> FactoredGradient:
    """The factors with the scale of ``clip_by_norm(inputs^T upstream,
    clip_norm)``: ``c / max(|x^T g|, c)`` (1 without clipping)."""
    def norm():
        squared = tf.reduce_sum(_gram(inputs) * _gram(upstream))
        return tf.cast(tf.sqrt(tf.maximum(squared, 0.0)), tf.float32)

    return FactoredGradient(inputs, upstream, clip_scale(clip_norm, norm))


def _gram(matrix: tf.Tensor) -> tf.Tensor:
    """``matrix matrix^T`` ``[B, B]`` in float64: float32 matmuls of column
    chunks of ``matrix``, summed in float64 (the terms of the squared norm
    cancel in part, so their rounding matters)."""
    matrix = tf.cast(matrix, tf.float32)
    columns = matrix.shape[1]
    chunks = GRAM_CHUNKS if columns % GRAM_CHUNKS == 0 and columns >= 64 * GRAM_CHUNKS else 1
    rows = tf.shape(matrix)[0]
    chunked = tf.transpose(tf.reshape(matrix, [rows, chunks, columns // chunks]), [1, 0, 2])
    return tf.reduce_sum(tf.cast(tf.matmul(chunked, chunked, transpose_b=True), tf.float64), 0)
