"""NeXtVLAD (Lin, Xiao, Fan, 2018) and its SE-style gating: the 2018
challenge's third place, NetVLAD on groups of expanded frame features.

Each frame ``x`` (``F`` values) is expanded to ``E*F`` values and split into
``G`` groups of ``D = E*F/G``; every group is softly assigned to ``K``
clusters and weighted by a sigmoid attention of its frame, and the
residuals of all groups of all valid frames are summed per cluster. The
output has ``K*D`` values instead of NetVLAD's ``K*F``: with ``E=2, G=8`` a
quarter. The math is the fork's graph (same reshapes, batch norms over the
same rows) so that its checkpoints give its numbers (SPEC section 16), with
two savings that keep its values: the cluster logits are computed from the
frames through the product of the expansion and cluster weights, and the
frame matmuls skip padded frames (their only effect, on the cluster batch
norm's training statistics, is added back from the padding frame's value).
"""

from __future__ import annotations

import keras
from keras import ops

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import (BatchNorm, Dense, l2_normalize, register,
                                          sequence_mask, softmax, variance_scaling)
from youtube8m_willow.layers.kernels import video_matmul


@register
class NeXtVLAD(keras.layers.Layer):
    """NeXtVLAD pooling of ``[B, T, F]`` frames into ``[B, K * E*F/G]``.

    ``y = x W_e + b_e`` (``E*F`` values per frame), attention
    ``a = sigmoid(y W_a + b_a)`` (one per group, 0 for frames at or after
    ``num_frames``), assignment ``s = softmax_K(BN(y W_c)) * a`` for each
    group's ``D``-slice of ``y``; ``v[d, k] = sum s y[d] - (sum s) c[d, k]``,
    L2-normalized over ``d`` (intra-normalization only), flattened in
    ``(d, k)`` order, batch-normalized (``vlad_bn``). Both batch norms
    normalize over every row, padded frames included, and move their moving
    variance with the biased batch variance (the fork's unfused batch norms).

    Args:
        cluster_size: ``K``.
        groups: ``G``; must divide ``E*F``.
        expansion: ``E``.

    Input: ``frames`` ``[B, T, F]`` and optionally ``num_frames`` ``[B]``
    (absent: every frame is valid).
    Output: ``[B, K * E*F/G]``.
    TF1 names (under the stream's scope, ``video_VLAD``): ``fully_connected/
    {weights,biases}`` (expansion), ``fully_connected_1/{weights,biases}``
    (attention), ``cluster_weights`` ``[E*F, G*K]``, ``cluster_bn/*``,
    ``cluster_weights2`` ``[1, D, K]`` (the centers), ``vlad_bn/*``.

    Example:
        >>> tuple(NeXtVLAD(4, groups=2)(np.ones([2, 5, 8], "float32"), np.array([5, 2])).shape)
        (2, 32)
    """

    def __init__(self, cluster_size: int, groups: int = 8, expansion: int = 2, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("cluster_size", cluster_size), ("groups", groups),
                            ("expansion", expansion)):
            if int(value) < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        self.cluster_size = int(cluster_size)
        self.groups = int(groups)
        self.expansion = int(expansion)
        self.expansion_fc = None  # its width, E*F, is known at build
        self.attention_fc = Dense(self.groups, initializer="variance_scaling",
                                  name="fully_connected_1")
        self.cluster_bn = BatchNorm(bessel_correction=False, name="cluster_bn")
        self.vlad_bn = BatchNorm(bessel_correction=False, name="vlad_bn")

    def build(self, frames_shape, num_frames_shape=None):
        if len(frames_shape) != 3:
            raise ValueError(f"NeXtVLAD expects [batch, frames, features] input, got shape "
                             f"{tuple(frames_shape)}")
        self.feature_size = int(frames_shape[-1])
        expanded = self.expansion * self.feature_size
        if expanded % self.groups:
            raise ValueError(f"groups={self.groups} must divide expansion * features = "
                             f"{expanded}")
        self.group_size = expanded // self.groups
        self.expansion_fc = Dense(expanded, initializer="variance_scaling",
                                  name="fully_connected")
        self.expansion_fc.build(frames_shape)
        self.attention_fc.build((None, None, expanded))
        self.cluster_weights = self.add_weight(
            name="cluster_weights", shape=(expanded, self.groups * self.cluster_size),
            initializer=variance_scaling())
        self.cluster_bn.build((None, self.groups * self.cluster_size))
        self.cluster_weights2 = self.add_weight(
            name="cluster_weights2", shape=(1, self.group_size, self.cluster_size),
            initializer=variance_scaling())
        self.vlad_bn.build((None, self.output_size()))

    def output_size(self) -> int:
        return self.cluster_size * self.group_size

    def call(self, frames, num_frames=None, training=None, padding_frame=None):
        """``padding_frame`` (``[F]``): what every frame at or after
        ``num_frames`` holds (the readers pad with zeros; the input scaling
        maps them to it). Padded frames count only in training, in the
        cluster batch norm's statistics: given ``padding_frame`` there, and
        always outside training, the frame matmuls run on the valid frames
        alone (``kernels.RowSubset``) and the padded ones enter those
        statistics as copies of ``padding_frame``, at no cost. Without it,
        training computes every frame as it is."""
        frames = ops.convert_to_tensor(frames)
        max_frames = frames.shape[1] if frames.shape[1] is not None else ops.shape(frames)[1]
        rows = max_frames * self.groups  # the (frame, group) pairs of a video
        flat = ops.reshape(frames, (-1, self.feature_size))
        subset = None
        if num_frames is not None and (padding_frame is not None or not training):
            subset = kernels.RowSubset(ops.reshape(sequence_mask(num_frames, max_frames), (-1,)))
            flat = subset.take(flat)
        expanded = self.expansion_fc(flat)
        attention = ops.sigmoid(self.attention_fc(expanded))
        activation = self._assignment_logits(flat, expanded)
        if subset is not None:
            padded = 0.0  # outside training any value: its assignments are masked
            if padding_frame is not None:
                padding_frame = ops.reshape(padding_frame, (1, -1))
                padded = self._assignment_logits(padding_frame,
                                                 self.expansion_fc(padding_frame))[0]
            expanded = subset.place(expanded, 0.0)
            attention = subset.place(attention, 0.0)
            activation = subset.place(activation, padded)
        elif num_frames is not None:
            valid = ops.reshape(sequence_mask(num_frames, max_frames), (-1, 1))
            attention = attention * ops.cast(valid, attention.dtype)
        attention = ops.reshape(attention, (-1, rows, 1))
        activation = self.cluster_bn(activation, training=training)
        activation = softmax(ops.reshape(activation, (-1, rows, self.cluster_size)))
        activation = activation * attention
        assignment_sum = ops.sum(activation, -2, keepdims=True)
        weighted_centers = assignment_sum * self.cluster_weights2
        grouped = ops.reshape(expanded, (-1, rows, self.group_size))
        vlad = ops.matmul(ops.transpose(activation, (0, 2, 1)), grouped)
        vlad = ops.transpose(vlad, (0, 2, 1)) - weighted_centers
        vlad = l2_normalize(vlad, axis=1)
        vlad = ops.reshape(vlad, (-1, self.output_size()))
        return self.vlad_bn(vlad, training=training)

    def _assignment_logits(self, frames, expanded):
        """``expanded W_c`` of ``[N, F]`` frames (``expanded = x W_e + b_e``).
        With ``E > 1`` as ``x (W_e W_c) + b_e W_c``: the cluster matmul on
        the ``F`` frame values instead of the ``E*F`` expanded ones (at E=2
        half its FLOPs, forward and backward, for a weights' product that
        costs what ``E*F`` rows would; the same values to float32 rounding).
        With ``E = 1`` nothing is saved: as written."""
        if self.expansion == 1:
            return ops.matmul(expanded, self.cluster_weights)
        dtype = frames.dtype
        kernel, bias = (ops.cast(w, dtype) for w in (self.expansion_fc.kernel,
                                                     self.expansion_fc.bias))
        clusters = ops.cast(self.cluster_weights, dtype)
        return (ops.matmul(frames, ops.matmul(kernel, clusters))
                + ops.matmul(bias[None, :], clusters))

    def compute_output_shape(self, frames_shape, num_frames_shape=None):
        expanded = self.expansion * int(frames_shape[-1])
        return (frames_shape[0], self.cluster_size * (expanded // self.groups))

    def tf1_weights(self):
        names = {f"fully_connected/{k}": v for k, v in self.expansion_fc.tf1_weights().items()}
        names.update({f"fully_connected_1/{k}": v
                      for k, v in self.attention_fc.tf1_weights().items()})
        names["cluster_weights"] = self.cluster_weights
        names.update({f"cluster_bn/{k}": v for k, v in self.cluster_bn.tf1_weights().items()})
        names["cluster_weights2"] = self.cluster_weights2
        names.update({f"vlad_bn/{k}": v for k, v in self.vlad_bn.tf1_weights().items()})
        return names

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "groups": self.groups, "expansion": self.expansion}


@register
class SEGating(keras.layers.Layer):
    """Squeeze-and-excitation gating of a hidden layer (the NeXtVLAD models'):
    ``y = x * sigmoid(relu(BN(x W1)) W2)`` with ``W1`` ``[H, H / reduction]``
    and ``W2`` ``[H / reduction, H]``: each unit gated by a bottleneck of the
    whole vector. The batch norm (``gating_bn``) is the fork's fused one: its
    moving variance takes the Bessel-corrected batch variance.

    Args:
        reduction: the bottleneck's reduction factor (``gating_reduction``).

    Input ``[B, H]``; output ``[B, H]``.
    TF1 names: ``gating_weights_1``, ``gating_bn/*``, ``gating_weights_2``.

    Example:
        >>> tuple(SEGating(4)(np.ones([2, 8], "float32")).shape)
        (2, 8)
    """

    def __init__(self, reduction: int = 8, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"reduction must be positive, got {reduction}")
        self.reduction = int(reduction)
        self.gating_bn = BatchNorm(name="gating_bn")

    def build(self, input_shape):
        units = int(input_shape[-1])
        bottleneck = units // self.reduction
        if bottleneck < 1:
            raise ValueError(f"reduction={self.reduction} leaves no unit of the {units} gated")
        self.gating_weights_1 = self.add_weight(
            name="gating_weights_1", shape=(units, bottleneck), initializer=variance_scaling())
        self.gating_bn.build((None, bottleneck))
        self.gating_weights_2 = self.add_weight(
            name="gating_weights_2", shape=(bottleneck, units), initializer=variance_scaling())

    def call(self, inputs, training=None):
        gates = video_matmul(inputs, self.gating_weights_1)
        gates = ops.relu(self.gating_bn(gates, training=training))
        gates = ops.sigmoid(video_matmul(gates, self.gating_weights_2))
        return inputs * gates

    def compute_output_shape(self, input_shape):
        return input_shape

    def tf1_weights(self):
        return {"gating_weights_1": self.gating_weights_1,
                **{f"gating_bn/{k}": v for k, v in self.gating_bn.tf1_weights().items()},
                "gating_weights_2": self.gating_weights_2}

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}
