"""Typed configuration of models, read from flags in one place (`flags.py`).

Field names are the original absl flag names, so a flag maps onto a field
with the same name and the same default.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from youtube8m_willow.atomic import write_atomic

MODEL_FLAGS_FILE = "model_flags.json"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a model: input layout and model flags."""

    model: str = "LogisticModel"
    num_classes: int = 4716
    feature_names: tuple[str, ...] = ("mean_rgb",)
    feature_sizes: tuple[int, ...] = (1024,)
    frame_features: bool = False
    max_frames: int = 300
    # Frame sampling: "random" | "sequence" | "uniform"; None follows sample_random_frames.
    frame_sampling: str | None = None
    # --- frame-level model flags (WILLOW frame_level_models.py) ---
    gating_remove_diag: bool = False
    lightvlad: bool = False
    vlagd: bool = False
    iterations: int = 30
    dbof_add_batch_norm: bool = True
    sample_random_frames: bool = True
    dbof_cluster_size: int = 16384
    dbof_hidden_size: int = 2048
    dbof_relu: bool = True
    dbof_var_features: int = 0
    dbof_activation: str = "relu"
    softdbof_maxpool: bool = False
    netvlad_cluster_size: int = 64
    netvlad_relu: bool = True
    netvlad_dimred: int = -1
    gatednetvlad_dimred: int = 1024
    gating: bool = False
    hidden_size: int = 1024
    netvlad_hidden_size: int = 1024
    netvlad_hidden_size_video: int = 1024
    netvlad_hidden_size_audio: int = 64
    netvlad_add_batch_norm: bool = True
    fv_cluster_size: int = 64
    fv_hidden_size: int = 2048
    fv_relu: bool = True
    fv_couple_weights: bool = True
    fv_coupling_factor: float = 0.01
    dbof_pooling_method: str = "max"
    video_level_classifier_model: str = "MoeModel"
    lstm_cells: int = 1024
    lstm_layers: int = 2
    lstm_cells_video: int = 1024
    lstm_cells_audio: int = 128
    gru_cells: int = 1024
    gru_cells_video: int = 1024
    gru_cells_audio: int = 128
    gru_layers: int = 2
    lstm_random_sequence: bool = False
    gru_random_sequence: bool = False
    gru_backward: bool = False
    lstm_backward: bool = False
    # LstmModel's graph for a new run: "willow" (every layer's final state)
    # or "starter" (the Google starter's: the last layer's final h). A
    # checkpoint's variable names override it.
    lstm_variant: str = "willow"
    fc_dimred: bool = True
    # Segment-level (2019) records: train and evaluate on rated 5-frame
    # segments, predict every 5-frame segment (``data.segments``).
    segment_labels: bool = False
    # --- frame statistics model (new) ---
    stats_top_k: int = 5
    # --- video-level model flags (WILLOW video_level_models.py) ---
    moe_num_mixtures: int = 2
    moe_l2: float = 1e-8
    moe_low_rank_gating: int = -1
    moe_prob_gating: bool = False
    moe_prob_gating_input: str = "prob"
    # --- starter's model flags ---
    l2_penalty: float = 1e-8  # LogisticModel's fixed L2 penalty
    # --- NeXtVLAD fork's model flags (linrongc/youtube-8m nextvlad.py) ---
    nextvlad_cluster_size: int = 64
    nextvlad_hidden_size: int = 1024
    groups: int = 8
    drop_rate: float = 0.5
    expansion: int = 2
    gating_reduction: int = 8
    mix_number: int = 3
    cl_temperature: float = 2.0
    cl_lambda: float = 1.0
    # How the features are scaled before the model (``models.input_scaling``):
    # "auto" (the model's own), "l2" (the starter's) or "eigen" (the fork's).
    input_scaling: str = "auto"

    @property
    def feature_size(self) -> int:
        return int(sum(self.feature_sizes))

    @property
    def sampling(self) -> str:
        """The frame sampling method, defaulting to the original behavior."""
        if self.frame_sampling:
            return self.frame_sampling
        return "random" if self.sample_random_frames else "sequence"

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Builds a config from a dict, ignoring unknown keys (forward compatible)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        for key, cast in (("feature_names", str), ("feature_sizes", int)):
            if key in kwargs:  # a list, or a comma-separated string (the original's files)
                value = kwargs[key]
                items = value.split(",") if isinstance(value, str) else value
                kwargs[key] = tuple(cast(v.strip() if isinstance(v, str) else v)
                                    for v in items if str(v).strip())
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))


def load_model_flags(train_dir: str) -> dict[str, Any] | None:
    """The model flags a train_dir records in ``model_flags.json``, as
    written (None for a train_dir without one). This project records every
    ModelConfig field; the original starter code recorded only a few
    (model, feature names and sizes, frame_features, label_loss)."""
    return _read_json_object(os.path.join(train_dir, MODEL_FLAGS_FILE), "model flags file")


def _read_json_object(path: str, what: str, cure: str = "") -> dict[str, Any] | None:
    """The JSON object in ``path`` (None without the file); a file that is
    not one is a one-line error naming it as ``what``."""
    import tensorflow as tf  # deferred: configs stay importable without TensorFlow work

    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as handle:
            values = json.load(handle)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        from youtube8m_willow.errors import ConfigError

        raise ConfigError(f"{path} is not a valid {what}: {error}{cure}") from None
    return values


def save_model_config(train_dir: str, config: ModelConfig) -> None:
    """Records the model in train_dir atomically, for eval, inference and resumes."""
    write_atomic(os.path.join(train_dir, MODEL_FLAGS_FILE), config.to_json())


# The training flags that shape a run's math and input, kept with the run in
# TRAIN_FLAGS_FILE (beside the original's model_flags.json, which stays as the
# original wrote it) so that a resume without flags goes on as the run began.
TRAIN_FLAGS_FILE = "train_flags.json"
KEPT_TRAIN_FLAGS = ("batch_size", "base_learning_rate", "learning_rate_decay",
                    "learning_rate_decay_examples", "optimizer", "clip_gradient_norm",
                    "regularization_penalty", "label_loss", "alpha", "num_epochs", "shuffle",
                    "precision", "num_gpu")


def load_train_flags(train_dir: str) -> dict[str, Any]:
    """The kept training flags of train_dir's run ({} for a new train_dir or
    one written by the original code)."""
    values = _read_json_object(os.path.join(train_dir, TRAIN_FLAGS_FILE), "training flags file",
                               "; fix it, or delete it to resume with the flags given") or {}
    return {name: values[name] for name in KEPT_TRAIN_FLAGS if name in values}


def save_train_flags(train_dir: str, values: dict[str, Any]) -> None:
    """Records the run's kept training flags atomically."""
    write_atomic(os.path.join(train_dir, TRAIN_FLAGS_FILE),
                 json.dumps({k: values[k] for k in KEPT_TRAIN_FLAGS}, indent=1))
