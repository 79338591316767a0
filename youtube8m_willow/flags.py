"""The absl flags of train.py, eval.py and inference.py, and the one place
where flag values become typed configs.

Names and defaults are the original's (SPEC section 2). Model flags are
generated from ``ModelConfig``'s fields so the two can never drift apart.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from youtube8m_willow.config import (TRAIN_FLAGS_FILE, ModelConfig, load_model_flags,
                                     load_train_flags)

FLAGS = flags.FLAGS

_MODEL_FLAG_HELP = {
    "model": "Model class name (e.g. LogisticModel, MoeModel, NetVLADModelLF).",
    "num_classes": "Number of classes: 4716 for the 2017 data, 3862 for 2018 and later.",
    "feature_names": "Comma-separated feature names, concatenated in this order.",
    "feature_sizes": "Comma-separated feature sizes, one per feature name.",
    "frame_features": "Read frame-level SequenceExamples (else video-level Examples).",
    "max_frames": "Frames kept per video; longer videos are clipped, shorter zero-padded.",
    "frame_sampling": "Frame sampling: random | sequence | uniform. Unset: random if "
                      "--sample_random_frames else sequence.",
    "stats_top_k": "k of the top-k frame statistics of FrameStatisticsModel.",
    "iterations": "Number of frames sampled per video.",
    "video_level_classifier_model": "Classifier on top of frame-level models.",
    "l2_penalty": "L2 penalty of LogisticModel.",
    "segment_labels": "Segment-level (2019) data: train and evaluate on the rated 5-frame "
                      "segments of the records, predict every 5-frame segment.",
    "lstm_variant": "LstmModel's graph for a new run: willow (every layer's final state) or "
                    "starter (the Google starter's: last layer's final h). A checkpoint's "
                    "variable names choose it when continuing, evaluating or predicting.",
}


def _define_field(field: dataclasses.Field) -> None:
    name, default = field.name, field.default
    help_text = _MODEL_FLAG_HELP.get(name, f"Model flag {name} (see the original code).")
    if name in flags.FLAGS:
        return
    if isinstance(default, bool):
        flags.DEFINE_bool(name, default, help_text)
    elif isinstance(default, int):
        flags.DEFINE_integer(name, default, help_text)
    elif isinstance(default, float):
        flags.DEFINE_float(name, default, help_text)
    elif isinstance(default, tuple):
        flags.DEFINE_string(name, ",".join(str(v) for v in default), help_text)
    else:
        flags.DEFINE_string(name, default, help_text)


def define_model_flags() -> None:
    """The model and input-layout flags shared by the three scripts."""
    for field in dataclasses.fields(ModelConfig):
        _define_field(field)
    _define_once(flags.DEFINE_float, "alpha", 0.5, "Weight of positives in CrossEntropyLoss.")
    _define_once(flags.DEFINE_string, "label_loss", "CrossEntropyLoss",
                 "Loss: CrossEntropyLoss | HingeLoss | SoftmaxLoss.")
    _define_once(flags.DEFINE_integer, "batch_size", 1024, "Examples per batch.")
    _define_once(flags.DEFINE_bool, "skip_bad_records", False,
                 "Skip (and count) corrupt or malformed records instead of failing.")
    _define_once(flags.DEFINE_bool, "drop_out_of_range_labels", False,
                 "Drop (and count) label ids >= --num_classes instead of failing.")


def _define_once(definer, name, default, help_text) -> None:
    if name not in flags.FLAGS:
        definer(name, default, help_text)


def _define_training_flags() -> None:
    """Flags of train.py only. eval.py and inference.py define them too, inert,
    because WILLOW's README passes whole training command lines to them."""
    _define_once(flags.DEFINE_string, "train_data_pattern", "", "Glob of the training TFRecord files.")
    _define_once(flags.DEFINE_bool, "start_new_model", False, "Delete train_dir's contents and start over.")
    _define_once(flags.DEFINE_float, "regularization_penalty", 1.0, "Weight of the regularization losses.")
    _define_once(flags.DEFINE_float, "base_learning_rate", 0.001, "Initial learning rate.")
    _define_once(flags.DEFINE_float, "learning_rate_decay", 0.9, "Decay factor per decay period.")
    _define_once(flags.DEFINE_float, "learning_rate_decay_examples", 4000000, "Examples per decay period.")
    _define_once(flags.DEFINE_integer, "num_epochs", 15, "Passes over the data (0 or less: forever).")
    _define_once(flags.DEFINE_integer, "max_steps", None, "Stop at this global step.")
    if "max_step" not in flags.FLAGS:
        flags.DEFINE_alias("max_step", "max_steps")
    _define_once(flags.DEFINE_integer, "export_model_steps", 10000, "Steps between SavedModel exports.")
    _define_once(flags.DEFINE_string, "optimizer", "AdamOptimizer", "TF1 optimizer class name.")
    _define_once(flags.DEFINE_float, "clip_gradient_norm", 1.0, "Per-tensor gradient norm clip (0: none).")
    _define_once(flags.DEFINE_bool, "log_device_placement", False, "Log the device of each op.")
    _define_once(flags.DEFINE_integer, "save_checkpoint_secs", 600, "Seconds between periodic checkpoints.")
    _define_once(flags.DEFINE_integer, "keep_checkpoints", 5, "Newest checkpoints kept in train_dir.")
    _define_once(flags.DEFINE_integer, "seed", None, "Random seed (weights, shuffling, sampling).")
    _define_once(flags.DEFINE_bool, "shuffle", True,
                 "Shuffle files and examples; False reads them in order (deterministic batches).")
    _define_once(flags.DEFINE_bool, "xla", False,
                 "Compile the training step with XLA (numerics may differ slightly).")
    if "precision" not in flags.FLAGS:
        flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16", "float16"],
                          "Compute precision of training: float32, or mixed bfloat16/float16 "
                          "(float32 weights; float16 with dynamic loss scaling).")


