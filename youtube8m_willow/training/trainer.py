"""The training loop: the original train.py's behavior on Keras 3 / TF2.

`train` runs a ``training.run.Trainer`` step after step (``training.replica_step``)
over its planned input (``training.input_planning``) until --max_steps, the
end of --num_epochs, a signal or a non-finite loss. Checkpoints are written
every ``save_checkpoint_secs`` and at every export; when training ends
however it ends but a non-finite loss (SIGTERM/SIGINT too), its last step
is checkpointed and exported (the original lost its final model when it
stopped on num_epochs). With several workers a signal stops every worker at
the same step; only the chief writes checkpoints, exports and summaries.

This module also re-exports the names of a training run (`TrainConfig`,
`Trainer`, `prepare_train_dir`, `resolved_model_config`, ...), where
train.py and users import them from.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time

import tensorflow as tf

from youtube8m_willow import checkpoint, summaries
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.files import describe_data
from youtube8m_willow.data.resumable import InputPosition
from youtube8m_willow.errors import DataError, NonFiniteLossError
from youtube8m_willow.progress import ProgressBar
from youtube8m_willow.training import distribute
from youtube8m_willow.training.replica_step import TOP_K, replica_sampling_seed
from youtube8m_willow.training.run import Trainer, precision_and_xla
from youtube8m_willow.training.train_config import PRECISIONS, TrainConfig
from youtube8m_willow.training.train_dir import (model_config_for_checkpoint_names,
                                                 prepare_train_dir, resolved_model_config,
                                                 resumable_checkpoint)

__all__ = [
    "PRECISIONS",
    "TOP_K",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "model_config_for_checkpoint_names",
    "prepare_train_dir",
    "replica_sampling_seed",
    "resolved_model_config",
    "resumable_checkpoint",
    "train",
]

log = logging.getLogger("youtube8m_willow")


@dataclasses.dataclass
class TrainResult:
    """How a run of `train` ended."""

    global_step: int
    last_loss: float
    checkpoint_path: str  # "" on a worker that is not the chief
    stopped_by: str  # "max_steps" | "end_of_data" | "signal" | "nan"


class _StopRequest:
    """Turns the first SIGTERM/SIGINT into a flag checked between steps (the
    loop then checkpoints, exports and stops); a second one stops the
    process at once, during that checkpoint and export too (the signal's
    default action: checkpoints and exports are written atomically, so the
    last complete checkpoint stays the latest)."""

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
        for sig in self._previous:
            signal.signal(sig, signal.SIG_DFL)
        self.signal_name = signal.Signals(signum).name
        log.warning("received %s: checkpointing after this step; send it again to stop "
                    "at once", self.signal_name)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(config: TrainConfig, model_config: ModelConfig,
          strategy: tf.distribute.Strategy | None = None) -> TrainResult:
    """Runs training until max_steps, the end of num_epochs, a signal or NaN."""
    strategy = strategy or distribute.select_strategy()  # before any other TF work
    if distribute.strategy_is_chief(strategy):
        prepare_train_dir(config)
    trainer = Trainer(config, model_config, strategy)
    log.info("%s", precision_and_xla(trainer))
    restored = trainer.restore_latest()
    _log_plan(trainer, restored)
    done = _done_before_training(trainer, restored)
    if done is not None:
        distribute.leave_together(strategy)
        return done
    first_step = trainer.global_step
    resumed_mid_input = any(p != InputPosition() for p in trainer.input_positions)
    dataset = trainer.make_dataset()
    with _StopRequest() as stop:  # until the last checkpoint and export are written
        progress = _run_steps(trainer, dataset, stop)
        trainer.report_skipped(dataset)  # the last collective
        distribute.leave_together(strategy)
        if progress.stopped_by == "nan":
            path = checkpoint.latest_checkpoint(config.train_dir) if trainer.is_chief else None
            raise NonFiniteLossError(
                f"loss became NaN or Inf at global step {trainer.global_step + 1}; "
                f"last good checkpoint: {path or 'none'}")
        if trainer.global_step == first_step:
            if not resumed_mid_input:
                raise DataError(f"no records to train on in --train_data_pattern "
                                f"'{config.train_data_pattern}' (empty files?)")
            # A resumed input with nothing left: its passes were done.
            log.info("the input's --num_epochs=%d passes are done (global step %d)",
                     trainer.num_epochs, first_step)
            return TrainResult(first_step, float("nan"), restored or "", "end_of_data")
        return _finish(trainer, progress)


@dataclasses.dataclass
class _Progress:
    """What the steps of `train` did: why they stopped, the last loss, and
    the steps last checkpointed and exported (and when)."""

    stopped_by: str = "end_of_data"
    last_loss: float = float("nan")
    saved_step: int | None = None
    exported_step: int | None = None
    last_save: float = dataclasses.field(default_factory=time.monotonic)


def _done_before_training(trainer: Trainer, restored: str | None) -> TrainResult | None:
    """The result of a run with nothing to do (--max_steps reached, or the
    input's passes done), or None."""
    config = trainer.config
    if config.max_steps is not None and trainer.global_step >= config.max_steps:
        log.info("global step %d already reached --max_steps=%d", trainer.global_step,
                 config.max_steps)
        # A train_dir without a checkpoint gets the initial weights; one with
        # a checkpoint is left as it is.
        return TrainResult(trainer.global_step, float("nan"), restored or trainer.save(),
                           "max_steps")
    if trainer.epochs_done():
        log.info("the input's --num_epochs=%d passes are done (global step %d)",
                 trainer.num_epochs, trainer.global_step)
        return TrainResult(trainer.global_step, float("nan"), restored, "end_of_data")
    return None


def _run_steps(trainer: Trainer, dataset, stop: _StopRequest) -> _Progress:
    """Steps over ``dataset`` (reported, summarized, checkpointed and exported
    on schedule) until it ends, --max_steps, a ``stop`` request or a
    non-finite loss."""
    config = trainer.config
    progress = _Progress()
    bar = ProgressBar("step", total=config.max_steps, completed=trainer.global_step,
                      examples_per_unit=config.examples_per_step)
    lines = _StepLines(bar, config.regularization_penalty)
    with summaries.event_writer(config.train_dir, trainer.is_chief) as writer, \
            writer.as_default(), bar:
        for batch in dataset:
            start = time.monotonic()
            learning_rate = trainer.learning_rate()
            try:
                metrics = trainer.step(batch, stop=bool(stop.signal_name))
            except NonFiniteLossError:
                log.error("non-finite loss at global step %d; stopping", trainer.global_step + 1)
                progress.stopped_by = "nan"
                break
            seconds = time.monotonic() - start
            if log.isEnabledFor(logging.DEBUG):
                log.debug("global step %d fed videos %s", trainer.global_step,
                          ",".join(_video_ids(trainer, batch)))
            progress.last_loss = metrics["loss"]
            lines.report(trainer.global_step, metrics, metrics["examples"] / seconds,
                         learning_rate)
            if _save_on_schedule(trainer, progress):
                lines.log_last()  # on a terminal: one line per checkpoint
            step = trainer.global_step
            # Workers stop together: on the stop flag all-reduced by the step.
            if metrics["stop"] if trainer.distributed else stop.signal_name:
                log.info("received %s: checkpointing and exporting at global step %d",
                         stop.signal_name or "a stop request from another worker", step)
                progress.stopped_by = "signal"
                break
            if config.max_steps is not None and step >= config.max_steps:
                progress.stopped_by = "max_steps"
                break
    lines.log_last()
    return progress


def _save_on_schedule(trainer: Trainer, progress: _Progress) -> bool:
    """Checkpoints and exports every --export_model_steps; otherwise
    checkpoints once --save_checkpoint_secs have passed since the last one.
    Returns whether it checkpointed."""
    config, step = trainer.config, trainer.global_step
    if config.export_model_steps > 0 and step % config.export_model_steps == 0:
        trainer.save()
        trainer.export()
        progress.saved_step = progress.exported_step = step
        progress.last_save = time.monotonic()
        return True
    if time.monotonic() - progress.last_save >= config.save_checkpoint_secs:
        trainer.save()
        progress.saved_step, progress.last_save = step, time.monotonic()
        return True
    return False


def _finish(trainer: Trainer, progress: _Progress) -> TrainResult:
    """Checkpoints, then exports, the last step if that was not done at it
    (stopped by a signal too: a stopped run can be served as it stands)."""
    step = trainer.global_step
    path = trainer.save() if progress.saved_step != step else trainer.last_checkpoint
    if progress.exported_step != step:
        trainer.export()
    log.info("training stopped (%s) at global step %d; checkpoint %s", progress.stopped_by,
             step, path or "written by the chief")
    return TrainResult(step, progress.last_loss, path, progress.stopped_by)


def _video_ids(trainer: Trainer, batch: dict) -> list[str]:
    """The ids of a (global) batch's videos, replica after replica."""
    ids = batch["video_ids"]
    parts = trainer.strategy.experimental_local_results(ids) if trainer.distributed else [ids]
    return [i.decode("utf-8", "replace") for part in parts for i in part.numpy()]


class _StepLines:
    """Each step's report: its TensorBoard scalars under the original's tags
    (``youtube8m_willow.summaries``; ``model/reg_loss`` only when the penalty
    is not 0, as the original) and its line in the original's format (plus
    the total loss). Without a bar every step's line is logged, as the
    original; with one (a terminal) the bar shows each step and the line is
    logged only at checkpoints and for the last step (``log_last``)."""

    def __init__(self, bar: ProgressBar, regularization_penalty: float):
        self.bar, self.regularization_penalty = bar, regularization_penalty
        self._last: tuple | None = None  # the last step's line, not logged yet

    def report(self, step: int, metrics: dict, examples_per_sec: float,
               learning_rate: float) -> None:
        values = dict(metrics, examples_per_second=examples_per_sec, learning_rate=learning_rate)
        if self.regularization_penalty == 0:
            del values["reg_loss"]
        summaries.write_scalars(summaries.TRAIN_TAGS, values, step)
        self._last = (step, metrics["loss"], examples_per_sec, metrics["hit_at_one"],
                      metrics["perr"], metrics["gap"], metrics["total_loss"])
        if self.bar.active:
            self.bar.update(loss=f"{metrics['loss']:.2f}", GAP=f"{metrics['gap']:.2f}")
        else:
            self.log_last()

    def log_last(self) -> None:
        """Logs the last step's line, unless it was logged."""
        if self._last is not None:
            log.info("training step %d | Loss: %.2f Examples/sec: %.2f | Hit@1: %.2f "
                     "PERR: %.2f GAP: %.2f | Total loss: %.4f", *self._last)
            self._last = None


def _log_plan(trainer: Trainer, restored: str | None) -> None:
    """The run's first lines: the model, where it runs, the input and where
    its checkpoints go."""
    config, model_config = trainer.config, trainer.model_config
    if config.max_steps is not None:
        until = f"until --max_steps={config.max_steps}"
    else:
        until = (f"for --num_epochs={trainer.num_epochs}" if trainer.num_epochs
                 else "until stopped")
    log.info("training %s (%s parameters, %d classes) on %s, batch %d, %s",
             model_config.model, f"{trainer.model.count_params():,}", model_config.num_classes,
             _replicas(trainer), config.examples_per_step, until)
    log.info("input: %s; checkpoints: %s (%s)", describe_data(config.train_data_pattern)[0],
             config.train_dir,
             f"continuing at global step {trainer.global_step}" if restored or trainer.global_step
             else "a new run")


def _replicas(trainer: Trainer) -> str:
    """``1 replica (one device)``, ``2 replicas (MirroredStrategy)``, ..."""
    replicas = f"{trainer.num_replicas} replica{'s' if trainer.num_replicas != 1 else ''}"
    if not trainer.distributed:
        return f"{replicas} (one device)"
    workers = f" on {trainer.num_workers} workers" if trainer.num_workers > 1 else ""
    return f"{replicas}{workers} ({type(trainer.strategy).__name__})"
