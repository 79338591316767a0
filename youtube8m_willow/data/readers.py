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

import concurrent.futures
import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import tensorflow as tf

_RECORD_FRAMING_BYTES = 16  # length (8) + length CRC (4) + payload CRC (4)
_READ_BUFFER_BYTES = 8 << 20
_STAT_THREADS = 32
_ASSERT_PREFIX = "DataError: "


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
    """

    feature_names: tuple[str, ...]
    feature_sizes: tuple[int, ...]
    frame_features: bool
    num_classes: int = 4716
    max_frames: int = 300
    id_key: str | None = None
    skip_bad_records: bool = False
    drop_out_of_range_labels: bool = False

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


class DataError(Exception):
    """Bad input data: a one-line message naming the file, the record and the problem."""


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


