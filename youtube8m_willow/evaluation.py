"""Evaluation and inference over a train_dir: the engines of eval.py and
inference.py.

A train_dir written by the original code or by this project loads the same
way (TF1-format checkpoints, ``youtube8m_willow.checkpoint``). Predictions
are always computed in eval mode (batch norm on moving statistics); the
original inference restored the training graph, a quirk fixed here.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import ReaderConfig, make_dataset, report_skipped
from youtube8m_willow.losses import create_loss
from youtube8m_willow.metrics.eval_util import EvaluationMetrics
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.submission.csv_writer import SubmissionWriter
from youtube8m_willow.submission.vocabulary import describe_batch

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
    skip_bad_records: bool = False
    drop_out_of_range_labels: bool = False


class Predictor:
    """A model restored from a checkpoint, predicting in eval mode.

    ``restore`` rebuilds the model when a checkpoint's names call for another
    graph of the same model name (the starter's LstmModel vs WILLOW's).
    """

    def __init__(self, model_config: ModelConfig):
        self._build(model_config)

    def _build(self, model_config: ModelConfig) -> None:
        self.model_config = model_config
        self.model = create_model(model_config).build_for_config()
        self._predict = tf.function(lambda batch: self.model(batch, training=False),
                                    reduce_retracing=True)

    def restore(self, path: str) -> int:
        config = checkpoint.model_config_for_checkpoint(self.model_config, path)
        if config != self.model_config:
            self._build(config)
        return checkpoint.restore(path, self.model)

    def __call__(self, batch):
        return self._predict({"video_matrix": batch["video_matrix"],
                              "num_frames": batch["num_frames"]})


def _dataset(config: EvalConfig, model_config: ModelConfig):
    """The eval-order dataset; its ``read_stats`` counts what the tolerant
    modes skipped (reported by ``report_skipped``)."""
    return make_dataset(config.data_pattern, ReaderConfig.for_model(
                            model_config, config.skip_bad_records, config.drop_out_of_range_labels),
                        config.batch_size, training=False, num_epochs=1,
                        num_readers=config.num_readers)


def evaluate_checkpoint(predictor: Predictor, path: str, config: EvalConfig) -> dict:
    """Evaluates one checkpoint over the whole eval set; returns the
    epoch metrics (avg_hit_at_one, avg_perr, map, gap, avg_loss, ...)."""
    step = predictor.restore(path)
    loss_fn = create_loss(config.label_loss, config.alpha)
    metrics = EvaluationMetrics(predictor.model_config.num_classes, config.top_k)
    examples = 0
    start = time.monotonic()
    dataset = _dataset(config, predictor.model_config)
    for batch in dataset:
        predictions = predictor(batch)
        loss = float(loss_fn(predictions, batch["labels"]))
        labels = batch["labels"].numpy()
        batch_result = metrics.accumulate(predictions.numpy(), labels, loss)
        examples += labels.shape[0]
        log.info("examples_processed: %d | Hit@1: %.3f PERR: %.3f Loss: %.5f", examples,
                 batch_result["hit_at_one"], batch_result["perr"], batch_result["loss"])
    report_skipped(dataset, log)
    result = metrics.get()
    result.update(global_step=step, examples=examples,
                  seconds=time.monotonic() - start)
    log.info("epoch/eval number %d | Avg_Hit@1: %.3f | Avg_PERR: %.3f | MAP: %.3f | GAP: %.3f | "
             "Avg_Loss: %f", step, result["avg_hit_at_one"], result["avg_perr"],
             result["map_all_classes"], result["gap"], result["avg_loss"])
    return result


def write_eval_summaries(train_dir: str, result: dict) -> None:
    writer = tf.summary.create_file_writer(f"{train_dir}/eval")
    step = int(result["global_step"])
    with writer.as_default():
        for name in ("avg_hit_at_one", "avg_perr", "map_all_classes", "map_positive_classes",
                     "gap", "avg_loss"):
            tf.summary.scalar(f"eval/{name}", float(result[name]), step=step)
    writer.flush()


def evaluate(config: EvalConfig, model_config: ModelConfig, max_evaluations: int | None = None
             ) -> list[dict]:
    """eval.py: evaluates the chosen checkpoint once (run_once or
    check_point), or polls train_dir and evaluates each new checkpoint once."""
    predictor = Predictor(model_config)
    if config.run_once or config.check_point >= 0:
        path = checkpoint.checkpoint_path(config.train_dir, config.check_point)
        result = evaluate_checkpoint(predictor, path, config)
        write_eval_summaries(config.train_dir, result)
        return [result]
    results, last_step = [], None
    checkpoint.checkpoint_path(config.train_dir)  # fails clearly if there is none yet
    while max_evaluations is None or len(results) < max_evaluations:
        path = checkpoint.latest_checkpoint(config.train_dir)
        step = checkpoint.step_of(path) if path else None
        if path is None or step == last_step:
            log.info("no new checkpoint in %s; waiting %ss", config.train_dir, config.poll_secs)
            time.sleep(config.poll_secs)
            continue
        result = evaluate_checkpoint(predictor, path, config)
        write_eval_summaries(config.train_dir, result)
        results.append(result)
        last_step = step
    return results


def predict_top_k(predictor: Predictor, config: EvalConfig, model_config: ModelConfig):
    """Yields ``(video_ids, class_indexes, scores)`` for every video once."""
    k = min(config.top_k, model_config.num_classes)
    dataset = _dataset(config, model_config)
    for batch in dataset:
        scores, classes = tf.math.top_k(predictor(batch), k=k)
        yield batch["video_ids"].numpy(), classes.numpy(), scores.numpy()
    report_skipped(dataset, log)


def run_inference(config: EvalConfig, model_config: ModelConfig, output_file: str,
                  vocabulary: dict | None = None, print_top_videos: int = 5) -> int:
    """inference.py: writes the submission CSV; returns the number of videos.
    With a ``vocabulary``, logs the first ``print_top_videos`` videos' top
    predictions with class names."""
    predictor = Predictor(model_config)
    path = checkpoint.checkpoint_path(config.train_dir, config.check_point)
    step = predictor.restore(path)
    log.info("predicting with %s (global step %d)", path, step)
    start = time.monotonic()
    with SubmissionWriter(output_file) as writer:
        for video_ids, classes, scores in predict_top_k(predictor, config, model_config):
            if vocabulary is not None and writer.rows < print_top_videos:
                for line in describe_batch(video_ids, classes, scores, vocabulary,
                                           print_top_videos - writer.rows):
                    log.info("%s", line)
            writer.write(video_ids, classes, scores)
            log.info("num examples processed: %d elapsed seconds: %.2f", writer.rows,
                     time.monotonic() - start)
    log.info("wrote %d videos to %s", writer.rows, output_file)
    return writer.rows
