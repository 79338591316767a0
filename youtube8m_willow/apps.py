"""What train.py, eval.py and inference.py do, as library functions that
take configs (``flags.train_configs()`` and friends), not absl FLAGS: the
scripts only parse their flags and call one of these.

Each function imports its own stack when called, so that eval.py and
inference.py do not load the trainer, and nothing loads TensorFlow before
the script has set up its environment (``cli.start_script``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from youtube8m_willow import train_dir_flags
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.train_dir_flags import GivenFlags

if TYPE_CHECKING:
    from youtube8m_willow.evaluation import EvalConfig
    from youtube8m_willow.prediction import InferenceConfig
    from youtube8m_willow.training.trainer import TrainConfig


def run_training(config: TrainConfig, model_config: ModelConfig,
                 free_model_fields: frozenset = frozenset()):
    """train.py: trains ``model_config`` as ``config`` says. The fields in
    ``free_model_fields`` may still be read off the checkpoint being
    continued or the records (the class count of a new run)."""
    from youtube8m_willow.training import distribute
    from youtube8m_willow.training.train_dir import removed_if_left_empty
    from youtube8m_willow.training.trainer import prepare_train_dir, resolved_model_config, train

    model_config = resolved_model_config(
        "" if config.start_new_model else config.train_dir, config.train_data_pattern,
        model_config, free_model_fields, skip_bad_records=config.skip_bad_records)
    strategy = distribute.select_strategy()  # first: it sets up the collective ops
    chief = distribute.strategy_is_chief(strategy)  # the other workers write nothing
    with removed_if_left_empty(config.train_dir, enabled=chief):
        if chief:
            prepare_train_dir(config)  # start_new_model clears it once, here
        return train(dataclasses.replace(config, start_new_model=False), model_config, strategy)


def run_eval(config: EvalConfig, given: GivenFlags) -> list[dict]:
    """eval.py: evaluates the train_dir's checkpoints with the model and loss
    its run was trained with (``given``: the command line they are resolved
    against); the per-class reports name the classes of
    ``config.vocabulary_file`` when one is given (read first: a bad file
    fails before any evaluation)."""
    from youtube8m_willow import evaluation
    from youtube8m_willow.submission.vocabulary import load_vocabulary

    vocabulary = load_vocabulary(config.vocabulary_file) if config.vocabulary_file else None
    if not config.run_once and config.check_point < 0:
        # Started beside train.py: the model flags appear with its first checkpoint.
        evaluation.wait_for_checkpoint(config.train_dir, config.poll_secs)
    model_config = train_dir_flags.model_config_for_train_dir(config.train_dir, given)
    config = dataclasses.replace(
        config, free_model_fields=train_dir_flags.free_model_fields(config.train_dir, given),
        **train_dir_flags.loss_flags_for_train_dir(config.train_dir, given))
    return evaluation.evaluate(config, model_config, vocabulary=vocabulary)


def run_inference(config: EvalConfig, inference: InferenceConfig, given: GivenFlags) -> int:
    """inference.py: writes the submission CSV (the ``Class,Segments`` one for
    a segment model) of ``config``'s records with the model of its
    train_dir, or of ``inference.input_model_tgz``; returns the number of
    videos (segments) scored."""
    from youtube8m_willow import prediction
    from youtube8m_willow.segments.inference import run_segment_inference
    from youtube8m_willow.submission.model_tgz import extract_model_tgz, write_model_tgz
    from youtube8m_willow.submission.vocabulary import load_vocabulary

    train_dir = config.train_dir
    if inference.input_model_tgz:
        train_dir = extract_model_tgz(inference.input_model_tgz, inference.untar_model_dir)
    model_config = train_dir_flags.model_config_for_train_dir(train_dir, given)
    config = dataclasses.replace(
        config, train_dir=train_dir,
        free_model_fields=train_dir_flags.free_model_fields(train_dir, given))
    vocabulary = (load_vocabulary(inference.vocabulary_file) if inference.vocabulary_file
                  else None)
    predictor, eval_input = prediction.restored_predictor_and_input(config, model_config)
    if inference.output_model_tgz:
        write_model_tgz(inference.output_model_tgz, predictor.path, predictor.model_config)
    if predictor.model_config.segment_labels:
        return run_segment_inference(predictor, config, inference.output_file,
                                     inference.segment_label_ids_file,
                                     inference.segment_max_pred)
    return prediction.write_submission(predictor, config, inference.output_file,
                                       vocabulary=vocabulary,
                                       print_top_videos=inference.print_top_videos,
                                       eval_input=eval_input)


def run_segment_map(submission_file: str, eval_data_pattern: str, top_n: int,
                    label_cache: str = ""):
    """segment_eval_inference.py: the submission's mAP@N against the rated
    segments of the validation records, printed as the original did."""
    from youtube8m_willow.segments.map_at_n import evaluate_segment_submission

    result = evaluate_segment_submission(submission_file, eval_data_pattern, top_n,
                                         label_cache)
    print(f"Num classes: {len(result.per_class_ap)} | mAP@{top_n}: {result.map_at_n:.6f}")
    return result


def run_averaging(inputs: list[str], weights: list[float] | None, output: str, top_k: int):
    """file_averaging.py: the weighted average of submission CSVs."""
    from youtube8m_willow.submission.ensemble import average_submissions

    return average_submissions(inputs, weights, output, top_k=top_k)
