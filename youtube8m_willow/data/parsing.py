"""Parsing batches of serialized YouTube-8M records into the readers' tensors.

Record formats (see the project spec, "Data"):
- frame level: `SequenceExample`; context `id` or `video_id` (bytes) and
  `labels` (int64 list); one feature list per feature name with one bytes
  entry of `feature_size` uint8 values per frame.
- video level: `Example`; `id` or `video_id`, `labels`, and one float list of
  `feature_size` values per feature name.

Records are named "<file> (record <i>)" (`record_names`), so every parse
error and check names the record (`data.read_errors`). The public pieces
(`record_names`, `video_ids`, `parse_frame_records`) also serve readers of
other record contents, such as the segment windows of ``data.segments``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from youtube8m_willow.data.read_errors import assert_no, error_message, first_where
from youtube8m_willow.data.reader_config import ReaderConfig, ReadStats
from youtube8m_willow.native import dequantize_frames as dequantize_kernel


def dequantize(feat, max_quantized_value: float = 2.0, min_quantized_value: float = -2.0):
    """Maps uint8-quantized values back to floats: q * range/255 + range/512 + min."""
    quantized_range = max_quantized_value - min_quantized_value
    scalar = quantized_range / 255.0
    bias = quantized_range / 512.0 + min_quantized_value
    return feat * scalar + bias


def record_names(paths: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Names such as "<file> (record <i>)", which parse errors and checks report."""
    return tf.strings.join([paths, " (record ", tf.strings.as_string(indices), ")"])


def _id_features(config: ReaderConfig) -> dict[str, tf.io.FixedLenFeature]:
    keys = (config.id_key,) if config.id_key else ("id", "video_id")
    return {key: tf.io.FixedLenFeature([], tf.string, default_value="") for key in keys}


def video_ids(parsed: dict[str, tf.Tensor], config: ReaderConfig,
              names: tf.Tensor) -> tuple[tf.Tensor, list[tf.Operation]]:
    """The id of each record: the forced key, or whichever of "id" / "video_id" is set.

    Ids are parsed with an empty default and checked here, since a missing
    context key gives a parse error that does not name the record.
    """
    if config.id_key:
        ids = parsed[config.id_key]
        problem = (f": no video id under the key {config.id_key} (forced by id_key; 2017 data "
                   "uses video_id, 2018 and later id)")
    else:
        ids = tf.where(tf.strings.length(parsed["id"]) > 0, parsed["id"], parsed["video_id"])
        problem = ": no video id (neither an id nor a video_id key)"
    missing = tf.equal(tf.strings.length(ids), 0)
    check = assert_no(missing, lambda: error_message(first_where(names, missing), problem))
    return ids, [check]


def _dense_labels(labels: tf.SparseTensor, batch_size: tf.Tensor, config: ReaderConfig,
                  names: tf.Tensor, stats: ReadStats | None) -> tuple[tf.Tensor, list[tf.Operation]]:
    """Dense 0/1 float labels [B, num_classes]; out-of-range ids fail or are dropped."""
    values, rows = labels.values, labels.indices[:, 0]
    bad = tf.logical_or(values < 0, values >= config.num_classes)
    checks = []
    if config.drop_out_of_range_labels:
        keep = tf.logical_not(bad)
        values, rows = tf.boolean_mask(values, keep), tf.boolean_mask(rows, keep)
        if stats is not None:
            checks.append(stats.dropped_labels.assign_add(tf.reduce_sum(tf.cast(bad, tf.int64))))
    else:
        checks.append(assert_no(bad, lambda: error_message(
            tf.gather(names, first_where(rows, bad)), ": label ", first_where(values, bad),
            " is out of range for --num_classes=", str(config.num_classes),
            " (2017 data has 4716 classes, 2018 and later 3862)")))
    with tf.control_dependencies(checks):  # scatter_nd would fail first on a bad label
        dense = tf.scatter_nd(tf.stack([rows, values], axis=1), tf.ones_like(values, tf.float32),
                              tf.stack([batch_size, config.num_classes]))
    return tf.minimum(dense, 1.0), checks


