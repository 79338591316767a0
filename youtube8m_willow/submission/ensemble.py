"""Weighted averaging of submission CSVs: WILLOW's ``file_averaging.py`` step.

Each input is a Kaggle submission (SPEC section 10). For every video the
ensemble score of a class is

    sum over files f of  weight_f * score_f(video, class)  /  sum of weights

where ``score_f`` is 0 when the class is not among the file's pairs for the
video, and also 0 when the video is absent from the file (such videos are
counted and reported in a warning). WILLOW's script divided by the sum of
the weights as well, and its dictionaries gave absent videos and classes 0
the same way. What it got wrong, fixed here: it read only the first half of
each line's pairs, cast video ids to int (string ids crashed; leading zeros
were lost), wrote a ``VideoID`` header, and truncated every score to five
decimals before summing.

Output: the ``top_k`` classes per video by averaged score, descending (ties:
lower class first), videos in order of first appearance (first file's order,
then videos new in later files). Memory: each file is parsed into flat numpy
arrays of (video, class, score) and merged into one sorted array of
(video, class) keys, so nothing grows by a Python object per pair.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from youtube8m_willow.errors import ConfigError, SubmissionFormatError
from youtube8m_willow.submission.csv_writer import HEADER, SubmissionWriter

log = logging.getLogger("youtube8m_willow")

_CLASS_BITS = 32                   # key = video << 32 | class
_CLASS_MASK = (1 << _CLASS_BITS) - 1
_MAX_CLASS = 2 ** 31 - 1
# The seven files the inference lines of WILLOW's README write (see
# recipes/willow_ensemble.sh): file_averaging.py's inputs when given none, as
# the original script's were (its hard-coded names did not all match them).
WILLOW_INPUTS = (
    "test-gatednetvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-GRU-0002-1200.csv",
    "test-gatednetfvLF-128k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-gateddboflf-4096-1024-80-0002-300iter-gatedmoe.csv",
    "test-softdboflf-8000-1024-80-0002-300iter.csv",
    "test-gatedlightvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-lstm-0002-val-150-random.csv",
)
_WRITE_CHUNK = 10_000              # videos formatted per write
_CHUNK_LINES = 10_000              # lines parsed at once


@dataclasses.dataclass(frozen=True)
class Submission:
    """One submission file as flat arrays.

    ``video_ids[i]`` is the id on data line i (string, as written);
    ``rows``, ``classes`` and ``scores`` have one entry per pair.
    """

    video_ids: np.ndarray   # [V] object (str)
    rows: np.ndarray        # [P] int32, index into video_ids
    classes: np.ndarray     # [P] int32
    scores: np.ndarray      # [P] float64

    def to_dense(self, num_classes: int) -> np.ndarray:
        """``[V, num_classes]`` float32 scores, 0 where a class is not listed."""
        if self.classes.size and self.classes.max() >= num_classes:
            raise ConfigError(f"class {self.classes.max()} >= num_classes={num_classes}")
        dense = np.zeros((self.video_ids.size, num_classes), np.float32)
        dense[self.rows, self.classes] = self.scores
        return dense


# ------------------------------------------------------------------ reading

def read_submission(path: str) -> Submission:
    """Parses a submission CSV, reading every pair of every line.

    The file is parsed in chunks of lines, so the text and its temporaries
    never all live in memory at once; only the flat arrays are kept.

    Raises:
        FileNotFoundError: no such file.
        SubmissionFormatError: bad header or a malformed line (one line naming
            the file and line number).
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no such submission file")
    chunks = []
    with tf.io.gfile.GFile(path) as handle:
        _check_header(path, handle.readline())
        first_line = 2
        while lines := list(itertools.islice(handle, _CHUNK_LINES)):
            chunks.append(_parse_chunk(path, lines, first_line))
            first_line += len(lines)
    return _concatenate(path, chunks)


def _check_header(path: str, header: str) -> None:
    # Case-insensitive, so WILLOW's own "VideoID" outputs can be re-averaged.
    if header.strip().lower() != HEADER.lower():
        found = repr(header.strip()[:60]) if header else "an empty file"
        raise SubmissionFormatError(f"{path}:1: expected header {HEADER!r}, found {found}")


@dataclasses.dataclass(frozen=True)
class _Chunk:
    video_ids: np.ndarray     # [V] object
    line_numbers: np.ndarray  # [V] int64, line of each video in the file
    rows: np.ndarray          # [P] int32, index into this chunk's videos
    classes: np.ndarray       # [P] int32
    scores: np.ndarray        # [P] float64


