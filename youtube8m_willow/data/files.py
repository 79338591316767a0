"""The files of a data pattern and their TFRecord framing: listing, sizes,
damage detection, and record counts.

Damaged files. TensorFlow's record reader reports a CRC mismatch without the
file name, and silently stops at a record cut short by truncation. Each file
is therefore read with errors ignored, and its consumed bytes (record payloads
plus 16 framing bytes each) are compared with its size at the end: a shortfall
means a damaged record at that position (`framing_checked`).
"""

from __future__ import annotations

import concurrent.futures
import struct
from collections.abc import Sequence

import tensorflow as tf

from youtube8m_willow.data.read_errors import assert_no, data_error_from, error_message
from youtube8m_willow.data.reader_config import ReadStats
from youtube8m_willow.data.resumable import plain
from youtube8m_willow.errors import DataError

_RECORD_FRAMING_BYTES = 16  # length (8) + length CRC (4) + payload CRC (4)
_READ_BUFFER_BYTES = 8 << 20
# Records per framing-check step: amortizes its cost over small video-level
# records, bounds the memory held per reader for large frame-level ones.
_CHUNK_RECORDS = {False: 128, True: 16}  # keyed by frame_features
_STAT_THREADS = 32
# Counting records by their length headers (8 bytes read per record, the
# payload skipped) is cheap up to this many records; beyond it the count
# says "unknown" rather than read that much.
CHEAP_COUNT_MAX_RECORDS = 200_000

# Pipeline functions use no Python control flow on tensors: skip AutoGraph (faster tracing).

# --------------------------------------------------------------------------- listing

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


def file_sizes(data_pattern: str | Sequence[str]) -> list[tuple[str, int]]:
    """(path, size) of the regular files matching the pattern(s), sorted."""
    files = _file_sizes(list_files(data_pattern))
    if not files:
        raise DataError(f"data pattern '{data_pattern}' matches only directories")
    return files


# --------------------------------------------------------------------------- framing

def framing_checked(path: tf.Tensor, size: tf.Tensor, frame_features: bool, skip: bool,
                    stats: ReadStats | None) -> tf.data.Dataset:
    """(path, index, record, is_end) for one file's records, in file order.

    Records are read in chunks so the bookkeeping costs little per record. After
    the last chunk the bytes consumed are compared with the file size: a
    shortfall is a damaged or truncated record, an error unless `skip`, where it
    is counted and one end marker (is_end True, index = records read) follows
    the records (it closes the malformed-record count of `datasets._validated`).
    """
    chunks = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES).ignore_errors(
        log_warning=False).batch(_CHUNK_RECORDS[frame_features])
    marker = tf.constant([b""]) if skip else tf.zeros([0], tf.string)
    tagged = chunks.map(plain(lambda c: (c, False))).concatenate(
        tf.data.Dataset.from_tensors((marker, True)))

    def step(state, element):
        index, consumed = state
        records, is_end = element
        damaged = tf.logical_and(is_end, tf.not_equal(consumed, size))
        if skip:
            check = tf.cond(damaged, lambda: _count_damage(stats, size - consumed), tf.no_op)
        else:
            check = assert_no(damaged, lambda: error_message(
                path, " (record ", index, "): damaged or truncated TFRecord data at byte ", consumed,
                " of ", size, "; the file is corrupt (copy it again, or pass --skip_bad_records to "
                "skip the rest of the file)"))
        count = tf.size(records, out_type=tf.int64)
        advance = 1 - tf.cast(is_end, tf.int64)  # the end marker is not a record
        chunk_bytes = tf.cast(tf.reduce_sum(tf.strings.length(records)), tf.int64)
        with tf.control_dependencies([check]):
            new_state = (index + advance * count,
                         consumed + advance * (chunk_bytes + _RECORD_FRAMING_BYTES * count))
            output = (tf.fill([count], path), index + tf.range(count), records, tf.fill([count], is_end))
            return new_state, output

    return tagged.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), plain(step)).unbatch()


