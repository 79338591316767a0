"""The Kaggle CSV of SPEC section 10.

``VideoId,LabelConfidencePairs`` then one line per video:
``<id>,<label> <confidence> ...``, labels by confidence descending,
confidence as ``%f``. The file is written under a temporary name and renamed
only when complete, so a crash never leaves a partial file under the output
name.
"""

from __future__ import annotations

import numpy as np

from youtube8m_willow.atomic import AtomicFile

HEADER = "VideoId,LabelConfidencePairs"


def format_lines(video_ids, class_indexes, scores) -> list[str]:
    """One CSV line per video from its top-k classes and scores."""
    class_indexes = np.asarray(class_indexes)
    scores = np.asarray(scores, dtype=np.float64)
    k = class_indexes.shape[1]
    row_format = "%s," + " ".join(["%d %f"] * k)
    pairs = np.empty((class_indexes.shape[0], 2 * k), dtype=object)
    pairs[:, 0::2] = class_indexes
    pairs[:, 1::2] = scores
    return [row_format % (_text(video_id), *row) for video_id, row in zip(video_ids, pairs)]


def _text(video_id) -> str:
    return video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)


class AtomicTextFile(AtomicFile):
    """A text file renamed to ``path`` only by a clean ``close()``; ``abort()``
    (or an exception inside ``with``) removes it (``youtube8m_willow.atomic``)."""

    def __init__(self, path: str):
        super().__init__(path, "w")

    def write_text(self, text: str) -> None:
        self.handle.write(text)


class SubmissionWriter(AtomicTextFile):
    """Writes a submission atomically (see ``AtomicTextFile``)."""

    def __init__(self, path: str):
        super().__init__(path)
        self.write_text(HEADER + "\n")
        self.rows = 0

    def write(self, video_ids, class_indexes, scores) -> None:
        lines = format_lines(video_ids, class_indexes, scores)
        if lines:
            self.write_text("\n".join(lines) + "\n")
        self.rows += len(lines)
