"""The training input as a plan: which record comes next is a function of the
files, the seed, the options and a position, so that a run resumed from a
saved position reads exactly the records the uninterrupted run would have.

Order of epoch ``e`` (0-based; epochs follow one another, ``num_epochs``
counts them across restarts):
1. the files, sorted, then (shuffle) permuted by a stateless draw keyed by
   ``(seed, e)``;
2. cut into groups of ``num_readers`` files; the files of a group are read
   together, one record from each in turn (a finished file leaves the turn),
   the groups one after another;
3. that stream cut into windows of ``window`` records (the shuffle buffer's
   size); each window (shuffle) permuted by a stateless draw keyed by
   ``(seed, e, window index)``.
Without shuffle, steps 1 and 3 keep the order.

A position (`InputPosition`) is the window being read, where it starts (its
group, and the records of that group before it) and how many of its records
were already taken: five integers, whatever the data. Every record carries the
position after it, so the last record of a consumed batch says where a
resumed run starts. Resuming re-reads the records of the window's group from
the group's start up to the window (at most a group of files, read without
parsing) and the window itself; shuffling holds serialized records only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import tensorflow as tf

# The data room's functions traced without AutoGraph (their Python control
# flow is on Python values only): faster traces, and no conversion warnings.
plain = tf.autograph.experimental.do_not_convert
_FOREVER = 1 << 62  # epochs when num_epochs is None
_FILE_ORDER, _WINDOW_ORDER = 1, 2  # streams of the stateless draws


@dataclasses.dataclass(frozen=True)
class InputPosition:
    """Where the planned stream stands: the next record to read.

    Attributes:
        epoch: passes over the data completed before the current one.
        window: the current window of the epoch.
        group: the file group where that window starts.
        group_offset: records of that group read before the window.
        taken: records of the window already read.
    """

    epoch: int = 0
    window: int = 0
    group: int = 0
    group_offset: int = 0
    taken: int = 0

    FIELDS = ("epoch", "window", "group", "group_offset", "taken")

    @classmethod
    def from_row(cls, row: Sequence[int]) -> "InputPosition":
        """The position of a record's ``input_position`` row."""
        return cls(*(int(v) for v in row))

    def as_list(self) -> list[int]:
        return [getattr(self, field) for field in self.FIELDS]

    def __post_init__(self) -> None:
        if min(self.as_list()) < 0:
            raise ValueError(f"an input position has no negative fields: {self}")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The options that define the order (any change gives another order).

    Attributes:
        files: (path, size) of every input file, sorted by path.
        shuffle: permute the files and each window.
        seed: the seed of every permutation.
        num_readers: files per group.
        window: records per window.
    """

    files: tuple[tuple[str, int], ...]
    shuffle: bool
    seed: int
    num_readers: int
    window: int

    def fingerprint(self) -> str:
        """A digest of the file list (paths and sizes), to tell a changed input."""
        digest = hashlib.sha256()
        for path, size in self.files:
            digest.update(f"{path}\t{size}\n".encode())
        return digest.hexdigest()[:16]


def planned_records(plan: Plan, read_file, *, num_epochs: int | None,
                    start: InputPosition = InputPosition(),
                    shard: tuple[int, int, int] | None = None) -> tf.data.Dataset:
    """The planned stream from ``start``: ``(path, index, record, is_end,
    position)`` per record, ``position`` the int64 [5] position after it.

    Args:
        plan: the order (see the module doc).
        read_file: ``(path, size) -> dataset of (path, index, record, is_end)``,
            one file's records in file order.
        num_epochs: the epoch after the last (None: forever), counted from 0.
        start: where to begin.
        shard: ``(num_shards, shard, block)``: keep only the records of every
            ``num_shards``-th block of ``block`` records of each epoch (the
            workers of one cluster reading the same files).
    """
    paths = tf.constant([path for path, _ in plan.files])
    sizes = tf.constant([size for _, size in plan.files], tf.int64)
    readers = min(plan.num_readers, len(plan.files))
    num_groups = -(-len(plan.files) // readers)
    seed = tf.constant([plan.seed, 0], tf.int64)

    def file_order(epoch):
        if not plan.shuffle:
            return tf.range(len(plan.files))
        key = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(seed, _FILE_ORDER), epoch)
        return tf.argsort(tf.random.stateless_uniform([len(plan.files)], seed=key))

    def group_records(order, group, skip):
        chosen = order[group * readers:(group + 1) * readers]
        files = tf.data.Dataset.from_tensor_slices((tf.gather(paths, chosen),
                                                    tf.gather(sizes, chosen)))
        records = files.interleave(plain(read_file), cycle_length=readers, block_length=1,
                                   num_parallel_calls=readers, deterministic=True)
        return records.enumerate().skip(skip).map(
            plain(lambda offset, element: (group, offset) + tuple(element)))

    def permuted(epoch, window, element):
        group, offset, path, index, record, is_end = element
        count = tf.shape(record, out_type=tf.int64)[0]
        if plan.shuffle:
            key = tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(seed, _WINDOW_ORDER), epoch), window)
            order = tf.argsort(tf.random.stateless_uniform([count], seed=key))
        else:
            order = tf.range(count)
        after = tf.stack([tf.fill([count], epoch), tf.fill([count], window),
                          tf.fill([count], group[0]), tf.fill([count], offset[0]),
                          tf.range(1, count + 1)], axis=1)
        return tuple(tf.gather(v, order) for v in (path, index, record, is_end)) + (after,)

    def epoch_records(epoch, window, group, group_offset, taken):
        order = file_order(epoch)
        groups = tf.data.Dataset.range(group, num_groups).flat_map(plain(
            lambda g: group_records(order, g, group_offset * tf.cast(tf.equal(g, group), tf.int64))))
        windows = groups.batch(plan.window).enumerate(start=window).map(
            plain(lambda k, element: permuted(epoch, k, element)))
        records = windows.unbatch().skip(taken)
        if shard is not None:
            num_shards, index, block = shard
            records = records.filter(plain(lambda *element: tf.equal(
                (element[-1][1] * plan.window + element[-1][4] - 1) // block % num_shards,
                index)))
        return records

    first = tf.data.Dataset.from_tensors(tuple(tf.constant(v, tf.int64) for v in start.as_list()))
    end = _FOREVER if num_epochs is None else num_epochs
    later = tf.data.Dataset.range(start.epoch + 1, max(end, start.epoch + 1)).map(
        plain(lambda e: (e,) + tuple(tf.constant(0, tf.int64) for _ in range(4))))
    epochs = (first if start.epoch < end else first.take(0)).concatenate(later)
    return epochs.flat_map(plain(epoch_records))
