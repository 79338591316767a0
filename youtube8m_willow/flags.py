"""The absl flags of train.py, eval.py and inference.py, and the one place
where flag values become typed configs (one function per script:
``train_configs``, ``eval_configs``, ``inference_configs``).

Names and defaults are the original's (SPEC section 2). Model flags are
generated from ``ModelConfig``'s fields so the two can never drift apart.
Every flag's help line and group come from ``flag_help``; each script
declares its own flags key (``declare_key_flags``), so its --help lists them.
Resolving the flags against a train_dir's saved ones is
``train_dir_flags``'s job; checking the result is ``validation``'s.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

from youtube8m_willow import flag_help, train_dir_flags
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.train_dir_flags import GivenFlags
from youtube8m_willow.validation import validate_inference_config

FLAGS = flags.FLAGS


def _define(definer, name: str, default, flag_values: flags.FlagValues, **kwargs) -> None:
    """Defines --name once, with its help line and its group (the module
    --helpfull lists it under) from ``flag_help``."""
    if name not in flag_values:
        definer(name=name, default=default, help=flag_help.help_line(name),
                flag_values=flag_values, module_name=flag_help.group_module(name), **kwargs)


def _define_all(flag_values: flags.FlagValues, specs) -> None:
    """``_define`` of each ``(definer, name, default)`` of ``specs``."""
    for definer, name, default in specs:
        _define(definer, name, default, flag_values)


def _define_field(field: dataclasses.Field, flag_values: flags.FlagValues) -> None:
    name, default = field.name, field.default
    if isinstance(default, bool):
        _define(flags.DEFINE_bool, name, default, flag_values)
    elif isinstance(default, int):
        _define(flags.DEFINE_integer, name, default, flag_values)
    elif isinstance(default, float):
        _define(flags.DEFINE_float, name, default, flag_values)
    elif isinstance(default, tuple):
        _define(flags.DEFINE_string, name, ",".join(str(v) for v in default), flag_values)
    else:
        _define(flags.DEFINE_string, name, default, flag_values)


def define_model_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The model and input-layout flags shared by the three scripts."""
    for field in dataclasses.fields(ModelConfig):
        _define_field(field, flag_values)
    _define_all(flag_values, (
        (flags.DEFINE_float, "alpha", 0.5),
        (flags.DEFINE_string, "label_loss", "CrossEntropyLoss"),
        (flags.DEFINE_integer, "batch_size", 1024),
        (flags.DEFINE_bool, "skip_bad_records", False),
        (flags.DEFINE_bool, "drop_out_of_range_labels", False)))


def _define_training_flags(flag_values: flags.FlagValues) -> None:
    """Flags of train.py only. eval.py and inference.py define them too, inert,
    because WILLOW's README passes whole training command lines to them."""
    _define_all(flag_values, (
        (flags.DEFINE_string, "train_data_pattern", ""),
        (flags.DEFINE_bool, "start_new_model", False),
        (flags.DEFINE_float, "regularization_penalty", 1.0),
        (flags.DEFINE_float, "base_learning_rate", 0.001),
        (flags.DEFINE_float, "learning_rate_decay", 0.9),
        (flags.DEFINE_float, "learning_rate_decay_examples", 4000000),
        (flags.DEFINE_integer, "num_epochs", 15),
        (flags.DEFINE_integer, "max_steps", None),
        (flags.DEFINE_integer, "export_model_steps", 10000),
        (flags.DEFINE_string, "optimizer", "AdamOptimizer"),
        (flags.DEFINE_float, "clip_gradient_norm", 1.0),
        (flags.DEFINE_integer, "num_gpu", 1),
        (flags.DEFINE_bool, "log_device_placement", False),
        (flags.DEFINE_integer, "save_checkpoint_secs", 600),
        (flags.DEFINE_integer, "keep_checkpoints", 5),
        (flags.DEFINE_integer, "seed", None),
        (flags.DEFINE_bool, "shuffle", True),
        (flags.DEFINE_bool, "xla", False)))
    if "max_step" not in flag_values:
        flags.DEFINE_alias("max_step", "max_steps", flag_values=flag_values,
                           module_name=flag_help.group_module("max_step"))
    _define(flags.DEFINE_enum, "precision", "float32", flag_values,
            enum_values=["float32", "bfloat16", "float16"])


# The original scripts' defaults that differ between them (SPEC section 2).
# Each script's definer sets them again, so that the three scripts' mains
# can run one after another in one process (the tests do) with their own.
SCRIPT_DEFAULTS = {"train": {"num_readers": 8, "batch_size": 1024},
                   "eval": {"num_readers": 4, "batch_size": 1024},
                   "inference": {"num_readers": 4, "batch_size": 8192}}


