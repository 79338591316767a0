"""Evaluation metrics of the YouTube-8M starter code, vectorized with NumPy.

With ``P`` the predictions and ``Y`` the 0/1 labels of a batch, both [B, V]:

* Hit@1: mean over videos of ``Y[b, argmax P[b]]``.
* PERR: for a video with ``n`` labels, the fraction of its top-``n``
  predictions that are positives with a prediction > 0; a video with no
  labels counts 0; mean over videos.
* GAP: each video keeps its ``top_k`` predictions; all kept (prediction,
  label) pairs are pooled and ranked; GAP is their average precision with
  the total number of labels of ``Y`` (kept or not) as recall denominator.
* Per-class AP: the same, per class, over that class's kept predictions with
  the class's total labels as denominator (0 for a class without labels).
  :class:`EvaluationMetrics` reports two means: ``map_all_classes`` over every
  class (WILLOW's MAP, zeros included) and ``map_positive_classes`` over the
  classes that had labels (the later starter code's).

The values equal the original per-video loops and heaps whenever predictions
have no ties. Ties, which the original ordered arbitrarily (numpy.argpartition,
then a seeded shuffle), follow fixed rules here:

* within a video, the lower class index comes first: it decides which tied
  predictions make the video's top-k (GAP, AP) or top-n (PERR);
* when ranking pooled entries (GAP, per-class AP), tied predictions keep
  their order of arrival: earlier batches, then earlier videos, then lower
  class indices.

Labels are expected to be 0/1.
"""

from __future__ import annotations

import itertools
import numbers
from typing import Dict, List, NamedTuple, Tuple

import numpy as np

from youtube8m_willow.metrics.average_precision_calculator import (
    group_by_segment, rank_descending, ranked_average_precision)


def flatten(l):
    """Merges a list of lists into a single list."""
    return list(itertools.chain.from_iterable(l))


def _as_batch(predictions, actuals) -> Tuple[np.ndarray, np.ndarray]:
    """Both inputs as arrays [B, V] of the same shape (floating predictions)."""
    predictions, actuals = np.asarray(predictions), np.asarray(actuals)
    if predictions.ndim != 2 or predictions.shape != actuals.shape:
        raise ValueError("predictions and actuals must be matrices of the same shape "
                         f"[batch, classes]; got {predictions.shape} and {actuals.shape}.")
    if not np.issubdtype(predictions.dtype, np.floating):
        predictions = predictions.astype(np.float64)
    return predictions, actuals


def _check_k(k) -> None:
    if not isinstance(k, numbers.Integral) or k <= 0:
        raise ValueError("k must be a positive integer.")


class _TopK(NamedTuple):
    """Each video's top-k entries, [B, k] each, in class order within a video."""
    classes: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray


def _partition_keys(predictions: np.ndarray) -> np.ndarray:
    """Keys ordered like ``predictions``, fast to partition.

    Non-negative float32 predictions (probabilities) order like their bits
    read as int32, which NumPy partitions with SIMD code, about twice as fast
    as float32; other predictions are their own keys.
    """
    if predictions.dtype == np.float32 and predictions.size:
        bits = predictions.view(np.int32)
        if bits.min() >= 0:
            return bits
    return predictions


def _keep_k_per_row(rows: np.ndarray, values: np.ndarray, kth: np.ndarray, k: int,
                    num_rows: int) -> np.ndarray:
    """Mask of the candidates kept: all above kth, then the tied ones in class order.

    Candidates are row-major and hold every key >= kth of each row.
    """
    kth = kth[rows]
    above = values > kth
    tied = values == kth
    counts = np.bincount(rows, minlength=num_rows)
    tied_so_far = np.cumsum(tied)
    tied_before_row = np.concatenate([[0], tied_so_far])[np.cumsum(counts) - counts]
    room = k - np.bincount(rows[above], minlength=num_rows)
    return above | (tied & (tied_so_far - tied_before_row[rows] <= room[rows]))


