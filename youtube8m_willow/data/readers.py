"""tf.data readers for YouTube-8M TFRecords (frame-level and video-level).

Pipeline (`make_dataset`): glob the files -> one dataset per file (records
tagged with their file name and index, framing checked) -> parallel
interleave over `num_readers` files -> (training: shuffle) -> batch the
serialized records -> parse whole batches with `tf.io.parse_example` /
`tf.io.parse_sequence_example` in parallel -> prefetch. No Python runs per
record.

Record formats (see the project spec, "Data"):
- frame level: `SequenceExample`; context `id` or `video_id` (bytes) and
  `labels` (int64 list); one feature list per feature name with one bytes
  entry of `feature_size` uint8 values per frame.
- video level: `Example`; `id` or `video_id`, `labels`, and one float list of
  `feature_size` values per feature name.

Errors. Bad data fails with a message that names the file and the record
index (0-based, in file order). Problems found by the parse ops and by the
in-graph checks surface as `tf.errors.OpError` while iterating (tf.data cannot
raise Python exceptions); `data_error_from` turns such an error into a
one-line `DataError`, and `raise_data_errors` wraps an iterable so it raises
`DataError` directly. Errors raised outside iteration (no matching files) are
`DataError`s already.

Damaged files. TensorFlow's record reader reports a CRC mismatch without the
file name, and silently stops at a record cut short by truncation. Each file
is therefore read with errors ignored, and its consumed bytes (record payloads
plus 16 framing bytes each) are compared with its size at the end: a shortfall
means a damaged record at that position.

Tolerant modes (opt-in, counted in a `ReadStats`):
- `skip_bad_records`: a damaged record ends the reading of its file (TFRecord
  framing cannot be resynchronized); the records before it are kept, and the
  event is counted in `corrupt_records` with the unread bytes in
  `skipped_bytes`. Records that fail to parse or validate (missing keys, wrong
  sizes, out-of-range labels, no video id) are dropped and counted in
  `malformed_records`; in this mode each record is validated on its own
  before batching, which costs a second parse.
- `drop_out_of_range_labels`: labels outside [0, num_classes) are dropped and
  counted in `dropped_labels`.
Pass `stats=ReadStats()` to `make_dataset` to read the counters after (or
while) iterating; without it the dataset creates one, reachable as
`dataset.read_stats` on the returned dataset. Counters are CPU variables
updated from inside the pipeline; create the `ReadStats` outside any
distribution strategy scope.
"""

from __future__ import annotations

import ast
import concurrent.futures
import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from youtube8m_willow.data.resumable import InputPosition, Plan, planned_records
from youtube8m_willow.errors import DataError

_RECORD_FRAMING_BYTES = 16  # length (8) + length CRC (4) + payload CRC (4)
_READ_BUFFER_BYTES = 8 << 20
# Records per framing-check step: amortizes its cost over small video-level
# records, bounds the memory held per reader for large frame-level ones.
_CHUNK_RECORDS = {False: 128, True: 16}  # keyed by frame_features
_STAT_THREADS = 32
_ASSERT_PREFIX = "DataError: "

