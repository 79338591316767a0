"""Cluster poolings of a set of frames: the shared cluster assignment, and
NetVLAD, NetRVLAD and NetVLAGD (Miech et al., 2017, section 3.2; LOUPE).

Every cluster pooling starts the same way: each frame ``x`` (``D`` values) is
softly assigned to ``K`` clusters, ``a = softmax(BN(x W))``. The math below
follows the original graphs operation by operation (matmuls on ``[B*N, D]``
reshapes, batch norm over the ``B*N`` rows, TF1's L2 normalization) so that
original checkpoints give the original numbers.
"""

from __future__ import annotations

import keras
from keras import ops

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import (BatchNorm, PendingAffine, inverse_sqrt_normal,
                                          l2_normalize, normalized_or_biased, register, softmax)


ASSIGNMENT_ACTIVATIONS = {
    "softmax": softmax,
    "linear": lambda x: x,
    "relu6": ops.relu6,
    "sigmoid": ops.sigmoid,
}


@register
class ClusterAssignment(keras.layers.Layer):
    """Assigns each frame to clusters: ``activation(BN(x W))``.

    The soft assignment of every LOUPE pooling (``activation="softmax"``);
    the DBoF variants use it with another activation (``"linear"``,
    ``"relu6"``, ``"sigmoid"``).

    Args:
        cluster_size: number of clusters ``K``.
        add_batch_norm: batch norm ``cluster_bn`` on the projections; else a
            bias ``cluster_biases`` ``[K]``, init N(1/sqrt(D)).
        activation: one of ``ASSIGNMENT_ACTIVATIONS``.
        apply_biases: add ``cluster_biases`` (without batch norm). NetVLAGD's
            original creates them but never adds them: there they are kept,
            untrained, for checkpoint compatibility.

    Input: ``[M, D]`` (frames flattened over batch and time).
    Output: ``[M, K]``.
    TF1 names: ``cluster_weights`` ``[D, K]`` (init N(1/sqrt(D))),
    ``cluster_bn/*`` or ``cluster_biases``.

    Example:
        >>> tuple(ClusterAssignment(4)(np.ones([6, 3], "float32")).shape)
        (6, 4)
    """

    def __init__(self, cluster_size: int, add_batch_norm: bool = True,
                 activation: str = "softmax", apply_biases: bool = True, **kwargs):
        super().__init__(**kwargs)
        if activation not in ASSIGNMENT_ACTIVATIONS:
            raise ValueError(f"unknown cluster activation {activation!r}; valid: "
                             f"{', '.join(ASSIGNMENT_ACTIVATIONS)}")
        if int(cluster_size) < 1:
            raise ValueError(f"cluster_size must be positive, got {cluster_size}")
        self.cluster_size = int(cluster_size)
        self.add_batch_norm = bool(add_batch_norm)
        self.activation = activation
        self.apply_biases = bool(apply_biases)
        self.batch_norm = BatchNorm(name="cluster_bn") if self.add_batch_norm else None

    def build(self, input_shape):
        feature_size = int(input_shape[-1])
        self.cluster_weights = self.add_weight(
            name="cluster_weights", shape=(feature_size, self.cluster_size),
            initializer=inverse_sqrt_normal(feature_size))
        if self.batch_norm is not None:
            self.batch_norm.build((None, self.cluster_size))
            self.cluster_biases = None
        else:
            self.cluster_biases = self.add_weight(
                name="cluster_biases", shape=(self.cluster_size,),
                initializer=inverse_sqrt_normal(feature_size), trainable=self.apply_biases)

    def project(self, inputs, input_affine: PendingAffine | None = None):
        """The projections ``x W`` of ``[M, D]`` rows; with ``input_affine``,
        of the rows that map makes of ``inputs``, with the map folded into
        ``W`` (``PendingAffine.fold_into``)."""
        projections, offset = self.project_apart(inputs, input_affine)
        return projections if offset is None else projections + offset

    def project_apart(self, inputs, input_affine: PendingAffine | None = None):
        """``project``'s projections as ``(rows, offset)``: the matmul, and
        the ``[1, K]`` row ``input_affine``'s offset adds to each (None
        without a map)."""
        if input_affine is None:
            return ops.matmul(inputs, self.cluster_weights), None
        kernel, offset = input_affine.fold_into(self.cluster_weights)
        return ops.matmul(inputs, kernel), offset

    def fused_sum_and_max(self, frames, training=None,
                          input_affine: PendingAffine | None = None):
        """``(sum, max)`` over frames of the ``[B, N, D]`` frames'
        assignments, each ``[B, K]``, from one kernel that never stores them
        (``kernels.normalized_softmax_pool``); None where it does not apply:
        outside training, without batch norm, with another activation, or
        where ``kernels.fuses_softmax_pool`` says no. Moves the moving
        statistics as ``call`` does; ``input_affine`` as in ``project``."""
        if not (training and self.batch_norm is not None and self.activation == "softmax"
                and kernels.fuses_softmax_pool(frames.dtype)):
            return None
        flat = ops.reshape(frames, (-1, self.cluster_weights.shape[0]))
        projections, offset = self.project_apart(flat, input_affine)
        projections = ops.reshape(projections, (-1, ops.shape(frames)[1], self.cluster_size))
        norm = self.batch_norm
        summed, maximum, mean, variance = kernels.normalized_softmax_pool(
            projections, norm.gamma, norm.beta, norm.epsilon,
            None if offset is None else offset[0])
        norm.update_moving(mean, variance, ops.shape(frames)[0] * ops.shape(frames)[1])
        return summed, maximum

    def call(self, inputs, training=None, input_affine: PendingAffine | None = None):
        activation = self.project(inputs, input_affine)
        if self.batch_norm is not None:
            activation = self.batch_norm(activation, training=training)
        elif self.apply_biases:
            activation += self.cluster_biases
        return ASSIGNMENT_ACTIVATIONS[self.activation](activation)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.cluster_size)

    def tf1_weights(self):
        return normalized_or_biased("cluster_weights", self.cluster_weights, self.batch_norm,
                                    "cluster_bn", "cluster_biases", self.cluster_biases)

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "add_batch_norm": self.add_batch_norm, "activation": self.activation,
                "apply_biases": self.apply_biases}