def _top_k_flat(predictions: np.ndarray, k: int) -> np.ndarray:
    """Flat row-major indices of each row's k largest predictions (k < V).

    Ties at the cut-off go to lower class indices.
    """
    num_rows, num_classes = predictions.shape
    keys = _partition_keys(predictions)
    kth = np.partition(keys, num_classes - k, axis=1)[:, num_classes - k]
    flat = np.flatnonzero(keys >= kth[:, None])
    rows = flat // num_classes
    flat = flat[_keep_k_per_row(rows, keys.reshape(-1)[flat], kth, k, num_rows)]
    if flat.size != num_rows * k:  # NaN among float keys: fall back to NumPy's order
        classes = np.sort(np.argpartition(keys, -k, axis=1)[:, -k:], axis=1)
        flat = (classes + num_classes * np.arange(num_rows)[:, None]).reshape(-1)
    return flat


def _top_k(predictions: np.ndarray, actuals: np.ndarray, k: int) -> _TopK:
    """The k highest predictions of each video (k <= number of classes).

    Without ties the set is the original's numpy.argpartition set; ties at
    the cut-off are resolved in favor of lower class indices.
    """
    num_videos, num_classes = predictions.shape
    if k == num_classes:
        classes = np.tile(np.arange(num_classes), (num_videos, 1))
    else:
        kept = _top_k_flat(predictions, k)
        classes = (kept % num_classes).reshape(num_videos, k)
    rows = np.arange(num_videos)[:, None]
    return _TopK(classes, predictions[rows, classes], actuals[rows, classes])


def _hit_at_one(predictions: np.ndarray, actuals: np.ndarray, top: _TopK = None) -> float:
    """Hit@1; with ``top``, the argmax is found among the kept entries when exact."""
    num_videos = actuals.shape[0]
    if num_videos == 0:
        return 0.0
    if top is None:
        best = np.argmax(predictions, axis=1)
    else:
        # Kept entries are in class order and, by the cut-off rule, hold each
        # row's first maximum: their argmax is the row's. Rows where all kept
        # entries tie (or hold NaN) are checked on the full row anyway.
        column = np.argmax(top.predictions, axis=1)
        best = top.classes[np.arange(num_videos), column]
        maximum = top.predictions[np.arange(num_videos), column]
        unsure = ~(top.predictions.min(axis=1) < maximum)
        if unsure.any():
            best[unsure] = np.argmax(predictions[unsure], axis=1)
    # np.average in the labels' dtype, as the original (float32 labels round).
    return float(np.average(actuals[np.arange(num_videos), best]))


def calculate_hit_at_one(predictions, actuals) -> float:
    """Mean over videos of the label of each video's highest prediction."""
    return _hit_at_one(*_as_batch(predictions, actuals))


def _label_counts(actuals: np.ndarray) -> np.ndarray:
    """Each video's number of labels (its label sum truncated to int)."""
    return actuals.sum(axis=1).astype(np.int64)


def _precision_at_equal_recall(predictions: np.ndarray, actuals: np.ndarray,
                               top: _TopK = None) -> float:
    """PERR; ``top`` is reused when it holds at least each video's label count."""
    num_videos = actuals.shape[0]
    counts = _label_counts(actuals)
    max_count = int(counts.max(initial=0))
    if max_count == 0:
        return 0.0
    if top is None or top.classes.shape[1] < max_count:
        top = _top_k(predictions, actuals, max_count)
    by_value = np.argsort(-top.predictions, axis=1, kind="stable")[:, :max_count]
    values = np.take_along_axis(top.predictions, by_value, axis=1)
    labels = np.take_along_axis(top.labels, by_value, axis=1)
    counted = (np.arange(max_count) < counts[:, None]) & (values > 0)
    hits = np.where(counted, labels, 0).sum(axis=1, dtype=np.float64)
    precision = hits / np.maximum(counts, 1)
    return float(precision.sum() / num_videos)