# Pipeline functions use no Python control flow on tensors: skip AutoGraph (faster tracing).
_plain = tf.autograph.experimental.do_not_convert


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    """What to read from each record and how to shape it.

    Attributes:
        feature_names: features to read, concatenated in this order, e.g.
            ("rgb", "audio") or ("mean_rgb", "mean_audio").
        feature_sizes: values per frame (frame level) or per video, per feature.
        frame_features: True for frame-level `SequenceExample` records.
        num_classes: length of the dense label vector.
        max_frames: frame-level videos are clipped / zero-padded to this length.
        id_key: force the video id key; None accepts "id" or "video_id" per record.
        skip_bad_records: skip (and count) damaged or malformed records.
        drop_out_of_range_labels: drop (and count) labels >= num_classes or < 0.
        quantized_frames: frame level: keep ``video_matrix`` as the records'
            uint8 bytes (zero bytes as padding) and add ``feature_frames``
            [B, features]; ``dequantize_frames`` then gives the float frames
            (a quarter of the memory in the pipeline's buffers).
    """

    feature_names: tuple[str, ...]
    feature_sizes: tuple[int, ...]
    frame_features: bool
    num_classes: int = 4716
    max_frames: int = 300
    id_key: str | None = None
    skip_bad_records: bool = False
    drop_out_of_range_labels: bool = False
    quantized_frames: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "feature_sizes", tuple(int(s) for s in self.feature_sizes))
        if not self.feature_names or len(self.feature_names) != len(self.feature_sizes):
            raise ValueError(
                f"feature_names {self.feature_names} and feature_sizes {self.feature_sizes} "
                "must be non-empty and of the same length")
        if min(self.feature_sizes) < 1 or self.num_classes < 1 or self.max_frames < 1:
            raise ValueError("feature_sizes, num_classes and max_frames must be positive")
        if self.id_key == "":
            raise ValueError("id_key must be None or a key name such as 'id' or 'video_id'")

    @property
    def feature_size(self) -> int:
        return sum(self.feature_sizes)

    @classmethod
    def for_model(cls, model_config, skip_bad_records: bool = False,
                  drop_out_of_range_labels: bool = False,
                  quantized_frames: bool = False) -> "ReaderConfig":
        """The input layout a model expects (a ``ModelConfig``'s features,
        classes and frames), with the tolerant modes as given."""
        return cls(feature_names=model_config.feature_names,
                   feature_sizes=model_config.feature_sizes,
                   frame_features=model_config.frame_features,
                   num_classes=model_config.num_classes, max_frames=model_config.max_frames,
                   skip_bad_records=skip_bad_records,
                   drop_out_of_range_labels=drop_out_of_range_labels,
                   quantized_frames=quantized_frames and model_config.frame_features)


class ReadStats:
    """Counters of what the tolerant modes skipped or dropped.

    Attributes (int64 `tf.Variable`s on the CPU): corrupt_records (damaged
    TFRecord framing; the rest of that file is skipped), skipped_bytes (bytes
    left unread after such damage), malformed_records (records that failed to
    parse or validate), dropped_labels (out-of-range labels dropped).
    """

    FIELDS = ("corrupt_records", "skipped_bytes", "malformed_records", "dropped_labels")

    def __init__(self) -> None:
        with tf.init_scope(), tf.device("/cpu:0"):
            for field in self.FIELDS:
                setattr(self, field, tf.Variable(0, dtype=tf.int64, trainable=False, name=field))

    def as_dict(self) -> dict[str, int]:
        return {field: int(getattr(self, field).numpy()) for field in self.FIELDS}

    def reset(self) -> None:
        for field in self.FIELDS:
            getattr(self, field).assign(0)

    def summary(self) -> str:
        """A one-line report, e.g. for the end of a training or evaluation run."""
        return ", ".join(f"{k}={v}" for k, v in self.as_dict().items())


def dequantize(feat, max_quantized_value: float = 2.0, min_quantized_value: float = -2.0):
    """Maps uint8-quantized values back to floats: q * range/255 + range/512 + min."""
    quantized_range = max_quantized_value - min_quantized_value
    scalar = quantized_range / 255.0
    bias = quantized_range / 512.0 + min_quantized_value
    return feat * scalar + bias


# --------------------------------------------------------------------------- files


def _split_patterns(data_pattern: str | Sequence[str]) -> list[str]:
    items = [data_pattern] if isinstance(data_pattern, str) else list(data_pattern)
    patterns = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if not patterns:
        raise DataError(f"empty data pattern {data_pattern!r}")
    return patterns


def list_files(data_pattern: str | Sequence[str]) -> list[str]:
    """Sorted files matching a glob pattern (comma-separated or a list of patterns).

    Uses `tf.io.gfile.glob`, so remote file systems (gs://, ...) work. Raises
    DataError when a pattern matches nothing or cannot be listed.
    """
    files: set[str] = set()
    for pattern in _split_patterns(data_pattern):
        try:
            matched = tf.io.gfile.glob(pattern)
        except tf.errors.OpError as exc:
            raise DataError(f"cannot list files for data pattern '{pattern}': {exc.message}") from exc
        if not matched:
            raise DataError(f"no files match data pattern '{pattern}'")
        files.update(matched)
    return sorted(files)


