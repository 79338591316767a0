"""Hit@1, PERR and GAP of one batch, computed in the graph of the train step.

Same definitions as ``metrics.eval_util`` (SPEC section 9), so the training
log does not have to copy ``[batch, classes]`` predictions to the host.
"""

from __future__ import annotations

import tensorflow as tf


def hit_at_one(predictions, labels):
    """Mean over videos of the label of the top prediction."""
    top = tf.argmax(predictions, axis=1, output_type=tf.int32)
    return tf.reduce_mean(tf.gather(labels, top, axis=1, batch_dims=1))


def precision_at_equal_recall_rate(predictions, labels):
    """Mean over videos of the precision of its top-n predictions, n = its
    number of labels; only positives predicted above 0 count."""
    num_labels = tf.cast(tf.reduce_sum(labels, axis=1), tf.int32)
    k = tf.minimum(tf.reduce_max(num_labels), tf.shape(predictions)[1])
    values, indices = tf.math.top_k(predictions, k=k)
    hits = tf.gather(labels, indices, axis=1, batch_dims=1) * tf.cast(values > 0, labels.dtype)
    in_top_n = tf.sequence_mask(num_labels, k, dtype=labels.dtype)
    per_video = tf.math.divide_no_nan(tf.reduce_sum(hits * in_top_n, axis=1),
                                      tf.cast(num_labels, labels.dtype))
    return tf.reduce_mean(per_video)


def global_average_precision(predictions, labels, top_k: int = 20):
    """GAP over the top_k predictions of each video, against all positives."""
    k = min(top_k, predictions.shape[1]) if predictions.shape[1] is not None else top_k
    values, indices = tf.math.top_k(predictions, k=k)
    kept_labels = tf.gather(labels, indices, axis=1, batch_dims=1)
    order = tf.argsort(tf.reshape(values, [-1]), direction="DESCENDING", stable=True)
    sorted_labels = tf.gather(tf.reshape(kept_labels, [-1]), order)
    ranks = tf.cast(tf.range(1, tf.size(sorted_labels) + 1), labels.dtype)
    precision = tf.cumsum(sorted_labels) / ranks
    total_positives = tf.reduce_sum(labels)
    return tf.math.divide_no_nan(tf.reduce_sum(precision * sorted_labels), total_positives)


def batch_metrics(predictions, labels, top_k: int = 20) -> dict:
    labels = tf.cast(labels, tf.float32)
    return {"hit_at_one": hit_at_one(predictions, labels),
            "perr": precision_at_equal_recall_rate(predictions, labels),
            "gap": global_average_precision(predictions, labels, top_k)}
