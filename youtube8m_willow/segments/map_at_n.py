"""mAP@N of a segment submission against rated segments (the 2019 metric;
the original's segment_eval_inference.py, SPEC section 15).

Labels: the rated (``"<video id>:<start>"``, class) pairs of the validation
records, each with its score (0 or 1); a class's positives are its rated
pairs with score > 0. A submission line ``<class>,<id> <id> ...`` is cut to
its first ``top_n`` ids (0: no cut); ids that are not rated pairs of that
class are then dropped (they still used up their places); the i-th of the n
kept ids gets the score (n - i) / n. The class's AP is the average precision
of that list divided by the class's total positives (not min(n, positives));
mAP@N is the mean over the submitted classes (a class with no kept id
counts 0).

Bugs of the original fixed here:

1. The ``Class,Segments`` header that inference.py writes crashed it
   (``int("Class")``): a first line equal to the header is skipped.
2. Under Python 3 its label keys held the bytes repr of the video id
   (``"b'abcd':5"``), so nothing matched and mAP was silently 0: ids are
   compared as the same UTF-8 bytes on both sides.
3. The last id of every line kept its ``\\n`` and never matched: lines are
   split on whitespace.
4. A submitted class without positives raised KeyError: its AP is 0 and it
   counts in the mean (it is reported with a warning).
5. A one-class submission failed the calculator's ``num_class > 1`` check:
   any number of classes (at least one) is scored.

Also one-line errors (file:line) for malformed lines, a class listed twice
and an id listed twice in one class's first ``top_n``, where the original
either crashed or silently kept the last line (or counted a duplicate
positive twice, which can push an AP above 1).
"""

from __future__ import annotations

import dataclasses
import io
import logging

import numpy as np
import pandas as pd
import tensorflow as tf

from youtube8m_willow.data.readers import DataError, data_error_from, file_records, file_sizes
from youtube8m_willow.errors import ConfigError, UserError
from youtube8m_willow.segments.submission import HEADER
from youtube8m_willow.submission.csv_writer import AtomicTextFile
from youtube8m_willow.errors import SubmissionFormatError

log = logging.getLogger("youtube8m_willow")

_BATCH = 1024
_CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "segment_labels": tf.io.VarLenFeature(tf.int64),
    "segment_start_times": tf.io.VarLenFeature(tf.int64),
    "segment_scores": tf.io.VarLenFeature(tf.float32),
}


# ------------------------------------------------------------------ labels