def _file_sizes(files: Sequence[str]) -> list[tuple[str, int]]:
    """(path, size) of each regular file, stat'ed in parallel (remote stats are slow)."""

    def stat(path: str) -> tuple[str, int, bool]:
        try:
            info = tf.io.gfile.stat(path)
        except tf.errors.OpError as exc:
            raise DataError(f"{path}: cannot read file: {exc.message}") from exc
        return path, int(info.length), bool(info.is_directory)

    with concurrent.futures.ThreadPoolExecutor(min(_STAT_THREADS, max(1, len(files)))) as pool:
        stats = list(pool.map(stat, files))
    return [(path, size) for path, size, is_dir in stats if not is_dir]


# --------------------------------------------------------------------------- per-file records


def _message(*parts) -> tf.Tensor:
    """Joins strings and tensors (numbers formatted) into one scalar string tensor."""
    pieces = [p if isinstance(p, str) or p.dtype == tf.string else tf.strings.as_string(p)
              for p in parts]
    return tf.strings.join([_ASSERT_PREFIX] + pieces)


def _assert_no(bad: tf.Tensor, message_fn) -> tf.Operation:
    """Asserts that no element of `bad` is true; the message is built only on failure."""
    any_bad = tf.reduce_any(bad)
    message = tf.cond(any_bad, message_fn, lambda: tf.constant(""))
    return tf.debugging.Assert(tf.logical_not(any_bad), [message])


def _first(values: tf.Tensor, bad: tf.Tensor) -> tf.Tensor:
    """The element of `values` at the first true position of `bad` (which has one)."""
    return tf.gather(values, tf.argmax(tf.cast(bad, tf.int32)))


def _file_records(path: tf.Tensor, size: tf.Tensor, config: ReaderConfig,
                  stats: ReadStats | None) -> tf.data.Dataset:
    """(path, index, record, False) for each readable (and, if skipping, valid) record of one file."""
    if not config.skip_bad_records:
        return _framing_checked(path, size, config.frame_features, skip=False, stats=stats)
    elements = _framing_checked(path, size, config.frame_features, skip=True, stats=stats)
    elements = _validated(elements, config, stats)
    return elements.filter(_plain(lambda p, i, r, is_end: tf.logical_not(is_end)))


def _framing_checked(path: tf.Tensor, size: tf.Tensor, frame_features: bool, skip: bool,
                     stats: ReadStats | None) -> tf.data.Dataset:
    """(path, index, record, is_end) for one file's records, in file order.

    Records are read in chunks so the bookkeeping costs little per record. After
    the last chunk the bytes consumed are compared with the file size: a
    shortfall is a damaged or truncated record, an error unless `skip`, where it
    is counted and one end marker (is_end True, index = records read) follows
    the records (it closes the malformed-record count of `_validated`).
    """
    chunks = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES).ignore_errors(
        log_warning=False).batch(_CHUNK_RECORDS[frame_features])
    marker = tf.constant([b""]) if skip else tf.zeros([0], tf.string)
    tagged = chunks.map(_plain(lambda c: (c, False))).concatenate(
        tf.data.Dataset.from_tensors((marker, True)))

    def step(state, element):
        index, consumed = state
        records, is_end = element
        damaged = tf.logical_and(is_end, tf.not_equal(consumed, size))
        if skip:
            check = tf.cond(damaged, lambda: _count_damage(stats, size - consumed), tf.no_op)
        else:
            check = _assert_no(damaged, lambda: _message(
                path, " (record ", index, "): damaged or truncated TFRecord data at byte ", consumed,
                " of ", size, "; the file is corrupt (copy it again, or set skip_bad_records to "
                "skip the rest of the file)"))
        count = tf.size(records, out_type=tf.int64)
        advance = 1 - tf.cast(is_end, tf.int64)  # the end marker is not a record
        chunk_bytes = tf.cast(tf.reduce_sum(tf.strings.length(records)), tf.int64)
        with tf.control_dependencies([check]):
            new_state = (index + advance * count,
                         consumed + advance * (chunk_bytes + _RECORD_FRAMING_BYTES * count))
            output = (tf.fill([count], path), index + tf.range(count), records, tf.fill([count], is_end))
            return new_state, output

    return tagged.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), _plain(step)).unbatch()