class ClusterPooling(keras.layers.Layer):
    """Base of the poolings over ``[B, N, D]`` frames built on a cluster
    assignment: subclasses add their weights in ``build_pooling`` and pool in
    ``call``; ``assign`` gives the ``[B, N, K]`` assignments. ``activation``
    overrides the class's assignment activation (``assignment_activation``).

    TF1 names (relative to the stream's scope, e.g. ``video_VLAD``): the
    assignment's, then the subclass's own.
    """

    assignment_activation = "softmax"
    applies_cluster_biases = True
    # Every pooling's ``call`` takes frames with the model's input batch
    # norm's map unapplied (``input_affine``: standardized frames and gamma
    # and beta in training, ``BatchNorm.standardize``; the frames and the
    # moving statistics' map in inference, ``BatchNorm.inference_parts``) and
    # folds the map into all it computes from them
    # (``ClusterAssignment.project``, ``residual_map``, ``mapped_sums``); a
    # pooling that cannot sets this False and is handed the normalized frames.
    folds_input_affine = True

    def __init__(self, cluster_size: int, add_batch_norm: bool = True,
                 activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = int(cluster_size)
        self.add_batch_norm = bool(add_batch_norm)
        self.assignment = ClusterAssignment(
            self.cluster_size, self.add_batch_norm,
            activation=activation or self.assignment_activation,
            apply_biases=self.applies_cluster_biases, name="assignment")

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects [batch, frames, features] input, "
                             f"got shape {tuple(input_shape)}")
        self.feature_size = int(input_shape[-1])
        self.assignment.build((None, self.feature_size))
        self.build_pooling()

    def build_pooling(self):
        """Creates the subclass's own weights (``self.feature_size`` is set)."""

    def assign(self, frames, training=None, input_affine: PendingAffine | None = None):
        """``[B, N, D]`` frames -> ``[B, N, K]`` assignments, computed on the
        ``[B*N, D]`` reshape as the original does (of ``input_affine``'s
        map of the frames, where given)."""
        flat = ops.reshape(frames, (-1, self.feature_size))
        activation = self.assignment(flat, training=training, input_affine=input_affine)
        return ops.reshape(activation, (-1, ops.shape(frames)[1], self.cluster_size))

    def sum_and_max(self, frames, training=None, with_max: bool = True,
                    input_affine: PendingAffine | None = None):
        """The assignments' sum over frames ``[B, K]`` and, ``with_max``,
        their maximum (else None): in training on a CPU from the fused kernel
        (``ClusterAssignment.fused_sum_and_max``), else from ``assign``."""
        fused = self.assignment.fused_sum_and_max(frames, training, input_affine)
        if fused is not None:
            return fused if with_max else (fused[0], None)
        assignments = self.assign(frames, training, input_affine)
        if not with_max:
            return ops.sum(assignments, 1), None
        return kernels.sum_and_max_over_frames(assignments)

    def own_tf1_weights(self) -> dict:
        return {}

    def tf1_weights(self):
        return {**self.assignment.tf1_weights(), **self.own_tf1_weights()}

    def output_size(self, feature_size: int) -> int:
        """Length of the pooled vector for ``feature_size``-dimensional frames."""
        return feature_size * self.cluster_size

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size(int(input_shape[-1])))

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "add_batch_norm": self.add_batch_norm}


