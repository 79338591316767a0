"""tf.data pipelines of parsed YouTube-8M batches.

Pipeline (`make_dataset`): glob the files -> one dataset per file (records
tagged with their file name and index, framing checked: ``data.files``) ->
parallel interleave over `num_readers` files -> (training: shuffle) -> batch
the serialized records -> parse whole batches with `tf.io.parse_example` /
`tf.io.parse_sequence_example` in parallel (``data.parsing``) -> prefetch.
No Python runs per record. `make_planned_dataset` gives the same batches in
the resumable order of a ``data.resumable`` plan.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow as tf

from youtube8m_willow.data.files import file_sizes, framing_checked
from youtube8m_willow.data.parsing import parse_batch
from youtube8m_willow.data.reader_config import ReaderConfig, ReadStats, stats_for
from youtube8m_willow.data.resumable import InputPosition, Plan, plain, planned_records

# Pipeline functions use no Python control flow on tensors: skip AutoGraph (faster tracing).

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
    stats = stats_for(config, stats)
    records = planned_records(
        plan, plain(lambda path, size: _file_records(path, size, config, stats)),
        num_epochs=num_epochs, start=position, shard=shard)
    return _parsed_batches(records, config, batch_size, True, stats)


def _parsed_batches(records: tf.data.Dataset, config: ReaderConfig, batch_size: int,
                    deterministic: bool, stats: ReadStats | None) -> tf.data.Dataset:
    """Batches and parses a record stream; a fifth element (the planned
    position) passes through as "input_position"."""

    def parse(paths, indices, batch, unused_end, *position):
        parsed = parse_batch(paths, indices, batch, config, stats)
        return {**parsed, "input_position": position[0]} if position else parsed

    dataset = records.batch(batch_size).map(plain(parse), num_parallel_calls=parallel_calls(),
                                            deterministic=deterministic)
    dataset = prefetched(dataset)
    dataset.read_stats = stats
    return dataset


# Batches parsed ahead of the step: the parse of a batch takes a few percent
# of a training step (bench/bench_input.py), so two cover any jitter.
PREFETCH_BATCHES = 2


def parallel_calls() -> int:
    """Batches parsed at once: one per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def prefetched(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with `PREFETCH_BATCHES` prefetched and tf.data's autotuning
    off, its parallelism and buffers fixed as given. The autotuner's model
    thread can hold up the deletion of an iterator that stopped on a read
    error for 10 to 40 s on a busy machine (TensorFlow 2.21: the thread
    sleeps out its doubling optimization period), and with it the exit of a
    script that reports the damaged file; fixed values read as fast here
    (``bench/bench_input.py``)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(PREFETCH_BATCHES).with_options(options)


def read_records(data_pattern: str | Sequence[str], config: ReaderConfig, batch_size: int, *,
                 training: bool, num_epochs: int | None = 1, num_readers: int = 8,
                 shuffle_buffer: int | None = None, seed: int | None = None,
                 stats: ReadStats | None = None):
    """The serialized records of `make_dataset`, before batching and parsing:
    (dataset of (path, index, record, is_end), stats, deterministic)."""
    if batch_size < 1 or num_readers < 1:
        raise ValueError(f"batch_size ({batch_size}) and num_readers ({num_readers}) must be >= 1")
    files = file_sizes(data_pattern)
    stats = stats_for(config, stats)
    deterministic = not training or seed is not None
    paths, sizes = zip(*files)
    file_ds = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(sizes, tf.int64)))
    if training:
        file_ds = file_ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if num_epochs != 1:
        file_ds = file_ds.repeat(num_epochs)
    readers = min(num_readers, len(paths))
    records = file_ds.interleave(
        plain(lambda path, size: _file_records(path, size, config, stats)),
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


# --------------------------------------------------------------------------- per-file records

def _file_records(path: tf.Tensor, size: tf.Tensor, config: ReaderConfig,
                  stats: ReadStats | None) -> tf.data.Dataset:
    """(path, index, record, False) for each readable (and, if skipping, valid) record of one file."""
    if not config.skip_bad_records:
        return framing_checked(path, size, config.frame_features, skip=False, stats=stats)
    elements = framing_checked(path, size, config.frame_features, skip=True, stats=stats)
    elements = _validated(elements, config, stats)
    return elements.filter(plain(lambda p, i, r, is_end: tf.logical_not(is_end)))


def _validated(elements: tf.data.Dataset, config: ReaderConfig,
               stats: ReadStats | None) -> tf.data.Dataset:
    """Drops records that fail to parse or validate on their own, counting them.

    Failing records raise inside the map and are removed by `ignore_errors`;
    the gaps this leaves in the record indices are the count.
    """

    def validate(path, index, record, is_end):
        def parse_one():
            parsed = parse_batch(path[None], index[None], record[None], config, stats=None)
            with tf.control_dependencies(tf.nest.flatten(parsed)):
                return tf.identity(record)

        return path, index, tf.cond(is_end, lambda: record, parse_one), is_end

    def count_gaps(previous, element):
        index = element[1]
        gap = index - previous - 1
        update = tf.cond(gap > 0, lambda: _count_malformed(stats, gap), tf.no_op)
        with tf.control_dependencies([update]):
            return tf.identity(index), element

    kept = elements.map(plain(validate)).ignore_errors(log_warning=False)
    return kept.scan(tf.constant(-1, tf.int64), plain(count_gaps))


def _count_malformed(stats: ReadStats | None, count: tf.Tensor) -> tf.Operation:
    if stats is None:
        return tf.no_op()
    return tf.group(stats.malformed_records.assign_add(count))