def _count_damage(stats: ReadStats | None, unread: tf.Tensor) -> tf.Operation:
    if stats is None:
        return tf.no_op()
    return tf.group(stats.corrupt_records.assign_add(1), stats.skipped_bytes.assign_add(unread))


def _validated(elements: tf.data.Dataset, config: ReaderConfig,
               stats: ReadStats | None) -> tf.data.Dataset:
    """Drops records that fail to parse or validate on their own, counting them.

    Failing records raise inside the map and are removed by `ignore_errors`;
    the gaps this leaves in the record indices are the count.
    """

    def validate(path, index, record, is_end):
        def parse_one():
            parsed = _parse_batch(path[None], index[None], record[None], config, stats=None)
            with tf.control_dependencies(tf.nest.flatten(parsed)):
                return tf.identity(record)

        return path, index, tf.cond(is_end, lambda: record, parse_one), is_end

    def count_gaps(previous, element):
        index = element[1]
        gap = index - previous - 1
        update = tf.cond(gap > 0, lambda: _count_malformed(stats, gap), tf.no_op)
        with tf.control_dependencies([update]):
            return tf.identity(index), element

    kept = elements.map(_plain(validate)).ignore_errors(log_warning=False)
    return kept.scan(tf.constant(-1, tf.int64), _plain(count_gaps))


def _count_malformed(stats: ReadStats | None, count: tf.Tensor) -> tf.Operation:
    if stats is None:
        return tf.no_op()
    return tf.group(stats.malformed_records.assign_add(count))


# --------------------------------------------------------------------------- parsing


