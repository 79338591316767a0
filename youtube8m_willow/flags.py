"""The absl flags of train.py, eval.py and inference.py, and the one place
where flag values become typed configs.

Names and defaults are the original's (SPEC section 2). Model flags are
generated from ``ModelConfig``'s fields so the two can never drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import flags

from youtube8m_willow.config import ModelConfig

FLAGS = flags.FLAGS
MODEL_FLAGS_FILE = "model_flags.json"

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


def define_train_flags() -> None:
    define_model_flags()
    _define_once(flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/", "Checkpoints, summaries and exports.")
    _define_once(flags.DEFINE_integer, "num_readers", 8, "Parallel file readers.")
    _define_training_flags()


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


def define_inference_flags() -> None:
    define_model_flags()
    _define_training_flags()
    FLAGS.set_default("batch_size", 8192)
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


# ---------------------------------------------------------------- configs

def _parse_list(value, cast):
    if isinstance(value, (list, tuple)):
        return tuple(cast(v) for v in value)
    return tuple(cast(v.strip()) for v in str(value).split(",") if v.strip())


def model_config_from_flags(saved: dict | None = None) -> ModelConfig:
    """ModelConfig from the flags; ``saved`` (a train_dir's model_flags.json)
    fills every flag not given explicitly on the command line."""
    values = {}
    for field in dataclasses.fields(ModelConfig):
        flag = FLAGS[field.name]
        if saved is not None and field.name in saved and not flag.present:
            values[field.name] = saved[field.name]
        else:
            values[field.name] = flag.value
    names = _parse_list(values["feature_names"], str)
    sizes = _parse_list(values["feature_sizes"], int)
    if len(names) != len(sizes):
        raise flags.ValidationError(
            f"--feature_names has {len(names)} entries but --feature_sizes has {len(sizes)}")
    values["feature_names"], values["feature_sizes"] = names, sizes
    return ModelConfig.from_dict(values)


def load_saved_model_flags(train_dir: str) -> dict | None:
    """The model flags a train_dir was trained with, if this project wrote it."""
    import tensorflow as tf  # deferred: keeps flag parsing light

    path = os.path.join(train_dir, MODEL_FLAGS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def save_model_flags(train_dir: str, config: ModelConfig) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(train_dir)
    path = os.path.join(train_dir, MODEL_FLAGS_FILE)
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "w") as handle:
        handle.write(config.to_json())
    tf.io.gfile.rename(temporary, path, overwrite=True)


def model_config_for_train_dir(train_dir: str) -> ModelConfig:
    """eval/inference: the train_dir's saved model flags, overridden by the
    flags given on the command line; fails clearly if train_dir is missing."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(train_dir):
        raise flags.ValidationError(f"--train_dir {train_dir!r} does not exist")
    config = model_config_from_flags(load_saved_model_flags(train_dir))
    validate_model_config(config)
    return config


def validate_model_config(config: ModelConfig) -> None:
    """Rejects unknown names and inconsistent flags with the flag named."""
    from youtube8m_willow.layers.sampling import SAMPLING_METHODS
    from youtube8m_willow.models.recurrent import LSTM_VARIANTS
    from youtube8m_willow.models.registry import (classifier_names, is_frame_level,
                                                  model_class)

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
    if config.num_classes <= 0:
        raise flags.ValidationError("--num_classes must be positive")
    if config.lstm_variant not in LSTM_VARIANTS:
        raise flags.ValidationError(f"unknown --lstm_variant={config.lstm_variant!r}; "
                                    f"valid: {', '.join(LSTM_VARIANTS)}")


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
