"""The ``NormalizedVlad`` kernel (``vlad_descriptor.cc``) and its gradient.

``normalize(weighted, assignment_sum, scale, shift)`` takes the
assignment-weighted sums of a video's frames ``[B, K, D]`` (float32), their
assignments' sums ``[B, K]`` and a per-(cluster, feature) map ``[K, D]``
each, and returns the pooled vector ``[B, D*K]``: ``v = weighted * scale +
assignment_sum * shift``, intra-normalized over ``D``, flattened in
``(d, k)`` order and L2-normalized, both with TF1's ``l2_normalize``.
Differentiable in all four; ``v`` and its intra-normalized rows are never
stored.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.native.loading import load, runs_here


def available() -> bool:
    """Loaded, on a machine without a GPU (``loading.runs_here``)."""
    return runs_here("vlad_descriptor")


def normalize(weighted, assignment_sum, scale, shift):
    kernels = load("vlad_descriptor")

    @tf.custom_gradient
    def normalized(weighted, assignment_sum, scale, shift):
        descriptor, cluster_squares, video_squares = kernels.normalized_vlad(
            weighted, assignment_sum, scale, shift)

        def gradient(descriptor_grad):
            return kernels.normalized_vlad_grad(weighted, assignment_sum, scale, shift,
                                                cluster_squares, video_squares, descriptor,
                                                descriptor_grad)

        return descriptor, gradient

    return normalized(weighted, assignment_sum, scale, shift)
