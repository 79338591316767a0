"""The NeXtVLAD fork's models (linrongc/youtube-8m, the 2018 challenge's
third place; SPEC section 16): ``NeXtVLADModel`` and its online-distilled
mixture ``MixNeXtVladModel``, under the original class names.

Both see the frames scaled by the fork's eigenvalue scaling by default
(``--input_scaling=auto``), read all ``max_frames`` frames (no sampling:
NeXtVLAD's attention is masked by ``num_frames``) and take the fork's
classifier heads (``models.classifiers.fork_classifier``). Where the fork's
flag defaults differ from this project's shared flags they are the models'
``original_flag_defaults``, used when the flag is not given.
"""

from __future__ import annotations

import keras
from keras import ops

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import BatchNorm, Dense, register, softmax
from youtube8m_willow.layers.nextvlad import NeXtVLAD, SEGating
from youtube8m_willow.models.classifiers import fork_classifier
from youtube8m_willow.models.frame_level import FrameLevelModel, HiddenLayer, stream_sizes
from youtube8m_willow.models.registry import register_model

# The fork's MoeModel reads --moe_num_mixtures with its default 4 (WILLOW's: 2).
FORK_FLAG_DEFAULTS = {"moe_num_mixtures": 4}
# The fork's CrossEntropyLoss adds 1e-8 inside its logarithms (WILLOW's: 1e-5).
FORK_CROSS_ENTROPY_EPSILON = 1e-8
# MixNeXtVladModel's distillation: epsilon inside its logarithms.
DISTILLATION_EPSILON = 1e-8


def dropout(inputs, rate: float, seed=None, generator=None):
    """TF1's ``tf.nn.dropout`` with keep probability ``1 - rate``: kept values
    scaled by ``1 / (1 - rate)``. Draws from ``seed`` (int ``[2]``,
    stateless) when given, else from ``generator`` (``kernels.uniform``)."""
    draws = kernels.uniform(ops.shape(inputs), generator=generator, sampling_seed=seed)
    keep = ops.cast(draws >= rate, inputs.dtype)
    return inputs / (1.0 - rate) * keep