def _dequantize_bytes(quantized: tf.Tensor) -> tf.Tensor:
    """`dequantize` of uint8 values with the default range, in one op.

    The MIN_COMBINED Dequantize op computes min_range + q * (max_range -
    min_range) / 255, the same float32 values as q * 4/255 + (4/512 - 2) (checked
    for all 256 bytes in the tests) at less than half the memory traffic.
    """
    low = dequantize(0.0)
    return tf.quantization.dequantize(tf.bitcast(quantized, tf.quint8), low, low + 4.0,
                                      mode="MIN_COMBINED")


def _decode_frames(strings: tf.Tensor, frame_counts: tf.Tensor, name: str, size: int,
                   max_frames: int, names: tf.Tensor) -> tuple[tf.Tensor, tf.Operation]:
    """The uint8 values [B, min(T, max_frames), size] of one feature's
    frames, zero bytes after each video's last frame. ``strings``: the
    parsed [B, T] bytes, of which ``frame_counts`` [B] are each row's real
    frames. Checks the size of every real frame first (those past
    ``max_frames`` too)."""
    byte_counts = tf.strings.length(strings)
    real = tf.sequence_mask(frame_counts, tf.shape(strings)[1])
    bad = tf.logical_and(real, tf.not_equal(byte_counts, size))
    check = assert_no(bad, lambda: error_message(
        first_where(names, tf.reduce_any(bad, axis=1)), ": frame feature ", name,
        " has a frame of ", first_where(tf.reshape(byte_counts, [-1]), tf.reshape(bad, [-1])),
        " bytes, expected ", str(size), " (check --feature_names / --feature_sizes)"))
    with tf.control_dependencies([check]):
        # The padding entries are empty strings: fixed_length gives them zeros.
        return tf.io.decode_raw(strings[:, :max_frames], tf.uint8, fixed_length=size), check


def _frame_matrix(lists: dict[str, tf.Tensor], lengths: dict[str, tf.Tensor], config: ReaderConfig,
                  names: tf.Tensor) -> tuple[tf.Tensor, list[tf.Operation]]:
    """Frames [B, max_frames, D], features concatenated, each feature
    zero-padded after its own last frame and clipped to max_frames: the
    uint8 bytes with ``config.quantized_frames``, else the dequantized floats
    (``dequantize_frames``: padding exactly 0.0).

    Each feature is decoded straight from the parsed [B, T] strings, not
    through a ragged tensor of its real frames (a gather of their strings
    and a padded copy fewer)."""
    decoded = [_decode_frames(lists[n], lengths[n], n, s, config.max_frames, names)
               for n, s in zip(config.feature_names, config.feature_sizes)]
    padded = [_to_frames(values, config.max_frames) for values, _ in decoded]
    matrix = padded[0] if len(padded) == 1 else tf.concat(padded, axis=-1)
    if not config.quantized_frames:
        matrix = dequantize_frames(matrix, _feature_frames(lengths, config), config.feature_sizes)
    return matrix, [check for _, check in decoded]


def _to_frames(values: tf.Tensor, max_frames: int) -> tf.Tensor:
    """[B, T <= max_frames, D] zero-padded to [B, max_frames, D]."""
    padding = max_frames - tf.shape(values)[1]
    padded = tf.pad(values, [[0, 0], [0, padding], [0, 0]])
    return tf.ensure_shape(padded, [None, max_frames, values.shape[-1]])


def _feature_frames(lengths: dict[str, tf.Tensor], config: ReaderConfig) -> tf.Tensor:
    """Frames kept of each feature [B, features] (int32, at most max_frames)."""
    counts = tf.stack([lengths[n] for n in config.feature_names], axis=1)
    return tf.cast(tf.minimum(counts, config.max_frames), tf.int32)


