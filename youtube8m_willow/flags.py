"""The absl flags of train.py, eval.py and inference.py, and the one place
where flag values become typed configs (one function per script:
``train_configs``, ``eval_configs``, ``inference_configs``).

Names and defaults are the original's (SPEC section 2). Model flags are
generated from ``ModelConfig``'s fields so the two can never drift apart.
Resolving the flags against a train_dir's saved ones is
``train_dir_flags``'s job; checking the result is ``validation``'s.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from youtube8m_willow import train_dir_flags
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.train_dir_flags import GivenFlags
from youtube8m_willow.validation import validate_inference_config

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
    _define_vocabulary_file()
    _use_script_defaults("eval")


def _define_vocabulary_file() -> None:
    _define_once(flags.DEFINE_string, "vocabulary_file", "",
                 "vocabulary.csv (2018+) or label_names.csv (2017): class names for eval.py's "
                 "per-class report and best/worst classes, and for inference.py's log of the "
                 "first videos' top predictions.")


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
    _define_vocabulary_file()
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


def define_segment_map_flags() -> None:
    """segment_eval_inference.py's flags (the 2019 starter's)."""
    _define_once(flags.DEFINE_string, "eval_data_pattern", "",
                 "File glob of the segment-rated validation SequenceExamples (context 'id', "
                 "'segment_labels', 'segment_start_times', 'segment_scores').")
    _define_once(flags.DEFINE_string, "label_cache", "",
                 "Path of a label cache file: read instead of the records if it exists, "
                 "written after reading them otherwise. Leave blank for no cache.")
    _define_once(flags.DEFINE_string, "submission_file", "",
                 "The segment submission file generated by inference.py.")
    _define_once(flags.DEFINE_integer, "top_n", 0,
                 "The cap per-class predictions by a maximum of N. Use 0 for not capping.")


def define_averaging_flags() -> None:
    """file_averaging.py's flags."""
    _define_once(flags.DEFINE_list, "inputs", [],
                 "Input submission CSVs (positional arguments work too). Default: WILLOW's "
                 "seven inference outputs.")
    _define_once(flags.DEFINE_list, "weights", [],
                 "One weight per input (default: equal weights).")
    _define_once(flags.DEFINE_string, "output", "WILLOW_submission.csv",
                 "Where to write the ensemble CSV.")
    _define_once(flags.DEFINE_integer, "top_k", 20, "Classes kept per video.")


def define_convert_flags() -> None:
    """The weights converter: inference.py's model flags, train_dir,
    check_point, and the weights file to write."""
    define_model_flags()
    _define_once(flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/", "Where the checkpoints are.")
    _define_once(flags.DEFINE_integer, "check_point", -1, "Checkpoint step to use (-1: latest).")
    _define_once(flags.DEFINE_string, "output_file", "",
                 "The portable weights file (.npz) to write.")


# ---------------------------------------------------------------- configs
# One function per script: the parsed flags as the configs its library
# function takes. A train_dir's saved flags are resolved against them in
# ``train_dir_flags``.

def given_flags() -> GivenFlags:
    """The parsed command line: every flag's value and which were given."""
    return GivenFlags(values={name: FLAGS[name].value for name in FLAGS},
                      present=frozenset(name for name in FLAGS if FLAGS[name].present))


def model_config_from_flags() -> ModelConfig:
    """ModelConfig from the command-line flags alone."""
    return train_dir_flags.model_config_from_given(given_flags())


def train_configs():
    """train.py's ``(TrainConfig, ModelConfig, free model fields)``: the model
    and the kept training flags of the run that --train_dir holds, else the
    flags; the free fields may still be read off its checkpoint or the data."""
    given = given_flags()
    model_config = train_dir_flags.model_config_for_training(FLAGS.train_dir,
                                                             FLAGS.start_new_model, given)
    config = train_dir_flags.train_config(given)
    free = train_dir_flags.free_model_fields(FLAGS.train_dir, given, FLAGS.start_new_model)
    return config, model_config, free


def eval_configs():
    """eval.py's ``(EvalConfig, GivenFlags)``: the run's loss and model are
    resolved against the train_dir once its first checkpoint is there
    (``apps.run_eval``)."""
    from youtube8m_willow.evaluation import EvalConfig

    config = EvalConfig(
        train_dir=FLAGS.train_dir, data_pattern=FLAGS.eval_data_pattern,
        batch_size=FLAGS.batch_size, num_readers=FLAGS.num_readers, top_k=FLAGS.top_k,
        check_point=FLAGS.check_point, label_loss=FLAGS.label_loss, alpha=FLAGS.alpha,
        run_once=FLAGS.run_once, poll_secs=FLAGS.poll_secs,
        skip_bad_records=FLAGS.skip_bad_records,
        drop_out_of_range_labels=FLAGS.drop_out_of_range_labels,
        vocabulary_file=FLAGS.vocabulary_file)
    return config, given_flags()


def inference_configs():
    """inference.py's ``(EvalConfig, InferenceConfig, GivenFlags)``: what to
    read, what to write (checked here), and the command line that the
    model's train_dir (--train_dir or --input_model_tgz's) is resolved
    against (``apps.run_inference``)."""
    from youtube8m_willow.evaluation import EvalConfig
    from youtube8m_willow.prediction import InferenceConfig

    inference = InferenceConfig(
        output_file=FLAGS.output_file, vocabulary_file=FLAGS.vocabulary_file,
        print_top_videos=FLAGS.print_top_videos,
        segment_label_ids_file=FLAGS.segment_label_ids_file,
        segment_max_pred=FLAGS.segment_max_pred, output_model_tgz=FLAGS.output_model_tgz,
        input_model_tgz=FLAGS.input_model_tgz, untar_model_dir=FLAGS.untar_model_dir)
    validate_inference_config(inference, train_dir_given=FLAGS["train_dir"].present)
    config = EvalConfig(
        train_dir=FLAGS.train_dir, data_pattern=FLAGS.input_data_pattern,
        batch_size=FLAGS.batch_size, num_readers=FLAGS.num_readers, top_k=FLAGS.top_k,
        check_point=FLAGS.check_point, skip_bad_records=FLAGS.skip_bad_records,
        drop_out_of_range_labels=FLAGS.drop_out_of_range_labels)
    return config, inference, given_flags()


def segment_map_config() -> tuple[str, str, int, str]:
    """segment_eval_inference.py's ``(submission_file, eval_data_pattern,
    top_n, label_cache)``."""
    return FLAGS.submission_file, FLAGS.eval_data_pattern, FLAGS.top_n, FLAGS.label_cache


def averaging_config(argv: list[str]) -> tuple[list[str], list[float] | None, str, int]:
    """file_averaging.py's ``(inputs, weights, output, top_k)``: the inputs
    are the positional arguments and --inputs (none: WILLOW's seven files)."""
    from youtube8m_willow.submission.ensemble import WILLOW_INPUTS

    try:
        weights = [float(value) for value in FLAGS.weights] or None
    except ValueError:
        raise flags.ValidationError(
            f"--weights must be numbers, got {','.join(FLAGS.weights)!r}") from None
    inputs = list(argv[1:]) + list(FLAGS.inputs) or list(WILLOW_INPUTS)
    return inputs, weights, FLAGS.output, FLAGS.top_k
