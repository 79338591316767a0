"""Frame-level models: a pooling of the ``[B, T, D]`` frames, then a
video-level classifier (``--video_level_classifier_model``).

WILLOW's four "LF" models (NetVLAD, NetFV, Gated DBoF, Soft-DBoF, plus its
DBoF) share one front, ``TwoStreamPoolingModel``: frame sampling, ``input_bn``,
a video stream (the first feature, rgb) and an audio stream (the remaining
columns) pooled separately, concatenated, a hidden layer, optional Context
Gating, the classifier. Each model only says which flags it reads and which
pooling its streams use, exactly as the original does (SPEC section 4).
"""

from __future__ import annotations

import dataclasses
import math

import keras
from keras import ops

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers.classifiers import LogisticClassifier
from youtube8m_willow.layers.core import (BatchNorm, PendingAffine, divide_no_nan, normal,
                                          normalized_or_biased, register, sequence_mask,
                                          split_columns, variance_scaling)
from youtube8m_willow.layers.kernels import video_matmul, weight_shapes_only
from youtube8m_willow.layers.dbof import DBoF, GatedDBoF, SoftDBoF, StarterDBoF
from youtube8m_willow.layers.fisher import NetFV
from youtube8m_willow.layers.gating import ContextGating
from youtube8m_willow.layers.sampling import FrameSampler
from youtube8m_willow.layers.statistics import FrameStatistics
from youtube8m_willow.layers.vlad import NetRVLAD, NetVLAD, NetVLAGD
from youtube8m_willow.models.base import VideoModel
from youtube8m_willow.models.classifiers import create_classifier
from youtube8m_willow.models.registry import create_model, register_model

HIDDEN_ACTIVATIONS = {"relu6": ops.relu6, "sigmoid": ops.sigmoid}

# The starter's DbofModel activations; WILLOW's flag default "relu" means relu6.
STARTER_DBOF_ACTIVATIONS = {"relu": "relu6", "relu6": "relu6", "sigmoid": "sigmoid"}


@register
class HiddenLayer(keras.layers.Layer):
    """The frame-level models' hidden layer: ``x hidden1_weights``, then batch
    norm ``hidden1_bn`` or a bias ``hidden1_biases``, then an activation.

    Args:
        units: ``H``.
        stddev: init stddev of the weights (the original uses 1/sqrt(K));
            None: slim's variance scaling (the NeXtVLAD fork's).
        batch_norm: batch norm instead of the bias (init N(0.01)).
        activation: ``None``, ``"relu6"`` or ``"sigmoid"``.
        bessel_correction: the batch norm's (``BatchNorm``): False for the
            NeXtVLAD fork's unfused ``hidden1_bn``.

    Input ``[B, F]``; output ``[B, H]``.
    TF1 names: ``hidden1_weights`` ``[F, H]``, ``hidden1_bn/*`` or
    ``hidden1_biases`` ``[H]``.
    """

    def __init__(self, units: int, stddev: float | None, batch_norm: bool = True,
                 activation: str | None = "relu6", bessel_correction: bool = True, **kwargs):
        super().__init__(**kwargs)
        if activation is not None and activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"unknown hidden activation {activation!r}; valid: None, "
                             f"{', '.join(HIDDEN_ACTIVATIONS)}")
        self.units = int(units)
        self.stddev = None if stddev is None else float(stddev)
        self.batch_norm = bool(batch_norm)
        self.activation = activation
        self.bessel_correction = bool(bessel_correction)
        self.hidden1_bn = (BatchNorm(bessel_correction=self.bessel_correction, name="hidden1_bn")
                           if self.batch_norm else None)

    def build(self, input_shape):
        self.hidden1_weights = self.add_weight(
            name="hidden1_weights", shape=(int(input_shape[-1]), self.units),
            initializer=variance_scaling() if self.stddev is None else normal(self.stddev))
        if self.hidden1_bn is not None:
            self.hidden1_bn.build((None, self.units))
            self.hidden1_biases = None
        else:
            self.hidden1_biases = self.add_weight(
                name="hidden1_biases", shape=(self.units,), initializer=normal(0.01))

    def call(self, inputs, training=None):
        activation = video_matmul(inputs, self.hidden1_weights)
        if self.hidden1_bn is not None:
            activation = self.hidden1_bn(activation, training=training)
        else:
            activation += self.hidden1_biases
        if self.activation is not None:
            activation = HIDDEN_ACTIVATIONS[self.activation](activation)
        return activation

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def tf1_weights(self):
        return normalized_or_biased("hidden1_weights", self.hidden1_weights, self.hidden1_bn,
                                    "hidden1_bn", "hidden1_biases", self.hidden1_biases)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "stddev": self.stddev,
                "batch_norm": self.batch_norm, "activation": self.activation,
                "bessel_correction": self.bessel_correction}


