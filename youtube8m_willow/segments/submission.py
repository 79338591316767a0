"""The segment-level Kaggle CSV of the 2019 challenge (SPEC section 15).

``Class,Segments`` then one line per class: ``<class>,<segment id> ...``,
the class's best segments first. What decides a line, as in the original
inference.py:

1. Per segment, the scores are multiplied by the whitelist mask (1 for the
   classes of ``--segment_label_ids_file``, 0 elsewhere) and the ``top_k``
   best classes are kept. Ties at the ``top_k`` cut: the lower class id is
   kept (the original's ``np.argpartition`` keeps an unspecified one).
   Non-whitelisted classes in the top_k are skipped; a whitelisted one counts
   even if its score is 0.
2. Each kept score is rounded to 6 significant digits, the value of its
   ``%g`` text (the original printed ``%g`` and parsed it back).
3. Per whitelisted class, the ``max_pred`` best segments by (rounded score,
   segment id): at equal scores the larger id wins the last places, exactly
   as the original's min-heap on ``(score, id)`` decides.
4. Each line lists its segments by rounded score, descending. Equal scores:
   ascending id. (The original's stable sort keeps the heap's internal
   order there, which depends on the insertion history, not on the ids;
   ascending id is the order it gives most often.)
5. Classes appear in the order in which they first entered some segment's
   top_k (within one segment: by score, descending, then class id); a class
   that never did has no line. Without any segment the file is the header.

Memory: the original wrote every segment's line to a temporary file and
kept a Python heap per class (several GB at 2.4M segments). Here the kept
entries are flat arrays of (class, rounded score as float32, segment index),
16 bytes each. A candidate below its class's current cut is dropped on
arrival; the arrays are pruned to each class's best ``max_pred`` whenever
that would drop more than half as many entries as it keeps (and at least
2**20). So at most about 1.5 x min(classes x max_pred, candidates) + 2**20
entries are held, plus the ids of the segments they refer to (compacted at
each prune); each prune costs a sort of what is held, and all prunes
together about three sorts of all candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from youtube8m_willow.errors import ConfigError
from youtube8m_willow.submission.csv_writer import AtomicTextFile

HEADER = "Class,Segments"
ENTRY_BYTES = 16              # int32 class + float32 score + int64 segment index
_MIN_PRUNE = 1 << 20          # pending entries allowed before a prune
_EXACT_DECIMALS = 22          # 10**k is an exact float64 for |k| <= 22


def read_segment_label_ids(path: str) -> np.ndarray:
    """Class ids of a ``--segment_label_ids_file`` (one per line), sorted and
    unique; lines that are not integers, such as the ``Index`` header, are
    skipped, as in the original. Local paths or gs:// (tf.io.gfile); an
    http(s) URL (the original's default) is refused: nothing is downloaded."""
    if path.startswith(("http://", "https://")):
        raise ConfigError(f"--segment_label_ids_file={path}: a URL; download the file and pass "
                          "its path (or leave the flag unset for the 2019 challenge's list, "
                          "shipped with the package)")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no such segment label ids file")
    ids = []
    with tf.io.gfile.GFile(path) as handle:
        for line in handle:
            try:
                ids.append(int(line))
            except ValueError:
                continue
    if not ids:
        raise ConfigError(f"{path}: no class ids (one integer per line expected)")
    return np.unique(np.asarray(ids, np.int64))


# ------------------------------------------------------------ %g rounding

def round_g(values) -> np.ndarray:
    """``float("%g" % v)`` for every value: 6 significant digits, float64.

    Vectorized: ``rint(v * 10**d) / 10**d`` is exact when ``10**d`` is an
    exact float64; the few values near a rounding half-way point (or of
    extreme magnitude) are formatted one by one, so every result is exactly
    the original's.
    """
    x = np.asarray(values, np.float64)
    out = x.copy()
    finite = np.isfinite(x) & (x != 0)
    index = np.flatnonzero(finite)
    magnitude = np.abs(x[index])
    decimals = 5 - np.floor(np.log10(magnitude)).astype(np.int64)
    scaled = _scale(magnitude, decimals)
    decimals += (scaled < 1e5).astype(np.int64) - (scaled >= 1e6).astype(np.int64)
    exact = np.abs(decimals) <= _EXACT_DECIMALS
    scaled = _scale(magnitude, decimals)
    fraction = scaled - np.floor(scaled)
    exact &= np.abs(fraction - 0.5) > 1e-6
    rounded = _unscale(np.rint(scaled), decimals)
    out[index[exact]] = np.copysign(rounded[exact], x[index[exact]])
    slow = index[~exact]
    out[slow] = [float("%g" % value) for value in x[slow]]
    return out


def _scale(magnitude: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    power = 10.0 ** np.clip(np.abs(decimals), 0, _EXACT_DECIMALS)
    return np.where(decimals >= 0, magnitude * power, magnitude / power)


def _unscale(integers: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    power = 10.0 ** np.clip(np.abs(decimals), 0, _EXACT_DECIMALS)
    return np.where(decimals >= 0, integers / power, integers * power)


# ----------------------------------------------------------------- top-k

def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """``[B, C]`` bool: each row's ``k`` largest scores; ties at the cut go to
    the lower column. One vectorized pass (a partition, no full sort)."""
    num_classes = scores.shape[1]
    if k >= num_classes:
        return np.ones(scores.shape, bool)
    cut = np.partition(scores, num_classes - k, axis=1)[:, num_classes - k, None]
    chosen = scores >= cut
    room = k - (scores > cut).sum(axis=1)
    tied = np.flatnonzero(chosen.sum(axis=1) > k)     # more than one score at the cut
    if tied.size:
        at_cut = scores[tied] == cut[tied]
        chosen[tied] &= ~at_cut | (np.cumsum(at_cut, axis=1) <= room[tied, None])
    return chosen


def as_id_bytes(segment_ids) -> np.ndarray:
    """Segment ids (str, bytes, or a tf string tensor's object array) as a
    numpy bytes array (UTF-8)."""
    ids = np.asarray(segment_ids)
    if ids.dtype.kind == "S":
        return ids
    if ids.dtype.kind == "U":
        return np.char.encode(ids, "utf-8")
    try:
        return ids.astype(bytes)
    except UnicodeEncodeError:  # non-ASCII str objects
        return np.char.encode(ids.astype(str), "utf-8")


# ---------------------------------------------------------------- writer

class SegmentSubmissionWriter(AtomicTextFile):
    """Collects segment predictions batch by batch; ``close()`` writes the
    ``Class,Segments`` CSV (temporary file, then rename; see module doc for
    the ranking rules and the memory bound).

    Args:
        path: output CSV (local or gs://). Opened at once, so a bad path
            fails before any prediction.
        whitelist: class ids that may appear (``read_segment_label_ids``).
        max_pred: segments kept per class (``--segment_max_pred``).
        top_k: classes kept per segment (``--top_k``); more than the number
            of classes means all of them.

    Use as a context manager; an exception inside ``with`` (or ``abort()``)
    leaves nothing under ``path``::

        with SegmentSubmissionWriter("out.csv", whitelist, 100000, 20) as w:
            for ids, scores in batches:   # ids [B] str/bytes, scores [B, C]
                w.add(ids, scores)
    """

    def __init__(self, path: str, whitelist: Sequence[int], max_pred: int = 100000,
                 top_k: int = 20):
        classes = np.unique(np.asarray(whitelist, np.int64))
        if classes.size == 0 or classes[0] < 0:
            raise ConfigError("the segment whitelist must hold non-negative class ids")
        if max_pred < 1 or top_k < 1:
            raise ConfigError(f"max_pred and top_k must be >= 1, got {max_pred}, {top_k}")
        super().__init__(path)
        self.classes, self.max_pred, self.top_k = classes, int(max_pred), int(top_k)
        self.num_segments = 0
        self._num_classes = None
        self._seen = np.zeros(classes.size, bool)
        self._order: list[np.ndarray] = []              # whitelist positions, first seen
        self._cut = np.full(classes.size, -np.inf, np.float32)
        self._kept = _empty_entries()
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._num_pending = 0
        self._counts = np.zeros(classes.size, np.int64)   # entries held per class
        self._ids = np.zeros(0, "S1")
        self._num_ids = 0
        self._closed = False

    @property
    def num_entries(self) -> int:
        """(class, score, segment) entries held now, kept and pending."""
        return self._kept[0].size + self._num_pending

    # -- adding
    def add(self, segment_ids, scores) -> None:
        """One batch: ``segment_ids`` [B] (str or bytes), ``scores`` [B, C]."""
        if self._closed:
            raise ValueError("add() after close()")
        ids, scores = as_id_bytes(segment_ids).reshape(-1), self._check(segment_ids, scores)
        whitelisted = scores[:, self.classes]
        rows, columns = np.nonzero(self._chosen(scores, whitelisted))
        raw = whitelisted[rows, columns]
        self._note_first_seen(rows, columns, raw)
        rounded = round_g(raw).astype(np.float32)
        first = self._append_ids(ids)
        keep = rounded >= self._cut[columns]
        self._pending.append((columns[keep].astype(np.int32), rounded[keep],
                              rows[keep].astype(np.int64) + first))
        self._num_pending += int(keep.sum())
        self._counts += np.bincount(columns[keep], minlength=self.classes.size)
        self.num_segments += ids.size
        useful = np.minimum(self._counts, self.max_pred).sum()
        if self._counts.sum() - useful > max(_MIN_PRUNE, useful // 2):
            self._prune()

    def _check(self, segment_ids, scores) -> np.ndarray:
        scores = np.asarray(scores, np.float32)
        if scores.ndim != 2 or scores.shape[0] != np.size(segment_ids):
            raise ValueError(f"scores must be [len(segment_ids), num_classes], got "
                             f"{scores.shape} for {np.size(segment_ids)} ids")
        if self._num_classes is None:
            if self.classes[-1] >= scores.shape[1]:
                raise ConfigError(f"whitelisted class {self.classes[-1]} >= the model's "
                                  f"{scores.shape[1]} classes")
            self._num_classes = scores.shape[1]
            self._mask = np.zeros(scores.shape[1], np.float32)
            self._mask[self.classes] = 1.0
        elif scores.shape[1] != self._num_classes:
            raise ValueError(f"{scores.shape[1]} classes after {self._num_classes}")
        if not np.isfinite(scores).all():
            raise ValueError("segment scores must be finite")
        return scores

    def _chosen(self, scores: np.ndarray, whitelisted: np.ndarray) -> np.ndarray:
        """``[B, W]``: the whitelisted classes in each segment's top_k of the
        masked scores. Where k whitelisted scores are > 0, the masked zeros
        cannot reach the top_k, so the whitelisted columns alone decide."""
        fast = (whitelisted > 0).sum(axis=1) >= self.top_k
        if fast.all():
            return top_k_mask(whitelisted, self.top_k)
        chosen = np.zeros(whitelisted.shape, bool)
        chosen[fast] = top_k_mask(whitelisted[fast], self.top_k)
        chosen[~fast] = top_k_mask(scores[~fast] * self._mask, self.top_k)[:, self.classes]
        return chosen

    def _note_first_seen(self, rows, columns, raw) -> None:
        new = ~self._seen[columns]
        if not new.any():
            return
        rows, columns, raw = rows[new], columns[new], raw[new]
        sequence = columns[np.lexsort((columns, -raw, rows))]
        unique, first = np.unique(sequence, return_index=True)
        self._order.append(unique[np.argsort(first)])
        self._seen[unique] = True

    def _append_ids(self, ids: np.ndarray) -> int:
        """Stores the batch's ids; returns the index of the first."""
        width = max(self._ids.dtype.itemsize, ids.dtype.itemsize)
        needed = self._num_ids + ids.size
        if needed > self._ids.size or width > self._ids.dtype.itemsize:
            grown = np.zeros(max(needed, 2 * self._ids.size), f"S{width}")
            grown[:self._num_ids] = self._ids[:self._num_ids]
            self._ids = grown
        self._ids[self._num_ids:needed] = ids
        first, self._num_ids = self._num_ids, needed
        return first

    # -- pruning
    def _prune(self) -> None:
        """Keeps each class's best ``max_pred``; updates the cuts (a full
        class's last kept score); drops ids no kept entry refers to."""
        columns, scores, segments = (np.concatenate(part) for part in
                                     zip(self._kept, *self._pending))
        self._pending, self._num_pending = [], 0
        order = self._heap_order(columns, scores, segments)
        columns, scores, segments = columns[order], scores[order], segments[order]
        starts = np.searchsorted(columns, np.arange(self.classes.size))
        rank = np.arange(columns.size) - starts[columns]
        keep = rank < self.max_pred
        full = rank == self.max_pred - 1
        self._cut[columns[full]] = scores[full]
        self._kept = (columns[keep], scores[keep], segments[keep])
        self._counts = np.bincount(self._kept[0], minlength=self.classes.size)
        self._compact_ids()

    def _heap_order(self, columns, scores, segments) -> np.ndarray:
        """Order by class, then (score, id) descending: the original heap's
        ranking. Ids are compared only inside runs of equal scores."""
        order = np.lexsort((-scores, columns))
        tied = _tie_runs(columns[order], scores[order])
        if tied is not None:
            positions, run = tied
            ids = self._ids[segments[order[positions]]]
            inner = np.lexsort((ids, -run))[::-1]
            order[positions] = order[positions[inner]]
        return order

    def _compact_ids(self) -> None:
        segments = self._kept[2]
        if self._num_ids <= 2 * segments.size + _MIN_PRUNE:
            return
        used, inverse = np.unique(segments, return_inverse=True)
        self._ids = self._ids[used]
        self._num_ids = used.size
        self._kept = (self._kept[0], self._kept[1], inverse.astype(np.int64))

    # -- writing
    def close(self) -> None:
        """Writes the CSV and renames it into place (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._prune()
            self._write_lines()
        except BaseException:
            self.abort()
            raise
        super().close()

    def abort(self) -> None:
        self._closed = True
        super().abort()

    def _write_lines(self) -> None:
        columns, _, segments = self._kept
        starts = np.searchsorted(columns, np.arange(self.classes.size + 1))
        line_order = _ascending_ids_in_ties(*self._kept)
        self.write_text(HEADER + "\n")
        for column in (np.concatenate(self._order) if self._order else []):
            picked = line_order[starts[column]:starts[column + 1]]
            ids = b" ".join(self._ids[segments[picked]].tolist()).decode("utf-8")
            self.write_text(f"{self.classes[column]},{ids}\n")


def _empty_entries() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def _tie_runs(columns: np.ndarray, scores: np.ndarray):
    """Positions of entries in runs of equal (class, score) of a sorted
    array, and each one's run number; None without ties."""
    same = (columns[1:] == columns[:-1]) & (scores[1:] == scores[:-1])
    if not same.any():
        return None
    starts_run = np.concatenate(([True], ~same))
    run = np.cumsum(starts_run) - 1
    in_tie = np.concatenate((same, [False])) | np.concatenate(([False], same))
    positions = np.flatnonzero(in_tie)
    return positions, run[positions]


def _ascending_ids_in_ties(columns, scores, segments) -> np.ndarray:
    """Index order of the kept (heap-ordered) entries with every run of equal
    scores reversed: ascending id among ties (module doc, rule 4)."""
    order = np.arange(columns.size)
    tied = _tie_runs(columns, scores)
    if tied is not None:
        positions, run = tied
        first = np.searchsorted(run, run, side="left")
        last = np.searchsorted(run, run, side="right") - 1
        order[positions] = positions[first + last - np.arange(positions.size)]
    return order