def dequantize_frames(video_matrix: tf.Tensor, feature_frames: tf.Tensor,
                      feature_sizes: Sequence[int], positions: tf.Tensor | None = None
                      ) -> tf.Tensor:
    """The float frames of a ``quantized_frames`` batch, ``dequantize`` of
    each byte and exactly 0.0 past each feature's frames (the float reader
    gives its ``video_matrix`` through here too, so the two agree bitwise).
    One kernel where it runs (``native.dequantize_frames``: one pass, where
    TensorFlow's ops make four), the same bits.

    Args:
        video_matrix: uint8 [B, T, D], features concatenated.
        feature_frames: int32 [B, features], the frames of each feature.
        feature_sizes: D split per feature.
        positions: int32 [B, N]: only the frames at these positions of each
            video, gathered (default: all T frames, in order).
    """
    if video_matrix.dtype == tf.uint8 and dequantize_kernel.available():
        table = _dequantize_bytes(tf.constant(np.arange(256, dtype=np.uint8)))
        return dequantize_kernel.dequantize(video_matrix, feature_frames, feature_sizes, table,
                                            positions)
    if positions is not None:
        video_matrix = tf.gather(video_matrix, positions, batch_dims=1)
    values = _dequantize_bytes(video_matrix)
    column_feature = tf.constant(np.repeat(np.arange(len(feature_sizes)), feature_sizes), tf.int32)
    frames_of_column = tf.gather(feature_frames, column_feature, axis=1)  # [B, D]
    if positions is None:
        positions = tf.range(tf.shape(video_matrix)[1])[None, :]
    return tf.where(positions[:, :, None] < frames_of_column[:, None, :], values, 0.0)


def with_float_frames(inputs: dict, feature_sizes: Sequence[int],
                      frame_indices: Callable | None = None) -> dict:
    """``inputs`` with the float frames: a ``quantized_frames`` batch's
    uint8 ``video_matrix`` dequantized (``dequantize_frames``) and its
    ``feature_frames`` dropped; any other batch as it is. For the compiled
    steps that take the reader's bytes (training, prediction).

    ``frame_indices`` (a model's: ``num_frames, sampling_seed`` -> int32
    ``[B, N]`` or None) names the only frames the model reads: those are
    gathered as bytes and dequantized alone, and passed with their positions
    as ``frame_indices`` (30 sampled frames of 300 convert a tenth)."""
    if "feature_frames" not in inputs:
        return inputs
    floats = {name: value for name, value in inputs.items() if name != "feature_frames"}
    video_matrix, positions = inputs["video_matrix"], None
    if frame_indices is not None:
        positions = frame_indices(inputs["num_frames"], inputs.get("sampling_seed"))
    if positions is not None:
        floats["frame_indices"] = positions
    floats["video_matrix"] = dequantize_frames(video_matrix, inputs["feature_frames"],
                                               feature_sizes, positions)
    return floats


def parse_frame_records(records: tf.Tensor, names: tf.Tensor, config: ReaderConfig,
                        extra_context: dict | None = None):
    """Parses frame-level records: (context, dequantized frames [B, max_frames, D],
    num_frames [B], checks). ``extra_context`` adds context features (e.g. the
    segment ratings of ``data.segments``)."""
    context, lists, lengths = tf.io.parse_sequence_example(
        records,
        context_features={"labels": tf.io.VarLenFeature(tf.int64), **_id_features(config),
                          **(extra_context or {})},
        sequence_features={n: tf.io.FixedLenSequenceFeature([], tf.string) for n in config.feature_names},
        example_names=names)
    matrix, checks = _frame_matrix(lists, lengths, config, names)
    if config.quantized_frames:
        context = {**context, "feature_frames": _feature_frames(lengths, config)}
    # As in the original, the first feature's frame count is the video's.
    num_frames = tf.cast(tf.minimum(lengths[config.feature_names[0]], config.max_frames), tf.int32)
    return context, matrix, num_frames, checks


def _parse_video_batch(records: tf.Tensor, names: tf.Tensor, config: ReaderConfig):
    spec = {"labels": tf.io.VarLenFeature(tf.int64), **_id_features(config)}
    spec.update({n: tf.io.FixedLenFeature([s], tf.float32)
                 for n, s in zip(config.feature_names, config.feature_sizes)})
    parsed = tf.io.parse_example(records, spec, example_names=names)
    matrix = tf.concat([parsed[n] for n in config.feature_names], axis=-1)
    return parsed, matrix, tf.ones(tf.shape(records), tf.int32), [_check_finite(matrix, names, config)]