def stream_sizes(config: ModelConfig) -> tuple[int, int]:
    """(video, audio) widths: the first feature, then all the others.

    With the default ``rgb,audio`` features this is the original's hard-coded
    1024/128 split; with a single feature there is no audio stream.
    """
    video = int(config.feature_sizes[0])
    return video, config.feature_size - video


def normalize_input(input_bn: BatchNorm | None, flat, sizes: list[int], training,
                    folds: bool, l2_first: bool = False) -> list[tuple]:
    """``input_bn`` on the ``[B*N, D]`` frames, cut into the streams of
    ``sizes`` columns: ``[(rows, affine), ...]``.

    Where ``folds`` (every pooling folding the batch norm's map into what it
    computes from the frames: ``FrameSamplingModel.folds_input_bn``), the
    rows and the map unapplied, of the frames L2-normalized first where
    ``l2_first``: in training the standardized rows and gamma and beta
    (``BatchNorm.standardize``: a gradient without the ``[B*N, D]`` input
    gradients), in inference the rows and the moving statistics' map
    (``BatchNorm.inference_parts``: no pass of the map over the rows); the
    same values. Else the normalized rows and None; without ``input_bn``,
    the rows as they are.
    """
    if folds:
        if training:
            return input_bn.standardize(flat, sizes, l2_first)
        return input_bn.inference_parts(flat, sizes, l2_first)
    rows = flat if input_bn is None else input_bn(flat, training=training)
    return [(stream, None) for stream in split_columns(rows, sizes)]


def pool_rows(pooling, rows, num_samples: int, affine: PendingAffine | None, training):
    """``pooling`` of ``[B*N, D]`` rows seen as ``[B, N, D]`` frames,
    handing it ``affine`` where ``normalize_input`` left one."""
    frames = ops.reshape(rows, (-1, num_samples, rows.shape[-1]))
    if affine is None:
        return pooling(frames, training=training)
    return pooling(frames, training=training, input_affine=affine)


class FrameLevelModel(VideoModel):
    """Base of the frame-level models (``[B, T, D]`` input)."""

    frame_level = True


class FrameSamplingModel(FrameLevelModel):
    """A frame-level model that first samples frames with its ``sampler``
    (a ``FrameSampler``, set by the subclass) and goes on from those alone
    (``predict_sampled``, which the subclass implements)."""

    sampler: FrameSampler

    def input_bn_poolings(self) -> list:
        """The poolings that read the output of ``input_bn``, the batch norm
        of the sampled frames (a subclass's attribute, where it has one)."""
        return []

    def folds_input_bn(self, training) -> bool:
        """Whether the poolings are handed the frames and ``input_bn``'s map
        unapplied (``normalize_input``): where every pooling folds the map
        (``folds_input_affine``), in either mode (``training`` is there for
        a model whose answer would depend on it)."""
        # Not a class attribute's default: on PyTorch a class attribute would
        # hide the instance's layer (torch keeps submodules apart).
        input_bn = getattr(self, "input_bn", None)
        poolings = [p for p in self.input_bn_poolings() if p is not None]
        return bool(input_bn is not None and poolings
                    and all(p.folds_input_affine for p in poolings))

    def scales_own_frames(self, training) -> bool:
        """The L2 input scaling goes with the frames' preparation for the
        poolings where input_bn's map is folded (``BatchNorm.standardize``
        in training, ``BatchNorm.inference_parts`` in inference: one kernel
        where it runs)."""
        return self.input_scaling == "l2" and self.folds_input_bn(training)

    def normalized_streams(self, frames, sizes: list[int], training) -> list[tuple]:
        """``normalize_input`` of the sampled frames ``[B, N, D]`` as this
        model's mode has them (scaled, or not where ``scales_own_frames``)."""
        flat = ops.reshape(frames, (-1, self.config.feature_size))
        return normalize_input(getattr(self, "input_bn", None), flat, sizes, training,
                               self.folds_input_bn(training), self.scales_own_frames(training))

    def frame_indices(self, num_frames, sampling_seed=None):
        return self.sampler.indices(num_frames, sampling_seed)

    def predict_probabilities(self, features, num_frames, training=False, sampling_seed=None):
        frames = self.sampler(features, num_frames, sampling_seed)
        return self.predict_sampled(frames, num_frames, training=training)


