"""The ``NormalizedSoftmaxPool`` kernel (``softmax_pool.cc``) and its gradient.

``pool(x, gamma, beta, epsilon, offset=None)`` takes the frames' cluster
projections ``x`` ``[B, F, K]`` (float32), plus a per-cluster ``offset``
where given (never added to them), through batch norm with the batch's
moments and a softmax over the clusters, and returns ``(sum, max, mean,
variance)``: the assignments' sum and maximum over each video's frames
``[B, K]``, and the batch's moments ``[K]`` (the population variance, which
the batch norm used). Differentiable in ``x``, ``gamma``, ``beta`` and
``offset``; the assignments themselves are never stored, so training holds
one ``[B, F, K]`` tensor for them where batch norm, softmax, sum and
maximum hold three.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.native.loading import load, runs_here


def available() -> bool:
    """Loaded, and a kernel may run here: no GPU, not under XLA, not for an
    export (``loading.runs_here``)."""
    return runs_here("softmax_pool")


def pool(x, gamma, beta, epsilon: float, offset=None):
    """With ``offset`` (``[K]``), of ``x + offset``: the batch norm cancels
    it but for the moments' mean, which includes it; its gradient is the
    kernel's sum of ``x``'s gradient over frames. The ``[B, F, K]`` sum
    ``x + offset`` and its gradient's column sums are never made."""
    kernels = load("softmax_pool")
    if offset is None:
        offset = tf.zeros_like(gamma)

    @tf.custom_gradient
    def pooled(x, gamma, beta, offset):
        summed, maximum, count, mean, variance = kernels.normalized_softmax_pool(
            x, gamma, beta, epsilon=epsilon)

        def gradient(sum_grad, max_grad, *_):
            sum_grad, max_grad = (tf.zeros_like(summed) if g is None else g
                                  for g in (sum_grad, max_grad))
            return kernels.normalized_softmax_pool_grad(
                x, gamma, beta, mean, variance, maximum, count, sum_grad, max_grad,
                epsilon=epsilon)

        moments = (tf.stop_gradient(mean + offset), tf.stop_gradient(variance))
        return (summed, maximum, *moments), gradient

    return pooled(x, gamma, beta, offset)