def _parse_chunk(path: str, lines: list[str], first_line: int) -> _Chunk:
    body = pd.Series(lines, dtype=object).str.rstrip("\r\n")
    line_numbers = np.arange(first_line, first_line + len(lines))
    keep = (body.str.strip() != "").to_numpy()
    body, line_numbers = body[keep], line_numbers[keep]
    parts = body.str.partition(",")
    _check_ids(path, parts[0], parts[1], line_numbers)
    pair_text = parts[2].tolist()
    rows, values = _parse_pairs(path, pair_text, line_numbers)
    classes, scores = _check_pairs(path, rows, values, line_numbers)
    return _Chunk(parts[0].to_numpy(dtype=object), line_numbers, rows, classes, scores)


def _concatenate(path: str, chunks: list[_Chunk]) -> Submission:
    """One Submission from its chunks; a video may appear only once per file."""
    if not chunks:
        empty = np.zeros(0, np.int32)
        return Submission(np.zeros(0, object), empty, empty, np.zeros(0, np.float64))
    video_ids = np.concatenate([chunk.video_ids for chunk in chunks])
    duplicated = pd.Index(video_ids).duplicated()
    if duplicated.any():
        index = int(np.argmax(duplicated))
        line_numbers = np.concatenate([chunk.line_numbers for chunk in chunks])
        _fail(path, line_numbers[index], f"video {video_ids[index]!r} appears twice")
    offsets = np.cumsum([0] + [chunk.video_ids.size for chunk in chunks[:-1]])
    rows = np.concatenate([chunk.rows + np.int32(offset) for chunk, offset in zip(chunks, offsets)])
    return Submission(video_ids=video_ids, rows=rows,
                      classes=np.concatenate([chunk.classes for chunk in chunks]),
                      scores=np.concatenate([chunk.scores for chunk in chunks]))


def _fail(path: str, line: int, reason: str) -> None:
    raise SubmissionFormatError(f"{path}:{line}: {reason}")


def _check_ids(path: str, ids: pd.Series, commas: pd.Series, line_numbers: np.ndarray) -> None:
    bad = ((commas != ",") | (ids.str.strip() == "")).to_numpy()
    if bad.any():
        _fail(path, line_numbers[np.argmax(bad)],
              "expected '<video id>,<label> <confidence> ...'")