@dataclasses.dataclass(frozen=True)
class RatedSegments:
    """Rated (segment, class) pairs, unique, sorted by class then id."""

    segment_ids: np.ndarray   # [R] bytes, "<video id>:<start>"
    classes: np.ndarray       # [R] int64
    scores: np.ndarray        # [R] float32

    @classmethod
    def from_pairs(cls, segment_ids, classes, scores) -> "RatedSegments":
        """Sorts and deduplicates; a pair rated twice keeps its last score
        (the original's dict did the same)."""
        segment_ids = np.asarray(segment_ids, dtype=bytes)
        classes = np.asarray(classes, np.int64)
        scores = np.asarray(scores, np.float32)
        order = np.lexsort((segment_ids, classes))          # stable: last rating last
        segment_ids, classes, scores = segment_ids[order], classes[order], scores[order]
        last = np.ones(classes.size, bool)
        last[:-1] = (classes[1:] != classes[:-1]) | (segment_ids[1:] != segment_ids[:-1])
        return cls(segment_ids[last], classes[last], scores[last])

    def of_class(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """The sorted rated ids of one class and their scores."""
        start, end = np.searchsorted(self.classes, [label, label + 1])
        return self.segment_ids[start:end], self.scores[start:end]

    def num_positives(self, label: int) -> int:
        return int((self.of_class(label)[1] > 0).sum())


def read_rated_segments(data_pattern: str) -> RatedSegments:
    """The rated pairs of segment-rated SequenceExamples (context only)."""
    parts = [_read_file(path, size) for path, size in file_sizes(data_pattern)]
    rated = RatedSegments.from_pairs(*(np.concatenate(p) for p in zip(*parts)))
    if rated.classes.size == 0:
        raise DataError(f"no rated segments (segment_labels) in '{data_pattern}'")
    return rated


def _parse(serialized):
    context, _, _ = tf.io.parse_sequence_example(serialized, context_features=_CONTEXT)
    parsed = {"ids": context["id"]}
    for key in ("segment_labels", "segment_start_times", "segment_scores"):
        parsed[key] = context[key].values
        parsed[key + "_rows"] = context[key].indices[:, 0]
    return parsed


def _read_file(path: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rated pairs of one file, read through the readers' framing checks."""
    dataset = file_records(path, size).batch(_BATCH).map(_parse).prefetch(2)
    ids, labels, scores = [], [], []
    try:
        for index, batch in enumerate(dataset.as_numpy_iterator()):
            _check_lengths(path, index * _BATCH, batch)
            video = batch["ids"].astype(bytes)[batch["segment_labels_rows"]]
            starts = batch["segment_start_times"].astype(bytes)
            ids.append(np.strings.add(np.strings.add(video, b":"), starts))
            labels.append(batch["segment_labels"])
            scores.append(batch["segment_scores"])
    except tf.errors.OpError as error:
        raise (data_error_from(error)
               or DataError(f"{path}: {error.message.splitlines()[0]}")) from error
    if not ids:
        return np.zeros(0, bytes), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(ids), np.concatenate(labels), np.concatenate(scores)


def _check_lengths(path: str, first_record: int, batch: dict) -> None:
    """segment_labels, segment_start_times and segment_scores: one entry
    each per rated segment."""
    count = batch["ids"].size
    lengths = [np.bincount(batch[key + "_rows"], minlength=count)
               for key in ("segment_labels", "segment_start_times", "segment_scores")]
    bad = (lengths[0] != lengths[1]) | (lengths[0] != lengths[2])
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: record {first_record + row} (id "
                        f"{batch['ids'][row].decode('utf-8', 'replace')!r}): segment_labels, "
                        f"segment_start_times and segment_scores differ in length "
                        f"({lengths[0][row]}, {lengths[1][row]}, {lengths[2][row]})")


# --------------------------------------------------------------- label cache

def load_rated_segments(data_pattern: str, label_cache: str = "") -> RatedSegments:
    """``--label_cache``: an existing cache is read instead of the records
    (whatever ``data_pattern`` says, as in the original); otherwise the
    records are read and, with a cache path, written to it.

    The cache is the original's text format, one ``<segment id>,<class>,<score>``
    line per rated pair (no pickle), written atomically.
    """
    if label_cache and tf.io.gfile.exists(label_cache):
        log.info("Reading cached labels from %s (not %s)", label_cache, data_pattern or "records")
        return read_label_cache(label_cache)
    if not data_pattern:
        raise ConfigError("--eval_data_pattern is required (no --label_cache file to read)")
    rated = read_rated_segments(data_pattern)
    if label_cache:
        log.info("Caching %d rated pairs to %s", rated.classes.size, label_cache)
        write_label_cache(label_cache, rated)
    return rated


def write_label_cache(path: str, rated: RatedSegments) -> None:
    frame = pd.DataFrame({"id": np.char.decode(rated.segment_ids, "utf-8"),
                          "label": rated.classes, "score": rated.scores})
    with AtomicTextFile(path) as cache:
        cache.write_text(frame.to_csv(header=False, index=False))


def read_label_cache(path: str) -> RatedSegments:
    with tf.io.gfile.GFile(path, "rb") as handle:
        text = handle.read()
    try:
        frame = pd.read_csv(io.BytesIO(text), header=None, names=["id", "label", "score"],
                            dtype={"id": str, "label": np.int64, "score": np.float32},
                            na_filter=False)
    except (ValueError, pd.errors.ParserError) as error:
        raise UserError(f"{path}: not a label cache ('<segment id>,<class>,<score>' lines): "
                        f"{str(error).splitlines()[0]}") from error
    return RatedSegments.from_pairs(np.char.encode(frame["id"].to_numpy(str), "utf-8"),
                                    frame["label"].to_numpy(), frame["score"].to_numpy())


# -------------------------------------------------------------- submission

@dataclasses.dataclass(frozen=True)
class SegmentMap:
    """mAP@N and what went into it; dicts are keyed by class id."""

    map_at_n: float
    top_n: int
    per_class_ap: dict[int, float]
    kept: dict[int, list[str]]          # the rated ids of each line's first top_n
    num_positives: dict[int, int]
    classes_without_positives: list[int]
    num_rated_pairs: int


def read_submission_lines(path: str, top_n: int = 0):
    """Yields ``(line number, class, ids)`` per class line of a segment
    submission, ids a bytes array cut to the first ``top_n`` (0: all)."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no such submission file")
    seen: dict[int, int] = {}
    with tf.io.gfile.GFile(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or (number == 1 and line.decode("utf-8", "replace") == HEADER):
                continue
            label, ids = _parse_line(path, number, line, top_n)
            if label in seen:
                _fail(path, number, f"class {label} appears twice (first on line {seen[label]})")
            seen[label] = number
            yield number, label, ids


def _parse_line(path: str, number: int, line: bytes, top_n: int) -> tuple[int, np.ndarray]:
    label_text, comma, rest = line.partition(b",")
    try:
        label = int(label_text)
    except ValueError:
        label = -1
    if not comma or label < 0:
        _fail(path, number, "expected '<class>,<segment id> <segment id> ...', found "
              f"{line[:40].decode('utf-8', 'replace')!r}")
    tokens = rest.split()
    ids = np.array(tokens[:top_n] if top_n else tokens, dtype=bytes)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        _fail(path, number, f"segment {unique[np.argmax(counts > 1)].decode('utf-8', 'replace')!r}"
              f" listed twice for class {label}")
    return label, ids


def _fail(path: str, number: int, reason: str) -> None:
    raise SubmissionFormatError(f"{path}:{number}: {reason}")


def class_average_precision(ids: np.ndarray, rated: RatedSegments, label: int,
                            num_positives: int) -> tuple[float, np.ndarray]:
    """AP of one class line (already cut to top_n) and its kept ids."""
    rated_ids, rated_scores = rated.of_class(label)
    position = np.searchsorted(rated_ids, ids)
    inside = position < rated_ids.size
    position[~inside] = 0
    matched = inside & (rated_ids[position] == ids) if rated_ids.size else np.zeros(ids.size, bool)
    positive = rated_scores[position[matched]] > 0
    if num_positives == 0 or not positive.any():
        return 0.0, ids[matched]
    precision = np.cumsum(positive) / np.arange(1, positive.size + 1)
    return float(np.sum(precision[positive] * (1.0 / num_positives))), ids[matched]


def score_submission(path: str, rated: RatedSegments, top_n: int = 0) -> SegmentMap:
    """mAP@N of a submission file against rated pairs (module doc)."""
    if top_n < 0:
        raise ConfigError(f"--top_n must be >= 0 (0: no cap), got {top_n}")
    aps, kept, positives = {}, {}, {}
    for _, label, ids in read_submission_lines(path, top_n):
        positives[label] = rated.num_positives(label)
        aps[label], matched = class_average_precision(ids, rated, label, positives[label])
        kept[label] = np.char.decode(matched, "utf-8").tolist()
    if not aps:
        raise SubmissionFormatError(f"{path}: no class lines")
    without = sorted(label for label, count in positives.items() if count == 0)
    if without:
        log.warning("%d submitted classes have no positive rated segment (AP 0): %s",
                    len(without), without[:20])
    return SegmentMap(map_at_n=float(np.mean(list(aps.values()))), top_n=top_n,
                      per_class_ap=aps, kept=kept, num_positives=positives,
                      classes_without_positives=without, num_rated_pairs=int(rated.classes.size))


def evaluate_segment_submission(submission_file: str, eval_data_pattern: str, top_n: int = 0,
                                label_cache: str = "") -> SegmentMap:
    """segment_eval_inference.py: rated pairs (or their cache), then mAP@N."""
    if not submission_file:
        raise ConfigError("--submission_file is required")
    if not tf.io.gfile.exists(submission_file):
        raise FileNotFoundError(f"{submission_file}: no such submission file")
    rated = load_rated_segments(eval_data_pattern, label_cache)
    log.info("Total rated segments: %d", rated.classes.size)
    return score_submission(submission_file, rated, top_n)
