"""Building blocks shared by every layer: TF1-compatible batch norm, dense,
slim's L2 regularizer, and the TF1 variable-name protocol.

TF1 names: every layer that owns weights implements ``tf1_weights()``, a dict
from the variable's name relative to the layer's TF1 scope (for example
``"cluster_bn/moving_mean"``) to the Keras variable. Models join them with
their scopes (``collect_tf1_weights``), so an original checkpoint can be
mapped onto Keras weights name by name (see ``youtube8m_willow.legacy``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Mapping

import keras
from keras import ops

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.kernels import softmax  # noqa: F401  (the layers' name for it)

PACKAGE = "youtube8m_willow"


def register(cls):
    """Registers a class for Keras serialization under this package (a
    model: ``models.registry.register_model``, which also makes it selectable
    by its class name)."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


_RANDOM_INITIALIZATION = {"skipped": False}


@contextlib.contextmanager
def weights_to_be_restored():
    """Weights built inside start at zero instead of their random
    initializers: for a model every weight of which a checkpoint overwrites
    next (inference start-up; Gated NetVLAD's 333M random normals take
    seconds). A weight the checkpoint lacks is an error there, never a zero."""
    previous = _RANDOM_INITIALIZATION["skipped"]
    _RANDOM_INITIALIZATION["skipped"] = True
    try:
        yield
    finally:
        _RANDOM_INITIALIZATION["skipped"] = previous


