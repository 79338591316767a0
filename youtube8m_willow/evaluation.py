"""Evaluation of a train_dir's checkpoints: the engine of eval.py.

Each checkpoint is restored into a ``prediction.Predictor`` (eval mode) and
scored over the whole eval set with the original's metrics (Hit@1, PERR,
MAP, GAP, loss), logged and written as TensorBoard summaries, with the
per-class AP histogram and the precision-recall curve, and a per-class
report beside them (``eval_report``); or the train_dir is polled and each
new checkpoint evaluated once.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import tensorflow as tf

from youtube8m_willow import checkpoint, eval_report, summaries
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.files import describe_data
from youtube8m_willow.data.readers import DataError, report_skipped
from youtube8m_willow.losses import create_loss
from youtube8m_willow.metrics.eval_util import EvaluationMetrics
from youtube8m_willow.metrics.pr_curve import PrecisionRecallCounts
from youtube8m_willow.prediction import Predictor, describe_model, eval_dataset
from youtube8m_willow.progress import ProgressBar

log = logging.getLogger("youtube8m_willow")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The eval.py / inference.py flags that are not model flags."""

    train_dir: str
    data_pattern: str
    batch_size: int = 1024
    num_readers: int = 4
    top_k: int = 20
    check_point: int = -1
    label_loss: str = "CrossEntropyLoss"
    alpha: float = 0.5
    run_once: bool = False
    poll_secs: float = 60
    # Model flags neither given nor recorded: read off the checkpoint.
    free_model_fields: frozenset = frozenset()
    skip_bad_records: bool = False
    drop_out_of_range_labels: bool = False
    # eval.py: the class names of the per-class report (vocabulary.csv or label_names.csv).
    vocabulary_file: str = ""


def evaluate_checkpoint(predictor: Predictor, path: str, config: EvalConfig) -> dict:
    """Evaluates one checkpoint over the whole eval set; returns the
    epoch metrics (avg_hit_at_one, avg_perr, map, gap, avg_loss, aps, ...),
    each class's counts (``class_positives``, ``class_in_top_k``) and the
    precision-recall counts of every prediction (``pr_counts``).

    Each batch's metrics also go to the default summary writer, if one is
    set, at the checkpoint's global step (``GlobalStep/Eval_*``, as the
    original eval.py). On a terminal a bar shows the videos done (of the
    records counted, where that is cheap) instead of a line per batch."""
    step = predictor.restore(path)
    segments = predictor.model_config.segment_labels
    data, records = describe_data(config.data_pattern)
    log.info("evaluating %s (global step %d): %s", path, step, describe_model(predictor))
    log.info("input: %s, batch %d; summaries and the per-class report: %s", data,
             config.batch_size, config.train_dir)
    loss_fn = create_loss(config.label_loss, config.alpha, predictor.model_config.model)
    metrics = EvaluationMetrics(predictor.model_config.num_classes, config.top_k)
    pr_counts = PrecisionRecallCounts()
    examples = 0
    start = time.monotonic()
    dataset = eval_dataset(config, predictor.model_config)
    bar = ProgressBar("eval", total=None if segments else records,
                      unit="segments" if segments else "videos")
    with bar:
        for batch in dataset:
            batch_start = time.monotonic()
            predictions = predictor(batch)
            loss = float(loss_fn(predictions, batch["labels"]))
            weights = None
            if segments:  # as the original: metrics only see the rated classes
                predictions = predictions * batch["label_weights"]
                weights = batch["label_weights"].numpy()
            scores, labels = predictions.numpy(), batch["labels"].numpy()
            batch_result = metrics.accumulate(scores, labels, loss)
            pr_counts.accumulate(scores, labels, weights)
            examples += labels.shape[0]
            batch_result["examples_per_second"] = labels.shape[0] / max(
                time.monotonic() - batch_start, 1e-9)
            summaries.write_scalars(summaries.eval_batch_tags(segments), batch_result, step)
            _report_batch(bar, labels.shape[0], examples, batch_result)
    report_skipped(dataset, log)
    if examples == 0:
        raise DataError(f"no records to evaluate in --eval_data_pattern '{config.data_pattern}' "
                        "(empty files?)")
    result = metrics.get()
    positives, in_top_k = metrics.class_counts()
    result.update(global_step=step, examples=examples, seconds=time.monotonic() - start,
                  class_positives=positives, class_in_top_k=in_top_k, pr_counts=pr_counts)
    if segments:  # the later starter's line: MAP over the classes with positives
        log.info("epoch/eval number %d | Avg_Hit@1: %.3f | Avg_PERR: %.3f | MAP: %.3f | "
                 "GAP: %.4f | Avg_Loss: %f | num_classes: %d", step, result["avg_hit_at_one"],
                 result["avg_perr"], result["map_positive_classes"], result["gap"],
                 result["avg_loss"], result["num_positive_classes"])
    else:
        log.info("epoch/eval number %d | Avg_Hit@1: %.3f | Avg_PERR: %.3f | MAP: %.3f | "
                 "GAP: %.4f | Avg_Loss: %f", step, result["avg_hit_at_one"], result["avg_perr"],
                 result["map_all_classes"], result["gap"], result["avg_loss"])
    return result