def _record_names(paths: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Names such as "<file> (record <i>)", which parse errors and checks report."""
    return tf.strings.join([paths, " (record ", tf.strings.as_string(indices), ")"])


def _id_features(config: ReaderConfig) -> dict[str, tf.io.FixedLenFeature]:
    keys = (config.id_key,) if config.id_key else ("id", "video_id")
    return {key: tf.io.FixedLenFeature([], tf.string, default_value="") for key in keys}


def _video_ids(parsed: dict[str, tf.Tensor], config: ReaderConfig,
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
    check = _assert_no(missing, lambda: _message(_first(names, missing), problem))
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
        checks.append(_assert_no(bad, lambda: _message(
            tf.gather(names, _first(rows, bad)), ": label ", _first(values, bad),
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


def _decode_frames(frames: tf.RaggedTensor, name: str, size: int,
                   names: tf.Tensor) -> tuple[tf.Tensor, tf.Operation]:
    """The uint8 values [frames, size] of one feature's frames, checking each frame's size."""
    byte_counts = tf.strings.length(frames.flat_values)
    bad = tf.not_equal(byte_counts, size)
    check = _assert_no(bad, lambda: _message(
        tf.gather(names, _first(frames.value_rowids(), bad)), ": frame feature ", name,
        " has a frame of ", _first(byte_counts, bad), " bytes, expected ", str(size),
        " (check --feature_names / --feature_sizes)"))
    with tf.control_dependencies([check]):
        return tf.reshape(tf.io.decode_raw(frames.flat_values, tf.uint8), [-1, size]), check


def _frame_matrix(lists: dict[str, tf.Tensor], lengths: dict[str, tf.Tensor], config: ReaderConfig,
                  names: tf.Tensor) -> tuple[tf.Tensor, list[tf.Operation]]:
    """Frames [B, max_frames, D], features concatenated, zero-padded / clipped:
    dequantized floats, or with ``config.quantized_frames`` the uint8 bytes."""
    frames = [tf.RaggedTensor.from_tensor(lists[n], lengths=lengths[n]) for n in config.feature_names]
    decoded = [_decode_frames(f, n, s, names)
               for f, n, s in zip(frames, config.feature_names, config.feature_sizes)]
    quantized, checks = [q for q, _ in decoded], [c for _, c in decoded]
    shape = [None, config.max_frames]
    convert, pad = ((tf.identity, 0) if config.quantized_frames else (_dequantize_bytes, 0.0))

    def joined():  # all features have the same frame counts (the normal case): one pass
        values = convert(tf.concat(quantized, axis=1))
        return frames[0].with_flat_values(values).to_tensor(pad, shape=shape + [config.feature_size])

    def separate():  # frame counts differ between features: each padded on its own
        return tf.concat([f.with_flat_values(convert(q)).to_tensor(pad, shape=shape + [s])
                          for f, q, s in zip(frames, quantized, config.feature_sizes)], axis=-1)

    if len(frames) == 1:
        return joined(), checks
    first = lengths[config.feature_names[0]]
    same = tf.reduce_all([tf.reduce_all(tf.equal(lengths[n], first)) for n in config.feature_names[1:]])
    return tf.cond(same, joined, separate), checks


def _feature_frames(lengths: dict[str, tf.Tensor], config: ReaderConfig) -> tf.Tensor:
    """Frames kept of each feature [B, features] (int32, at most max_frames)."""
    counts = tf.stack([lengths[n] for n in config.feature_names], axis=1)
    return tf.cast(tf.minimum(counts, config.max_frames), tf.int32)


def dequantize_frames(video_matrix: tf.Tensor, feature_frames: tf.Tensor,
                      feature_sizes: Sequence[int]) -> tf.Tensor:
    """The float frames of a ``quantized_frames`` batch: bitwise the
    ``video_matrix`` the reader gives without it (padding exactly 0.0).

    Args:
        video_matrix: uint8 [B, T, D], features concatenated.
        feature_frames: int32 [B, features], the frames of each feature.
        feature_sizes: D split per feature.
    """
    values = _dequantize_bytes(video_matrix)
    column_feature = tf.constant(np.repeat(np.arange(len(feature_sizes)), feature_sizes), tf.int32)
    frames_of_column = tf.gather(feature_frames, column_feature, axis=1)  # [B, D]
    steps = tf.range(tf.shape(video_matrix)[1])[None, :, None]
    return tf.where(steps < frames_of_column[:, None, :], values, 0.0)


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
        return _message(tf.gather(names, row), ": feature ", feature, " has a NaN or Inf value "
                        "(set skip_bad_records to skip such records)")

    return _assert_no(bad, message)


def _parse_batch(paths: tf.Tensor, indices: tf.Tensor, records: tf.Tensor, config: ReaderConfig,
                 stats: ReadStats | None) -> dict[str, tf.Tensor]:
    """Parses a batch of serialized records into the reader's output dict."""
    names = _record_names(paths, indices)
    parse = parse_frame_records if config.frame_features else _parse_video_batch
    context, matrix, num_frames, checks = parse(records, names, config)
    ids, id_checks = _video_ids(context, config, names)
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
    return _parse_batch(paths, indices, serialized, config, stats=None)


# --------------------------------------------------------------------------- datasets


def make_dataset(data_pattern: str | Sequence[str], config: ReaderConfig, batch_size: int, *,
                 training: bool, num_epochs: int | None = 1, num_readers: int = 8,
                 shuffle_buffer: int | None = None, seed: int | None = None,
                 stats: ReadStats | None = None) -> tf.data.Dataset:
    """Batches of parsed YouTube-8M records.

    Args:
        data_pattern: glob pattern(s): a comma-separated string or a list.
        config: what to read (features, classes, frame/video level, tolerance).
        batch_size: examples per batch; the last partial batch is kept.
        training: True: files shuffled every epoch, `num_readers` files read at
            once in nondeterministic order (deterministic when `seed` is set),
            examples shuffled. False: every record once, in a fixed order: the
            sorted files are interleaved round-robin, `num_readers` at a time
            (one record from each in turn; `num_readers=1` reads file after
            file), records in file order.
        num_epochs: passes over the data; None repeats forever.
        num_readers: files read in parallel.
        shuffle_buffer: examples in the shuffle buffer (training); default
            5 * batch_size, the original's queue capacity.
        seed: seed for the file and example shuffles.
        stats: counters for the tolerant modes (see `ReadStats`).

    Returns:
        A dataset of dicts: "video_ids" string [B]; "video_matrix" float32
        [B, D] (video level) or [B, max_frames, D] (frame level, dequantized,
        zero-padded), raw (not normalized), features concatenated in
        `feature_names` order; "num_frames" int32 [B]; "labels" float32
        [B, num_classes] 0/1 (all zeros for records without labels). With
        ``config.quantized_frames``: "video_matrix" uint8 and "feature_frames"
        int32 [B, features] (see `dequantize_frames`).
    """
    records, stats, deterministic = read_records(
        data_pattern, config, batch_size, training=training, num_epochs=num_epochs,
        num_readers=num_readers, shuffle_buffer=shuffle_buffer, seed=seed, stats=stats)
    return _parsed_batches(records, config, batch_size, deterministic, stats)


def make_planned_dataset(plan: Plan, config: ReaderConfig, batch_size: int, *,
                         num_epochs: int | None, position: InputPosition = InputPosition(),
                         shard: tuple[int, int, int] | None = None,
                         stats: ReadStats | None = None) -> tf.data.Dataset:
    """The batches of `make_dataset` in the resumable order of ``plan``
    (``data.resumable``), from ``position``; each batch also has
    "input_position" int64 [B, 5], the position after each of its records.
    ``shard``: see ``resumable.planned_records``."""
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be >= 1")
    stats = _stats_for(config, stats)
    records = planned_records(
        plan, _plain(lambda path, size: _file_records(path, size, config, stats)),
        num_epochs=num_epochs, start=position, shard=shard)
    return _parsed_batches(records, config, batch_size, True, stats)


def _parsed_batches(records: tf.data.Dataset, config: ReaderConfig, batch_size: int,
                    deterministic: bool, stats: ReadStats | None) -> tf.data.Dataset:
    """Batches and parses a record stream; a fifth element (the planned
    position) passes through as "input_position"."""

    def parse(paths, indices, batch, unused_end, *position):
        parsed = _parse_batch(paths, indices, batch, config, stats)
        return {**parsed, "input_position": position[0]} if position else parsed

    dataset = records.batch(batch_size).map(_plain(parse), num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=deterministic)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.read_stats = stats
    return dataset


def file_sizes(data_pattern: str | Sequence[str]) -> list[tuple[str, int]]:
    """(path, size) of the regular files matching the pattern(s), sorted."""
    files = _file_sizes(list_files(data_pattern))
    if not files:
        raise DataError(f"data pattern '{data_pattern}' matches only directories")
    return files


def file_records(path: str, size: int, frame_features: bool = True) -> tf.data.Dataset:
    """The serialized records of one file of ``size`` bytes, in file order,
    framing checked: iterated through `raise_data_errors`, a damaged record
    is a `DataError` naming the file and the record. For readers of other
    record contents (e.g. only the segment ratings)."""
    checked = _framing_checked(tf.constant(path), tf.constant(size, tf.int64), frame_features,
                               skip=False, stats=None)
    return checked.map(_plain(lambda unused_path, unused_index, record, unused_end: record))


def _stats_for(config: ReaderConfig, stats: ReadStats | None) -> ReadStats | None:
    if stats is None and (config.skip_bad_records or config.drop_out_of_range_labels):
        return ReadStats()
    return stats


def read_records(data_pattern: str | Sequence[str], config: ReaderConfig, batch_size: int, *,
                 training: bool, num_epochs: int | None = 1, num_readers: int = 8,
                 shuffle_buffer: int | None = None, seed: int | None = None,
                 stats: ReadStats | None = None):
    """The serialized records of `make_dataset`, before batching and parsing:
    (dataset of (path, index, record, is_end), stats, deterministic)."""
    if batch_size < 1 or num_readers < 1:
        raise ValueError(f"batch_size ({batch_size}) and num_readers ({num_readers}) must be >= 1")
    files = file_sizes(data_pattern)
    stats = _stats_for(config, stats)
    deterministic = not training or seed is not None
    paths, sizes = zip(*files)
    file_ds = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(sizes, tf.int64)))
    if training:
        file_ds = file_ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if num_epochs != 1:
        file_ds = file_ds.repeat(num_epochs)
    readers = min(num_readers, len(paths))
    records = file_ds.interleave(
        _plain(lambda path, size: _file_records(path, size, config, stats)),
        cycle_length=readers, block_length=1, num_parallel_calls=readers,
        deterministic=deterministic)
    if training:
        records = records.shuffle(shuffle_buffer or 5 * batch_size, seed=seed,
                                  reshuffle_each_iteration=True)
    return records, stats, deterministic


