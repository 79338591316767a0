"""Non-interpolated average precision (AP), for one ranked list or many.

Definition (TREC): rank the items by prediction, best first; with ``numpos``
the number of positives (``actual > 0``) and ``n`` an optional cut-off,

    AP@n = sum over positive items at rank i <= n of precision@i / min(numpos, n)

and ``AP = 0`` when ``numpos == 0``. ``numpos`` may be given explicitly
(``num_positives``), so positives missing from the list (for example because
only each video's top-k predictions were kept) still count in the recall.

The starter code kept a Python heap and looped over items; here a list is
ranked with one stable sort and AP is a vectorized cumulative sum. The
segmented kernel (:func:`ranked_average_precision`) computes the APs of many
lists (e.g. one per class) at once, and sums each AP's terms in rank order, so
results match the original's arithmetic.

Ties: the original shuffled the list with a fixed seed before sorting, which
orders tied predictions pseudo-randomly. Here tied predictions keep their
order of arrival (earlier ``accumulate`` calls first, then position within a
call). Results equal the original's whenever predictions have no ties. With
``top_n``, the kept items are the ``top_n`` first in that same order.
"""

from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

# A calculator with top_n compacts its buffer once it holds this many times
# top_n items (and at least _MIN_COMPACT_SIZE), bounding memory.
_COMPACT_FACTOR = 4
_MIN_COMPACT_SIZE = 1 << 16


def _is_positive_int(value) -> bool:
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and value > 0)


def check_top_n(top_n) -> None:
    """Raises ValueError unless ``top_n`` is None or a positive integer."""
    if top_n is not None and not _is_positive_int(top_n):
        raise ValueError("top_n must be a positive integer or None.")


def _as_ranking_keys(predictions) -> np.ndarray:
    """Predictions as a 1-D float array whose negation sorts them descending."""
    predictions = np.asarray(predictions).reshape(-1)
    if not np.issubdtype(predictions.dtype, np.floating):
        predictions = predictions.astype(np.float64)
    return predictions


def rank_descending(predictions) -> np.ndarray:
    """Indices ordering ``predictions`` from highest to lowest; ties keep their order."""
    predictions = _as_ranking_keys(predictions)
    if predictions.dtype == np.float32 and predictions.size < 2**32:
        return _rank_descending_float32(predictions)
    return np.argsort(-predictions, kind="stable")


def _rank_descending_float32(predictions: np.ndarray) -> np.ndarray:
    """rank_descending for float32, by one plain sort of unique 64-bit keys.

    Each key packs the prediction's bits, mapped to an unsigned integer whose
    order is descending in the value, above the item's position; sorting the
    keys is then a stable descending sort, and much faster than a stable
    argsort of floats.
    """
    bits = (predictions + np.float32(0.0)).view(np.uint32)  # -0.0 becomes +0.0
    ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(1 << 31))
    keys = (~ascending).astype(np.uint64) << np.uint64(32)
    keys |= np.arange(predictions.size, dtype=np.uint64)
    keys.sort()
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.intp)