@dataclasses.dataclass(frozen=True)
class FrontSettings:
    """The flags one LF model reads for its shared front."""

    cluster_size: int
    hidden_size: int
    relu: bool
    add_batch_norm: bool
    gating: bool = False
    remove_diag: bool = False
    fc_dimred: bool = True


class TwoStreamPoolingModel(FrameSamplingModel):
    """WILLOW's shared "LF" front (SPEC section 4, "Common front").

    sampled frames ``[B, N, D]`` -> ``[B*N, D]`` -> ``input_bn`` -> video
    columns pooled with ``K`` clusters (scope ``video_<scope>``), audio columns
    with ``K // audio_divisor`` (``audio_<scope>``) -> concat -> hidden layer
    (``hidden1_weights``; ``hidden1_bn`` when batch norm and relu, else
    ``hidden1_biases``; relu6 when relu) -> Context Gating -> classifier.

    Subclasses set ``scope`` and ``audio_divisor`` and implement
    ``front_settings`` and ``make_pooling``.
    """

    scope = ""
    audio_divisor = 2

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        settings = self.front_settings(config)
        self.settings = settings
        self.video_size, self.audio_size = stream_sizes(config)
        self.sampler = FrameSampler(config.iterations, config.sampling, name="sampler")
        self.input_bn = BatchNorm(name="input_bn") if settings.add_batch_norm else None
        self.video_pooling = self.make_pooling(config, settings.cluster_size, "video")
        self.audio_pooling = (
            self.make_pooling(config, settings.cluster_size // self.audio_divisor, "audio")
            if self.audio_size else None)
        self.hidden = (HiddenLayer(
            settings.hidden_size, stddev=1.0 / math.sqrt(settings.cluster_size),
            batch_norm=settings.add_batch_norm and settings.relu,
            activation="relu6" if settings.relu else None, name="hidden")
            if settings.fc_dimred else None)
        self.gating = (ContextGating(add_batch_norm=settings.add_batch_norm,
                                     remove_diag=settings.remove_diag, name="context_gating")
                       if settings.gating else None)
        self.classifier = create_classifier(config.video_level_classifier_model, config)

    @classmethod
    def front_settings(cls, config: ModelConfig) -> FrontSettings:
        raise NotImplementedError

    def make_pooling(self, config: ModelConfig, cluster_size: int, stream: str):
        """The pooling layer of one stream (``"video"`` or ``"audio"``)."""
        raise NotImplementedError

    def input_bn_poolings(self) -> list:
        return [self.video_pooling, self.audio_pooling]

    def pool(self, frames, training=False):
        """``[B, N, D]`` sampled frames -> the ``[B, F]`` pooled vector."""
        poolings = [p for p in self.input_bn_poolings() if p is not None]
        sizes = [self.video_size, self.audio_size][:len(poolings)]
        pooled = [pool_rows(pooling, rows, self.config.iterations, affine, training)
                  for pooling, (rows, affine) in zip(
                      poolings, self.normalized_streams(frames, sizes, training))]
        return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, 1)

    def predict_sampled(self, frames, num_frames, training=False):
        activation = self.pool(frames, training=training)
        if self.hidden is not None:
            activation = self.hidden(activation, training=training)
        if self.gating is not None:
            activation = self.gating(activation, training=training)
        return self.classifier(activation, training=training)

    def tf1_scopes(self):
        return {"input_bn": self.input_bn,
                f"video_{self.scope}": self.video_pooling,
                f"audio_{self.scope}": self.audio_pooling,
                "": [self.hidden, self.gating, self.classifier]}


