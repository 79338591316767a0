"""The training loop: the original train.py's behavior on Keras 3 / TF2.

One step = forward in training mode (batch norm on batch statistics, moving
statistics updated), label loss + regularization_penalty * slim L2 losses,
per-tensor clipped gradients, one optimizer update. Checkpoints (TF1 format,
see ``youtube8m_willow.checkpoint``) are written every
``save_checkpoint_secs``, at every export, on SIGTERM/SIGINT and when
training ends however it ends (the original lost its final model when it
stopped on num_epochs).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import time

import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import ReaderConfig, make_dataset
from youtube8m_willow.losses import create_loss
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.training.batch_metrics import batch_metrics
from youtube8m_willow.training.export import export_model
from youtube8m_willow.training.optimizers import StaircaseExampleDecay, create_optimizer

log = logging.getLogger("youtube8m_willow")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The train.py flags that are not model flags."""

    train_dir: str
    train_data_pattern: str
    batch_size: int = 1024
    label_loss: str = "CrossEntropyLoss"
    alpha: float = 0.5
    regularization_penalty: float = 1.0
    base_learning_rate: float = 0.001
    learning_rate_decay: float = 0.9
    learning_rate_decay_examples: float = 4000000
    num_epochs: int | None = 15
    max_steps: int | None = None
    export_model_steps: int = 10000
    num_readers: int = 8
    optimizer: str = "AdamOptimizer"
    clip_gradient_norm: float = 1.0
    start_new_model: bool = False
    save_checkpoint_secs: float = 600
    keep_checkpoints: int = 5
    skip_bad_records: bool = False
    drop_out_of_range_labels: bool = False
    seed: int | None = None


@dataclasses.dataclass
class TrainResult:
    global_step: int
    last_loss: float
    checkpoint_path: str
    stopped_by: str  # "max_steps" | "end_of_data" | "signal" | "nan"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


def reader_config(model_config: ModelConfig, skip_bad_records=False,
                  drop_out_of_range_labels=False) -> ReaderConfig:
    return ReaderConfig(
        feature_names=model_config.feature_names, feature_sizes=model_config.feature_sizes,
        frame_features=model_config.frame_features, num_classes=model_config.num_classes,
        max_frames=model_config.max_frames, skip_bad_records=skip_bad_records,
        drop_out_of_range_labels=drop_out_of_range_labels)


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked between steps."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def prepare_train_dir(config: TrainConfig) -> None:
    if config.start_new_model and tf.io.gfile.exists(config.train_dir):
        log.info("start_new_model: removing %s", config.train_dir)
        tf.io.gfile.rmtree(config.train_dir)
    tf.io.gfile.makedirs(config.train_dir)


class Trainer:
    """Holds the model, optimizer and compiled step of one training run."""

    def __init__(self, config: TrainConfig, model_config: ModelConfig):
        self.config = config
        self.model_config = model_config
        if config.seed is not None:
            tf.keras.utils.set_random_seed(config.seed)
        self.model = create_model(model_config).build_for_config()
        schedule = StaircaseExampleDecay(config.base_learning_rate, config.learning_rate_decay,
                                         config.learning_rate_decay_examples, config.batch_size)
        self.optimizer = create_optimizer(config.optimizer, schedule, config.clip_gradient_norm)
        self.optimizer.build(self.model.trainable_variables)
        self.loss_fn = create_loss(config.label_loss, config.alpha)
        self.global_step = 0
        self._step_fn = tf.function(self._train_step, reduce_retracing=True)

    def restore_latest(self) -> str | None:
        path = checkpoint.latest_checkpoint(self.config.train_dir)
        if path is not None:
            self.global_step = checkpoint.restore(path, self.model, self.optimizer)
            log.info("restored %s at global step %d", path, self.global_step)
        return path

    def _train_step(self, batch):
        with tf.GradientTape() as tape:
            predictions = self.model(batch, training=True)
            label_loss = self.loss_fn(predictions, batch["labels"])
            total_loss = (label_loss + self.config.regularization_penalty
                          * self.model.regularization_loss())
        variables = self.model.trainable_variables
        gradients = tape.gradient(total_loss, variables)
        # A non-finite loss stops the run before anything is saved, so the
        # update below never reaches a checkpoint.
        self.optimizer.apply(gradients, variables)
        metrics = batch_metrics(predictions, batch["labels"])
        metrics["loss"] = label_loss
        metrics["total_loss"] = total_loss
        return metrics

    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate.numpy()) if hasattr(
            self.optimizer.learning_rate, "numpy") else float(self.optimizer.learning_rate)

    def save(self) -> str:
        tensors = checkpoint.training_state(self.model, self.optimizer, self.global_step)
        return checkpoint.save(self.config.train_dir, tensors, self.global_step,
                               keep=self.config.keep_checkpoints)

    def step(self, batch) -> dict:
        metrics = self._step_fn(batch)
        metrics = {k: float(v) for k, v in metrics.items()}
        if not math.isfinite(metrics["total_loss"]):
            raise NonFiniteLossError(
                f"loss is {metrics['total_loss']} at global step {self.global_step + 1}; "
                "training stopped, the last good checkpoint is kept")
        self.global_step += 1
        return metrics