def calculate_precision_at_equal_recall_rate(predictions, actuals) -> float:
    """Mean over videos of the precision of its top-n predictions, n = its label count."""
    return _precision_at_equal_recall(*_as_batch(predictions, actuals))


def _global_ap(predictions: np.ndarray, positive: np.ndarray, num_positives: float) -> float:
    order = rank_descending(predictions)
    ap = ranked_average_precision(np.zeros(order.size, np.intp), positive[order],
                                  np.array([num_positives]))
    return float(ap[0])


def calculate_gap(predictions, actuals, top_k: int = 20) -> float:
    """Global average precision of one batch, keeping each video's top_k predictions."""
    _check_k(top_k)
    predictions, actuals = _as_batch(predictions, actuals)
    if predictions.shape[0] == 0:
        return 0.0
    top = _top_k(predictions, actuals, min(top_k, predictions.shape[1]))
    return _global_ap(top.predictions.reshape(-1), top.labels.reshape(-1) > 0,
                      actuals.sum(dtype=np.float64))


def top_k_by_class(predictions, labels, k: int = 20):
    """Each video's top k predictions, regrouped by class.

    Returns:
      (predictions, labels, true_positives): the first two are lists with one
      1-D array per class (entries in video order), the last the number of
      labels of each class in ``labels``.

    Raises:
      ValueError: if k is not a positive integer.
    """
    _check_k(k)
    predictions, labels = _as_batch(predictions, labels)
    num_classes = predictions.shape[1]
    top = _top_k(predictions, labels, min(k, num_classes))
    class_ids = top.classes.reshape(-1)
    by_class = np.argsort(class_ids, kind="stable")
    bounds = np.cumsum(np.bincount(class_ids, minlength=num_classes))[:-1]
    return (np.split(top.predictions.reshape(-1)[by_class], bounds),
            np.split(top.labels.reshape(-1)[by_class], bounds),
            list(labels.sum(axis=0)))