@register
class NeXtVLADTower(keras.layers.Layer):
    """One NeXtVLAD network up to its classifier: a NeXtVLAD of the rgb
    frames (``K`` clusters, ``G`` groups) and one of the audio frames
    (``K // 2``, ``G // 2``), concatenated, dropout (training only; absent
    at rate 0), ``hidden1_weights`` without bias then ``hidden1_bn`` (no
    activation), SE gating.

    Args:
        cluster_size, groups, expansion: the rgb NeXtVLAD's.
        hidden_units: ``H``.
        gating_reduction: the SE gating's bottleneck factor.
        drop_rate: dropout rate of the pooled vector.
        video_size: the rgb columns (the rest are audio; none: one stream).
        stream_scope: ``VLAD`` (NeXtVLADModel: ``video_VLAD``) or ``vlad``
            (the mixture's branches: ``video_vlad``).

    Input ``[B, T, F]`` frames and ``[B]`` frame counts; output ``[B, H]``.
    """

    def __init__(self, cluster_size: int, hidden_units: int, groups: int, expansion: int,
                 gating_reduction: int, drop_rate: float, video_size: int = 1024,
                 stream_scope: str = "VLAD", **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = int(cluster_size)
        self.hidden_units = int(hidden_units)
        self.groups = int(groups)
        self.expansion = int(expansion)
        self.gating_reduction = int(gating_reduction)
        self.drop_rate = float(drop_rate)
        self.video_size = int(video_size)
        self.stream_scope = stream_scope
        self.video_vlad = NeXtVLAD(self.cluster_size, self.groups, self.expansion,
                                   name=f"video_{stream_scope}")
        self.audio_vlad = NeXtVLAD(self.cluster_size // 2, self.groups // 2, self.expansion,
                                   name=f"audio_{stream_scope}")
        self.hidden = HiddenLayer(self.hidden_units, stddev=None, activation=None,
                                  bessel_correction=False, name="hidden")
        self.gating = SEGating(self.gating_reduction, name="se_gating")
        self.generator = kernels.seed_generator(None)

    def build(self, frames_shape, num_frames_shape=None):
        feature_size = int(frames_shape[-1])
        self.has_audio = feature_size > self.video_size
        self.video_vlad.build((None, None, self.video_size))
        pooled = self.video_vlad.output_size()
        if self.has_audio:
            self.audio_vlad.build((None, None, feature_size - self.video_size))
            pooled += self.audio_vlad.output_size()
        self.hidden.build((None, pooled))
        self.gating.build((None, self.hidden_units))

    def call(self, frames, num_frames, training=None, dropout_seed=None, padding_frame=None):
        """``padding_frame`` ``[F]``: the value of the padded frames (see
        ``NeXtVLAD.call``; None: not known)."""
        video_padding = audio_padding = None
        if padding_frame is not None:
            video_padding = padding_frame[:self.video_size]
            audio_padding = padding_frame[self.video_size:]
        pooled = self.video_vlad(frames[:, :, :self.video_size], num_frames, training=training,
                                 padding_frame=video_padding)
        if self.has_audio:
            audio = self.audio_vlad(frames[:, :, self.video_size:], num_frames,
                                    training=training, padding_frame=audio_padding)
            pooled = ops.concatenate([pooled, audio], 1)
        if training and self.drop_rate > 0:
            pooled = dropout(pooled, self.drop_rate, dropout_seed, self.generator)
        return self.gating(self.hidden(pooled, training=training), training=training)

    def compute_output_shape(self, frames_shape, num_frames_shape=None):
        return (frames_shape[0], self.hidden_units)

    def tf1_weights(self):
        names = {f"{self.video_vlad.name}/{k}": v for k, v in self.video_vlad.tf1_weights().items()}
        if self.has_audio:
            names.update({f"{self.audio_vlad.name}/{k}": v
                          for k, v in self.audio_vlad.tf1_weights().items()})
        return {**names, **self.hidden.tf1_weights(), **self.gating.tf1_weights()}

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "hidden_units": self.hidden_units, "groups": self.groups,
                "expansion": self.expansion, "gating_reduction": self.gating_reduction,
                "drop_rate": self.drop_rate, "video_size": self.video_size,
                "stream_scope": self.stream_scope}


def _tower(config: ModelConfig, stream_scope: str, name: str) -> NeXtVLADTower:
    return NeXtVLADTower(
        config.nextvlad_cluster_size, config.nextvlad_hidden_size, config.groups,
        config.expansion, config.gating_reduction, config.drop_rate,
        video_size=stream_sizes(config)[0], stream_scope=stream_scope, name=name)


