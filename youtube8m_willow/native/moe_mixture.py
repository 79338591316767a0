"""The ``MoeMixture`` kernel (``moe_mixture.cc``) and its gradient.

``probabilities(gates, experts, num_mixtures)`` is the MoE head's mixture
``sum_m softmax(gates)[m] * sigmoid(experts)[m]`` per class, from the gate
logits ``[B, C * (num_mixtures + 1)]`` and the expert logits
``[B, C * num_mixtures]`` (both float32, or both bfloat16: read as they
are, computed in float32), as float32 ``[B, C]``. Differentiable in both
(the gradients in the logits' dtype); the gradient recomputes the softmax
and the sigmoids from the logits, so nothing but the logits is kept for it.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.native.loading import load, runs_here


def available() -> bool:
    """Loaded, and a kernel may run here: no GPU, not under XLA, not for an
    export (``loading.runs_here``)."""
    return runs_here("moe_mixture")


def probabilities(gates, experts, num_mixtures: int):
    kernels = load("moe_mixture")

    @tf.custom_gradient
    def mixed(gates, experts):
        def gradient(probabilities_grad):
            return kernels.moe_mixture_grad(gates, experts, probabilities_grad,
                                            num_mixtures=num_mixtures)

        return kernels.moe_mixture(gates, experts, num_mixtures=num_mixtures), gradient

    return mixed(gates, experts)
