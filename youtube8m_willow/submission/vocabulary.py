"""Class names for looking at predictions.

Two published formats are recognized from their header:
- 2018 and later ``vocabulary.csv``: ``Index,TrainVideoCount,KnowledgeGraphId,
  Name,...`` (a class without a Name is shown by its KnowledgeGraphId);
- 2017 ``label_names.csv``: ``label_id,label_name``.

Command line (prints the first videos of a submission with names):
    python -m youtube8m_willow.submission.vocabulary \\
        --vocabulary_file=vocabulary.csv --submission=predictions.csv --num_videos=5
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from youtube8m_willow.errors import ConfigError, VocabularyError
from youtube8m_willow.startup import HelpFormatter, start_tool

if TYPE_CHECKING:
    import pandas as pd

# (id column, name column, fallback name column) per format.
_FORMATS = {
    "vocabulary.csv (2018+)": ("Index", "Name", "KnowledgeGraphId"),
    "label_names.csv (2017)": ("label_id", "label_name", None),
}


def load_vocabulary(path: str) -> dict[int, str]:
    """``{class index: name}`` from a 2018 vocabulary.csv or a 2017 label_names.csv."""
    table = _read_table(path)
    for id_column, name_column, fallback in _FORMATS.values():
        if {id_column, name_column} <= set(table.columns):
            return _to_dict(path, table, id_column, name_column, fallback)
    expected = " or ".join(f"{name} with columns {ids},{names}"
                           for name, (ids, names, _) in _FORMATS.items())
    raise VocabularyError(f"{path}: not a vocabulary file: expected {expected}; "
                          f"found columns {','.join(map(str, table.columns[:6]))}")


def _read_table(path: str) -> pd.DataFrame:
    import pandas as pd  # deferred: prediction imports this module, and needs no pandas
    import tensorflow as tf  # deferred: gs:// paths; keeps `import` light

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no such vocabulary file")
    with tf.io.gfile.GFile(path) as handle:
        text = handle.read()
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        first = str(error).strip().split("\n")[0]
        raise VocabularyError(f"{path}: not a readable CSV vocabulary file ({first})") from None


def _to_dict(path: str, table: pd.DataFrame, id_column: str, name_column: str,
             fallback: str | None) -> dict[int, str]:
    import pandas as pd

    ids = pd.to_numeric(table[id_column].str.strip(), errors="coerce")
    if ids.isna().any():
        row = int(np.argmax(ids.isna().to_numpy()))
        raise VocabularyError(f"{path}:{row + 2}: {id_column} {table[id_column].iloc[row]!r} "
                              "is not a class index")
    names = table[name_column].str.strip()
    if fallback in table.columns:
        names = names.where(names != "", table[fallback].str.strip())
    return dict(zip(ids.astype(np.int64).tolist(), names.tolist()))


def class_name(vocabulary: dict[int, str], label: int) -> str:
    """The class's name, or ``?`` when the vocabulary lacks it."""
    return vocabulary.get(int(label)) or "?"


def describe_predictions(video_id, classes: Sequence[int], scores: Sequence[float],
                         vocabulary: dict[int, str], top_n: int = 5) -> str:
    """One line: the video's ``top_n`` classes by score, with names, e.g.
    ``v001: Game (0) 0.912, Video game (1) 0.504``."""
    if isinstance(video_id, bytes):
        video_id = video_id.decode("utf-8")
    classes, scores = np.asarray(classes), np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[:top_n]
    pairs = ", ".join(f"{class_name(vocabulary, classes[i])} ({int(classes[i])}) "
                      f"{scores[i]:.3f}" for i in order)
    return f"{video_id}: {pairs}"


def describe_batch(video_ids, classes, scores, vocabulary: dict[int, str], max_videos: int,
                   top_n: int = 5) -> list[str]:
    """``describe_predictions`` for the first ``max_videos`` rows of a batch."""
    count = max(0, min(max_videos, len(video_ids)))
    return [describe_predictions(video_ids[i], classes[i], scores[i], vocabulary, top_n)
            for i in range(count)]


def first_videos(path: str, num_videos: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(video_id, classes, scores)`` of a submission's first videos (reads no more)."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no such submission file")
    rows = []
    with tf.io.gfile.GFile(path) as handle:
        handle.readline()
        for line_number, line in enumerate(handle, start=2):
            if len(rows) >= num_videos:
                break
            if line.strip():
                rows.append(_parse_line(path, line_number, line))
    return rows


def _parse_line(path: str, line_number: int, line: str):
    video_id, _, pairs = line.strip().partition(",")
    try:
        values = np.array(pairs.split(), dtype=np.float64).reshape(-1, 2)
    except ValueError:
        raise ConfigError(f"{path}:{line_number}: expected '<video id>,<label> <confidence> "
                         "...'") from None
    return video_id, values[:, 0].astype(np.int64), values[:, 1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m youtube8m_willow.submission.vocabulary",
                                     description="Print a submission's first videos with "
                                                 "class names.", formatter_class=HelpFormatter)
    parser.add_argument("--vocabulary_file", required=True,
                        help="vocabulary.csv (2018+) or label_names.csv (2017)")
    parser.add_argument("--submission", required=True, help="submission CSV")
    parser.add_argument("--num_videos", type=int, default=5, help="videos shown")
    parser.add_argument("--top_n", type=int, default=5, help="classes shown per video")
    args = parser.parse_args(argv)
    start_tool()  # the files are read through TensorFlow (gs:// paths): quietly
    try:
        vocabulary = load_vocabulary(args.vocabulary_file)
        rows = first_videos(args.submission, args.num_videos)
    except (ValueError, FileNotFoundError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    for video_id, classes, scores in rows:
        print(describe_predictions(video_id, classes, scores, vocabulary, args.top_n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