def top_k_triplets(predictions, labels, k: int = 20) -> List[tuple]:
    """The k highest predictions of one video as (class index, prediction, label)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    k = min(k, len(predictions))
    indices = np.argpartition(predictions, -k)[-k:]
    return list(zip(indices.tolist(), predictions[indices], labels[indices]))


class EvaluationMetrics:
    """Accumulates Hit@1, PERR, loss, GAP and per-class AP over an evaluation.

    Each batch keeps only its videos' top_k (class, prediction, label) entries;
    GAP and the per-class APs are computed from them at :meth:`get` with one
    sort over all kept entries.

    Example:
      >>> metrics = EvaluationMetrics(num_class=3, top_k=1)
      >>> metrics.accumulate(np.array([[0.9, 0.2, 0.1], [0.1, 0.3, 0.8]]),
      ...                    np.array([[1, 0, 0], [0, 1, 0]]), loss=np.array([1.0, 3.0]))
      {'hit_at_one': 0.5, 'perr': 0.5, 'loss': 2.0}
      >>> metrics.get()["gap"]  # kept: 0.9 (positive), 0.8 (negative); 2 labels
      0.5
    """

    def __init__(self, num_class: int, top_k: int):
        """Args:
          num_class: number of classes, an integer > 1 (as in the original).
          top_k: how many predictions of each video are kept for GAP and AP.

        Raises:
          ValueError: if num_class or top_k is invalid.
        """
        if (not isinstance(num_class, numbers.Integral) or isinstance(num_class, bool)
                or num_class <= 1):
            raise ValueError("num_class must be a positive integer (greater than 1).")
        _check_k(top_k)
        self.num_class = int(num_class)
        self.top_k = int(top_k)
        self.clear()

    def accumulate(self, predictions, labels, loss) -> Dict[str, float]:
        """Adds one batch and returns its own metrics.

        Args:
          predictions: array [B, num_class] of model outputs.
          labels: array [B, num_class] of 0/1 ground truth.
          loss: the batch's loss (per example, or already averaged).

        Returns:
          {"hit_at_one", "perr", "loss"} of this batch.

        Raises:
          ValueError: if shapes do not match or the class count differs.
        """
        predictions, labels = _as_batch(predictions, labels)
        if predictions.shape[1] != self.num_class:
            raise ValueError(f"expected {self.num_class} classes, got {predictions.shape[1]}.")
        batch_size = labels.shape[0]
        if batch_size == 0:
            return {"hit_at_one": 0.0, "perr": 0.0, "loss": 0.0}
        top = _top_k(predictions, labels, min(self.top_k, self.num_class))
        mean_hit_at_one = _hit_at_one(predictions, labels, top)
        mean_perr = _precision_at_equal_recall(predictions, labels, top)
        mean_loss = float(np.mean(loss))
        self._keep(top, labels)

        self.num_examples += batch_size
        self.sum_hit_at_one += mean_hit_at_one * batch_size
        self.sum_perr += mean_perr * batch_size
        self.sum_loss += mean_loss * batch_size
        return {"hit_at_one": mean_hit_at_one, "perr": mean_perr, "loss": mean_loss}

    def _keep(self, top: _TopK, labels: np.ndarray) -> None:
        self._class_ids.append(top.classes.astype(self._class_dtype).reshape(-1))
        self._predictions.append(top.predictions.reshape(-1))
        self._positive.append(top.labels.reshape(-1) > 0)
        self._num_positives += labels.sum(axis=0)

    def get(self) -> Dict[str, object]:
        """Metrics of everything accumulated since the last clear().

        Returns:
          avg_hit_at_one, avg_perr, avg_loss, aps (list of per-class APs), gap,
          map_all_classes (mean of aps) and map_positive_classes (mean of the
          aps of classes with labels; 0 if none), num_positive_classes.

        Raises:
          ValueError: if no examples were accumulated.
        """
        if self.num_examples <= 0:
            raise ValueError("total_sample must be positive.")
        aps, gap = self._aps_and_gap()
        has_labels = self._num_positives > 0
        return {
            "avg_hit_at_one": self.sum_hit_at_one / self.num_examples,
            "avg_perr": self.sum_perr / self.num_examples,
            "avg_loss": self.sum_loss / self.num_examples,
            "aps": aps.tolist(),
            "gap": gap,
            "map_all_classes": float(np.mean(aps)),
            "map_positive_classes": float(np.mean(aps[has_labels])) if has_labels.any() else 0.0,
            "num_positive_classes": int(has_labels.sum()),
        }

    def class_counts(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per class, over everything accumulated: its positives (labels, the
        recall denominator of its AP) and the number of videos that had it
        among their top_k predictions (the entries its AP ranks)."""
        kept = (np.bincount(np.concatenate(self._class_ids), minlength=self.num_class)
                if self._class_ids else np.zeros(self.num_class, np.int64))
        return self._num_positives.copy(), kept

    def _aps_and_gap(self) -> Tuple[np.ndarray, float]:
        """Per-class APs and GAP from one ranking of all kept entries."""
        class_ids = np.concatenate(self._class_ids)
        positive = np.concatenate(self._positive)
        order = rank_descending(np.concatenate(self._predictions))
        gap = ranked_average_precision(np.zeros(order.size, np.intp), positive[order],
                                       np.array([self._num_positives.sum()]))
        by_class = group_by_segment(class_ids, order)
        aps = ranked_average_precision(class_ids[by_class].astype(np.intp),
                                       positive[by_class], self._num_positives)
        return aps, float(gap[0])

    def clear(self) -> None:
        """Resets all accumulated metrics."""
        self.sum_hit_at_one = 0.0
        self.sum_perr = 0.0
        self.sum_loss = 0.0
        self.num_examples = 0
        self._class_dtype = np.int16 if self.num_class <= np.iinfo(np.int16).max else np.int32
        self._class_ids = []
        self._predictions = []
        self._positive = []
        self._num_positives = np.zeros(self.num_class, dtype=np.float64)