@register_model
class NetVLADModelLF(TwoStreamPoolingModel):
    """NetVLAD pooling (``--lightvlad``: NetRVLAD, ``--vlagd``: NetVLAGD) of
    the rgb and audio streams, hidden layer, optional gating, classifier.

    Reads netvlad_cluster_size, netvlad_hidden_size, netvlad_relu,
    netvlad_add_batch_norm, gating, gating_remove_diag, lightvlad, vlagd.
    """

    scope = "VLAD"
    audio_divisor = 2

    @classmethod
    def front_settings(cls, config):
        return FrontSettings(
            cluster_size=config.netvlad_cluster_size, hidden_size=config.netvlad_hidden_size,
            relu=config.netvlad_relu, add_batch_norm=config.netvlad_add_batch_norm,
            gating=config.gating, remove_diag=config.gating_remove_diag)

    def make_pooling(self, config, cluster_size, stream):
        pooling = NetRVLAD if config.lightvlad else NetVLAGD if config.vlagd else NetVLAD
        return pooling(cluster_size, config.netvlad_add_batch_norm, name=f"{stream}_VLAD")


@register_model
class NetFVModelLF(TwoStreamPoolingModel):
    """NetFV pooling of the rgb and audio streams, hidden layer, optional
    gating, classifier.

    Reads fv_cluster_size, fv_hidden_size, fv_relu, fv_couple_weights,
    fv_coupling_factor, gating, and (as the original) netvlad_add_batch_norm
    for batch norm. Its gating has no remove_diag option in the original.
    """

    scope = "FV"
    audio_divisor = 2

    @classmethod
    def front_settings(cls, config):
        return FrontSettings(
            cluster_size=config.fv_cluster_size, hidden_size=config.fv_hidden_size,
            relu=config.fv_relu, add_batch_norm=config.netvlad_add_batch_norm,
            gating=config.gating)

    def make_pooling(self, config, cluster_size, stream):
        return NetFV(cluster_size, config.netvlad_add_batch_norm,
                     couple_weights=config.fv_couple_weights,
                     coupling_factor=config.fv_coupling_factor, name=f"{stream}_FV")


class _DbofFamilyModel(TwoStreamPoolingModel):
    """The DBoF "LF" models: dbof_* flags, audio stream with K // 8 clusters."""

    scope = "DBOF"
    audio_divisor = 8

    @classmethod
    def front_settings(cls, config):
        return FrontSettings(
            cluster_size=config.dbof_cluster_size, hidden_size=config.dbof_hidden_size,
            relu=config.dbof_relu, add_batch_norm=config.dbof_add_batch_norm,
            fc_dimred=config.fc_dimred)


@register_model
class GatedDbofModelLF(_DbofFamilyModel):
    """Gated Soft-DBoF on the rgb stream, Soft-DBoF on the audio stream,
    hidden layer when fc_dimred, classifier.

    Reads dbof_cluster_size, dbof_hidden_size, dbof_relu, dbof_add_batch_norm,
    softdbof_maxpool (audio stream only), fc_dimred.
    """

    def make_pooling(self, config, cluster_size, stream):
        if stream == "video":
            return GatedDBoF(cluster_size, config.dbof_add_batch_norm, name="video_DBOF")
        return SoftDBoF(cluster_size, config.dbof_add_batch_norm,
                        max_pool=config.softdbof_maxpool, name="audio_DBOF")


@register_model
class SoftDbofModelLF(_DbofFamilyModel):
    """Soft-DBoF on both streams, hidden layer when fc_dimred, classifier.

    Reads dbof_cluster_size, dbof_hidden_size, dbof_relu, dbof_add_batch_norm,
    softdbof_maxpool, fc_dimred.
    """

    def make_pooling(self, config, cluster_size, stream):
        return SoftDBoF(cluster_size, config.dbof_add_batch_norm,
                        max_pool=config.softdbof_maxpool, name=f"{stream}_DBOF")


@register_model
class DbofModelLF(_DbofFamilyModel):
    """WILLOW's DBoF: linear cluster projections of both streams pooled as
    ``[L2(mean), L2(max)]``, hidden layer, classifier.

    Reads dbof_cluster_size, dbof_hidden_size, dbof_relu, dbof_add_batch_norm.
    dbof_activation applies no activation (the original's test never fires);
    ``"glu"`` only doubles the cluster size, as in the original.
    """

    @classmethod
    def front_settings(cls, config):
        settings = super().front_settings(config)
        factor = 2 if config.dbof_activation == "glu" else 1
        return dataclasses.replace(settings, cluster_size=factor * settings.cluster_size,
                                   fc_dimred=True)

    def make_pooling(self, config, cluster_size, stream):
        return DBoF(cluster_size, config.dbof_add_batch_norm, name=f"{stream}_DBOF")