def _check_finite(matrix: tf.Tensor, names: tf.Tensor, config: ReaderConfig) -> tf.Operation:
    """Fails on the first record with a NaN or Inf value, naming it and its feature
    (float features only: frame-level bytes are always finite)."""
    finite = tf.math.is_finite(matrix)
    bad = tf.logical_not(tf.reduce_all(finite, axis=1))

    def message():
        row = tf.argmax(tf.cast(bad, tf.int32))
        column = tf.argmin(tf.cast(finite[row], tf.int32))
        ends = tf.cumsum(tf.constant(config.feature_sizes, tf.int64))
        feature = tf.gather(tf.constant(config.feature_names),
                            tf.searchsorted(ends, column[None], side="right")[0])
        return error_message(tf.gather(names, row), ": feature ", feature,
                             " has a NaN or Inf value (--skip_bad_records skips such records)")

    return assert_no(bad, message)


def parse_batch(paths: tf.Tensor, indices: tf.Tensor, records: tf.Tensor, config: ReaderConfig,
                stats: ReadStats | None) -> dict[str, tf.Tensor]:
    """Parses a batch of serialized records into the reader's output dict.

    Without ``stats`` (counters are per dataset) it calls ``config``'s one
    ``tf.function`` of the parse (``_parse_function``), traced once per
    process: every pipeline (or serving function) of that configuration
    after the first reuses its graph instead of tracing the parse and its
    checks again (0.1 to 0.3 s each), as eval.py's polling, the exports of a
    run and the runs of one process do."""
    if stats is None:
        parsed = _parse_function(config)(paths, indices, records)
        for value in parsed.values():  # the batch size, where the caller's is known
            value.set_shape(records.shape[:1].concatenate(value.shape[1:]))
        return parsed
    return _parse_batch(paths, indices, records, config, stats)


@functools.lru_cache(maxsize=64)
def _parse_function(config: ReaderConfig):
    """``_parse_batch`` of ``config`` (without statistics) as one ``tf.function``."""
    vector = tf.TensorSpec([None], tf.string)
    return tf.function(lambda paths, indices, records: _parse_batch(paths, indices, records,
                                                                    config, None),
                       input_signature=[vector, tf.TensorSpec([None], tf.int64), vector],
                       autograph=False)


def _parse_batch(paths: tf.Tensor, indices: tf.Tensor, records: tf.Tensor, config: ReaderConfig,
                 stats: ReadStats | None) -> dict[str, tf.Tensor]:
    names = record_names(paths, indices)
    parse = parse_frame_records if config.frame_features else _parse_video_batch
    context, matrix, num_frames, checks = parse(records, names, config)
    ids, id_checks = video_ids(context, config, names)
    batch_size = tf.shape(records, out_type=tf.int64)[0]
    labels, label_checks = _dense_labels(context["labels"], batch_size, config, names, stats)
    matrix_shape = [None, config.max_frames] if config.frame_features else [None]
    with tf.control_dependencies(checks + id_checks + label_checks):
        batch = {
            "video_ids": tf.ensure_shape(ids, [None]),
            "video_matrix": tf.ensure_shape(matrix, matrix_shape + [config.feature_size]),
            "num_frames": tf.ensure_shape(num_frames, [None]),
            "labels": tf.ensure_shape(labels, [None, config.num_classes]),
        }
        if "feature_frames" in context:
            batch["feature_frames"] = tf.identity(context["feature_frames"])
        return batch


def parse_serialized(serialized: tf.Tensor, config: ReaderConfig,
                     source: str = "<serialized input>") -> dict[str, tf.Tensor]:
    """Parses a batch of serialized records (e.g. a serving request) as `make_dataset` does.

    `source` stands for the file name in error messages; records are numbered
    by their position in the batch. Returns the same dict as the dataset.
    """
    paths = tf.fill(tf.shape(serialized), source)
    indices = tf.range(tf.shape(serialized, out_type=tf.int64)[0])
    return parse_batch(paths, indices, serialized, config, stats=None)