def train(config: TrainConfig, model_config: ModelConfig) -> TrainResult:
    """Runs training until max_steps, the end of num_epochs, a signal or NaN."""
    prepare_train_dir(config)
    trainer = Trainer(config, model_config)
    trainer.restore_latest()
    if config.max_steps is not None and trainer.global_step >= config.max_steps:
        log.info("global step %d already reached --max_steps=%d", trainer.global_step,
                 config.max_steps)
        return TrainResult(trainer.global_step, float("nan"), trainer.save(), "max_steps")
    dataset = make_dataset(
        config.train_data_pattern,
        reader_config(model_config, config.skip_bad_records, config.drop_out_of_range_labels),
        config.batch_size, training=True,
        num_epochs=config.num_epochs if config.num_epochs and config.num_epochs > 0 else None,
        num_readers=config.num_readers, seed=config.seed)
    writer = tf.summary.create_file_writer(config.train_dir)
    stopped_by, last_loss = "end_of_data", float("nan")
    last_save = time.monotonic()
    with _StopRequest() as stop, writer.as_default():
        for batch in dataset:
            start = time.monotonic()
            learning_rate = trainer.learning_rate()
            try:
                metrics = trainer.step(batch)
            except NonFiniteLossError:
                log.error("non-finite loss at global step %d; stopping", trainer.global_step + 1)
                stopped_by = "nan"
                break
            seconds = time.monotonic() - start
            last_loss = metrics["loss"]
            _log_step(trainer.global_step, metrics, int(batch["labels"].shape[0]) / seconds,
                      learning_rate)
            step = trainer.global_step
            if config.export_model_steps > 0 and step % config.export_model_steps == 0:
                trainer.save()
                last_save = time.monotonic()
                export_model(trainer.model, model_config, config.train_dir, step)
            elif time.monotonic() - last_save >= config.save_checkpoint_secs:
                trainer.save()
                last_save = time.monotonic()
            if stop.signal_name:
                log.info("received %s: checkpointing at global step %d", stop.signal_name, step)
                stopped_by = "signal"
                break
            if config.max_steps is not None and step >= config.max_steps:
                stopped_by = "max_steps"
                break
    writer.flush()
    if stopped_by == "nan":
        path = checkpoint.latest_checkpoint(config.train_dir) or ""
        raise NonFiniteLossError(
            f"loss became NaN or Inf at global step {trainer.global_step + 1}; "
            f"last good checkpoint: {path or 'none'}")
    path = trainer.save()
    if stopped_by != "signal":
        export_model(trainer.model, model_config, config.train_dir, trainer.global_step)
    log.info("training stopped (%s) at global step %d; checkpoint %s", stopped_by,
             trainer.global_step, path)
    return TrainResult(trainer.global_step, last_loss, path, stopped_by)


def _log_step(step: int, metrics: dict, examples_per_sec: float, learning_rate: float) -> None:
    log.info("training step %d | Loss: %.2f Examples/sec: %.2f | Hit@1: %.2f PERR: %.2f "
             "GAP: %.2f | Total loss: %.4f", step, metrics["loss"], examples_per_sec,
             metrics["hit_at_one"], metrics["perr"], metrics["gap"], metrics["total_loss"])
    for name in ("loss", "total_loss", "hit_at_one", "perr", "gap"):
        tf.summary.scalar(f"train/{name}", metrics[name], step=step)
    tf.summary.scalar("train/examples_per_sec", examples_per_sec, step=step)
    tf.summary.scalar("train/learning_rate", learning_rate, step=step)
