"""Context Gating (Miech et al., 2017, section 3.1): ``y = x * sigmoid(BN(x W))``."""

from __future__ import annotations

import math

import keras
from keras import ops

from youtube8m_willow.layers.core import BatchNorm, normal, normalized_or_biased, register
from youtube8m_willow.layers.kernels import video_matmul


@register
class ContextGating(keras.layers.Layer):
    """Re-weights each unit of ``x`` by a learned gate computed from context.

    ``g = c W`` where the context ``c`` is ``x`` itself (WILLOW's hidden-layer
    gating) or another tensor passed as ``context`` (the MoE's
    ``moe_prob_gating_input=input``). With ``remove_diag`` the diagonal of
    ``W`` is taken out (``g -= diag(W) * x``), so a unit cannot gate itself.
    Then batch norm (or a bias), a sigmoid, and ``y = x * gate``.

    Args:
        weights_name: TF1 name of ``W`` (``gating_weights_2`` in the frame-level
            models, ``gating_prob_weights`` in the MoE).
        bn_name: TF1 scope of the batch norm (``gating_bn``/``gating_prob_bn``).
        add_batch_norm: batch norm on the gates; else a bias ``gating_biases``.
        remove_diag: drop the self-gating terms.

    Input: ``x`` ``[B, U]`` (and optionally ``context`` ``[B, C]``).
    Output: ``[B, U]``.

    Example:
        >>> tuple(ContextGating()(np.ones([2, 8], "float32")).shape)
        (2, 8)
    """

    def __init__(self, weights_name: str = "gating_weights_2", bn_name: str = "gating_bn",
                 add_batch_norm: bool = True, remove_diag: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.weights_name = weights_name
        self.bn_name = bn_name
        self.add_batch_norm = bool(add_batch_norm)
        self.remove_diag = bool(remove_diag)
        self.batch_norm = BatchNorm(name=bn_name) if self.add_batch_norm else None

    def build(self, inputs_shape, context_shape=None):
        units = int(inputs_shape[-1])
        in_units = int(context_shape[-1]) if context_shape is not None else units
        self.gating_weights = self.add_weight(
            name=self.weights_name, shape=(in_units, units),
            initializer=normal(1.0 / math.sqrt(units)))
        if self.remove_diag and min(in_units, units) != units:
            raise ValueError(
                f"remove_diag needs a gating matrix with at least as many rows ({in_units}) "
                f"as gated units ({units})")
        if self.batch_norm is not None:
            self.batch_norm.build((None, units))
            self.gating_biases = None
        else:
            self.gating_biases = self.add_weight(
                name="gating_biases", shape=(units,), initializer=normal(1.0 / math.sqrt(in_units)))

    def call(self, inputs, context=None, training=None):
        gates = video_matmul(inputs if context is None else context, self.gating_weights)
        if self.remove_diag:
            gates -= ops.diagonal(self.gating_weights) * inputs
        if self.batch_norm is not None:
            gates = self.batch_norm(gates, training=training)
        else:
            gates += self.gating_biases
        return inputs * ops.sigmoid(gates)

    def compute_output_shape(self, inputs_shape, context_shape=None):
        return inputs_shape

    def tf1_weights(self):
        return normalized_or_biased(self.weights_name, self.gating_weights, self.batch_norm,
                                    self.bn_name, "gating_biases", self.gating_biases)

    def get_config(self):
        return {**super().get_config(), "weights_name": self.weights_name,
                "bn_name": self.bn_name, "add_batch_norm": self.add_batch_norm,
                "remove_diag": self.remove_diag}