def report_skipped(dataset, logger) -> None:
    """Logs what the tolerant modes skipped or dropped, for a dataset made
    by `make_dataset` with `skip_bad_records` / `drop_out_of_range_labels`
    (no-op otherwise). Call it after iterating."""
    stats = getattr(dataset, "read_stats", None)
    if stats is not None:
        logger.warning("skipped or dropped input: %s", stats.summary())


# Classes of the YouTube-8M releases, told apart by their video id key.
CLASSES_BY_ID_KEY = {"video_id": 4716, "id": 3862}


def first_record_id_key(data_pattern: str | Sequence[str], config: ReaderConfig) -> str | None:
    """The video id key ("id" or "video_id") of the first record that
    `make_dataset` would read (eval order), or None (no record, or neither key).

    The record comes through the readers' own checks: a damaged first record
    (or, unless ``config.skip_bad_records``, an unparsable one) is a
    `DataError` naming its file; with ``skip_bad_records`` it is skipped as
    the readers skip it.
    """
    records, _, _ = read_records(data_pattern, config, 1, training=False, num_readers=1)
    for path, index, record, _ in raise_data_errors(records.take(1)):
        return _id_key_of(record, _record_names(path[None], index[None]))
    return None


def warn_if_classes_disagree(data_pattern: str | Sequence[str], config: ReaderConfig,
                             logger) -> None:
    """Logs one warning when the records' video id key implies a release's
    class count (`CLASSES_BY_ID_KEY`) and the model has the other release's,
    e.g. a 2017 model (4716 classes) given 2018 records (``id``, 3862): its
    class ids name other classes there, and the scores mean nothing. Other
    class counts (the user's own data) are not checked."""
    if config.num_classes not in CLASSES_BY_ID_KEY.values():
        return
    key = first_record_id_key(data_pattern, config)
    implied = CLASSES_BY_ID_KEY.get(key)
    if implied is not None and implied != config.num_classes:
        logger.warning("the records of '%s' have the video id key %r, which means %d classes, "
                       "but the model has %d classes: its class ids are not these records' "
                       "(a model of another YouTube-8M release?)", data_pattern, key, implied,
                       config.num_classes)