def _parse_pairs(path: str, pair_text: list[str],
                 line_numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numbers of all lines at once, and the line (row) of each number."""
    if not pair_text:
        return np.zeros(0, np.int32), np.zeros(0, np.float64)
    joined = "\n".join(pair_text)
    data = np.frombuffer(joined.encode("utf-8"), np.uint8)
    blank = data <= ord(" ")  # whitespace (other control bytes fail parsing below)
    token_starts = np.flatnonzero(~blank & np.concatenate(([True], blank[:-1])))
    rows = np.searchsorted(np.flatnonzero(data == ord("\n")), token_starts)
    del data, blank, token_starts
    values = _numbers(joined)
    if values is None or values.size != rows.size:
        _locate_unparsable(path, pair_text, line_numbers)
    counts = np.bincount(rows, minlength=len(pair_text))
    odd = counts % 2 == 1
    if odd.any():
        _fail(path, line_numbers[np.argmax(odd)],
              "odd number of values: expected '<label> <confidence>' pairs")
    return rows[0::2].astype(np.int32), values


def _numbers(text: str) -> np.ndarray | None:
    """All whitespace-separated numbers of ``text``; None if one is not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.fromstring(text, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _locate_unparsable(path: str, pair_text: list[str], line_numbers: np.ndarray) -> None:
    """Error path only: finds the first line with a token that is not a number."""
    for text, line in zip(pair_text, line_numbers):
        for token in text.split():
            try:
                float(token)
            except ValueError:
                _fail(path, line, f"{token[:40]!r} is not a number")
    _fail(path, line_numbers[0] if len(line_numbers) else 1, "unreadable label/confidence pairs")


def _check_pairs(path: str, rows: np.ndarray, values: np.ndarray,
                 line_numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = values[0::2], values[1::2]
    bad_label = (labels < 0) | (labels > _MAX_CLASS) | (labels != np.floor(labels))
    if bad_label.any():
        index = np.argmax(bad_label)
        _fail(path, line_numbers[rows[index]],
              f"label {labels[index]:g} is not a class index (a non-negative integer)")
    if not np.isfinite(scores).all():
        _fail(path, line_numbers[rows[np.argmax(~np.isfinite(scores))]],
              "confidence is not a finite number")
    classes = labels.astype(np.int32)
    keys = np.sort((rows.astype(np.int64) << _CLASS_BITS) | classes)
    repeated = np.flatnonzero(keys[1:] == keys[:-1])
    if repeated.size:
        key = keys[repeated[0]]
        _fail(path, line_numbers[key >> _CLASS_BITS],
              f"label {key & _CLASS_MASK} appears twice")
    return classes, scores


# ---------------------------------------------------------------- averaging

class _Accumulator:
    """Sum of weighted scores per (video, class): sorted unique int64 keys."""

    def __init__(self):
        self.video_index = pd.Index([], dtype=object)
        self.presence = np.zeros(0, np.int64)   # files that contain each video
        self.keys = np.zeros(0, np.int64)
        self.sums = np.zeros(0, np.float64)

    def add(self, submission: Submission, weight: float) -> None:
        videos = self._register(submission.video_ids)
        keys = (videos[submission.rows] << _CLASS_BITS) | submission.classes
        keys = np.concatenate([self.keys, keys])
        sums = np.concatenate([self.sums, weight * submission.scores])
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.sums = np.bincount(inverse, weights=sums, minlength=self.keys.size)

    def _register(self, video_ids: np.ndarray) -> np.ndarray:
        """Global indexes of a file's videos, appending the new ones."""
        indexes = self.video_index.get_indexer(video_ids)
        new = indexes < 0
        if new.any():
            start = len(self.video_index)
            self.video_index = self.video_index.append(pd.Index(video_ids[new], dtype=object))
            indexes[new] = np.arange(start, start + int(new.sum()))
            self.presence = np.concatenate([self.presence, np.zeros(int(new.sum()), np.int64)])
        self.presence[indexes] += 1
        return indexes.astype(np.int64)


def _top_k_entries(accumulator: _Accumulator, top_k: int, total_weight: float):
    """Kept (class, score) entries grouped by video, and the count per video."""
    videos = accumulator.keys >> _CLASS_BITS
    classes = accumulator.keys & _CLASS_MASK
    scores = accumulator.sums / total_weight
    # Stable: equal scores keep the key order, i.e. lower class first.
    order = np.lexsort((-scores, videos))
    videos, classes, scores = videos[order], classes[order], scores[order]
    num_videos = len(accumulator.video_index)
    counts = np.bincount(videos, minlength=num_videos)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = np.arange(videos.size) - starts[videos] < top_k
    return classes[keep], scores[keep], np.minimum(counts, top_k)


def _runs(counts: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive videos with the same count."""
    if not counts.size:
        return []
    boundaries = (np.flatnonzero(np.diff(counts)) + 1).tolist()
    return list(zip([0] + boundaries, boundaries + [counts.size]))


def _write(output_path: str, video_ids: np.ndarray, classes: np.ndarray, scores: np.ndarray,
           counts: np.ndarray) -> None:
    """Writes videos in order, in chunks of consecutive videos with equal counts
    (``format_lines`` takes one k per call)."""
    offsets = np.concatenate([[0], np.cumsum(counts)])
    with SubmissionWriter(output_path) as writer:
        for run_start, run_stop in _runs(counts):
            width = int(counts[run_start])
            for start in range(run_start, run_stop, _WRITE_CHUNK):
                stop = min(start + _WRITE_CHUNK, run_stop)
                entries = slice(offsets[start], offsets[stop])
                writer.write(video_ids[start:stop],
                             classes[entries].reshape(stop - start, width),
                             scores[entries].reshape(stop - start, width))


def _check_weights(paths: Sequence[str], weights: Sequence[float] | None) -> np.ndarray:
    if not paths:
        raise ConfigError("no submission files to average")
    if weights is None:
        return np.ones(len(paths))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(paths),):
        raise ConfigError(f"{weights.size} weights for {len(paths)} submission files")
    if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(f"weights must be non-negative with a positive sum, got "
                         f"{weights.tolist()}")
    return weights


def average_submissions(paths: Sequence[str], weights: Sequence[float] | None,
                        output_path: str, top_k: int = 20) -> int:
    """Writes the weighted average of submission CSVs; returns the number of videos.

    Args:
        paths: input submissions (``VideoId,LabelConfidencePairs``).
        weights: one non-negative weight per file (None: equal weights). Scores
            are divided by the sum of the weights.
        output_path: written atomically (complete file or nothing).
        top_k: classes kept per video.
    """
    weights = _check_weights(paths, weights)
    if top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    accumulator = _Accumulator()
    for path, weight in zip(paths, weights):
        submission = read_submission(path)
        log.info("%s: %d videos, %d pairs, weight %g", path, submission.video_ids.size,
                 submission.classes.size, weight)
        accumulator.add(submission, weight)
    classes, scores, counts = _top_k_entries(accumulator, top_k, float(weights.sum()))
    missing = int((accumulator.presence < len(paths)).sum())
    if missing:
        log.warning("%d of %d videos are missing from at least one input; their scores "
                    "count 0 there", missing, counts.size)
    video_ids = accumulator.video_index.to_numpy(dtype=object)
    _write(output_path, video_ids, classes, scores, counts)
    log.info("wrote %d videos to %s", counts.size, output_path)
    return int(counts.size)
