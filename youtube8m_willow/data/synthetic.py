"""Synthetic data in the YouTube-8M record format, with learnable structure.

`write_synthetic_dataset` writes one draw of videos: frame-level shards
(`SequenceExample`s, one uint8 bytes entry per frame and feature) and
matching video-level shards (`Example`s whose float features are the
dequantized mean of the same frames), so every reader, model and script can
run end to end without the real data; `write_synthetic_splits` writes a
whole dataset: train, validate and test draws of one world, the test split
without labels (as the real test split).

The data (the classes, the difficulties ``"realistic"`` and ``"easy"``,
segment ratings, what the seed and the prefix fix) are described in
`synthetic_videos`, which draws them; `synthetic_records` encodes them as
records. This module writes the shards, and is the command line.

Command line (every split; ``--prefix=NAME`` writes that one alone):
    python -m youtube8m_willow.data.synthetic --out_dir=/tmp/yt8m --num_videos=2000 [--segments]
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: quiet TensorFlow's start-up before it is imported below
    from youtube8m_willow.startup import start_tool

    start_tool()

import argparse
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from youtube8m_willow.data.synthetic_records import chunk_records, feature_names
from youtube8m_willow.data.synthetic_videos import (DIFFICULTIES, Difficulty, draw_noise_bank,
                                                    draw_videos, frames_for, make_world,
                                                    prefix_rng)
from youtube8m_willow.startup import HelpFormatter

__all__ = ["DIFFICULTIES", "SPLITS", "Difficulty", "main", "write_synthetic_dataset",
           "write_synthetic_splits"]

_CHUNK_VIDEOS = 64  # videos quantized at once (bounds memory)


def write_synthetic_dataset(out_dir: str, *, num_videos: int, num_classes: int = 100,
                            num_shards: int = 2, frame_level: bool = True,
                            video_level: bool = True, with_labels: bool = True,
                            id_key: str = "id", feature_sizes: Sequence[int] = (1024, 128),
                            max_frames: int = 300, min_frames: int = 10, seed: int = 0,
                            prefix: str = "train", difficulty: str = "realistic",
                            segments: bool = False) -> dict[str, str]:
    """Writes synthetic YouTube-8M shards and returns their glob patterns.

    Frame-level shards go to `<out_dir>/frame/<prefix>NNNN.tfrecord`
    (feature lists `rgb`, `audio`), video-level shards to
    `<out_dir>/video/<prefix>NNNN.tfrecord` (floats `mean_rgb`, `mean_audio`).
    With two feature sizes the names are rgb/audio; with other counts the names
    are `feature0`, `feature1`, ... (and `mean_feature0`, ...).

    `difficulty` is "realistic" (noisy labels, confusable classes) or "easy"
    (see `synthetic_videos`); the train and validate draws of one dataset
    need the same seed and difficulty. Unlabeled draws (`with_labels=False`)
    keep the `labels` key with an empty list.

    `segments=True` gives labels segment-level content and, with labels,
    writes segment ratings into the frame-level records; without labels, the
    frame-level records hold only the id and the frames (2019 test records;
    see `synthetic_records`).

    Returns:
        {"frame": pattern, "video": pattern} for the kinds written.
    """
    _check_args(num_videos, num_classes, num_shards, min_frames, max_frames, feature_sizes)
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; valid: {sorted(DIFFICULTIES)}")
    knobs = DIFFICULTIES[difficulty]
    frame_names, video_names = feature_names(len(feature_sizes))
    feature_dim = int(sum(feature_sizes))
    world = make_world(seed, num_classes, feature_dim, knobs)
    rng = prefix_rng(seed, prefix)  # draws the videos, the noise bank, the frames: in this order
    videos = draw_videos(rng, world, num_videos, prefix, min_frames, max_frames, knobs, segments)
    noise_bank = draw_noise_bank(rng, feature_dim, knobs)

    kinds = [k for k, on in (("frame", frame_level), ("video", video_level)) if on]
    writers = {kind: _open_shards(out_dir, kind, prefix, num_shards) for kind in kinds}
    shard_sizes = [len(part) for part in np.array_split(np.arange(num_videos), num_shards)]
    shard_of = np.repeat(np.arange(num_shards), shard_sizes)
    try:
        for start in range(0, num_videos, _CHUNK_VIDEOS):
            chunk = slice(start, min(start + _CHUNK_VIDEOS, num_videos))
            frames = frames_for(rng, world, videos, chunk, noise_bank, knobs)
            records = chunk_records(videos, chunk, frames, kinds, id_key, with_labels,
                                    frame_names, video_names, tuple(feature_sizes))
            for kind, per_video in records.items():
                for v, record in zip(range(chunk.start, chunk.stop), per_video):
                    writers[kind][shard_of[v]].write(record)
    finally:
        for shard_writers in writers.values():
            for writer in shard_writers:
                writer.close()
    return {kind: os.path.join(out_dir, kind, f"{prefix}*.tfrecord") for kind in kinds}


SPLITS = ("train", "validate", "test")  # the test split is written without labels


def write_synthetic_splits(out_dir: str, *, num_videos: int, num_eval_videos: int,
                           num_shards: int = 2, num_eval_shards: int | None = None,
                           **options) -> dict[str, dict[str, str]]:
    """Writes a whole dataset: ``num_videos`` train videos, and
    ``num_eval_videos`` validate and as many test videos (the test split
    without labels, as the real one), independent draws of one world.
    ``num_eval_shards`` (default: ``num_shards``) shards the validate and
    test splits; ``options`` are `write_synthetic_dataset`'s (not
    ``prefix`` or ``with_labels``, which the split sets).

    Returns:
        ``{split: {"frame": pattern, "video": pattern}}`` for each of `SPLITS`.
    """
    eval_shards = num_shards if num_eval_shards is None else num_eval_shards
    sizes = {"train": (num_videos, num_shards), "validate": (num_eval_videos, eval_shards),
             "test": (num_eval_videos, eval_shards)}
    return {split: write_synthetic_dataset(out_dir, num_videos=videos, num_shards=shards,
                                           prefix=split, with_labels=split != "test",
                                           **options)
            for split, (videos, shards) in sizes.items()}


def _open_shards(out_dir: str, kind: str, prefix: str, num_shards: int) -> list[tf.io.TFRecordWriter]:
    os.makedirs(os.path.join(out_dir, kind), exist_ok=True)
    return [tf.io.TFRecordWriter(os.path.join(out_dir, kind, f"{prefix}{i:04d}.tfrecord"))
            for i in range(num_shards)]


def _check_args(num_videos: int, num_classes: int, num_shards: int, min_frames: int,
                max_frames: int, feature_sizes: Sequence[int]) -> None:
    if num_videos < 0 or num_classes < 1 or num_shards < 1:
        raise ValueError("need num_videos >= 0, num_classes >= 1 and num_shards >= 1")
    if not 0 <= min_frames <= max_frames:
        raise ValueError(f"need 0 <= min_frames ({min_frames}) <= max_frames ({max_frames})")
    if not feature_sizes or min(feature_sizes) < 1:
        raise ValueError(f"feature_sizes must be positive, got {tuple(feature_sizes)}")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m youtube8m_willow.data.synthetic", formatter_class=HelpFormatter,
        description="Write synthetic YouTube-8M-format shards: the train, validate and test "
                    "splits (test without labels), frame-level under OUT_DIR/frame and "
                    "video-level under OUT_DIR/video.")
    parser.add_argument("--out_dir", required=True, help="folder to write the shards into")
    parser.add_argument("--num_videos", type=int, default=1000,
                        help="videos of the train split (or of the --prefix split)")
    parser.add_argument("--num_eval_videos", type=int, default=250,
                        help="videos of the validate split and of the test split, each")
    parser.add_argument("--num_classes", type=int, default=100, help="classes of the world")
    parser.add_argument("--num_shards", type=int, default=2, help="files per split and kind")
    parser.add_argument("--id_key", default="id", choices=("id", "video_id"),
                        help="the video id's key: id (2018+) or video_id (2017)")
    parser.add_argument("--max_frames", type=int, default=300, help="most frames of a video")
    parser.add_argument("--min_frames", type=int, default=10, help="fewest frames of a video")
    parser.add_argument("--seed", type=int, default=0,
                        help="the world: class prototypes and frequencies")
    parser.add_argument("--prefix", default=None,
                        help="write one split of this name only (e.g. train) instead of all "
                             f"of {', '.join(SPLITS)}")
    parser.add_argument("--difficulty", default="realistic", choices=sorted(DIFFICULTIES),
                        help="realistic: noisy labels, confusable classes; easy: separable")
    parser.add_argument("--no_labels", action="store_true",
                        help="with --prefix: write test shards (empty label lists)")
    parser.add_argument("--segments", action="store_true",
                        help="segment-level content; rated segments in labeled frame-level records")
    parser.add_argument("--skip_frame_level", action="store_true",
                        help="write no frame-level shards")
    parser.add_argument("--skip_video_level", action="store_true",
                        help="write no video-level shards")
    args = parser.parse_args(argv)
    if args.no_labels and args.prefix is None:
        parser.error("--no_labels needs --prefix (without it, the test split has no labels)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    options = dict(num_classes=args.num_classes, num_shards=args.num_shards,
                   frame_level=not args.skip_frame_level,
                   video_level=not args.skip_video_level, id_key=args.id_key,
                   max_frames=args.max_frames, min_frames=args.min_frames, seed=args.seed,
                   difficulty=args.difficulty, segments=args.segments)
    if args.prefix is None:
        splits = write_synthetic_splits(args.out_dir, num_videos=args.num_videos,
                                        num_eval_videos=args.num_eval_videos, **options)
    else:
        splits = {args.prefix: write_synthetic_dataset(
            args.out_dir, num_videos=args.num_videos, with_labels=not args.no_labels,
            prefix=args.prefix, **options)}
    for split, patterns in splits.items():
        for kind, pattern in patterns.items():
            print(f"{split} {kind}: {pattern}")


if __name__ == "__main__":
    main()
