"""The precision-recall curve of a whole evaluation, in bounded memory.

TensorBoard's pr_curve summary (``tensorboard.plugins.pr_curve.summary.pb``)
wants every label and prediction at once: for an eval set of a million
videos and 3862 classes that is billions of values. Its curve is made of
counts per threshold, though, and counts add up: each batch's predictions
are dropped into the thresholds' buckets exactly as ``pb`` buckets them
(``floor(prediction * (num_thresholds - 1))``), positives and negatives
apart, and only the two bucket histograms are kept. ``curve()`` then gives
what ``pb`` would have computed from all the predictions at once, for
``raw_data_pb``.

Example:
  >>> counts = PrecisionRecallCounts(num_thresholds=3)
  >>> counts.accumulate(np.array([[0.9, 0.2], [0.6, 0.7]]), np.array([[1, 0], [0, 1]]))
  >>> curve = counts.curve()
  >>> curve["true_positive_counts"].tolist(), curve["false_positive_counts"].tolist()
  ([2.0, 2.0, 0.0], [2.0, 1.0, 0.0])
"""

from __future__ import annotations

import numpy as np

DEFAULT_NUM_THRESHOLDS = 201  # TensorBoard's default
_MINIMUM_COUNT = 1e-7  # pr_curve's guard against dividing by zero


class PrecisionRecallCounts:
    """Positives and negatives per threshold bucket over every (video,
    class) prediction accumulated.

    Args:
        num_thresholds: thresholds evenly spaced over [0, 1], at least 2.
    """

    def __init__(self, num_thresholds: int = DEFAULT_NUM_THRESHOLDS):
        if num_thresholds < 2:
            raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}.")
        self.num_thresholds = num_thresholds
        self.positives = np.zeros(num_thresholds, np.float64)
        self.negatives = np.zeros(num_thresholds, np.float64)

    def accumulate(self, predictions, labels, weights=None) -> None:
        """Adds a batch: ``predictions`` in [0, 1] and 0/1 ``labels``, both
        [B, classes]; ``weights`` (same shape or broadcastable) counts each
        entry that many times (0: left out, e.g. a segment's unrated classes)."""
        predictions = np.asarray(predictions, np.float32)
        labels = np.asarray(labels).astype(np.float64)
        weights = np.broadcast_to(1.0 if weights is None else np.asarray(weights, np.float64),
                                  labels.shape)
        buckets = np.int32(np.floor(np.clip(predictions, 0, 1) * (self.num_thresholds - 1)))
        self.positives += np.bincount(buckets.reshape(-1), (labels * weights).reshape(-1),
                                      minlength=self.num_thresholds)
        self.negatives += np.bincount(buckets.reshape(-1), ((1 - labels) * weights).reshape(-1),
                                      minlength=self.num_thresholds)

    def curve(self) -> dict[str, np.ndarray]:
        """The arguments of ``pr_curve.summary.raw_data_pb``, computed as
        ``pr_curve.summary.pb`` computes them: at threshold i, the entries
        predicted in bucket i or above count as predicted positive."""
        tp = np.cumsum(self.positives[::-1])[::-1]
        fp = np.cumsum(self.negatives[::-1])[::-1]
        return {"true_positive_counts": tp, "false_positive_counts": fp,
                "true_negative_counts": fp[0] - fp, "false_negative_counts": tp[0] - tp,
                "precision": tp / np.maximum(_MINIMUM_COUNT, tp + fp),
                "recall": tp / np.maximum(_MINIMUM_COUNT, tp + tp[0] - tp)}