def _random(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    return keras.initializers.Zeros() if _RANDOM_INITIALIZATION["skipped"] else initializer


def normal(stddev: float, mean: float = 0.0) -> keras.initializers.Initializer:
    """TF1's ``tf.random_normal_initializer(mean, stddev)``."""
    return _random(keras.initializers.RandomNormal(mean=mean, stddev=stddev))


def glorot_uniform() -> keras.initializers.Initializer:
    """slim's default ``xavier_initializer()`` (Keras' Glorot uniform)."""
    return _random(keras.initializers.GlorotUniform())


def inverse_sqrt_normal(size: int) -> keras.initializers.Initializer:
    """The ubiquitous WILLOW initializer: N(0, 1/sqrt(size))."""
    return normal(1.0 / math.sqrt(size))


# Keras' truncated normal divides its stddev by this (the stddev of a unit
# normal cut at two standard deviations); TF1 slim's did not.
_TRUNCATED_STDDEV = 0.87962566103423978


def variance_scaling() -> keras.initializers.Initializer:
    """slim's ``variance_scaling_initializer()`` (the NeXtVLAD fork's): a
    normal cut at two standard deviations with stddev ``sqrt(1.3 * 2 / fan_in)``."""
    return _random(keras.initializers.VarianceScaling(
        scale=1.3 * 2.0 * _TRUNCATED_STDDEV ** 2, mode="fan_in",
        distribution="truncated_normal"))


INITIALIZERS = {"glorot_uniform": glorot_uniform, "variance_scaling": variance_scaling}


@register
class SlimL2(keras.regularizers.Regularizer):
    """TF1 slim ``l2_regularizer(scale)``: ``scale * sum(w ** 2) / 2``, with
    slim's own kernel (``l2_loss``: one pass, no squared copy of the weight).

    Keras' own L2 omits the 1/2, so it would double the original penalty.
    """

    def __init__(self, scale: float):
        self.scale = float(scale)

    def __call__(self, x):
        return self.scale * kernels.half_squared_norm(x)

    def get_config(self):
        return {"scale": self.scale}


def collect_tf1_weights(scoped: Mapping[str, object]) -> dict:
    """Joins ``{scope: layer(s)}`` into one TF1 name -> variable dict.

    A layer (or each layer of a list) contributes its ``tf1_weights()`` under
    ``scope/``; an empty scope adds them at the top level; ``None`` entries
    (optional sub-layers) are skipped. Two layers claiming one name is a bug.
    """
    names: dict = {}
    for scope, items in scoped.items():
        for layer in items if isinstance(items, (list, tuple)) else [items]:
            if layer is None:
                continue
            for name, var in layer.tf1_weights().items():
                full = f"{scope}/{name}" if scope else name
                if full in names:
                    raise ValueError(f"two layers claim the TF1 name {full!r}")
                names[full] = var
    return names


def normalized_or_biased(weights_name: str, weights, batch_norm, bn_scope: str,
                         biases_name: str, biases) -> dict:
    """The TF1 names of a matmul followed by batch norm (``<bn_scope>/beta``,
    ...) when ``batch_norm`` is a layer, else by a bias: the originals'
    ``add_batch_norm`` choice (cluster, gating and hidden layers alike)."""
    names = {weights_name: weights}
    if batch_norm is not None:
        names.update({f"{bn_scope}/{k}": v for k, v in batch_norm.tf1_weights().items()})
    else:
        names[biases_name] = biases
    return names


def split_columns(x, sizes: list[int], axis: int = -1) -> list:
    """``x`` cut into consecutive blocks of ``sizes`` along ``axis`` (one
    block: ``[x]``, no op). One split, not slices: its gradient is one
    concatenation, where each slice's is a zero-filled tensor of ``x``'s
    size and they are added."""
    if len(sizes) == 1:
        return [x]
    points = [sum(int(size) for size in sizes[:i + 1]) for i in range(len(sizes) - 1)]
    return ops.split(x, points, axis=axis)


@dataclasses.dataclass(frozen=True)
class PendingAffine:
    """An affine map ``x * scale + offset`` over the last axis, handed on
    unapplied (``BatchNorm.standardize``, ``BatchNorm.inference_parts``) to
    a layer that folds it into what it computes from ``x``: a matmul's
    weights (``fold_into``), sums over frames (``layers.vlad.residual_map``,
    ``mapped_sums``). A plain object, not a tuple: Keras hands it to a layer
    as it is, without casting ``scale`` and ``offset`` to the layer's
    compute dtype (the folds cast them where they meet it)."""

    scale: object
    offset: object

    def parts(self, dtype):
        """``(scale, offset)`` cast to ``dtype``, where a fold meets it."""
        return ops.cast(self.scale, dtype), ops.cast(self.offset, dtype)

    def apply(self, x):
        """``x * scale + offset``."""
        scale, offset = self.parts(x.dtype)
        return x * scale + offset

    def split(self, sizes: list[int]) -> list["PendingAffine"]:
        """The maps of consecutive column blocks of ``sizes`` columns
        (``split_columns``)."""
        scales = split_columns(self.scale, sizes)
        offsets = split_columns(self.offset, sizes)
        return [PendingAffine(s, o) for s, o in zip(scales, offsets)]

    def fold_into(self, kernel):
        """``(scale[:, None] * kernel, offset kernel)``: ``apply(x) kernel``
        is ``x`` times the first plus the second (a ``[1, K]`` row). The
        product's gradient then takes one matmul, ``x^T dy``, for the
        kernel's, scale's and offset's gradients, where ``apply(x) kernel``
        takes two (``apply(x)^T dy`` and the input gradient ``dy kernel^T``,
        whose only use is ``scale``'s and ``offset``'s gradients)."""
        scale, offset = self.parts(kernel.dtype)
        return scale[:, None] * kernel, ops.matmul(offset[None, :], kernel)


# slim's batch-norm decay of the moving statistics, kept for parity.
BATCH_NORM_DECAY = 0.999


@register
class BatchNorm(keras.layers.Layer):
    """TF1 ``slim.batch_norm(center=True, scale=True)`` over the last axis.

    Training mode normalizes with the batch's moments (population variance)
    and moves the moving statistics with ``decay``; inference uses the moving
    statistics. The moving variance is updated with the batch variance as TF1's
    fused kernel does (Bessel-corrected) when ``bessel_correction`` is set (slim's
    choice for 2-D inputs), with the biased one otherwise, as TF1's unfused batch
    norm does (slim's ``fused=False``: the NeXtVLAD fork's ``cluster_bn``,
    ``vlad_bn``, ``hidden1_bn``). Both normalize alike and run the fused kernel
    on TensorFlow (five times faster than the unfused graph on NeXtVLAD's
    ``[B*300, G*K]`` assignments).

    Input: ``[..., C]``; output: same shape.
    TF1 names: ``beta``, ``gamma``, ``moving_mean``, ``moving_variance``.
    """

    def __init__(self, decay: float = BATCH_NORM_DECAY, epsilon: float = 0.001,
                 bessel_correction: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.decay = float(decay)
        self.epsilon = float(epsilon)
        self.bessel_correction = bool(bessel_correction)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        # Not autocast under mixed precision: the fused kernel takes float32
        # scale and offset, and the statistics stay float32.
        weight = dict(shape=(channels,), autocast=False)
        self.beta = self.add_weight(name="beta", initializer="zeros", **weight)
        self.gamma = self.add_weight(name="gamma", initializer="ones", **weight)
        self.moving_mean = self.add_weight(
            name="moving_mean", initializer="zeros", trainable=False, **weight)
        self.moving_variance = self.add_weight(
            name="moving_variance", initializer="ones", trainable=False, **weight)

    def call(self, inputs, training=None):
        if training:
            return self._normalize_batch(inputs)
        return self.moving_map(inputs.dtype).apply(inputs)

    def moving_map(self, dtype="float32") -> PendingAffine:
        """Inference mode's map ``x * scale + offset`` from the moving
        statistics, computed in ``dtype`` with ``tf.nn.batch_normalization``'s
        arithmetic, operation by operation."""
        mean, variance, beta, gamma = (ops.cast(v, dtype) for v in (
            self.moving_mean, self.moving_variance, self.beta, self.gamma))
        scale = ops.rsqrt(variance + self.epsilon) * gamma
        return PendingAffine(scale, beta - mean * scale)

    def _normalize_batch(self, inputs):
        """Training mode: the batch's moments over every axis but the last
        (TF1's fused kernel on TensorFlow, see ``kernels.normalize_batch``),
        whose variance comes Bessel-corrected."""
        channels = self.gamma.shape[0]  # known even where a relaxed trace does not know it
        flat = ops.reshape(inputs, (-1, channels))
        outputs, mean, corrected_variance = kernels.normalize_batch(
            flat, self.gamma, self.beta, self.epsilon)
        self.update_moving(mean, corrected_variance, ops.shape(flat)[0])
        return ops.reshape(outputs, ops.shape(inputs))

    def standardize(self, inputs, sizes: list[int] | None = None, l2_first: bool = False):
        """Training mode without the affine map: ``[(x_hat, affine), ...]``,
        one pair per block of ``sizes`` columns (default: one block of all),
        where ``call`` would return ``affine.apply(x_hat)`` of each block;
        moves the moving statistics as ``call`` does.

        For consumers that fold the map into what they compute from the
        output (the cluster poolings: their projections' weights, their sums
        over frames): ``x_hat`` is then data, so the gradient never forms the
        ``[M, C]`` output gradient, and none flows back to ``inputs`` (the
        frames, data themselves). ``l2_first``: of the rows L2-normalized
        first (TF1's ``l2_normalize``: the input scaling, done here with the
        moments where ``kernels.standardized_streams`` runs).
        """
        rows, sizes = self._rows_and_sizes(inputs, sizes)
        channels = self.gamma.shape[0]
        if kernels.fuses_frame_streams(rows.dtype):
            blocks, mean, corrected_variance = kernels.standardized_streams(
                rows, sizes, l2_first, self.epsilon)
        else:
            if l2_first:
                rows = l2_normalize(rows)
            standardized, mean, corrected_variance = kernels.normalize_batch(
                rows, ops.ones((channels,), "float32"), ops.zeros((channels,), "float32"),
                self.epsilon)
            blocks = split_columns(ops.stop_gradient(standardized), sizes)
        self.update_moving(mean, corrected_variance, ops.shape(rows)[0])
        affines = PendingAffine(self.gamma, self.beta).split(sizes)
        return list(zip(blocks, affines))

    def inference_parts(self, inputs, sizes: list[int] | None = None, l2_first: bool = False):
        """Inference mode as ``standardize`` gives training mode: ``[(x,
        affine), ...]``, one pair per block of ``sizes`` columns, where
        ``call`` would return ``affine.apply(x)`` of each block: the rows as
        they are (L2-normalized first where ``l2_first``) and the moving
        statistics' map (``moving_map``), for the same consumers, which fold
        it. The ``[M, C]`` rows are then read once and written once
        (``kernels.scaled_streams``, where it runs) where the map, the
        input scaling and the split make about six passes."""
        rows, sizes = self._rows_and_sizes(inputs, sizes)
        if kernels.fuses_frame_streams(rows.dtype):
            blocks = kernels.scaled_streams(rows, sizes, l2_first)
        else:
            blocks = split_columns(l2_normalize(rows) if l2_first else rows, sizes)
        return list(zip(blocks, self.moving_map().split(sizes)))

    def _rows_and_sizes(self, inputs, sizes: list[int] | None):
        """``inputs`` as ``[M, C]`` rows (the layer built for them), and the
        column blocks' ``sizes`` (default: one block of all ``C``)."""
        if not self.built:
            self.build(inputs.shape)
        channels = self.gamma.shape[0]
        sizes = [channels] if sizes is None else [int(size) for size in sizes]
        return ops.reshape(inputs, (-1, channels)), sizes

    def update_moving(self, mean, corrected_variance, count):
        """Moves the moving statistics towards a batch's moments over
        ``count`` rows, whose variance comes Bessel-corrected (for a caller
        that normalized the batch itself)."""
        variance = corrected_variance
        if not self.bessel_correction:
            count = ops.cast(count, corrected_variance.dtype)
            variance = corrected_variance * ops.maximum(count - 1.0, 1.0) / count
        rate = 1.0 - self.decay
        self.moving_mean.assign_sub((self.moving_mean - mean) * rate)
        self.moving_variance.assign_sub((self.moving_variance - variance) * rate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def tf1_weights(self):
        return {"beta": self.beta, "gamma": self.gamma,
                "moving_mean": self.moving_mean, "moving_variance": self.moving_variance}

    def get_config(self):
        return {**super().get_config(), "decay": self.decay, "epsilon": self.epsilon,
                "bessel_correction": self.bessel_correction}


@register
class Dense(keras.layers.Layer):
    """TF1 ``slim.fully_connected`` without activation: ``x W (+ b)``.

    Weights drawn by ``initializer`` (``INITIALIZERS``: slim's default xavier,
    i.e. Glorot uniform, or ``variance_scaling``), zero biases, an optional
    slim L2 penalty on the weights (and with ``regularize_biases`` on the
    biases too, as the NeXtVLAD fork's LogisticModel).

    TF1 names: ``weights`` and, with ``use_bias``, ``biases``.
    """

    def __init__(self, units: int, use_bias: bool = True, l2: float = 0.0,
                 initializer: str = "glorot_uniform", regularize_biases: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        if initializer not in INITIALIZERS:
            raise ValueError(f"unknown initializer {initializer!r}; valid: "
                             f"{', '.join(INITIALIZERS)}")
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.l2 = float(l2)
        self.initializer = initializer
        self.regularize_biases = bool(regularize_biases)

    def build(self, input_shape):
        regularizer = SlimL2(self.l2) if self.l2 > 0 else None
        self.kernel = self.add_weight(
            name="weights", shape=(int(input_shape[-1]), self.units),
            initializer=INITIALIZERS[self.initializer](), regularizer=regularizer)
        self.bias = (self.add_weight(
            name="biases", shape=(self.units,), initializer="zeros",
            regularizer=regularizer if self.regularize_biases else None)
            if self.use_bias else None)

    def call(self, inputs):
        outputs = kernels.video_matmul(inputs, self.kernel)
        return outputs + self.bias if self.use_bias else outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def tf1_weights(self):
        names = {"weights": self.kernel}
        if self.use_bias:
            names["biases"] = self.bias
        return names

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "l2": self.l2, "initializer": self.initializer,
                "regularize_biases": self.regularize_biases}


def l2_normalize(x, axis: int = -1):
    """``tf.nn.l2_normalize`` with TF1's epsilon (1e-12 on the squared sum),
    operation by operation: ``x * rsqrt(max(sum(x ** 2), 1e-12))``."""
    squared_sum = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_sum, 1e-12))


def sequence_mask(lengths, max_length):
    """``[B, max_length]`` booleans: position ``t`` is before ``lengths[b]``."""
    return ops.arange(max_length, dtype="int32")[None, :] < ops.cast(lengths, "int32")[:, None]


def divide_no_nan(x, y):
    """``x / y``, and 0 where ``y == 0`` (``tf.math.divide_no_nan``)."""
    nonzero = y != 0
    return ops.where(nonzero, x / ops.where(nonzero, y, ops.ones_like(y)), ops.zeros_like(x))


