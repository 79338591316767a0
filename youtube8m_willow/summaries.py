"""TensorBoard scalars under the original code's tag names.

The original train.py and eval.py wrote their event files into the
train_dir itself, with the tags below; writing the same tags into the same
directory lets dashboards built on the original runs show runs of this port
next to them. Training (per step, at the global step after the update):
``model/Training_Hit@1``, ``model/Training_Perr``, ``model/Training_GAP``,
``global_step/Examples/Second``, ``model/label_loss``, ``model/reg_loss``
(the unweighted sum of the L2 losses, written only when
regularization_penalty != 0, as the original), ``learning_rate``; the port
adds ``model/total_loss``. Evaluation (at the checkpoint's global step):
``GlobalStep/Eval_*`` once per batch and ``Epoch/Eval_*`` once per
evaluation; the port adds ``Epoch/Eval_MAP_positive_classes``.

The port also gives each evaluation a look at its classes and its ranking:
the per-class AP distribution (a histogram of the APs of the classes with
positives, ``Eval/AP_per_class``) and the precision-recall curve of every
(video, class) prediction (TensorBoard's own pr_curve summary,
``Eval/PR/pr_curves``); ``SegEval/`` for segments. They are tensor
summaries of TensorBoard's histogram and pr_curve plugins, under tags of
their own (no original dashboard reads them).

Each scalar is written as the original wrote it: a plain ``Summary`` whose
``value[].simple_value`` holds it, one event per tag. TensorBoard's
EventAccumulator lists them under ``Tags()['scalars']`` and TF1-era scripts
that read ``value.simple_value`` find them unchanged. ``simple_value`` is a
float32, so an event file holds the logged value rounded to float32.

train.py and eval.py open their writer with `event_writer`, which leaves no
event file without events: a run that fails, or ends, before it writes a
summary (bad data, an empty train_dir) leaves the train_dir as it found it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np
import tensorflow as tf

EVENT_FILES = "events.out.tfevents.*"

# Per batch of an evaluation (the original utils.AddGlobalStepSummary).
EVAL_BATCH_TAGS = {"hit_at_one": "GlobalStep/Eval_Hit@1", "perr": "GlobalStep/Eval_Perr",
                   "loss": "GlobalStep/Eval_Loss",
                   "examples_per_second": "GlobalStep/Eval_Example_Second"}
# Per evaluation (the original utils.AddEpochSummary, plus the port's MAP
# over the classes with positives).
EVAL_EPOCH_TAGS = {"avg_hit_at_one": "Epoch/Eval_Avg_Hit@1", "avg_perr": "Epoch/Eval_Avg_Perr",
                   "avg_loss": "Epoch/Eval_Avg_Loss", "map_all_classes": "Epoch/Eval_MAP",
                   "gap": "Epoch/Eval_GAP",
                   "map_positive_classes": "Epoch/Eval_MAP_positive_classes"}
# Segment-level evaluation (the later starter): the same names under
# SegEval, and its MAP is the mean over the classes with positives.
SEGMENT_EVAL_BATCH_TAGS = {name: tag.replace("/Eval_", "/SegEval_")
                           for name, tag in EVAL_BATCH_TAGS.items()}
SEGMENT_EVAL_EPOCH_TAGS = {"avg_hit_at_one": "Epoch/SegEval_Avg_Hit@1",
                           "avg_perr": "Epoch/SegEval_Avg_Perr",
                           "avg_loss": "Epoch/SegEval_Avg_Loss",
                           "map_positive_classes": "Epoch/SegEval_MAP",
                           "gap": "Epoch/SegEval_GAP"}


def eval_batch_tags(segments: bool) -> dict[str, str]:
    return SEGMENT_EVAL_BATCH_TAGS if segments else EVAL_BATCH_TAGS


def eval_epoch_tags(segments: bool) -> dict[str, str]:
    return SEGMENT_EVAL_EPOCH_TAGS if segments else EVAL_EPOCH_TAGS


# Per training step (the original train.py).
TRAIN_TAGS = {"hit_at_one": "model/Training_Hit@1", "perr": "model/Training_Perr",
              "gap": "model/Training_GAP", "examples_per_second": "global_step/Examples/Second",
              "loss": "model/label_loss", "reg_loss": "model/reg_loss",
              "learning_rate": "learning_rate", "total_loss": "model/total_loss"}


def write_scalars(tags: dict[str, str], values: dict[str, float], step: int) -> None:
    """Writes ``values[name]`` under ``tags[name]`` for every name present in
    both, at ``step``, to the default summary writer (none set: nothing), as
    ``simple_value`` events (the original's format, see the module docstring)."""
    for name, tag in tags.items():
        if name in values:
            tf.summary.experimental.write_raw_pb(_simple_value(tag, values[name]), step=step)


def _simple_value(tag: str, value: float) -> bytes:
    """A serialized TF1 ``Summary`` holding ``value`` as ``tag``'s simple_value."""
    summary = tf.compat.v1.Summary(
        value=[tf.compat.v1.Summary.Value(tag=tag, simple_value=float(value))])
    return summary.SerializeToString()


def eval_look_tags(segments: bool) -> tuple[str, str]:
    """The tags of an evaluation's per-class AP histogram and the name of
    its pr_curve (TensorBoard appends ``/pr_curves``)."""
    group = "SegEval" if segments else "Eval"
    return f"{group}/AP_per_class", f"{group}/PR"


def write_ap_histogram(tag: str, aps: np.ndarray, step: int) -> None:
    """The distribution of ``aps`` (one AP per class) as a TensorBoard
    histogram, to the default summary writer."""
    tf.summary.histogram(tag, np.asarray(aps, np.float64), step=step, buckets=20)


def write_pr_curve(name: str, curve: dict[str, np.ndarray], num_thresholds: int,
                   step: int) -> None:
    """A precision-recall curve from its counts per threshold (the arguments
    of ``pr_curve.summary.raw_data_pb``, e.g. ``PrecisionRecallCounts.curve()``)
    as TensorBoard's pr_curve summary, to the default summary writer."""
    from tensorboard.plugins.pr_curve import summary as pr_curve_summary

    summary = pr_curve_summary.raw_data_pb(name, num_thresholds=num_thresholds, **curve)
    tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)


@contextlib.contextmanager
def event_writer(logdir: str, enabled: bool = True) -> Iterator[tf.summary.SummaryWriter]:
    """A summary writer of ``logdir`` for the block (a no-op one when not
    ``enabled``, e.g. on a worker that is not the chief), closed at its end.
    The event file it created is removed then if no event went into it
    (TensorFlow creates it, with a header record, when the writer is made)."""
    if not enabled:
        yield tf.summary.create_noop_writer()
        return
    before = set(_event_files(logdir))
    writer = tf.summary.create_file_writer(logdir)
    created = set(_event_files(logdir)) - before
    try:
        yield writer
    finally:
        writer.close()
        for path in created:
            if tf.io.gfile.exists(path) and _holds_no_event(path):
                tf.io.gfile.remove(path)


def _event_files(logdir: str) -> list[str]:
    return tf.io.gfile.glob(os.path.join(logdir, EVENT_FILES)) if tf.io.gfile.isdir(logdir) else []


def _holds_no_event(path: str) -> bool:
    """Whether an event file holds its header record (the file version)
    alone; one that cannot be read is kept."""
    try:
        return sum(1 for _ in tf.data.TFRecordDataset(path).take(2)) <= 1
    except tf.errors.OpError:
        return False
