"""The base of every model: raw features in, class probabilities out."""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.errors import ConfigError
from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import collect_tf1_weights
from youtube8m_willow.models.input_scaling import scale_features


def model_inputs(inputs) -> dict:
    """A model's input dict from any of the forms a caller may pass: the
    dict itself; a ``(video_matrix, num_frames)`` pair (tuple or list); or
    ``video_matrix`` alone, every frame valid (``num_frames`` = T of a
    ``[B, T, D]`` frame-level batch, 1 for a ``[B, D]`` video-level one)."""
    if isinstance(inputs, dict):
        return inputs
    if isinstance(inputs, (tuple, list)):
        if len(inputs) != 2:
            raise ValueError("a model takes a dict, (video_matrix, num_frames) or video_matrix; "
                             f"got a sequence of {len(inputs)}")
        return {"video_matrix": inputs[0], "num_frames": inputs[1]}
    # Counted from the batch itself: the batch and time dimensions may be unknown when traced.
    valid = ops.ones_like(inputs[..., 0], dtype="int32")
    return {"video_matrix": inputs,
            "num_frames": ops.sum(valid, axis=1) if len(inputs.shape) == 3 else valid}


class VideoModel(keras.Model):
    """Maps a batch of raw (dequantized) features to class probabilities.

    Inputs: a dict with ``video_matrix`` (``[B, D]`` video-level or
    ``[B, T, D]`` frame-level) and ``num_frames`` (``[B]`` int32), and
    optionally ``sampling_seed`` (int ``[2]``: random frame sampling and
    dropout become a function of it, which training sets per step so that a
    resumed run draws what the uninterrupted one did); or, on any backend,
    the pair ``(video_matrix, num_frames)``; or ``video_matrix`` alone, every
    frame valid (see ``model_inputs``). The model scales the features first
    (``--input_scaling``, ``models.input_scaling``: the starter's L2
    normalization, or the NeXtVLAD fork's eigenvalue scaling), as the
    original train/eval/inference graphs did, so every caller (training,
    evaluation, inference, the exported SavedModel) computes the same thing;
    a model may apply it later in its own forward pass, fused with its first
    layer (``scales_own_frames``), the same values.

    Subclasses implement ``predict_probabilities`` and ``tf1_scopes``; a
    model that samples frames also ``frame_indices`` and ``predict_sampled``;
    a model whose training loss has terms of its own overrides
    ``training_objective``.
    """

    # The input scaling of --input_scaling=auto.
    default_input_scaling = "l2"
    # Flag defaults of the original code this model comes from, where they
    # differ from this project's (WILLOW's): used for the flags not given
    # (``train_dir_flags``).
    original_flag_defaults: dict = {}
    # Model flags that an original checkpoint's .meta training graph settles
    # (``legacy.meta_graph.GraphFacts``) where neither given nor recorded.
    graph_fields: tuple[str, ...] = ()
    # CrossEntropyLoss's epsilon in the original code of this model (None:
    # WILLOW's and the 2017 starter's, 1e-5).
    cross_entropy_epsilon: float | None = None

    def __init__(self, config: ModelConfig, **kwargs):
        kwargs.setdefault("name", config.model)
        super().__init__(**kwargs)
        problem = self.config_problem(config)
        if problem:
            raise ConfigError(problem)
        self.config = config
        self.input_scaling = (self.default_input_scaling if config.input_scaling == "auto"
                              else config.input_scaling)

    @classmethod
    def config_problem(cls, config: ModelConfig) -> str | None:
        """What keeps ``config`` from building this model, in one line naming
        the flag (None: nothing); ``validation`` reports it before any work."""
        return None

    def call(self, inputs, training=False):
        inputs = model_inputs(inputs)
        features, num_frames = self.scaled_inputs(
            inputs, scale=not self.scales_own_frames(training))
        if "frame_indices" in inputs:  # the caller read only the frames this model samples
            return self.predict_sampled(features, num_frames, training=training)
        return self.predict_probabilities(features, num_frames, training=training,
                                          sampling_seed=inputs.get("sampling_seed"))

    def frame_indices(self, num_frames, sampling_seed=None):
        """The frames of each video this model reads, int32 ``[B, N]``, drawn
        as its own sampling draws them; None for a model that reads them all.

        A caller holding the frames in another form (training and prediction
        read them as bytes) converts only these and passes them in place of
        ``video_matrix``, with the positions as ``frame_indices``; the model
        then goes on with ``predict_sampled``. The dequantization and scaling
        work frame by frame, so the numbers are the same (the L2 sums of the
        fewer frames may round apart by an ulp)."""
        return None

    def predict_sampled(self, frames, num_frames, training=False):
        """``predict_probabilities`` after the frame sampling, on the frames
        at ``frame_indices`` (scaled, but where ``scales_own_frames``); a
        model that samples implements it."""
        raise NotImplementedError(f"{type(self).__name__} does not sample frames")

    def scales_own_frames(self, training) -> bool:
        """Whether this model's forward pass (in this mode) applies the input
        scaling itself, fused with its first layer, so that ``call`` hands
        it the features unscaled. Only for a scaling that works frame by
        frame (``l2``): sampling then commutes with it."""
        return False

    def scaled_inputs(self, inputs, scale: bool = True):
        """The scaled float32 features and the int32 frame counts of a batch
        (in any of the forms ``model_inputs`` takes); unscaled where not
        ``scale``."""
        inputs = model_inputs(inputs)
        features = ops.cast(inputs["video_matrix"], "float32")
        if scale:
            features = scale_features(features, self.input_scaling)
        return features, ops.cast(inputs["num_frames"], "int32")

    def padding_frame(self, features):
        """``[D]``: what a padded frame of the readers (zeros) is after the
        input scaling, in ``features``' dtype."""
        zeros = ops.zeros((1, features.shape[-1]), "float32")
        return ops.cast(scale_features(zeros, self.input_scaling)[0], features.dtype)

    def training_objective(self, inputs, labels, label_loss):
        """One training forward pass: ``(predictions, label loss, model
        regularization)``, the predictions float32 for the metrics, the label
        loss the one logged as Loss (``label_loss(predictions, labels)``),
        the model regularization a term added to the L2 penalties (both
        weighted by --regularization_penalty). Here the plain model's: no
        term of its own."""
        predictions = ops.cast(self(inputs, training=True), "float32")
        return predictions, label_loss(predictions, labels), ops.convert_to_tensor(0.0)

    def predict_probabilities(self, features, num_frames, training=False, sampling_seed=None):
        raise NotImplementedError

    @classmethod
    def flags_from_shapes(cls, config: ModelConfig, shapes: dict) -> dict:
        """The model flags a checkpoint's variable shapes (TF1 port names ->
        shapes) pin down for this model ({}: none beyond the shared ones,
        ``models.original_train_dir``)."""
        return {}

    def tf1_scopes(self) -> dict:
        """``{TF1 scope: layer}`` of the sub-layers that own weights."""
        raise NotImplementedError

    def tf1_weights(self) -> dict:
        """TF1 variable name -> Keras variable, for checkpoint import."""
        return collect_tf1_weights(self.tf1_scopes())

    @classmethod
    def config_for_tf1_names(cls, config: ModelConfig, names) -> ModelConfig:
        """The config whose graph a checkpoint with these TF1 names (port
        names) was trained with; models with one graph per name keep ``config``."""
        return config

    def build_for_config(self):
        """Creates every weight by running the model once on zeros."""
        config = self.config
        shape = ([1, config.max_frames, config.feature_size] if config.frame_features
                 else [1, config.feature_size])
        with kernels.uncompiled_mixture():  # nothing of this call is kept
            self({"video_matrix": ops.zeros(shape), "num_frames": ops.ones((1,), "int32")})
        return self

    def get_build_config(self):
        return {"built_from_model_config": True}

    def build_from_config(self, config):
        # Weights follow from the model config: a run on zeros creates them all,
        # so a reloaded ``.keras`` model can receive its saved weights.
        self.build_for_config()

    def regularization_loss(self):
        """Sum of the slim L2 penalties of the model's weights."""
        losses = self.losses
        return sum(losses[1:], losses[0]) if losses else ops.convert_to_tensor(0.0)

    def get_config(self):
        return {"config": dataclasses.asdict(self.config), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(ModelConfig.from_dict(config["config"]), name=config.get("name"))