def group_by_segment(segment_ids: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Reorders a ranking ``order`` so that segments are contiguous, ranks kept.

    A stable sort on the segment ids of the ranked items: inside each segment
    the items stay in ranking order.
    """
    return order[np.argsort(segment_ids[order], kind="stable")]


def _segment_ranks(ranked_segment_ids: np.ndarray, num_segments: int):
    """0-based rank of each item inside its segment, and segment start offsets."""
    counts = np.bincount(ranked_segment_ids, minlength=num_segments)
    starts = np.cumsum(counts) - counts
    ranks = np.arange(ranked_segment_ids.size) - starts[ranked_segment_ids]
    return ranks, starts


def ranked_average_precision(ranked_segment_ids: np.ndarray,
                             ranked_positive: np.ndarray,
                             num_positives: np.ndarray,
                             top_n: Optional[int] = None) -> np.ndarray:
    """AP of each segment from items already grouped by segment and ranked.

    Args:
      ranked_segment_ids: int array [N], items grouped by segment (as produced
        by :func:`group_by_segment`), best first inside each segment.
      ranked_positive: bool array [N], whether each item is a positive.
      num_positives: array [S], the recall denominator of each segment.
      top_n: only ranks < top_n count, and the denominator is
        ``min(num_positives, top_n)``; None for no cut-off.

    Returns:
      float64 array [S]; 0 for segments with ``num_positives == 0``.
    """
    num_positives = np.asarray(num_positives, dtype=np.float64)
    num_segments = num_positives.size
    denominators = num_positives if top_n is None else np.minimum(num_positives, top_n)
    delta_recall = np.zeros(num_segments)
    np.divide(1.0, denominators, out=delta_recall, where=num_positives != 0)

    ranks, starts = _segment_ranks(ranked_segment_ids, num_segments)
    positives_so_far = np.cumsum(ranked_positive, dtype=np.float64)
    before_segment = np.concatenate([[0.0], positives_so_far])[starts]
    hits = ranked_positive.astype(bool, copy=False)
    if top_n is not None:
        hits = hits & (ranks < top_n)
    hit_segments = ranked_segment_ids[hits]
    precision = ((positives_so_far[hits] - before_segment[hit_segments])
                 / (ranks[hits] + 1))
    # bincount adds the terms in rank order, as the original's loop did.
    return np.bincount(hit_segments, weights=precision * delta_recall[hit_segments],
                       minlength=num_segments)


def average_precision_by_segment(segment_ids, predictions, actuals, num_positives,
                                 top_n: Optional[int] = None) -> np.ndarray:
    """AP of each segment (e.g. class), ranking each segment's items on their own.

    Args:
      segment_ids: int array [N] in ``[0, len(num_positives))``.
      predictions: array [N] of scores.
      actuals: array [N]; values > 0 are positives.
      num_positives: array [S], the recall denominator of each segment.
      top_n: optional AP@n cut-off (see :func:`ranked_average_precision`).

    Returns:
      float64 array [S].
    """
    segment_ids = np.asarray(segment_ids, dtype=np.intp).reshape(-1)
    order = group_by_segment(segment_ids, rank_descending(predictions))
    positive = np.asarray(actuals).reshape(-1)[order] > 0
    return ranked_average_precision(segment_ids[order], positive, num_positives, top_n)


def keep_top_n_per_segment(segment_ids: np.ndarray, predictions: np.ndarray,
                           top_n: int) -> np.ndarray:
    """Sorted positions of the first ``top_n`` items of each segment's ranking."""
    order = group_by_segment(segment_ids, rank_descending(predictions))
    ranks, _ = _segment_ranks(segment_ids[order], int(segment_ids.max(initial=-1)) + 1)
    return np.sort(order[ranks < top_n])


def _check_same_length(predictions, actuals) -> None:
    if len(predictions) != len(actuals):
        raise ValueError("the shape of predictions and actuals does not match.")


def check_num_positives(num_positives) -> None:
    """Raises ValueError unless ``num_positives`` is None or a number >= 0."""
    if num_positives is None:
        return
    if (not isinstance(num_positives, numbers.Number) or isinstance(num_positives, bool)
            or num_positives < 0):
        raise ValueError("'num_positives' was provided but it wasn't a non-negative "
                         f"number: {num_positives!r}.")


class AveragePrecisionCalculator:
    """Average precision (optionally at n) of one ranked list, fed in parts.

    Example:
      >>> calculator = AveragePrecisionCalculator(top_n=10)
      >>> calculator.accumulate(np.array([0.9, 0.2]), np.array([1, 0]))
      >>> calculator.accumulate(np.array([0.5]), np.array([1]))
      >>> calculator.peek_ap_at_n()  # ranks 1 and 2 are the positives
      1.0
    """

    def __init__(self, top_n: Optional[int] = None):
        """Args: top_n: compute AP@top_n; None uses every accumulated item.

        Raises:
          ValueError: if top_n is neither None nor a positive integer.
        """
        check_top_n(top_n)
        self._top_n = None if top_n is None else int(top_n)
        self.clear()

    @property
    def heap_size(self) -> int:
        """Number of items the AP is computed over (at most top_n)."""
        if self._top_n is None:
            return self._size
        return min(self._size, self._top_n)

    @property
    def num_accumulated_positives(self):
        """Total positives seen (the recall denominator)."""
        return self._total_positives

    def accumulate(self, predictions, actuals, num_positives=None) -> None:
        """Adds part of the ranked list.

        Args:
          predictions: 1-D sequence of scores.
          actuals: 1-D sequence of labels of the same length; > 0 is positive.
          num_positives: positives to add to the recall denominator, for when
            the lists are incomplete; None counts the positives in ``actuals``.

        Raises:
          ValueError: if lengths differ or num_positives is not a number >= 0.
        """
        _check_same_length(predictions, actuals)
        check_num_positives(num_positives)
        predictions = _as_ranking_keys(predictions)
        positive = np.asarray(actuals).reshape(-1) > 0
        if num_positives is None:
            num_positives = int(np.count_nonzero(positive))
        self._total_positives += num_positives
        if predictions.size == 0:
            return
        self._predictions.append(predictions)
        self._positive.append(positive)
        self._size += predictions.size
        if self._top_n is not None and self._size >= max(
                _COMPACT_FACTOR * self._top_n, _MIN_COMPACT_SIZE):
            self._compact()

    def _compact(self) -> None:
        """Drops items that can no longer reach the top_n (arrival order kept)."""
        predictions, positive = self._concatenated()
        keep = keep_top_n_per_segment(np.zeros(predictions.size, np.intp), predictions,
                                      self._top_n)
        self._predictions, self._positive = [predictions[keep]], [positive[keep]]
        self._size = keep.size

    def _concatenated(self):
        return np.concatenate(self._predictions), np.concatenate(self._positive)

    def clear(self) -> None:
        """Forgets all accumulated items and positives."""
        self._predictions = []
        self._positive = []
        self._size = 0
        self._total_positives = 0

    def peek_ap_at_n(self) -> float:
        """AP (at top_n) of everything accumulated so far; 0 when empty."""
        if self.heap_size <= 0:
            return 0.0
        predictions, positive = self._concatenated()
        return self.ap_at_n(predictions, positive, n=self._top_n,
                            total_num_positives=self._total_positives)

    @staticmethod
    def ap(predictions, actuals) -> float:
        """Non-interpolated AP of a whole list."""
        return AveragePrecisionCalculator.ap_at_n(predictions, actuals, n=None)

    @staticmethod
    def ap_at_n(predictions, actuals, n: Optional[int] = 20,
                total_num_positives=None) -> float:
        """Non-interpolated AP of the top ``n`` items of a list.

        Args:
          predictions: 1-D sequence of scores.
          actuals: 1-D sequence of labels; > 0 is positive.
          n: cut-off (positive integer), or None for the whole list.
          total_num_positives: recall denominator; None counts ``actuals > 0``.

        Raises:
          ValueError: if lengths differ or n is neither None nor a positive int.
        """
        _check_same_length(predictions, actuals)
        if n is not None and not _is_positive_int(n):
            raise ValueError(f"n must be 'None' or a positive integer. It was '{n}'.")
        positive = np.asarray(actuals).reshape(-1) > 0
        if total_num_positives is None:
            total_num_positives = int(np.count_nonzero(positive))
        if total_num_positives == 0:
            return 0.0
        order = rank_descending(predictions)
        ap = ranked_average_precision(np.zeros(order.size, np.intp), positive[order],
                                      np.array([total_num_positives]), top_n=n)
        return float(ap[0])