# The original scripts' defaults that differ between them (SPEC section 2).
# Each script's definer sets them again, so that the three scripts' mains
# can run one after another in one process (the tests do) with their own.
SCRIPT_DEFAULTS = {"train": {"num_readers": 8, "batch_size": 1024},
                   "eval": {"num_readers": 4, "batch_size": 1024},
                   "inference": {"num_readers": 4, "batch_size": 8192}}


def _use_script_defaults(script: str) -> None:
    for name, value in SCRIPT_DEFAULTS[script].items():
        FLAGS.set_default(name, value)


def define_train_flags() -> None:
    define_model_flags()
    _define_once(flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/", "Checkpoints, summaries and exports.")
    _define_once(flags.DEFINE_integer, "num_readers", 8, "Parallel file readers.")
    _define_training_flags()
    _use_script_defaults("train")


def define_eval_flags() -> None:
    define_model_flags()
    _define_training_flags()
    _define_once(flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/", "Where the checkpoints are.")
    _define_once(flags.DEFINE_string, "eval_data_pattern", "", "Glob of the evaluation TFRecord files.")
    _define_once(flags.DEFINE_integer, "num_readers", 4, "Parallel file readers.")
    _define_once(flags.DEFINE_bool, "run_once", False, "Evaluate the latest checkpoint once and exit.")
    _define_once(flags.DEFINE_integer, "top_k", 20, "Predictions per video kept for GAP and MAP.")
    _define_once(flags.DEFINE_integer, "check_point", -1, "Checkpoint step to evaluate (-1: latest).")
    _define_once(flags.DEFINE_integer, "poll_secs", 60, "Seconds between looks for a new checkpoint.")
    _use_script_defaults("eval")


def define_inference_flags() -> None:
    define_model_flags()
    _define_training_flags()
    _define_once(flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/", "Where the checkpoints are.")
    _define_once(flags.DEFINE_string, "output_file", "", "Where to write the submission CSV.")
    _define_once(flags.DEFINE_string, "input_data_pattern", "", "Glob of the TFRecord files to predict.")
    _define_once(flags.DEFINE_integer, "num_readers", 4, "Parallel file readers.")
    _define_once(flags.DEFINE_integer, "top_k", 20, "Labels per video in the CSV.")
    _define_once(flags.DEFINE_integer, "check_point", -1, "Checkpoint step to use (-1: latest).")
    _define_once(flags.DEFINE_bool, "run_once", False,
                 "Inert in inference.py; accepted because WILLOW's README passes it.")
    _define_once(flags.DEFINE_string, "vocabulary_file", "",
                 "vocabulary.csv (2018+) or label_names.csv (2017): log the first "
                 "videos' top predictions with class names.")
    _define_once(flags.DEFINE_integer, "print_top_videos", 5,
                 "Videos logged with class names when --vocabulary_file is set.")
    _define_once(flags.DEFINE_string, "segment_label_ids_file", "",
                 "With --segment_labels: the whitelisted class ids, one per line (local or "
                 "gs:// path). Default: the 2019 challenge's 1000 classes, shipped with the "
                 "package.")
    _define_once(flags.DEFINE_integer, "segment_max_pred", 100000,
                 "With --segment_labels: segments written per class.")
    _define_once(flags.DEFINE_string, "output_model_tgz", "",
                 "Also write the model (checkpoint and model_flags.json) to this .tgz.")
    _define_once(flags.DEFINE_string, "input_model_tgz", "",
                 "Predict with the model of this .tgz (written by --output_model_tgz), "
                 "unpacked into --untar_model_dir; --train_dir must not be given.")
    _define_once(flags.DEFINE_string, "untar_model_dir", "/tmp/yt8m-model",
                 "Where --input_model_tgz is unpacked.")
    _use_script_defaults("inference")


def define_convert_flags() -> None:
    """The weights converter: inference.py's model flags, train_dir,
    check_point, and the weights file to write."""
    define_model_flags()
    _define_once(flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/", "Where the checkpoints are.")
    _define_once(flags.DEFINE_integer, "check_point", -1, "Checkpoint step to use (-1: latest).")
    _define_once(flags.DEFINE_string, "output_file", "",
                 "The portable weights file (.npz) to write.")


# ---------------------------------------------------------------- configs

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


# Fields that choose how a model runs, not what its weights are: a value given
# on the command line may differ from the train_dir's saved one.
RUNTIME_MODEL_FIELDS = frozenset({"frame_sampling", "segment_labels"})


def _flag_values() -> dict:
    """The model flags' values, as ModelConfig fields."""
    return {field.name: FLAGS[field.name].value for field in dataclasses.fields(ModelConfig)}


def _given_model_flags() -> set[str]:
    """Model flags given explicitly on the command line."""
    return {field.name for field in dataclasses.fields(ModelConfig) if FLAGS[field.name].present}


def _config_from_values(values: dict) -> ModelConfig:
    values = dict(values)
    names = _parse_list(values["feature_names"], str, "feature_names")
    sizes = _parse_list(values["feature_sizes"], int, "feature_sizes")
    if len(names) != len(sizes):
        raise flags.ValidationError(
            f"--feature_names has {len(names)} entries but --feature_sizes has {len(sizes)}")
    values["feature_names"], values["feature_sizes"] = names, sizes
    return ModelConfig.from_dict(values)


def model_config_from_flags() -> ModelConfig:
    """ModelConfig from the command-line flags alone."""
    return _config_from_values(_flag_values())


class _SavedModel:
    """A train_dir's recorded model flags resolved against the command line:
    recorded flags define the model, the others come from the flags."""

    def __init__(self, saved: dict):
        self.recorded = set(saved) & {f.name for f in dataclasses.fields(ModelConfig)}
        flag_values = _flag_values()
        self.given = _config_from_values(flag_values)
        self.config = _config_from_values(
            {**flag_values, **{name: saved[name] for name in self.recorded}})
        given_names = _given_model_flags()
        self.config = self.config.replace(**{  # runtime flags may always be given
            name: getattr(self.given, name) for name in given_names & RUNTIME_MODEL_FIELDS})
        self.conflicts = [
            (name, _flag_text(getattr(self.config, name)), _flag_text(getattr(self.given, name)))
            for name in sorted((given_names & self.recorded) - RUNTIME_MODEL_FIELDS)
            if getattr(self.config, name) != getattr(self.given, name)]


def _flag_text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def model_config_for_training(train_dir: str, start_new_model: bool) -> ModelConfig:
    """train.py: the model saved in train_dir when resuming one (model flags
    need not be repeated; one that contradicts it is an error naming the flag
    and both values), else the command-line flags."""
    saved = None if start_new_model else load_model_flags(train_dir)
    if saved is None:
        config = model_config_from_flags()
    else:
        resolved = _SavedModel(saved)
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


def free_model_fields(train_dir: str, start_new_model: bool = False) -> frozenset[str]:
    """The model flags neither given on the command line nor recorded in
    train_dir's model_flags.json (all of them in an original train_dir but
    the few the original recorded): a checkpoint's names, shapes and graph
    may set them (``models.original_train_dir``), and for a new run the
    records' id key sets ``num_classes``."""
    saved = None if start_new_model or not train_dir else load_model_flags(train_dir)
    return frozenset(field.name for field in dataclasses.fields(ModelConfig)
                     if not FLAGS[field.name].present and field.name not in (saved or {}))


def model_config_for_train_dir(train_dir: str) -> ModelConfig:
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
        config = model_config_from_flags()
    else:
        resolved = _SavedModel(saved)
        for name, saved_value, given_value in resolved.conflicts:
            absl_logging.warning(
                "--%s=%s ignored: the model saved in %s has %s=%s", name, given_value,
                train_dir, name, saved_value)
        config = resolved.config
    validate_model_config(config)
    return config


def validate_model_config(config: ModelConfig) -> None:
    """Rejects unknown names and inconsistent flags with the flag named."""
    from youtube8m_willow.layers.sampling import SAMPLING_METHODS
    from youtube8m_willow.models.recurrent import LSTM_VARIANTS
    from youtube8m_willow.models.classifiers import classifier_names
    from youtube8m_willow.models.registry import is_frame_level, model_class

    model_class(config.model)
    if config.video_level_classifier_model not in classifier_names():
        raise flags.ValidationError(
            f"unknown --video_level_classifier_model={config.video_level_classifier_model!r}; "
            f"valid classifiers: {', '.join(classifier_names())}")
    if config.frame_sampling and config.frame_sampling not in SAMPLING_METHODS:
        raise flags.ValidationError(f"unknown --frame_sampling={config.frame_sampling!r}; "
                                    f"valid: {', '.join(SAMPLING_METHODS)}")
    if is_frame_level(config.model) and not config.frame_features:
        raise flags.ValidationError(
            f"--model={config.model} is a frame-level model: pass --frame_features=True "
            "with frame-level feature names (e.g. --feature_names=rgb,audio)")
    if config.frame_features and not is_frame_level(config.model):
        raise flags.ValidationError(
            f"--model={config.model} is a video-level model but --frame_features=True: "
            "pass --frame_features=False with video-level features (e.g. "
            "--feature_names=mean_rgb,mean_audio), or a frame-level --model")
    if config.num_classes <= 0:
        raise flags.ValidationError("--num_classes must be positive")
    if config.lstm_variant not in LSTM_VARIANTS:
        raise flags.ValidationError(f"unknown --lstm_variant={config.lstm_variant!r}; "
                                    f"valid: {', '.join(LSTM_VARIANTS)}")


def train_config_from_flags():
    """train.py's TrainConfig: the flags, where the command line does not give
    them the kept training flags of the run that train_dir holds (batch size,
    learning-rate schedule, optimizer, ...: ``config.KEPT_TRAIN_FLAGS``). A
    given flag that changes a kept one is said in one line."""
    from absl import logging as absl_logging

    from youtube8m_willow.training.trainer import TrainConfig

    values = {field.name: FLAGS[field.name].value for field in dataclasses.fields(TrainConfig)}
    kept = {} if FLAGS.start_new_model else (load_train_flags(FLAGS.train_dir)
                                             or _original_run_flags(FLAGS.train_dir))
    for name, kept_value in kept.items():
        if not FLAGS[name].present:
            values[name] = kept_value
        elif FLAGS[name].value != kept_value:
            absl_logging.warning(
                "--%s=%s changes the run's %s=%s (kept in %s/%s): the run goes on with %s",
                name, _flag_text(FLAGS[name].value), name, _flag_text(kept_value),
                FLAGS.train_dir.rstrip("/"), TRAIN_FLAGS_FILE, _flag_text(FLAGS[name].value))
    config = TrainConfig(**values)
    validate_train_config(config)
    return config


def loss_flags_for_train_dir(train_dir: str) -> dict:
    """eval.py's ``label_loss`` and ``alpha``: the given flags, else those the
    run was trained with (its kept training flags, or the loss an original's
    model_flags.json records), so Avg_Loss is the loss the run minimized."""
    kept = load_train_flags(train_dir)
    original = load_model_flags(train_dir) or {}
    values = {}
    for name in ("label_loss", "alpha"):
        values[name] = (FLAGS[name].value if FLAGS[name].present
                        else kept.get(name, original.get(name, FLAGS[name].value)))
    return values


def _original_run_flags(train_dir: str) -> dict:
    """The training flags of an original run being continued: those its
    latest checkpoint's ``.meta`` training graph holds (schedule, examples
    per step, optimizer, clip, penalty) and the loss its partial
    model_flags.json records; said in one line."""
    import logging

    import tensorflow as tf

    from youtube8m_willow import checkpoint
    from youtube8m_willow.legacy.meta_graph import read_training_flags

    path = checkpoint.latest_checkpoint(train_dir) if tf.io.gfile.isdir(train_dir) else None
    if path is None:
        return {}
    found = read_training_flags(path + ".meta")
    label_loss = (load_model_flags(train_dir) or {}).get("label_loss")
    if label_loss:
        found["label_loss"] = label_loss
    if found:
        logging.getLogger("youtube8m_willow").info(
            "continuing the original run of %s: it was trained with %s", path,
                          " ".join(f"--{k}={_flag_text(v)}" for k, v in sorted(found.items())))
    return found


def validate_train_config(config) -> None:
    from youtube8m_willow.losses import loss_names
    from youtube8m_willow.training.optimizers import optimizer_names

    if config.label_loss not in loss_names():
        raise flags.ValidationError(f"unknown --label_loss={config.label_loss!r}; "
                                    f"valid losses: {', '.join(loss_names())}")
    if config.optimizer not in optimizer_names():
        raise flags.ValidationError(f"unknown --optimizer={config.optimizer!r}; "
                                    f"valid optimizers: {', '.join(optimizer_names())}")
    if config.batch_size <= 0:
        raise flags.ValidationError("--batch_size must be positive")
    if not config.train_data_pattern:
        raise flags.ValidationError("--train_data_pattern is required")