def _report_batch(bar: ProgressBar, videos: int, examples: int, batch_result: dict) -> None:
    """A batch on the bar (a terminal), else in the original's line."""
    if bar.active:
        bar.update(videos, **{"Hit@1": f"{batch_result['hit_at_one']:.3f}",
                              "loss": f"{batch_result['loss']:.3f}"})
    else:
        log.info("examples_processed: %d | Hit@1: %.3f PERR: %.3f Loss: %.5f", examples,
                 batch_result["hit_at_one"], batch_result["perr"], batch_result["loss"])


def write_eval_summaries(result: dict, segments: bool = False) -> None:
    """Writes an evaluation's epoch metrics (``Epoch/Eval_*``, or
    ``Epoch/SegEval_*`` for segments, at its global step) to the default
    summary writer; with them, when ``result`` has them, the per-class AP
    histogram of the classes with positives and the precision-recall curve
    (``summaries.eval_look_tags``)."""
    step = int(result["global_step"])
    summaries.write_scalars(summaries.eval_epoch_tags(segments), result, step)
    histogram_tag, pr_name = summaries.eval_look_tags(segments)
    if "class_positives" in result:
        aps = np.asarray(result["aps"])[np.asarray(result["class_positives"]) > 0]
        summaries.write_ap_histogram(histogram_tag, aps, step)
    if "pr_counts" in result:
        counts = result["pr_counts"]
        summaries.write_pr_curve(pr_name, counts.curve(), counts.num_thresholds, step)


def _evaluate_and_summarize(predictor: Predictor, path: str, config: EvalConfig,
                            writer, vocabulary: dict[int, str] | None) -> dict:
    """One checkpoint's evaluation: its summaries in ``writer``, its
    per-class report beside them, its best and worst classes logged."""
    with writer.as_default():
        result = evaluate_checkpoint(predictor, path, config)
        write_eval_summaries(result, predictor.model_config.segment_labels)
    writer.flush()
    eval_report.write_and_log(result, config.train_dir, config.top_k, vocabulary)
    return result


def wait_for_checkpoint(train_dir: str, poll_secs: float) -> str:
    """Waits for train_dir's first checkpoint (eval.py started beside
    train.py), saying so once; returns its path."""
    said = False
    while True:
        path = (checkpoint.latest_checkpoint(train_dir) if tf.io.gfile.isdir(train_dir)
                else None)
        if path is not None:
            return path
        if not said:
            log.info("waiting for a first checkpoint in %s (looking every %ss)", train_dir,
                     poll_secs)
            said = True
        time.sleep(poll_secs)


def evaluate(config: EvalConfig, model_config: ModelConfig, max_evaluations: int | None = None,
             vocabulary: dict[int, str] | None = None) -> list[dict]:
    """eval.py: evaluates the chosen checkpoint once (run_once or
    check_point), or polls train_dir and evaluates each new checkpoint once,
    saying once per wait that it waits. A checkpoint the trainer's rotation
    deletes before it is read is skipped with a warning. Summaries and the
    per-class reports (class names from ``vocabulary``) go into the
    train_dir itself, where the original wrote its summaries (no event file
    when none is written: see ``summaries.event_writer``)."""
    predictor = Predictor(model_config, config.free_model_fields)
    with summaries.event_writer(config.train_dir) as writer:
        if config.run_once or config.check_point >= 0:
            path = checkpoint.checkpoint_path(config.train_dir, config.check_point)
            return [_evaluate_and_summarize(predictor, path, config, writer, vocabulary)]
        return _evaluate_new_checkpoints(predictor, config, writer, max_evaluations,
                                         vocabulary)


def _evaluate_new_checkpoints(predictor: Predictor, config: EvalConfig, writer,
                              max_evaluations: int | None,
                              vocabulary: dict[int, str] | None) -> list[dict]:
    """Polls train_dir and evaluates each new checkpoint once (at most
    ``max_evaluations``; None: until stopped)."""
    results, last_step, said_waiting = [], None, False
    while max_evaluations is None or len(results) < max_evaluations:
        path = wait_for_checkpoint(config.train_dir, config.poll_secs)
        step = checkpoint.step_of(path)
        if step == last_step:
            if not said_waiting:
                log.info("waiting for a checkpoint newer than global step %d in %s (looking "
                         "every %ss)", step, config.train_dir, config.poll_secs)
                said_waiting = True
            time.sleep(config.poll_secs)
            continue
        try:
            result = _evaluate_and_summarize(predictor, path, config, writer, vocabulary)
        except checkpoint.CheckpointError:
            if tf.io.gfile.exists(path + ".index"):
                raise
            log.warning("skipped %s: deleted by the trainer's rotation before it was read", path)
            continue
        results.append(result)
        last_step, said_waiting = step, False
    return results
