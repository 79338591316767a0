"""NetFV: a learnable Fisher Vector (Miech et al., 2017, section 3.2; LOUPE)."""

from __future__ import annotations

from keras import ops

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import (PendingAffine, inverse_sqrt_normal, l2_normalize,
                                          normal, register)
from youtube8m_willow.layers.vlad import (ClusterPooling, descriptor, mapped_sums, plain_sums,
                                          residual_map)


def mapped_squares(squares, first_order, assignment_sum,
                   input_affine: PendingAffine | None = None):
    """The sums ``squares`` (``sum_n a[b, n, k] * x[b, n, d] ** 2`` as
    ``[B, D, K]``) turned into those of ``y = x * scale + offset``, given the
    mapped sums ``first_order`` (``[B, D, K]``) and ``assignment_sum``
    (``[B, 1, K]``): ``scale**2 sum_n a x**2 + offset (2 sum_n a y - offset
    sum_n a)``, whose gradient forms none of the frames (see
    ``BatchNorm.standardize`` and ``inference_parts``); as they are without
    a map."""
    if input_affine is None:
        return squares
    scale, offset = (part[:, None] for part in input_affine.parts(squares.dtype))
    return squares * ops.square(scale) + offset * (2.0 * first_order - offset * assignment_sum)


def second_order_map(dtype, input_affine: PendingAffine | None, centers, sigma):
    """``(scale, shift, square_scale)`` ``[K, D]`` each, such that
    ``sums * scale + s_k * shift + squares * square_scale`` is NetFV's
    second-order term ``(s_k c**2 + sum_n a y**2 - 2 c sum_n a y) / sigma**2
    - s_k`` for the plain sums ``sum_n a x`` and ``sum_n a x**2`` of frames
    that ``input_affine`` maps to ``y = x * a + o`` (identity where None),
    centers ``c`` and ``sigma`` (``[K, D]``), expanded: ``scale = 2 a (o -
    c) / sigma**2``, ``shift = (o - c)**2 / sigma**2 - 1`` and
    ``square_scale = a**2 / sigma**2``."""
    inverse = 1.0 / ops.square(ops.cast(sigma, dtype))
    centers = ops.cast(centers, dtype)
    if input_affine is None:
        return -2.0 * centers * inverse, ops.square(centers) * inverse - 1.0, inverse
    input_scale, offset = input_affine.parts(dtype)
    residual = offset - centers
    return (2.0 * input_scale * residual * inverse, ops.square(residual) * inverse - 1.0,
            ops.square(input_scale) * inverse)


