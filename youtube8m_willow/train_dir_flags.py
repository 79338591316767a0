"""A train_dir's saved flags resolved against the command line's: the model,
training flags and loss that a run of train.py, eval.py or inference.py
uses when the train_dir already holds a run.

The train_dir records its model (``model_flags.json``) and its kept
training flags (``train_flags.json``, or an original run's ``.meta`` graph);
the command line comes in as ``GivenFlags`` (``flags.given_flags()``), so
nothing here reads absl's FLAGS and every function can be called with
plain values.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from absl import flags

from youtube8m_willow.config import (TRAIN_FLAGS_FILE, ModelConfig, load_model_flags,
                                     load_train_flags)
from youtube8m_willow.validation import validate_model_config, validate_train_config

# Fields that choose how a model runs, not what its weights are: a value given
# on the command line may differ from the train_dir's saved one.
RUNTIME_MODEL_FIELDS = frozenset({"frame_sampling", "segment_labels"})


@dataclasses.dataclass(frozen=True)
class GivenFlags:
    """A parsed command line: every flag's value, and the names of the flags
    given explicitly (the others hold their defaults)."""

    values: Mapping[str, Any]
    present: frozenset[str] = frozenset()

    def given(self, name: str) -> bool:
        return name in self.present


def _parse_list(value, cast, flag: str):
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [v.strip() for v in str(value).split(",") if v.strip()]
    try:
        return tuple(cast(v) for v in items)
    except ValueError:
        raise flags.ValidationError(
            f"--{flag}={value!r} is not a comma-separated list of "
            f"{'integers' if cast is int else 'names'}") from None


def _model_values(given: GivenFlags) -> dict:
    """The model flags' values, as ModelConfig fields."""
    return {field.name: given.values[field.name] for field in dataclasses.fields(ModelConfig)}


def _with_original_defaults(values: dict, fixed: set[str]) -> dict:
    """``values`` with the original code's defaults of the model they name
    (``VideoModel.original_flag_defaults``: the NeXtVLAD fork's
    ``moe_num_mixtures`` 4, ...) for the model flags not in ``fixed`` (given
    or recorded); an unknown model is left to validation."""
    from youtube8m_willow.errors import ConfigError
    from youtube8m_willow.models.registry import model_class

    try:
        defaults = model_class(str(values["model"])).original_flag_defaults
    except ConfigError:
        return values
    return {**values, **{name: value for name, value in defaults.items() if name not in fixed}}


def _given_model_flags(given: GivenFlags) -> set[str]:
    """Model flags given explicitly on the command line."""
    return {field.name for field in dataclasses.fields(ModelConfig) if given.given(field.name)}


def _config_from_values(values: dict) -> ModelConfig:
    values = dict(values)
    names = _parse_list(values["feature_names"], str, "feature_names")
    sizes = _parse_list(values["feature_sizes"], int, "feature_sizes")
    if len(names) != len(sizes):
        raise flags.ValidationError(
            f"--feature_names has {len(names)} entries but --feature_sizes has {len(sizes)}")
    values["feature_names"], values["feature_sizes"] = names, sizes
    return ModelConfig.from_dict(values)


def model_config_from_given(given: GivenFlags) -> ModelConfig:
    """ModelConfig from the command-line flags alone (and the defaults of the
    model's original code for the flags not given)."""
    return _config_from_values(_with_original_defaults(_model_values(given),
                                                       _given_model_flags(given)))


class _SavedModel:
    """A train_dir's recorded model flags resolved against the command line:
    recorded flags define the model, the others come from the flags."""

    def __init__(self, saved: dict, given: GivenFlags):
        self.recorded = set(saved) & {f.name for f in dataclasses.fields(ModelConfig)}
        flag_values = _model_values(given)
        given_names = _given_model_flags(given)
        self.given = _config_from_values(flag_values)
        self.config = _config_from_values(_with_original_defaults(
            {**flag_values, **{name: saved[name] for name in self.recorded}},
            given_names | self.recorded))
        self.config = self.config.replace(**{  # runtime flags may always be given
            name: getattr(self.given, name) for name in given_names & RUNTIME_MODEL_FIELDS})
        self.conflicts = [
            (name, _flag_text(getattr(self.config, name)), _flag_text(getattr(self.given, name)))
            for name in sorted((given_names & self.recorded) - RUNTIME_MODEL_FIELDS)
            if getattr(self.config, name) != getattr(self.given, name)]


def _flag_text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def model_config_for_training(train_dir: str, start_new_model: bool,
                              given: GivenFlags) -> ModelConfig:
    """train.py: the model saved in train_dir when resuming one (model flags
    need not be repeated; one that contradicts it is an error naming the flag
    and both values), else the command-line flags."""
    saved = None if start_new_model else load_model_flags(train_dir)
    if saved is None:
        config = model_config_from_given(given)
    else:
        resolved = _SavedModel(saved, given)
        if resolved.conflicts:
            name, saved_value, given_value = resolved.conflicts[0]
            more = len(resolved.conflicts) - 1
            raise flags.ValidationError(
                f"--{name}={given_value} contradicts the model saved in {train_dir} "
                f"({name}={saved_value}); drop the flag to resume that model, or pass "
                "--start_new_model to train a new one"
                + (f" ({more} more flags differ)" if more else ""))
        config = resolved.config
    validate_model_config(config)
    return config