def mapped_sums(weighted, assignment_sum, input_affine: PendingAffine | None = None):
    """The sums ``weighted`` ``[B, K, D]`` of frames, turned into those of the
    frames ``input_affine`` makes of them (as they are where None):
    ``scale * sum_n a x + offset * sum_n a``, given ``assignment_sum``
    ``[B, K]``. Their gradient forms no gradient of the frames where they
    are data (see ``BatchNorm.standardize`` and ``inference_parts``)."""
    if input_affine is None:
        return weighted
    scale, offset = input_affine.parts(weighted.dtype)
    return weighted * scale + assignment_sum[:, :, None] * offset


def plain_sums(assignments, frames):
    """``sum_n a[b, n, k] * x[b, n, d]`` as ``[B, K, D]`` (the original's
    transposed assignments times the frames)."""
    return ops.matmul(ops.transpose(assignments, (0, 2, 1)), frames)


def normalize_descriptor(descriptor):
    """Intra-normalization over ``d`` of ``[B, D, K]``, then flattening in
    ``(d, k)`` order and a global L2 normalization."""
    descriptor = l2_normalize(descriptor, axis=1)
    flat_size = descriptor.shape[1] * descriptor.shape[2]
    return l2_normalize(ops.reshape(descriptor, (-1, flat_size)), axis=1)


def residual_map(shape, dtype, input_affine: PendingAffine | None = None, centers=None,
                 gates=None):
    """``(scale, shift)``, each ``shape`` ``[K, D]``, such that
    ``sums * scale + s_k * shift`` is ``(sum_n a y - s_k c) * g`` for the
    plain sums ``sum_n a x`` of frames that ``input_affine`` maps to ``y``
    (identity where None), centers ``c`` and gates ``g`` (``[K, D]``; none
    where None) and the assignments' sums ``s_k``. Without a map, with
    centers or gates alone, the residuals' values are the unfolded graph's
    bit for bit (times one, plus zero)."""
    scale, shift = ops.ones(shape, dtype), ops.zeros(shape, dtype)
    if input_affine is not None:
        input_scale, offset = input_affine.parts(dtype)
        scale, shift = scale * input_scale, shift + offset
    if centers is not None:
        shift = shift - centers
    if gates is not None:
        scale, shift = scale * gates, shift * gates
    return scale, shift


def pooled_descriptor(assignments, frames, input_affine: PendingAffine | None = None,
                      centers=None, gates=None):
    """The pooled vector ``[B, D*K]`` of ``[B, N, K]`` assignments of
    ``[B, N, D]`` frames: ``descriptor`` of the residuals
    ``(sum_n a y - s_k c) * g`` (``residual_map``)."""
    weighted = plain_sums(assignments, frames)
    assignment_sum = ops.sum(assignments, 1)
    scale, shift = residual_map(weighted.shape[1:], weighted.dtype, input_affine, centers, gates)
    return descriptor(weighted, assignment_sum, scale, shift)