def _count_damage(stats: ReadStats | None, unread: tf.Tensor) -> tf.Operation:
    if stats is None:
        return tf.no_op()
    return tf.group(stats.corrupt_records.assign_add(1), stats.skipped_bytes.assign_add(unread))


def file_records(path: str, size: int, frame_features: bool = True) -> tf.data.Dataset:
    """The serialized records of one file of ``size`` bytes, in file order,
    framing checked: iterated through `raise_data_errors`, a damaged record
    is a `DataError` naming the file and the record. For readers of other
    record contents (e.g. only the segment ratings)."""
    checked = framing_checked(tf.constant(path), tf.constant(size, tf.int64), frame_features,
                               skip=False, stats=None)
    return checked.map(plain(lambda unused_path, unused_index, record, unused_end: record))


def count_records(data_pattern: str | Sequence[str]) -> int:
    """Number of records in the matching files; raises DataError on a damaged file."""
    paths, sizes = zip(*_file_sizes(list_files(data_pattern)))
    file_ds = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(sizes, tf.int64)))
    # Small chunks whatever the kind of records: only their count matters here.
    records = file_ds.interleave(plain(lambda p, s: framing_checked(p, s, True, skip=False, stats=None)),
                                 cycle_length=8, num_parallel_calls=8)
    try:
        return int(records.reduce(tf.constant(0, tf.int64), plain(lambda total, _: total + 1)))
    except tf.errors.OpError as exc:
        raise (data_error_from(exc) or DataError(exc.message)) from exc


def count_records_from_headers(files: Sequence[tuple[str, int]],
                               max_records: int = CHEAP_COUNT_MAX_RECORDS) -> int | None:
    """Records in ``files`` (``(path, size)`` pairs), counted from their TFRecord
    length headers alone (no payload is read, no CRC checked); None where that
    is not cheap or not sure: a remote file, more than ``max_records``
    records (or so many expected from the files counted so far: a large
    data set is given up after its first file), or a file whose framing does
    not end at its size (damaged: its reader says where)."""
    total, counted_bytes = 0, 0
    all_bytes = sum(size for _, size in files)
    for path, size in files:
        if "://" in path:
            return None
        if counted_bytes and total * all_bytes / counted_bytes > max_records:
            return None
        try:
            with open(path, "rb", buffering=0) as handle:
                offset = 0
                while offset < size:
                    handle.seek(offset)
                    header = handle.read(8)
                    if len(header) < 8:
                        return None
                    offset += struct.unpack("<Q", header)[0] + _RECORD_FRAMING_BYTES
                    total += 1
                    if total > max_records:
                        return None
        except OSError:
            return None
        if offset != size:
            return None
        counted_bytes += size
    return total


def first_sound_record(files: Sequence[tuple[str, int]]) -> tuple[str, bytes] | None:
    """``(path, record)``: the first record of the first non-empty file of
    ``files`` (``(path, size)`` pairs, in reading order), read straight from
    the file with both its checksums verified. No tf.data pipeline is built
    and traced, which costs a script a few tenths of a second at start.
    None where it cannot be read so (damaged, truncated, unreadable):
    `framing_checked`'s readers then say what is wrong, and where."""
    path = next((path for path, size in files if size > 0), None)
    if path is None:
        return None
    try:
        # TensorFlow's own record reader, without tf.compat.v1's deprecation notice.
        from tensorflow.python.lib.io import _pywrap_record_io
        return path, next(iter(_pywrap_record_io.RecordIterator(path, "")))
    except (ImportError, AttributeError, TypeError, StopIteration, tf.errors.OpError):
        return None


def describe_data(data_pattern: str | Sequence[str]) -> tuple[str, int | None]:
    """``("N files matching 'pattern', M records", M)`` for a run's first
    lines; the record count where ``count_records_from_headers`` finds it
    cheaply, else "records not counted" and None."""
    files = file_sizes(data_pattern)
    records = count_records_from_headers(files)
    counted = f"{records:,} records" if records is not None else "records not counted"
    pattern = data_pattern if isinstance(data_pattern, str) else ",".join(data_pattern)
    return (f"{len(files)} file{'s' if len(files) != 1 else ''} matching '{pattern}', "
            f"{counted}"), records
