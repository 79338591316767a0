"""Video-level classifiers: logistic regression and the mixture of experts."""

from __future__ import annotations

import keras
from keras import ops

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import Dense, register
from youtube8m_willow.layers.gating import ContextGating


@register
class LogisticClassifier(keras.layers.Layer):
    """The starter's LogisticModel: ``sigmoid(x W + b)`` with slim L2 on ``W``.

    ``fork=True`` gives the NeXtVLAD fork's: the same L2 on ``b`` too, and
    slim's variance-scaling initializer; its ``logits`` serve
    MixNeXtVladModel's mixture.

    Input ``[B, F]``; output probabilities ``[B, num_classes]``.
    TF1 names: ``fully_connected/weights``, ``fully_connected/biases``.
    """

    def __init__(self, num_classes: int, l2: float = 1e-8, fork: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.l2 = float(l2)
        self.fork = bool(fork)
        self.fully_connected = Dense(
            self.num_classes, l2=self.l2, regularize_biases=self.fork,
            initializer="variance_scaling" if self.fork else "glorot_uniform",
            name="fully_connected")

    def build(self, input_shape):
        self.fully_connected.build(input_shape)

    def call(self, inputs, training=None):
        return ops.sigmoid(self.logits(inputs))

    def logits(self, inputs):
        """``x W + b``, before the sigmoid."""
        return self.fully_connected(inputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def tf1_weights(self):
        return {f"fully_connected/{k}": v for k, v in self.fully_connected.tf1_weights().items()}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "l2": self.l2,
                "fork": self.fork}


@register
class MixtureOfExperts(keras.layers.Layer):
    """WILLOW's MoeModel: per class, a softmax gate over ``num_mixtures``
    logistic experts plus a "nothing" expert that always predicts 0.

    ``p[b, v] = sum_m softmax(gates)[b, v, m] * sigmoid(experts)[b, v, m]``.
    Options: low-rank gates (``low_rank_gating`` other than -1: ``gates1``
    then ``gates2``; as in the original, 0 is a rank-0 product whose gates are
    all zero), and Context Gating of the output probabilities
    (``prob_gating``), computed from the probabilities (``"prob"``) or from
    the classifier input (``"input"``; as in the original, any value other
    than ``"prob"`` gates on the input).

    Input ``[B, F]``; output probabilities ``[B, num_classes]``.
    TF1 names: ``gates/weights`` (or ``gates1/weights``, ``gates2/weights``),
    ``experts/weights``, ``experts/biases``, ``gating_prob_weights``,
    ``gating_prob_bn/*``.
    """

    def __init__(self, num_classes: int, num_mixtures: int = 2, l2: float = 1e-8,
                 low_rank_gating: int = -1, prob_gating: bool = False,
                 prob_gating_input: str = "prob", remove_diag: bool = False, **kwargs):
        super().__init__(**kwargs)
        if int(low_rank_gating) < -1:
            raise ValueError(f"low_rank_gating must be -1 (full-rank gates) or a rank >= 0, "
                             f"got {low_rank_gating}")
        self.num_classes = int(num_classes)
        self.num_mixtures = int(num_mixtures)
        self.l2 = float(l2)
        self.low_rank_gating = int(low_rank_gating)
        self.prob_gating = bool(prob_gating)
        self.prob_gating_input = prob_gating_input
        self.remove_diag = bool(remove_diag)
        gate_units = self.num_classes * (self.num_mixtures + 1)
        if self.low_rank_gating != -1:
            self.gates = [Dense(self.low_rank_gating, use_bias=False, l2=self.l2, name="gates1"),
                          Dense(gate_units, use_bias=False, l2=self.l2, name="gates2")]
        else:
            self.gates = [Dense(gate_units, use_bias=False, l2=self.l2, name="gates")]
        self.experts = Dense(self.num_classes * self.num_mixtures, l2=self.l2, name="experts")
        self.output_gating = (ContextGating(weights_name="gating_prob_weights",
                                            bn_name="gating_prob_bn",
                                            remove_diag=self.remove_diag, name="prob_gating")
                              if self.prob_gating else None)

    def build(self, input_shape):
        shape = input_shape
        for dense in self.gates:
            dense.build(shape)
            shape = dense.compute_output_shape(shape)
        self.experts.build(input_shape)
        if self.output_gating is not None:
            context = None if self.prob_gating_input == "prob" else input_shape
            self.output_gating.build((None, self.num_classes), context)

    def call(self, inputs, training=None):
        gate_activations = inputs
        for dense in self.gates:
            gate_activations = dense(gate_activations)
        # The mixture in float32 whatever the compute dtype: under bfloat16
        # the softmax and sigmoid run faster and keep their precision.
        probabilities = kernels.mixture_probabilities(gate_activations, self.experts(inputs),
                                                      self.num_mixtures)
        if self.output_gating is not None:
            context = None if self.prob_gating_input == "prob" else inputs
            probabilities = self.output_gating(probabilities, context=context, training=training)
        return probabilities

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def tf1_weights(self):
        names = {}
        for dense in [*self.gates, self.experts]:
            names.update({f"{dense.name}/{k}": v for k, v in dense.tf1_weights().items()})
        if self.output_gating is not None:
            names.update(self.output_gating.tf1_weights())
        return names

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_mixtures": self.num_mixtures, "l2": self.l2,
                "low_rank_gating": self.low_rank_gating, "prob_gating": self.prob_gating,
                "prob_gating_input": self.prob_gating_input, "remove_diag": self.remove_diag}