def _id_key_of(record: tf.Tensor, names: tf.Tensor) -> str | None:
    """The id key set in one record's context (an `Example`'s features parse
    as a `SequenceExample`'s context, so either kind of record will do)."""
    spec = {key: tf.io.FixedLenFeature([], tf.string, default_value="") for key in CLASSES_BY_ID_KEY}
    try:
        context, _, _ = tf.io.parse_sequence_example(record[None], context_features=spec,
                                                     example_names=names)
    except tf.errors.OpError as exc:
        name = names[0].numpy().decode("utf-8", "replace")
        raise (data_error_from(exc) or DataError(
            f"{name}: not a valid tf.train.Example / SequenceExample record")) from exc
    return next((key for key in CLASSES_BY_ID_KEY if context[key].numpy()[0]), None)


def count_records(data_pattern: str | Sequence[str]) -> int:
    """Number of records in the matching files; raises DataError on a damaged file."""
    paths, sizes = zip(*_file_sizes(list_files(data_pattern)))
    file_ds = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(sizes, tf.int64)))
    # Small chunks whatever the kind of records: only their count matters here.
    records = file_ds.interleave(_plain(lambda p, s: _framing_checked(p, s, True, skip=False, stats=None)),
                                 cycle_length=8, num_parallel_calls=8)
    try:
        return int(records.reduce(tf.constant(0, tf.int64), _plain(lambda total, _: total + 1)))
    except tf.errors.OpError as exc:
        raise (data_error_from(exc) or DataError(exc.message)) from exc