def free_model_fields(train_dir: str, given: GivenFlags,
                      start_new_model: bool = False) -> frozenset[str]:
    """The model flags neither given on the command line nor recorded in
    train_dir's model_flags.json (all of them in an original train_dir but
    the few the original recorded): a checkpoint's names, shapes and graph
    may set them (``models.original_train_dir``), and for a new run the
    records' id key sets ``num_classes``."""
    saved = None if start_new_model or not train_dir else load_model_flags(train_dir)
    return frozenset(field.name for field in dataclasses.fields(ModelConfig)
                     if not given.given(field.name) and field.name not in (saved or {}))


def model_config_for_train_dir(train_dir: str, given: GivenFlags) -> ModelConfig:
    """eval/inference: the model saved in train_dir defines the graph; a model
    flag that contradicts it is ignored with one warning naming it. Without
    model_flags.json (an original train_dir) the flags build the graph; the
    original's partial model_flags.json defines only what it records."""
    import tensorflow as tf
    from absl import logging as absl_logging

    if not tf.io.gfile.isdir(train_dir):
        raise flags.ValidationError(f"--train_dir {train_dir!r} does not exist")
    saved = load_model_flags(train_dir)
    if saved is None:
        config = model_config_from_given(given)
    else:
        resolved = _SavedModel(saved, given)
        for name, saved_value, given_value in resolved.conflicts:
            absl_logging.warning(
                "--%s=%s ignored: the model saved in %s has %s=%s", name, given_value,
                train_dir, name, saved_value)
        config = resolved.config
    validate_model_config(config)
    return config


def train_config(given: GivenFlags):
    """train.py's TrainConfig: the flags, where the command line does not give
    them the kept training flags of the run that train_dir holds (batch size,
    learning-rate schedule, optimizer, ...: ``config.KEPT_TRAIN_FLAGS``). A
    given flag that changes a kept one is said in one line."""
    from absl import logging as absl_logging

    from youtube8m_willow.training.trainer import TrainConfig

    train_dir = given.values["train_dir"]
    values = {field.name: given.values[field.name] for field in dataclasses.fields(TrainConfig)}
    kept, source = {}, ""
    if not given.values["start_new_model"]:
        kept, source = load_train_flags(train_dir), f"{train_dir.rstrip('/')}/{TRAIN_FLAGS_FILE}"
        if not kept:
            kept, source = _original_run_flags(train_dir, given.values["num_gpu"])
    for name, kept_value in kept.items():
        if not given.given(name):
            values[name] = kept_value
        elif given.values[name] != kept_value:
            absl_logging.warning(
                "--%s=%s changes the run's %s=%s (from %s): the run goes on with %s",
                name, _flag_text(given.values[name]), name, _flag_text(kept_value), source,
                _flag_text(given.values[name]))
    config = TrainConfig(**values)
    validate_train_config(config)
    return config


def loss_flags_for_train_dir(train_dir: str, given: GivenFlags) -> dict:
    """eval.py's ``label_loss`` and ``alpha``: the given flags, else those the
    run was trained with (its kept training flags, or the loss an original's
    model_flags.json records), so Avg_Loss is the loss the run minimized."""
    kept = load_train_flags(train_dir)
    original = load_model_flags(train_dir) or {}
    values = {}
    for name in ("label_loss", "alpha"):
        values[name] = (given.values[name] if given.given(name)
                        else kept.get(name, original.get(name, given.values[name])))
    return values


def _original_run_flags(train_dir: str, num_gpu: int = 1) -> tuple[dict, str]:
    """The training flags of an original run being continued, and where they
    come from: those its latest checkpoint's ``.meta`` training graph holds
    (schedule, examples per step, optimizer, clip, penalty) and the loss its
    partial model_flags.json records; said in one line. The graph counts
    examples per step: with ``num_gpu`` towers (the NeXtVLAD fork's) a
    tower's batch is that divided by ``num_gpu``."""
    import logging

    import tensorflow as tf

    from youtube8m_willow import checkpoint
    from youtube8m_willow.legacy.meta_graph import read_training_flags

    path = checkpoint.latest_checkpoint(train_dir) if tf.io.gfile.isdir(train_dir) else None
    if path is None:
        return {}, ""
    found = read_training_flags(path + ".meta")
    if "batch_size" in found and found["batch_size"] % num_gpu == 0:
        found["batch_size"] //= num_gpu
    label_loss = (load_model_flags(train_dir) or {}).get("label_loss")
    if label_loss:
        found["label_loss"] = label_loss
    if found:
        logging.getLogger("youtube8m_willow").info(
            "continuing the original run of %s: it was trained with %s", path,
            " ".join(f"--{k}={_flag_text(v)}" for k, v in sorted(found.items())))
    return found, f"the original run of {path}"
