"""Per-class average precision, accumulated over many batches.

Equivalent to one :class:`AveragePrecisionCalculator` per class, as in the
starter code, but all classes share flat (class, prediction, positive) arrays
and are ranked together by one sort at :meth:`peek_map_at_n` time. Tie rule:
see :mod:`.average_precision_calculator` (tied predictions keep their order
of arrival).

Example:
  >>> calculator = MeanAveragePrecisionCalculator(num_class=2)
  >>> calculator.accumulate([[0.9, 0.1], [0.3]], [[1, 0], [0]])
  >>> calculator.peek_map_at_n()
  [1.0, 0.0]
"""

from __future__ import annotations

import numbers
from typing import List, Optional

import numpy as np

from youtube8m_willow.metrics import average_precision_calculator as ap_calculator


class MeanAveragePrecisionCalculator:
    """Average precision of each class (the mean of which is the MAP)."""

    def __init__(self, num_class: int, top_n: Optional[int] = None):
        """Args:
          num_class: number of classes, an integer > 1 (as in the original).
          top_n: optional AP@n cut-off applied to every class.

        Raises:
          ValueError: if num_class is not an integer > 1, or top_n is invalid.
        """
        if (not isinstance(num_class, numbers.Integral) or isinstance(num_class, bool)
                or num_class <= 1):
            raise ValueError("num_class must be a positive integer (greater than 1).")
        ap_calculator.check_top_n(top_n)
        self._num_class = int(num_class)
        self._top_n = None if top_n is None else int(top_n)
        self.clear()

    @property
    def num_class(self) -> int:
        return self._num_class

    def accumulate(self, predictions, actuals, num_positives=None) -> None:
        """Adds, for each class, part of its ranked list.

        Args:
          predictions: sequence over classes (at most num_class) of 1-D score
            sequences (ragged), or a 2-D array [classes, items].
          actuals: the labels, same structure; > 0 is positive.
          num_positives: None, or a sequence over classes of numbers >= 0 (or
            None) added to each class's recall denominator; None counts the
            positives in ``actuals``.

        Raises:
          ValueError: if the structures do not match or num_positives is invalid.
        """
        if len(predictions) != len(actuals):
            raise ValueError("the shape of predictions and actuals does not match.")
        if len(predictions) > self._num_class:
            raise ValueError(f"got {len(predictions)} classes, more than num_class="
                             f"{self._num_class}.")
        lengths = np.array([len(p) for p in predictions], dtype=np.intp)
        if not np.array_equal(lengths, [len(a) for a in actuals]):
            raise ValueError("the shape of predictions and actuals does not match.")
        flat_predictions = _flatten(predictions, np.float64)
        positive = _flatten(actuals, np.float64) > 0
        class_ids = np.repeat(np.arange(lengths.size), lengths)
        counted = np.bincount(class_ids[positive], minlength=lengths.size)
        self.accumulate_sparse(class_ids, flat_predictions, positive,
                               _positives_per_class(num_positives, counted))

    def accumulate_sparse(self, class_ids, predictions, actuals, num_positives) -> None:
        """Fast path: adds flat (class, prediction, label) items.

        Args:
          class_ids: int array [N] of class indices.
          predictions: array [N] of scores.
          actuals: array [N] of labels; > 0 is positive.
          num_positives: array [num_class] (or shorter) added to each class's
            recall denominator.
        """
        num_positives = np.asarray(num_positives, dtype=np.float64).reshape(-1)
        class_ids = np.asarray(class_ids).reshape(-1)
        if num_positives.size > self._num_class or (
                class_ids.size and not 0 <= class_ids.min() <= class_ids.max() < self._num_class):
            raise ValueError(f"class ids and num_positives must lie in [0, {self._num_class}).")
        self._num_positives[:num_positives.size] += num_positives
        if class_ids.size == 0:
            return
        self._class_ids.append(class_ids.astype(np.int32, copy=False))
        self._predictions.append(ap_calculator._as_ranking_keys(predictions))
        self._positive.append(np.asarray(actuals).reshape(-1) > 0)
        self._counts += np.bincount(class_ids, minlength=self._num_class)
        self._size += class_ids.size
        if self._top_n is not None and self._size >= max(
                ap_calculator._COMPACT_FACTOR * self._top_n * self._num_class,
                ap_calculator._MIN_COMPACT_SIZE):
            self._compact()

    def _compact(self) -> None:
        """Keeps only each class's current top_n items (arrival order kept)."""
        class_ids, predictions, positive = self._concatenated()
        keep = ap_calculator.keep_top_n_per_segment(class_ids, predictions, self._top_n)
        self._class_ids = [class_ids[keep]]
        self._predictions = [predictions[keep]]
        self._positive = [positive[keep]]
        self._size = keep.size

    def _concatenated(self):
        return (np.concatenate(self._class_ids), np.concatenate(self._predictions),
                np.concatenate(self._positive))

    def clear(self) -> None:
        """Forgets everything accumulated."""
        self._class_ids = []
        self._predictions = []
        self._positive = []
        self._size = 0
        self._counts = np.zeros(self._num_class, dtype=np.int64)
        self._num_positives = np.zeros(self._num_class, dtype=np.float64)

    def is_empty(self) -> bool:
        """True when no class has any accumulated item."""
        return self._size == 0

    def peek_map_at_n(self) -> List[float]:
        """The non-interpolated AP (at top_n) of each class; 0 for empty classes."""
        if self._size == 0:
            return [0.0] * self._num_class
        class_ids, predictions, positive = self._concatenated()
        aps = ap_calculator.average_precision_by_segment(
            class_ids, predictions, positive, self._num_positives, self._top_n)
        return aps.tolist()


def _flatten(rows, dtype) -> np.ndarray:
    """Concatenates a (possibly ragged) sequence of 1-D sequences."""
    if isinstance(rows, np.ndarray) and rows.ndim == 2:
        return rows.astype(dtype, copy=False).reshape(-1)
    parts = [np.asarray(row, dtype=dtype).reshape(-1) for row in rows]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _positives_per_class(num_positives, counted: np.ndarray) -> np.ndarray:
    """Recall denominators per class: given values, or counted where None."""
    if num_positives is None or len(num_positives) == 0:
        return counted
    if len(num_positives) != counted.size:
        raise ValueError("num_positives must have one entry per class of predictions.")
    result = counted.astype(np.float64)
    for index, value in enumerate(num_positives):
        if value is not None:
            ap_calculator.check_num_positives(value)
            result[index] = value
    return result