# --------------------------------------------------------------------------- error messages

_NAME = r"Name: (?P<name>.*?\(record \d+\)), "
_MESSAGE_END = r"(?=\s*(?:\n|\[\[|\[Op:|$))"
_PATTERNS = (
    # A check that failed in a graph (a dataset or tf.function): C-escaped text.
    ("assert", re.compile(r"assertion failed: \[" + re.escape(_ASSERT_PREFIX) + r"(?P<text>.*?)\]"
                          + _MESSAGE_END)),
    # A check that failed eagerly: the message as a Python bytes literal.
    ("eager_assert", re.compile(rf"Summarized data: (?P<literal>b'{_ASSERT_PREFIX}(?:[^'\\]|\\.)*'"
                                rf"|b\"{_ASSERT_PREFIX}(?:[^\"\\]|\\.)*\")")),
    ("missing", re.compile(_NAME + r"Feature: (?P<key>\S+) \(data type: \w+\) is required "
                           r"but could not be found")),
    ("missing_list", re.compile(_NAME + r"Feature list '(?P<key>[^']+)' is required but could not be found")),
    ("size", re.compile(_NAME + r"Key: (?P<key>\S+), Index: \d+\.\s+Number of \w+ values != expected\."
                        r"\s+Values size: (?P<got>\d+) but output shape: \[(?P<want>[^\]]*)\]")),
    ("invalid", re.compile(r"Invalid protocol message input, example id: (?P<name>.*?\(record \d+\))")),
    ("other", re.compile(_NAME + r"(?P<text>.*?)" + _MESSAGE_END)),
)


def _describe(kind: str, match: re.Match) -> str:
    fields = match.groupdict()
    name, key = fields.get("name"), fields.get("key")
    if kind == "assert":  # Assert escapes quotes and backslashes in its message
        return re.sub(r"\\(['\"\\])", r"\1", fields["text"])
    if kind == "eager_assert":
        text = ast.literal_eval(fields["literal"]).decode("utf-8", "replace")
        return text.removeprefix(_ASSERT_PREFIX)
    if kind == "missing":
        return (f"{name}: missing feature '{key}'; check --feature_names, and --frame_features "
                "(a frame-level SequenceExample read as a video-level Example?)")
    if kind == "missing_list":
        return (f"{name}: missing frame feature list '{key}'; check --feature_names, and "
                "--frame_features (a video-level Example read as a frame-level SequenceExample?)")
    if kind == "size":
        return (f"{name}: feature '{key}' has {fields['got']} values, expected {fields['want']} "
                "(check --feature_names / --feature_sizes)")
    if kind == "invalid":
        return f"{name}: not a valid tf.train.Example / SequenceExample record"
    return f"{name}: {fields['text']}"


def data_error_from(exc: BaseException) -> DataError | None:
    """The DataError for an error raised while iterating a reader dataset, or None.

    Recognizes the reader's own checks and TensorFlow's parse errors (both name
    the file and record); returns None for errors that are not about the data.
    """
    if isinstance(exc, DataError):
        return exc
    if not isinstance(exc, tf.errors.OpError):
        return None
    for kind, pattern in _PATTERNS:
        match = pattern.search(exc.message)
        if match:
            return DataError(_describe(kind, match))
    return None


def raise_data_errors(iterable: Iterable[Any]) -> Iterator[Any]:
    """Yields from `iterable`, turning data errors raised by TensorFlow into DataError."""
    try:
        yield from iterable
    except tf.errors.OpError as exc:
        error = data_error_from(exc)
        if error is None:
            raise
        raise error from exc