@register
class NetFV(ClusterPooling):
    """First- and second-order statistics of the frames around learned
    Gaussian components, weighted by the soft assignment.

    With centers ``c`` ``[D, K]``, ``sigma = covar_weights**2 + 1e-6`` and
    ``s_k = sum_n a[n, k]``:

    - ``fv1[d, k] = (sum_n a x - s_k c) / sigma``, intra-normalized over ``d``,
      flattened in ``(d, k)`` order, L2-normalized;
    - ``fv2[d, k] = (s_k c**2 + sum_n a x**2 - 2 c sum_n a x) / sigma**2 - s_k``,
      flattened and L2-normalized twice (no intra-normalization, as in the
      original);
    - output ``[fv1, fv2]``.

    Args:
        cluster_size: ``K``.
        add_batch_norm: batch norm in the assignment (else a bias).
        couple_weights: centers are ``coupling_factor * cluster_weights``
            (no extra variable); else their own ``cluster_weights2``.
        coupling_factor: the coupling scale.

    Input: ``[B, N, D]``; output ``[B, 2*D*K]``.
    TF1 names: ``cluster_weights``, ``cluster_bn/*`` (or ``cluster_biases``),
    ``covar_weights`` ``[D, K]`` (init N(1, 1/sqrt(D))), and without
    coupling ``cluster_weights2`` ``[1, D, K]``.

    Example:
        >>> tuple(NetFV(4)(np.ones([2, 5, 3], "float32")).shape)
        (2, 24)
    """

    def __init__(self, cluster_size: int, add_batch_norm: bool = True,
                 couple_weights: bool = True, coupling_factor: float = 0.01, **kwargs):
        super().__init__(cluster_size, add_batch_norm, **kwargs)
        self.couple_weights = bool(couple_weights)
        self.coupling_factor = float(coupling_factor)

    def build_pooling(self):
        size = self.feature_size
        self.covar_weights = self.add_weight(
            name="covar_weights", shape=(size, self.cluster_size),
            initializer=normal(1.0 / size ** 0.5, mean=1.0))
        self.cluster_weights2 = (None if self.couple_weights else self.add_weight(
            name="cluster_weights2", shape=(1, size, self.cluster_size),
            initializer=inverse_sqrt_normal(size)))

    def centers(self):
        """The Gaussian means ``c`` (``[D, K]`` coupled, ``[1, D, K]`` otherwise)."""
        if self.couple_weights:
            return self.coupling_factor * self.assignment.cluster_weights
        return self.cluster_weights2

    def call(self, frames, training=None, input_affine: PendingAffine | None = None):
        sigma = ops.square(self.covar_weights) + 1e-6
        assignments = self.assign(frames, training, input_affine)
        weighted = plain_sums(assignments, frames)
        sums = ops.sum(assignments, 1)
        centers = self.centers()
        return ops.concatenate([
            self._first_order(weighted, sums, centers, sigma, input_affine),
            self._second_order(assignments, frames, weighted, sums, centers, sigma, input_affine),
        ], 1)

    def _first_order(self, weighted, sums, centers, sigma, input_affine):
        """The normalized first-order term from the plain sums ``[B, K, D]``:
        the residuals ``(sum_n a y - s_k c) / sigma``, as gates ``1 /
        sigma`` (``residual_map``)."""
        centers = self._cluster_major(centers)
        scale, shift = residual_map(weighted.shape[1:], weighted.dtype, input_affine,
                                    centers=centers, gates=ops.transpose(1.0 / sigma))
        return descriptor(weighted, sums, scale, shift)

    def _second_order(self, assignments, frames, weighted, sums, centers, sigma, input_affine):
        """The flattened, twice L2-normalized second-order term: from the
        CPU's kernel where ``kernels.fuses_vlad_descriptor`` holds
        (``second_order_map``), else from the original's operations."""
        squares = plain_sums(assignments, ops.square(frames))
        if kernels.fuses_vlad_descriptor(weighted.dtype):
            # In float32 whatever the compute dtype: the kernel computes in
            # float32, and the term is a difference of near sums.
            scale, shift, square_scale = second_order_map(
                "float32", input_affine, self._cluster_major(centers), ops.transpose(sigma))
            return kernels.normalized_vlad(weighted, sums, scale, shift, squares, square_scale,
                                           intra_normalize=False)
        assignment_sum = sums[:, None, :]
        first_order = ops.transpose(mapped_sums(weighted, sums, input_affine), (0, 2, 1))
        squares = mapped_squares(ops.transpose(squares, (0, 2, 1)), first_order, assignment_sum,
                                 input_affine)
        second = (assignment_sum * ops.square(centers) + squares) - 2.0 * (first_order * centers)
        second = second / ops.square(sigma) - assignment_sum
        second = ops.reshape(second, (-1, self.feature_size * self.cluster_size))
        return l2_normalize(l2_normalize(second, axis=1), axis=1)

    def _cluster_major(self, centers):
        """The centers (``[D, K]`` or ``[1, D, K]``) as ``[K, D]``."""
        return ops.transpose(ops.reshape(centers, (self.feature_size, self.cluster_size)))

    def output_size(self, feature_size: int) -> int:
        return 2 * feature_size * self.cluster_size

    def own_tf1_weights(self):
        names = {"covar_weights": self.covar_weights}
        if self.cluster_weights2 is not None:
            names["cluster_weights2"] = self.cluster_weights2
        return names

    def get_config(self):
        return {**super().get_config(), "couple_weights": self.couple_weights,
                "coupling_factor": self.coupling_factor}
