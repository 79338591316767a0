"""The ``NormalizedVlad`` kernel (``vlad_descriptor.cc``) and its gradient.

``normalize(weighted, assignment_sum, scale, shift)`` takes the
assignment-weighted sums of a video's frames ``[B, K, D]`` (float32), their
assignments' sums ``[B, K]`` and a per-(cluster, feature) map ``[K, D]``
each, and returns the pooled vector ``[B, D*K]``: ``v = weighted * scale +
assignment_sum * shift``, intra-normalized over ``D``, flattened in
``(d, k)`` order and L2-normalized, both with TF1's ``l2_normalize``. With
``squares`` ``[B, K, D]`` and ``square_scale`` ``[K, D]``, ``v`` adds
``squares * square_scale``; with ``intra_normalize=False`` its first
normalization is over the whole video (NetFV's second-order term).
Differentiable in every input; ``v`` and its normalized rows are never
stored.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.native.loading import load, runs_here


def available() -> bool:
    """Loaded, and a kernel may run here: no GPU, not under XLA, not for an
    export (``loading.runs_here``)."""
    return runs_here("vlad_descriptor")


def normalize(weighted, assignment_sum, scale, shift, squares=None, square_scale=None,
              intra_normalize: bool = True):
    kernels = load("vlad_descriptor")
    if squares is None:
        squares = square_scale = tf.zeros([0], tf.float32)

    @tf.custom_gradient
    def normalized(*inputs):
        descriptor, cluster_squares, video_squares = kernels.normalized_vlad(
            *inputs, intra_normalize=intra_normalize)

        def gradient(descriptor_grad):
            return kernels.normalized_vlad_grad(
                *inputs, cluster_squares, video_squares, descriptor, descriptor_grad,
                intra_normalize=intra_normalize)

        return descriptor, gradient

    return normalized(weighted, assignment_sum, scale, shift, squares, square_scale)