def descriptor(weighted, assignment_sum, scale, shift):
    """``normalize_descriptor`` of the residuals ``weighted * scale +
    assignment_sum * shift`` (``[B, K, D]`` sums, ``[B, K]``, and ``[K, D]``
    each; ``[B, D, K]`` transposed, as the original's sums), from the CPU's
    kernel on TensorFlow (``kernels.fuses_vlad_descriptor``), else from the
    backend's operations: the original's, and its values bit for bit, where
    ``scale`` is ones or gates and ``shift`` zeros or minus the centers
    (NetVLAD, NetRVLAD and NetVLAGD without input_bn's map)."""
    if kernels.fuses_vlad_descriptor(weighted.dtype):
        return kernels.normalized_vlad(weighted, assignment_sum, scale, shift)
    residuals = weighted * scale + assignment_sum[:, :, None] * shift
    return normalize_descriptor(ops.transpose(residuals, (0, 2, 1)))


@register
class NetVLAD(ClusterPooling):
    """NetVLAD: sums of the residuals to learned centers, weighted by the soft
    assignment, intra-normalized and L2-normalized.

    ``v[b, d, k] = sum_n a[b,n,k] x[b,n,d] - (sum_n a[b,n,k]) c[d,k]``.

    Args:
        cluster_size: ``K``.
        add_batch_norm: batch norm in the assignment (else a bias).

    Input: ``[B, N, D]``; output ``[B, D*K]``.
    TF1 names: ``cluster_weights``, ``cluster_bn/*`` (or ``cluster_biases``),
    ``cluster_weights2`` ``[1, D, K]`` (the centers ``c``).

    Example:
        >>> tuple(NetVLAD(4)(np.ones([2, 5, 3], "float32")).shape)
        (2, 12)
    """

    def build_pooling(self):
        self.cluster_weights2 = self.add_weight(
            name="cluster_weights2", shape=(1, self.feature_size, self.cluster_size),
            initializer=inverse_sqrt_normal(self.feature_size))

    def call(self, frames, training=None, input_affine: PendingAffine | None = None):
        assignments = self.assign(frames, training, input_affine)
        centers = ops.transpose(self.cluster_weights2[0])
        return pooled_descriptor(assignments, frames, input_affine, centers=centers)

    def own_tf1_weights(self):
        return {"cluster_weights2": self.cluster_weights2}


@register
class NetRVLAD(ClusterPooling):
    """NetRVLAD (``--lightvlad``): NetVLAD without the centers, i.e. the
    assignment-weighted sums of the frames, intra- and L2-normalized.

    Input: ``[B, N, D]``; output ``[B, D*K]``.
    TF1 names: ``cluster_weights``, ``cluster_bn/*`` (or ``cluster_biases``).

    Example:
        >>> tuple(NetRVLAD(4)(np.ones([2, 5, 3], "float32")).shape)
        (2, 12)
    """

    def call(self, frames, training=None, input_affine: PendingAffine | None = None):
        assignments = self.assign(frames, training, input_affine)
        return pooled_descriptor(assignments, frames, input_affine)


@register
class NetVLAGD(ClusterPooling):
    """NetVLAGD (``--vlagd``): assignment-weighted sums of the frames, each
    ``(k, d)`` entry scaled by a learned gate ``sigmoid(gate_weights)``.

    Without batch norm the original creates ``cluster_biases`` but never adds
    them to the assignment logits; so does this layer (the variable is kept,
    not trained, so original checkpoints load).

    Input: ``[B, N, D]``; output ``[B, D*K]``.
    TF1 names: ``cluster_weights``, ``cluster_bn/*`` (or ``cluster_biases``),
    ``gate_weights`` ``[1, K, D]``.

    Example:
        >>> tuple(NetVLAGD(4)(np.ones([2, 5, 3], "float32")).shape)
        (2, 12)
    """

    applies_cluster_biases = False

    def build_pooling(self):
        self.gate_weights = self.add_weight(
            name="gate_weights", shape=(1, self.cluster_size, self.feature_size),
            initializer=inverse_sqrt_normal(self.feature_size))

    def call(self, frames, training=None, input_affine: PendingAffine | None = None):
        assignments = self.assign(frames, training, input_affine)
        gates = ops.sigmoid(self.gate_weights[0])
        return pooled_descriptor(assignments, frames, input_affine, gates=gates)

    def own_tf1_weights(self):
        return {"gate_weights": self.gate_weights}
