"""Deep Bag of Frames poolings: WILLOW's Soft-DBoF, Gated DBoF and DBoF, and
the starter code's DBoF cluster layer (Abu-El-Haija et al., 2016, section 4.1;
Miech et al., 2017)."""

from __future__ import annotations

from keras import ops

from youtube8m_willow.layers.core import (BatchNorm, PendingAffine, inverse_sqrt_normal,
                                          l2_normalize, register)
from youtube8m_willow.layers.kernels import video_matmul
from youtube8m_willow.layers.vlad import ClusterPooling

POOLING_METHODS = {"max": ops.max, "average": ops.mean}


@register
class SoftDBoF(ClusterPooling):
    """Soft bag of frames: the soft assignments summed over frames and
    L2-normalized; with ``max_pool`` also their L2-normalized maximum over
    frames, appended after the sum.

    Input: ``[B, N, D]``; output ``[B, K]`` (``[B, 2K]`` with ``max_pool``).
    TF1 names: ``cluster_weights``, ``cluster_bn/*`` (or ``cluster_biases``).

    Example:
        >>> tuple(SoftDBoF(4, max_pool=True)(np.ones([2, 5, 3], "float32")).shape)
        (2, 8)
    """

    def __init__(self, cluster_size: int, add_batch_norm: bool = True, max_pool: bool = False,
                 **kwargs):
        super().__init__(cluster_size, add_batch_norm, **kwargs)
        self.max_pool = bool(max_pool)

    def call(self, frames, training=None, input_affine: PendingAffine | None = None):
        summed, maximum = self.sum_and_max(frames, training, with_max=self.max_pool,
                                           input_affine=input_affine)
        if not self.max_pool:
            return l2_normalize(summed, axis=1)
        return ops.concatenate([l2_normalize(summed, axis=1), l2_normalize(maximum, axis=1)], 1)

    def output_size(self, feature_size: int) -> int:
        return self.cluster_size * (2 if self.max_pool else 1)

    def get_config(self):
        return {**super().get_config(), "max_pool": self.max_pool}


@register
class GatedDBoF(ClusterPooling):
    """Gated Soft-DBoF: the summed soft assignments ``s``, gated by a
    projection of their L2-normalized maximum ``m`` over frames:
    ``L2(sigmoid(BN(m dim_red cluster_weights_2)) * s)``.

    Input: ``[B, N, D]``; output ``[B, K]``.
    TF1 names: ``cluster_weights``, ``cluster_bn/*`` (or ``cluster_biases``),
    ``dim_red`` ``[K, D]``, ``cluster_weights_2`` ``[D, K]`` (both init
    N(1/sqrt(D))), ``cluster_bn_2/*`` (or ``cluster_biases_2`` ``[K]``).

    Example:
        >>> tuple(GatedDBoF(4)(np.ones([2, 5, 3], "float32")).shape)
        (2, 4)
    """

    def __init__(self, cluster_size: int, add_batch_norm: bool = True, **kwargs):
        super().__init__(cluster_size, add_batch_norm, **kwargs)
        self.gate_batch_norm = BatchNorm(name="cluster_bn_2") if self.add_batch_norm else None

    def build_pooling(self):
        size, clusters = self.feature_size, self.cluster_size
        self.dim_red = self.add_weight(name="dim_red", shape=(clusters, size),
                                       initializer=inverse_sqrt_normal(size))
        self.cluster_weights_2 = self.add_weight(name="cluster_weights_2", shape=(size, clusters),
                                                 initializer=inverse_sqrt_normal(size))
        if self.gate_batch_norm is not None:
            self.gate_batch_norm.build((None, clusters))
            self.cluster_biases_2 = None
        else:
            self.cluster_biases_2 = self.add_weight(name="cluster_biases_2", shape=(clusters,),
                                                    initializer=inverse_sqrt_normal(size))

    def call(self, frames, training=None, input_affine: PendingAffine | None = None):
        summed, maximum = self.sum_and_max(frames, training, input_affine=input_affine)
        maximum = l2_normalize(maximum, axis=1)
        gates = video_matmul(video_matmul(maximum, self.dim_red), self.cluster_weights_2)
        if self.gate_batch_norm is not None:
            gates = self.gate_batch_norm(gates, training=training)
        else:
            gates += self.cluster_biases_2
        return l2_normalize(ops.sigmoid(gates) * summed, axis=1)

    def output_size(self, feature_size: int) -> int:
        return self.cluster_size

    def own_tf1_weights(self):
        names = {"dim_red": self.dim_red, "cluster_weights_2": self.cluster_weights_2}
        if self.gate_batch_norm is not None:
            names.update({f"cluster_bn_2/{k}": v
                          for k, v in self.gate_batch_norm.tf1_weights().items()})
        else:
            names["cluster_biases_2"] = self.cluster_biases_2
        return names


@register
class DBoF(ClusterPooling):
    """WILLOW's DBoF: linear cluster projections (batch norm or bias, no
    activation: the original's activation test never fires, and trained
    models depend on that), then ``[L2(mean over frames), L2(max over frames)]``.

    Input: ``[B, N, D]``; output ``[B, 2K]``.
    TF1 names: ``cluster_weights``, ``cluster_bn/*`` (or ``cluster_biases``).

    Example:
        >>> tuple(DBoF(4)(np.ones([2, 5, 3], "float32")).shape)
        (2, 8)
    """

    assignment_activation = "linear"

    def call(self, frames, training=None, input_affine: PendingAffine | None = None):
        projections = self.assign(frames, training, input_affine)
        average = l2_normalize(ops.mean(projections, 1), axis=1)
        maximum = l2_normalize(ops.max(projections, 1), axis=1)
        return ops.concatenate([average, maximum], 1)

    def output_size(self, feature_size: int) -> int:
        return 2 * self.cluster_size


@register
class StarterDBoF(ClusterPooling):
    """The starter code's DBoF cluster layer: ``activation(BN(x W))`` per
    frame, pooled over frames by ``pooling_method`` (no normalization).

    Args:
        cluster_size: ``K``.
        add_batch_norm: batch norm ``cluster_bn`` (else ``cluster_biases``).
        activation: ``"relu6"`` or ``"sigmoid"``.
        pooling_method: ``"max"`` or ``"average"``.

    Input: ``[B, N, D]``; output ``[B, K]``.
    TF1 names: ``cluster_weights``, ``cluster_bn/*`` (or ``cluster_biases``).

    Example:
        >>> tuple(StarterDBoF(4, pooling_method="average")(np.ones([2, 5, 3], "float32")).shape)
        (2, 4)
    """

    ACTIVATIONS = ("relu6", "sigmoid")

    def __init__(self, cluster_size: int, add_batch_norm: bool = True,
                 activation: str = "relu6", pooling_method: str = "max", **kwargs):
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"unknown DBoF activation {activation!r}; valid: "
                             f"{', '.join(self.ACTIVATIONS)}")
        if pooling_method not in POOLING_METHODS:
            raise ValueError(f"unknown dbof_pooling_method {pooling_method!r}; valid: "
                             f"{', '.join(POOLING_METHODS)}")
        super().__init__(cluster_size, add_batch_norm, activation=activation, **kwargs)
        self.activation = activation
        self.pooling_method = pooling_method

    def call(self, frames, training=None, input_affine: PendingAffine | None = None):
        return POOLING_METHODS[self.pooling_method](
            self.assign(frames, training, input_affine), 1)

    def output_size(self, feature_size: int) -> int:
        return self.cluster_size

    def get_config(self):
        return {**super().get_config(), "activation": self.activation,
                "pooling_method": self.pooling_method}
