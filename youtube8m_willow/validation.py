"""Checks of the configs the scripts run with, in one place: an unknown
name or flags that contradict each other fail before any work starts, with
the flag named (``flags.ValidationError``, one line on stderr).

The registries (models, classifiers, samplers, losses, optimizers) are
imported when a check runs, not with this module, so that reading flags
stays free of TensorFlow until the script's logging is set up.
"""

from __future__ import annotations

from absl import flags

from youtube8m_willow.config import ModelConfig


def validate_model_config(config: ModelConfig) -> None:
    """Rejects unknown names and inconsistent flags with the flag named."""
    from youtube8m_willow.layers.sampling import SAMPLING_METHODS
    from youtube8m_willow.models.input_scaling import INPUT_SCALINGS, RGB_SIZE
    from youtube8m_willow.models.recurrent import LSTM_VARIANTS
    from youtube8m_willow.models.classifiers import classifier_names
    from youtube8m_willow.models.registry import is_frame_level, model_class

    model = model_class(config.model)
    problem = model.config_problem(config)
    if problem:
        raise flags.ValidationError(problem)
    if config.input_scaling not in INPUT_SCALINGS:
        raise flags.ValidationError(f"unknown --input_scaling={config.input_scaling!r}; "
                                    f"valid: {', '.join(INPUT_SCALINGS)}")
    scaling = (model.default_input_scaling if config.input_scaling == "auto"
               else config.input_scaling)
    if scaling == "eigen" and config.feature_sizes[0] != RGB_SIZE:
        raise flags.ValidationError(
            f"--input_scaling=eigen (--model={config.model}'s with auto) scales the {RGB_SIZE} "
            f"rgb values, which come first: --feature_sizes must start with {RGB_SIZE}, got "
            f"{','.join(map(str, config.feature_sizes))}")
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


def validate_train_config(config) -> None:
    """train.py's ``TrainConfig``: known loss and optimizer, a positive batch
    size, and training data."""
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
    if config.num_gpu <= 0:
        raise flags.ValidationError("--num_gpu must be positive")
    if not config.train_data_pattern:
        raise flags.ValidationError("--train_data_pattern is required")


def validate_inference_config(config, train_dir_given: bool) -> None:
    """inference.py's ``InferenceConfig``: an output file, and the model
    from either --train_dir or --input_model_tgz, not both."""
    if not config.output_file:
        raise flags.ValidationError("--output_file is required")
    if config.input_model_tgz and train_dir_given:
        raise flags.ValidationError("--train_dir cannot be given with --input_model_tgz "
                                    "(the model comes from the tarball)")