class _ForkModel(FrameLevelModel):
    """What the fork's models share: its input scaling, flag defaults and
    cross-entropy epsilon, and the sizes its checkpoints' shapes give."""

    default_input_scaling = "eigen"
    original_flag_defaults = FORK_FLAG_DEFAULTS
    graph_fields = ("drop_rate", "l2_penalty")
    cross_entropy_epsilon = FORK_CROSS_ENTROPY_EPSILON
    # The scope of the (first) network's weights: "" or "branch_0/".
    network_scope = ""
    stream_scope = "VLAD"

    @classmethod
    def flags_from_shapes(cls, config, shapes):
        """nextvlad_cluster_size, groups, expansion (the rgb NeXtVLAD's
        ``cluster_weights`` ``[E*F, G*K]`` and centers ``[1, D, K]``),
        nextvlad_hidden_size and gating_reduction (``hidden1_weights``,
        ``gating_weights_1``), nothing unless all are there and agree; and
        the head, video_level_classifier_model (``fully_connected`` or
        ``gates``)."""
        scope = cls.network_scope
        vlad = f"{scope}video_{cls.stream_scope}"
        weights = shapes.get(f"{vlad}/cluster_weights")
        centers = shapes.get(f"{vlad}/cluster_weights2")
        hidden = shapes.get(f"{scope}hidden1_weights")
        gating = shapes.get(f"{scope}gating_weights_1")
        heads = {"LogisticModel": f"{scope}fully_connected/weights", "MoeModel": "gates/weights"}
        found = {"video_level_classifier_model": head
                 for head, name in heads.items() if name in shapes}
        if not (weights and centers and hidden and gating) or len(centers) != 3:
            return found
        (expanded, groups_clusters), (_, group_size, clusters) = weights, centers
        video_size, bottleneck = stream_sizes(config)[0], gating[1]
        groups, reduction = expanded // group_size, hidden[1] // max(bottleneck, 1)
        if (expanded % video_size or groups * clusters != groups_clusters
                or hidden[1] // max(reduction, 1) != bottleneck):
            return found
        return {**found, "nextvlad_cluster_size": clusters, "groups": groups,
                "expansion": expanded // video_size, "nextvlad_hidden_size": hidden[1],
                "gating_reduction": reduction}


@register_model
class NeXtVLADModel(_ForkModel):
    """NeXtVLAD of the rgb and audio frames, hidden layer, SE gating, then
    ``--video_level_classifier_model`` (the fork's heads: its LogisticModel
    regularizes the biases too; its MoeModel takes --l2_penalty).

    Reads nextvlad_cluster_size, nextvlad_hidden_size, groups, expansion,
    gating_reduction, drop_rate, video_level_classifier_model, l2_penalty,
    moe_num_mixtures (default 4 here, as the fork's).
    TF1 names: ``video_VLAD/*``, ``audio_VLAD/*``, ``hidden1_weights``,
    ``hidden1_bn/*``, ``gating_weights_1``, ``gating_bn/*``,
    ``gating_weights_2``, the head's (``fully_connected/*`` or
    ``gates/weights``, ``experts/*``).
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.tower = _tower(config, "VLAD", "tower")
        self.classifier = fork_classifier(config.video_level_classifier_model, config)

    def predict_probabilities(self, features, num_frames, training=False, sampling_seed=None):
        hidden = self.tower(features, num_frames, training=training, dropout_seed=sampling_seed,
                            padding_frame=self.padding_frame(features))
        return self.classifier(hidden, training=training)

    def tf1_scopes(self):
        return {"": [self.tower, self.classifier]}


def _branch_seed(sampling_seed, branch: int):
    """Branch ``branch``'s dropout seed: the step's seed shifted by an odd
    constant per branch, so the branches draw different masks."""
    if sampling_seed is None:
        return None
    return sampling_seed + ops.cast(ops.array([0x9E3779B1 * (branch + 1) % 2 ** 31, 0]),
                                    sampling_seed.dtype)


def distillation_loss(mixture_logits, branch_logits, temperature: float):
    """Mean over the batch of ``sum_n KL(softmax(mixture / T) ||
    softmax(branch_n / T))``, the softmax over the classes, epsilon 1e-8
    inside the logarithms; no gradient is stopped (the fork's)."""
    teacher = softmax(mixture_logits / temperature)[:, None, :]
    students = softmax(branch_logits / temperature)
    divergence = ops.sum(teacher * (ops.log(teacher + DISTILLATION_EPSILON)
                                    - ops.log(students + DISTILLATION_EPSILON)), axis=-1)
    return ops.mean(ops.sum(divergence, axis=-1))


@register_model
class MixNeXtVladModel(_ForkModel):
    """``mix_number`` NeXtVLAD networks (branches) mixed by a gate computed
    from the mean frame: ``sigmoid(sum_n gate_n * logits_n)`` with
    ``gate = softmax(mix_weights(mix_weights_bn(mean over the frames)))``
    (the mean counts padded frames, as the fork's).

    Trained with online knowledge distillation (``training_objective``): the
    label loss of the mixture plus each branch's, and cl_lambda times the KL
    divergence of each branch's softened classes from the mixture's
    (temperature cl_temperature), weighted by --regularization_penalty with
    the L2 terms. Its heads are the fork's LogisticModel (the fork's
    MoeModel has no logits: it fails there, and is refused here).

    Reads the NeXtVLADModel flags and mix_number, cl_temperature, cl_lambda.
    TF1 names: ``mix_weights_bn/*``, ``mix_weights/{weights,biases}``,
    ``branch_<n>/video_vlad/*``, ``branch_<n>/audio_vlad/*`` and each
    branch's hidden layer, gating and ``fully_connected/*``.
    """

    original_flag_defaults = {**FORK_FLAG_DEFAULTS,
                              "video_level_classifier_model": "LogisticModel"}
    network_scope = "branch_0/"
    stream_scope = "vlad"
    graph_fields = ("drop_rate", "l2_penalty", "cl_temperature", "cl_lambda")

    @classmethod
    def flags_from_shapes(cls, config, shapes):
        """The branch's sizes (``NeXtVLADModel``'s) and ``mix_number`` (the
        ``mix_weights`` ``[F, M]``)."""
        found = super().flags_from_shapes(config, shapes)
        mix = shapes.get("mix_weights/weights", ())
        return {**found, "mix_number": mix[1]} if len(mix) == 2 else found

    @classmethod
    def config_problem(cls, config: ModelConfig) -> str | None:
        if config.video_level_classifier_model != "LogisticModel":
            return (f"--model=MixNeXtVladModel mixes the logits of LogisticModel heads: "
                    f"--video_level_classifier_model={config.video_level_classifier_model} "
                    "has none (the original fails with KeyError 'logits'); pass "
                    "--video_level_classifier_model=LogisticModel")
        if config.mix_number < 1:
            return f"--mix_number must be positive, got {config.mix_number}"
        return None

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.mix_bn = BatchNorm(name="mix_weights_bn")
        self.mix_weights = Dense(config.mix_number, initializer="variance_scaling",
                                 name="mix_weights")
        self.branches = [_tower(config, "vlad", f"branch_{n}") for n in range(config.mix_number)]
        self.heads = [fork_classifier("LogisticModel", config, f"logistic_{n}")
                      for n in range(config.mix_number)]
        for head in self.heads:  # read through ``logits``, never called: built here
            head.build((None, config.nextvlad_hidden_size))

    def mixture_logits(self, features, num_frames, training=False, sampling_seed=None):
        """``(mixture logits [B, C], each branch's logits [B, M, C])``."""
        gates = self.mix_weights(self.mix_bn(ops.mean(features, axis=1), training=training))
        gates = softmax(gates)
        padding_frame = self.padding_frame(features)  # the same for every branch
        logits = ops.stack([
            head.logits(branch(features, num_frames, training=training,
                               dropout_seed=_branch_seed(sampling_seed, n),
                               padding_frame=padding_frame))
            for n, (branch, head) in enumerate(zip(self.branches, self.heads))], axis=1)
        return ops.sum(gates[:, :, None] * logits, axis=1), logits

    def predict_probabilities(self, features, num_frames, training=False, sampling_seed=None):
        mixture, _ = self.mixture_logits(features, num_frames, training, sampling_seed)
        return ops.sigmoid(mixture)

    def training_objective(self, inputs, labels, label_loss):
        features, num_frames = self.scaled_inputs(inputs)
        mixture, logits = self.mixture_logits(features, num_frames, training=True,
                                              sampling_seed=inputs.get("sampling_seed"))
        mixture, logits = ops.cast(mixture, "float32"), ops.cast(logits, "float32")
        predictions = ops.sigmoid(mixture)
        loss = label_loss(predictions, labels)
        for n in range(self.config.mix_number):
            loss = loss + label_loss(ops.sigmoid(logits[:, n]), labels)
        distillation = self.config.cl_lambda * distillation_loss(
            mixture, logits, self.config.cl_temperature)
        return predictions, loss, distillation

    def tf1_scopes(self):
        return {"mix_weights_bn": self.mix_bn, "mix_weights": self.mix_weights,
                **{branch.name: [branch, head]
                   for branch, head in zip(self.branches, self.heads)}}
