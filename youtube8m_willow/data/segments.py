"""Segment-level readers (the 2019 challenge: rank 5-second segments per class).

Two kinds of frame-level records (SPEC section 15):
- rated (validation) records carry segment ratings in their context:
  ``segment_start_times``, ``segment_labels`` (class ids) and
  ``segment_scores`` (0 or 1). `make_rated_segment_dataset` gives one example
  per unique start time (first seen order): frames ``start .. start+4`` of
  the zero-padded video, ``num_frames`` 5, ``labels`` the segment's scores at
  its rated classes (0 elsewhere) and ``label_weights`` 1 at the rated
  classes, 0 elsewhere. Ids stay the video's. End times are ignored:
  segments are 5 frames.
- test records: `make_test_segment_dataset` cuts every video into 5-frame
  segments at 0, 5, 10, ...; the trailing partial segment is kept, zero
  padded, with ``num_frames`` its real length. Ids are ``"<id>:<start>"``.

Both build on the video reader's pipeline (files, framing checks, errors,
tolerant modes: `data.datasets.read_records`, parsing: `data.parsing`): whole videos are parsed a few at a time,
cut into segments in the graph, and the segments re-batched (shuffled first
when training, so a batch mixes segments of many videos).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from youtube8m_willow.data.datasets import parallel_calls, prefetched, read_records
from youtube8m_willow.data.parsing import parse_frame_records, record_names, video_ids
from youtube8m_willow.data.read_errors import assert_no, error_message, first_where
from youtube8m_willow.data.reader_config import ReaderConfig, ReadStats
from youtube8m_willow.data.resumable import plain
from youtube8m_willow.errors import DataError

SEGMENT_FRAMES = 5
_VIDEOS_PER_PARSE = 16  # videos parsed at once before cutting them into segments
_SEGMENT_SHUFFLE_FACTOR = 5  # training: segments shuffled in a buffer of 5 batches
_RATINGS = {name: tf.io.VarLenFeature(dtype) for name, dtype in (
    ("segment_start_times", tf.int64), ("segment_labels", tf.int64),
    ("segment_scores", tf.float32))}


def _windows(matrix: tf.Tensor, rows: tf.Tensor, starts: tf.Tensor) -> tf.Tensor:
    """Frames ``starts .. starts+4`` of video ``rows``: [S, 5, D]; frames past
    the end of the (padded) matrix are zeros."""
    padded = tf.pad(matrix, [[0, 0], [0, SEGMENT_FRAMES], [0, 0]])
    last_start = tf.cast(tf.shape(matrix)[1], tf.int64)
    frames = tf.minimum(starts, last_start)[:, None] + tf.range(SEGMENT_FRAMES, dtype=tf.int64)
    rows = tf.broadcast_to(rows[:, None], tf.shape(frames))
    return tf.gather_nd(padded, tf.stack([rows, frames], axis=-1))


def _parse_videos(paths, indices, records, config: ReaderConfig, rated: bool):
    names = record_names(paths, indices)
    context, matrix, num_frames, checks = parse_frame_records(
        records, names, config, extra_context=_RATINGS if rated else None)
    ids, id_checks = video_ids(context, config, names)
    return context, matrix, num_frames, ids, names, checks + id_checks


def _rated_segments(paths, indices, records, config: ReaderConfig) -> dict[str, tf.Tensor]:
    """The rated segments of a batch of validation records."""
    context, matrix, _, ids, names, checks = _parse_videos(paths, indices, records, config, True)
    starts = context["segment_start_times"]
    classes, scores = context["segment_labels"].values, context["segment_scores"].values
    rows = starts.indices[:, 0]
    checks.append(assert_no(
        tf.not_equal(tf.size(classes), tf.size(starts.values)) | tf.not_equal(
            tf.size(scores), tf.size(starts.values)),
        lambda: error_message(names[0], ": segment_labels, segment_start_times and "
                              "segment_scores differ in length")))
    bad = (classes < 0) | (classes >= config.num_classes)
    checks.append(assert_no(bad, lambda: error_message(
        tf.gather(names, first_where(rows, bad)), ": segment label ",
        first_where(classes, bad), " is out of range for --num_classes=",
        str(config.num_classes))))
    with tf.control_dependencies(checks):
        # One segment per (video, start time), in first seen order.
        keys = rows * (1 << 32) + starts.values
        unique_keys, segment_of_rating = tf.unique(keys, out_idx=tf.int64)
        segment_rows, segment_starts = unique_keys // (1 << 32), unique_keys % (1 << 32)
        count = tf.shape(unique_keys, out_type=tf.int64)[0]
        where = tf.stack([segment_of_rating, classes], axis=1)
        zeros = tf.zeros(tf.stack([count, config.num_classes]), tf.float32)
        return {
            "video_ids": tf.gather(ids, segment_rows),
            "video_matrix": _windows(matrix, segment_rows, segment_starts),
            "num_frames": tf.fill([count], SEGMENT_FRAMES),
            "labels": tf.tensor_scatter_nd_max(zeros, where, scores),
            "label_weights": tf.tensor_scatter_nd_max(zeros, where, tf.ones_like(scores)),
        }


def _test_segments(paths, indices, records, config: ReaderConfig) -> dict[str, tf.Tensor]:
    """Every 5-frame segment of a batch of test records (the last one partial)."""
    _, matrix, num_frames, ids, _, checks = _parse_videos(paths, indices, records, config, False)
    with tf.control_dependencies(checks):
        starts = tf.ragged.range(0, tf.cast(num_frames, tf.int64), SEGMENT_FRAMES)
        rows, segment_starts = starts.value_rowids(), starts.flat_values
        count = tf.shape(segment_starts)[0]
        lengths = tf.minimum(tf.gather(num_frames, rows) - tf.cast(segment_starts, tf.int32),
                             SEGMENT_FRAMES)
        return {
            "video_ids": tf.strings.join([tf.gather(ids, rows), ":",
                                          tf.strings.as_string(segment_starts)]),
            "video_matrix": _windows(matrix, rows, segment_starts),
            "num_frames": lengths,
            "labels": tf.zeros(tf.stack([count, config.num_classes]), tf.float32),
            "label_weights": tf.zeros(tf.stack([count, config.num_classes]), tf.float32),
        }


def _segment_dataset(cut, data_pattern, config: ReaderConfig, batch_size: int, *, training: bool,
                     num_epochs: int | None, num_readers: int, seed: int | None,
                     stats: ReadStats | None) -> tf.data.Dataset:
    if not config.frame_features:
        raise DataError("segment-level reading needs frame-level records "
                                "(--frame_features=True)")
    if config.quantized_frames:
        raise ValueError("segment windows are cut from float frames: quantized_frames must be off")
    records, stats, deterministic = read_records(
        data_pattern, config, _VIDEOS_PER_PARSE, training=training, num_epochs=num_epochs,
        num_readers=num_readers, seed=seed, stats=stats)
    segments = records.batch(_VIDEOS_PER_PARSE).map(
        plain(lambda p, i, r, unused_end: cut(p, i, r, config)),
        num_parallel_calls=parallel_calls(), deterministic=deterministic).unbatch()
    if training:
        segments = segments.shuffle(_SEGMENT_SHUFFLE_FACTOR * batch_size, seed=seed,
                                    reshuffle_each_iteration=True)
    dataset = prefetched(segments.batch(batch_size))
    dataset.read_stats = stats
    return dataset


def make_rated_segment_dataset(data_pattern: str | Sequence[str], config: ReaderConfig,
                               batch_size: int, *, training: bool, num_epochs: int | None = 1,
                               num_readers: int = 8, seed: int | None = None,
                               stats: ReadStats | None = None) -> tf.data.Dataset:
    """Batches of rated 5-frame segments of validation records (module doc):
    the dict of `datasets.make_dataset` with ``num_frames`` 5, plus
    ``label_weights`` [B, num_classes] (1 at the segment's rated classes)."""
    return _segment_dataset(_rated_segments, data_pattern, config, batch_size,
                            training=training, num_epochs=num_epochs, num_readers=num_readers,
                            seed=seed, stats=stats)


def make_test_segment_dataset(data_pattern: str | Sequence[str], config: ReaderConfig,
                              batch_size: int, *, num_readers: int = 8,
                              stats: ReadStats | None = None) -> tf.data.Dataset:
    """Batches of every 5-frame segment of test records, in record order;
    ids ``"<id>:<start>"``, ``num_frames`` 1..5 (module doc)."""
    return _segment_dataset(_test_segments, data_pattern, config, batch_size, training=False,
                            num_epochs=1, num_readers=num_readers, seed=None, stats=stats)