@register_model
class DbofModel(FrameSamplingModel):
    """The starter code's Deep Bag of Frames over all the feature columns:
    ``input_bn``, cluster layer (``activation(BN(x W))``), pooling over frames
    (dbof_pooling_method), hidden layer with the same activation, classifier.

    Reads iterations, dbof_add_batch_norm, dbof_cluster_size,
    dbof_hidden_size, dbof_activation ("relu" means relu6),
    dbof_pooling_method.
    """

    graph_fields = ("dbof_activation", "dbof_pooling_method")

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        if config.dbof_activation not in STARTER_DBOF_ACTIVATIONS:
            raise ValueError(f"unknown --dbof_activation={config.dbof_activation!r} for DbofModel; "
                             f"valid: {', '.join(STARTER_DBOF_ACTIVATIONS)}")
        activation = STARTER_DBOF_ACTIVATIONS[config.dbof_activation]
        batch_norm = config.dbof_add_batch_norm
        self.sampler = FrameSampler(config.iterations, config.sampling, name="sampler")
        self.input_bn = BatchNorm(name="input_bn") if batch_norm else None
        self.dbof = StarterDBoF(config.dbof_cluster_size, batch_norm, activation=activation,
                                pooling_method=config.dbof_pooling_method, name="dbof")
        self.hidden = HiddenLayer(config.dbof_hidden_size,
                                  stddev=1.0 / math.sqrt(config.dbof_cluster_size),
                                  batch_norm=batch_norm, activation=activation, name="hidden")
        self.classifier = create_classifier(config.video_level_classifier_model, config)

    def input_bn_poolings(self) -> list:
        return [self.dbof]

    def predict_sampled(self, frames, num_frames, training=False):
        [(rows, affine)] = self.normalized_streams(frames, [self.config.feature_size], training)
        pooled = pool_rows(self.dbof, rows, self.config.iterations, affine, training)
        activation = self.hidden(pooled, training=training)
        return self.classifier(activation, training=training)

    def tf1_scopes(self):
        return {"input_bn": self.input_bn, "": [self.dbof, self.hidden, self.classifier]}


@register_model
class FrameLevelLogisticModel(FrameLevelModel):
    """The starter's logistic regression over the mean of each video's valid
    frames (no sampling): ``sigmoid(mean W + b)``, slim L2 1e-8 on ``W``.

    TF1 names: ``fully_connected/weights``, ``fully_connected/biases``.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.logistic = LogisticClassifier(config.num_classes, l2=1e-8, name="logistic")

    def predict_probabilities(self, features, num_frames, training=False, sampling_seed=None):
        valid = ops.cast(sequence_mask(num_frames, ops.shape(features)[1]), features.dtype)
        summed = ops.sum(features * valid[:, :, None], axis=1)
        average = divide_no_nan(summed, ops.cast(num_frames, features.dtype)[:, None])
        return self.logistic(average, training=training)

    def tf1_scopes(self):
        return {"": self.logistic}


@register_model
class FrameStatisticsModel(FrameLevelModel):
    """The YouTube-8M paper's video-level representation computed on the fly:
    ``[mean; std; top-k]`` of each video's valid frames (all of them, no
    sampling; k = stats_top_k), then the video-level classifier.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.statistics = FrameStatistics(config.stats_top_k, name="statistics")
        self.classifier = create_classifier(config.video_level_classifier_model, config)

    def predict_probabilities(self, features, num_frames, training=False, sampling_seed=None):
        return self.classifier(self.statistics(features, num_frames), training=training)

    def tf1_scopes(self):
        return {"": self.classifier}


def parameter_count(config: ModelConfig) -> dict[str, int]:
    """Builds the model of ``config`` (weight shapes only) and counts its weights.

    Returns ``{"trainable": n, "total": n}`` (``total`` adds the batch-norm
    moving statistics).
    """
    with weight_shapes_only():
        model = create_model(config).build_for_config()
        trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
        total = sum(math.prod(v.shape) for v in model.weights)
    return {"trainable": int(trainable), "total": int(total)}
