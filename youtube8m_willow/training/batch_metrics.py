"""Hit@1, PERR and GAP of one batch, computed in the graph of the train step.

Same definitions as ``metrics.eval_util`` (SPEC section 9), so the training
log does not have to copy ``[batch, classes]`` predictions to the host. The
three read one ``top_k`` of the predictions (``rank``): TensorFlow's puts the
lower class first among equal scores, as NumPy's argmax and stable sorts do.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Ranked:
    """Each video's top predictions, as many as the larger of the GAP's
    ``top_k`` and the most labels any video of the batch has (at most the
    classes): scores ``[B, k]``, descending, their labels ``[B, k]``, each
    video's number of labels ``[B]`` and the batch's positives."""

    values: tf.Tensor
    labels: tf.Tensor
    num_labels: tf.Tensor
    positives: tf.Tensor


def rank(predictions, labels, top_k: int = 20) -> Ranked:
    """One ``top_k`` of ``predictions`` for all three metrics."""
    labels = tf.cast(labels, tf.float32)
    num_labels = tf.cast(tf.reduce_sum(labels, axis=1), tf.int32)
    k = tf.minimum(tf.maximum(tf.reduce_max(num_labels), top_k), tf.shape(predictions)[1])
    values, indices = tf.math.top_k(predictions, k=k)
    return Ranked(values, tf.gather(labels, indices, axis=1, batch_dims=1), num_labels,
                  tf.reduce_sum(labels))


def hit_at_one(ranked: Ranked):
    """Mean over videos of the label of the top prediction."""
    return tf.reduce_mean(ranked.labels[:, 0])


def precision_at_equal_recall_rate(ranked: Ranked):
    """Mean over videos of the precision of its top-n predictions, n = its
    number of labels; only positives predicted above 0 count."""
    hits = ranked.labels * tf.cast(ranked.values > 0, tf.float32)
    in_top_n = tf.sequence_mask(ranked.num_labels, tf.shape(hits)[1], dtype=tf.float32)
    per_video = tf.math.divide_no_nan(tf.reduce_sum(hits * in_top_n, axis=1),
                                      tf.cast(ranked.num_labels, tf.float32))
    return tf.reduce_mean(per_video)


def top_of(ranked: Ranked, top_k: int, classes: int | None) -> tuple[tf.Tensor, tf.Tensor]:
    """The scores and labels of each video's ``top_k`` predictions (all of
    them where there are fewer classes)."""
    k = min(top_k, classes) if classes is not None else top_k
    return ranked.values[:, :k], ranked.labels[:, :k]


def global_average_precision(ranked: Ranked, top_k: int, classes: int | None):
    """GAP over the top_k predictions of each video, against all positives."""
    values, kept_labels = top_of(ranked, top_k, classes)
    order = tf.argsort(tf.reshape(values, [-1]), direction="DESCENDING", stable=True)
    sorted_labels = tf.gather(tf.reshape(kept_labels, [-1]), order)
    ranks = tf.cast(tf.range(1, tf.size(sorted_labels) + 1), tf.float32)
    precision = tf.cumsum(sorted_labels) / ranks
    return tf.math.divide_no_nan(tf.reduce_sum(precision * sorted_labels), ranked.positives)


def batch_metrics(predictions, labels, top_k: int = 20) -> dict:
    ranked = rank(predictions, labels, top_k)
    return {"hit_at_one": hit_at_one(ranked),
            "perr": precision_at_equal_recall_rate(ranked),
            "gap": global_average_precision(ranked, top_k, predictions.shape[1])}
