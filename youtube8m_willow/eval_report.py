"""eval.py's per-class report: a CSV beside the event files in train_dir,
one row per class, and the five best and worst classes in the log.

The APs are the evaluation's own (``EvaluationMetrics.get()["aps"]``, the
values whose mean is the epoch line's MAP); the counts are
``EvaluationMetrics.class_counts()``. Columns: ``class_id``, ``name`` (from
--vocabulary_file, else empty), ``ap``, ``positives`` (the class's labels
in the eval set) and ``in_top_<k>`` (videos that had the class among their
top k predictions, k = --top_k: the entries its AP ranks).
"""

from __future__ import annotations

import csv
import io
import logging
import os

import numpy as np

from youtube8m_willow.atomic import write_atomic
from youtube8m_willow.submission.vocabulary import class_name

log = logging.getLogger("youtube8m_willow")

SHOWN_CLASSES = 5  # the best and the worst classes logged


def report_path(train_dir: str, step: int) -> str:
    """Where the report of the checkpoint at global ``step`` goes."""
    return os.path.join(train_dir, f"eval_per_class_step_{step}.csv")


def report_text(result: dict, top_k: int, vocabulary: dict[int, str] | None = None) -> str:
    """The report of an evaluation ``result`` (``evaluate_checkpoint``'s), as CSV text."""
    text = io.StringIO()
    rows = csv.writer(text, lineterminator="\n")
    rows.writerow(["class_id", "name", "ap", "positives", f"in_top_{top_k}"])
    for class_id, (ap, positives, kept) in enumerate(zip(
            result["aps"], result["class_positives"], result["class_in_top_k"])):
        name = class_name(vocabulary, class_id) if vocabulary is not None else ""
        rows.writerow([class_id, name, f"{ap:.6f}", int(positives), int(kept)])
    return text.getvalue()


def write_report(result: dict, train_dir: str, top_k: int,
                 vocabulary: dict[int, str] | None = None) -> str:
    """Writes the report of ``result`` beside train_dir's event files
    (atomically); returns its path."""
    path = report_path(train_dir, int(result["global_step"]))
    write_atomic(path, report_text(result, top_k, vocabulary))
    return path


def best_and_worst(result: dict, count: int = SHOWN_CLASSES) -> tuple[list[int], list[int]]:
    """The ``count`` classes with positives of highest AP, best first, and
    of lowest AP, worst first (ties: the lower class id first). A class
    without positives has no AP to speak of (it is 0 by convention)."""
    aps = np.asarray(result["aps"])
    with_positives = np.flatnonzero(np.asarray(result["class_positives"]) > 0)
    ranked = with_positives[np.argsort(-aps[with_positives], kind="stable")]
    lowest = with_positives[np.argsort(aps[with_positives], kind="stable")]
    return ranked[:count].tolist(), lowest[:count].tolist()


def describe_classes(class_ids: list[int], aps, vocabulary: dict[int, str] | None) -> str:
    """``12 Game: 0.981, 3: 0.975, ...`` (names where a vocabulary is given)."""
    def label(class_id: int) -> str:
        return (f"{class_id} {class_name(vocabulary, class_id)}" if vocabulary is not None
                else str(class_id))
    return ", ".join(f"{label(c)}: {aps[c]:.3f}" for c in class_ids)


def write_and_log(result: dict, train_dir: str, top_k: int,
                  vocabulary: dict[int, str] | None = None) -> str:
    """Writes the report of ``result`` and logs where, with the best and the
    worst classes; returns its path."""
    path = write_report(result, train_dir, top_k, vocabulary)
    best, worst = best_and_worst(result)
    log.info("per-class report: %s (%d classes, %d with positives)", path, len(result["aps"]),
             int(np.count_nonzero(np.asarray(result["class_positives"]) > 0)))
    log.info("best classes by AP: %s", describe_classes(best, result["aps"], vocabulary))
    log.info("worst classes by AP: %s", describe_classes(worst, result["aps"], vocabulary))
    return path