def _use_script_defaults(script: str, flag_values: flags.FlagValues) -> None:
    for name, value in SCRIPT_DEFAULTS[script].items():
        flag_values.set_default(name, value)


def define_train_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define_model_flags(flag_values)
    _define_all(flag_values, ((flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/"),
                              (flags.DEFINE_integer, "num_readers", 8)))
    _define_training_flags(flag_values)
    _use_script_defaults("train", flag_values)


def define_eval_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define_model_flags(flag_values)
    _define_training_flags(flag_values)
    _define_all(flag_values, (
        (flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/"),
        (flags.DEFINE_string, "eval_data_pattern", ""),
        (flags.DEFINE_integer, "num_readers", 4),
        (flags.DEFINE_bool, "run_once", False),
        (flags.DEFINE_integer, "top_k", 20),
        (flags.DEFINE_integer, "check_point", -1),
        (flags.DEFINE_integer, "poll_secs", 60),
        (flags.DEFINE_string, "vocabulary_file", "")))
    _use_script_defaults("eval", flag_values)


def define_inference_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define_model_flags(flag_values)
    _define_training_flags(flag_values)
    _define_all(flag_values, (
        (flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/"),
        (flags.DEFINE_string, "output_file", ""),
        (flags.DEFINE_string, "input_data_pattern", ""),
        (flags.DEFINE_integer, "num_readers", 4),
        (flags.DEFINE_integer, "top_k", 20),
        (flags.DEFINE_integer, "check_point", -1),
        (flags.DEFINE_bool, "run_once", False),
        (flags.DEFINE_string, "vocabulary_file", ""),
        (flags.DEFINE_integer, "print_top_videos", 5),
        (flags.DEFINE_string, "segment_label_ids_file", ""),
        (flags.DEFINE_integer, "segment_max_pred", 100000),
        (flags.DEFINE_string, "output_model_tgz", ""),
        (flags.DEFINE_string, "input_model_tgz", ""),
        (flags.DEFINE_string, "untar_model_dir", "/tmp/yt8m-model")))
    _use_script_defaults("inference", flag_values)


def define_segment_map_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """segment_eval_inference.py's flags (the 2019 starter's)."""
    _define_all(flag_values, (
        (flags.DEFINE_string, "eval_data_pattern", ""),
        (flags.DEFINE_string, "label_cache", ""),
        (flags.DEFINE_string, "submission_file", ""),
        (flags.DEFINE_integer, "top_n", 0)))


def define_averaging_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """file_averaging.py's flags."""
    _define_all(flag_values, (
        (flags.DEFINE_list, "inputs", []),
        (flags.DEFINE_list, "weights", []),
        (flags.DEFINE_string, "output", "WILLOW_submission.csv"),
        (flags.DEFINE_integer, "top_k", 20)))


def define_convert_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The weights converter: inference.py's model flags, train_dir,
    check_point, and the weights file to write."""
    define_model_flags(flag_values)
    _define_all(flag_values, (
        (flags.DEFINE_string, "train_dir", "/tmp/yt8m_model/"),
        (flags.DEFINE_integer, "check_point", -1),
        (flags.DEFINE_string, "output_file", "")))


# Each script's definer, by the name its help and the README use.
SCRIPT_DEFINERS = {flag_help.TRAIN: define_train_flags, flag_help.EVAL: define_eval_flags,
                   flag_help.INFERENCE: define_inference_flags,
                   flag_help.SEGMENT_MAP: define_segment_map_flags,
                   flag_help.AVERAGING: define_averaging_flags,
                   flag_help.CONVERT: define_convert_flags}


def declare_key_flags(script: str, module_name: str,
                      flag_values: flags.FlagValues = FLAGS) -> None:
    """Makes ``script``'s own flags (``flag_help.script_flags``) the key
    flags of its module ``module_name``: absl's --help lists the main
    module's key flags. A script calls it with its ``__name__``; absl names
    the main module after ``sys.argv[0]``."""
    if script not in flag_help.SCRIPTS:
        raise ValueError(f"unknown script {script!r}; known: {', '.join(flag_help.SCRIPTS)}")
    owner = sys.argv[0] if module_name == "__main__" else module_name
    for name in flag_help.script_flags(script):
        flag_values.register_key_flag_for_module(owner, flag_values[name])


def script_defaults(script: str) -> dict[str, object]:
    """Every flag ``script`` defines, with its default (defined apart from
    the process's own flags)."""
    flag_values = flags.FlagValues()
    SCRIPT_DEFINERS[script](flag_values)
    return {name: flag_values[name].default for name in flag_values}


def flags_markdown() -> str:
    """The README's flag tables, from ``flag_help`` and the scripts' defaults."""
    return flag_help.markdown({script: script_defaults(script) for script in SCRIPT_DEFINERS})


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
