"""Synthetic videos (`synthetic_videos`) as YouTube-8M records.

A frame-level record is a `SequenceExample`: the video's id and labels in its
context and one uint8 bytes entry per frame and feature in its feature
lists; a video-level record is an `Example` whose float features are the
dequantized mean of the same frames. With segments, a labeled frame-level
record also carries the video's ratings (``segment_start_times``,
``segment_end_times`` = start + 5, ``segment_labels``, ``segment_scores``),
and an unlabeled one (a 2019 test record) only its id and frames. Unlabeled
records otherwise keep the ``labels`` key with an empty list (readers treat a
missing key the same way).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from youtube8m_willow.data.segments import SEGMENT_FRAMES
from youtube8m_willow.data.synthetic_videos import QUANT_BIAS, QUANT_SCALE, Videos


def _bytes_feature(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int64_feature(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))


def _float_feature(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))


def _context(video_id: str, labels: np.ndarray, id_key: str,
             with_labels: bool) -> dict[str, tf.train.Feature]:
    label_values = labels if with_labels else np.zeros([0], np.int64)
    return {id_key: _bytes_feature([video_id.encode()]), "labels": _int64_feature(label_values)}


def _rating_context(ratings: np.ndarray) -> dict[str, tf.train.Feature]:
    """The 2019 segment ratings of one video ([R, 3]: start, class, score)."""
    starts, classes, scores = ratings.T
    return {"segment_start_times": _int64_feature(starts),
            "segment_end_times": _int64_feature(starts + SEGMENT_FRAMES),
            "segment_labels": _int64_feature(classes),
            "segment_scores": _float_feature(scores.astype(np.float32))}


def _varint(value: int) -> bytes:
    """Protocol-buffer base-128 varint encoding of a non-negative int."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _feature_list_bytes(frames: np.ndarray) -> bytes:
    """Serialized `tf.train.FeatureList` with one bytes `Feature` per row of `frames`.

    Every frame has the same size, so every entry has the same wire header
    (FeatureList.feature -> Feature.bytes_list -> BytesList.value, all field 1,
    length-delimited): the list is built with one numpy copy instead of one
    Python proto object per frame.
    """
    size = frames.shape[1]
    value_header = b"\x0a" + _varint(size)
    feature_header = b"\x0a" + _varint(len(value_header) + size)
    feature_len = len(feature_header) + len(value_header) + size
    header = np.frombuffer(b"\x0a" + _varint(feature_len) + feature_header + value_header, np.uint8)
    rows = np.empty((frames.shape[0], header.size + size), np.uint8)
    rows[:, :header.size] = header
    rows[:, header.size:] = frames
    return rows.tobytes()


def _sequence_example(context: dict[str, tf.train.Feature], frames: np.ndarray,
                      names: Sequence[str], sizes: Sequence[int]) -> bytes:
    example = tf.train.SequenceExample()
    for key, feature in context.items():
        example.context.feature[key].CopyFrom(feature)
    start = 0
    for name, size in zip(names, sizes):
        feature_list = example.feature_lists.feature_list[name]  # exists even with 0 frames
        feature_list.MergeFromString(_feature_list_bytes(frames[:, start:start + size]))
        start += size
    return example.SerializeToString()


def _example(context: dict[str, tf.train.Feature], mean: np.ndarray,
             names: Sequence[str], sizes: Sequence[int]) -> bytes:
    features = dict(context)
    start = 0
    for name, size in zip(names, sizes):
        features[name] = _float_feature(mean[start:start + size])
        start += size
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _dequantized_means(frames: np.ndarray, num_frames: np.ndarray) -> np.ndarray:
    """Per-video mean of the dequantized frames ([V, D] float32; 0 for 0-frame videos)."""
    offsets = np.concatenate([[0], np.cumsum(num_frames)])
    sums = np.stack([frames[offsets[v]:offsets[v + 1]].sum(axis=0, dtype=np.int64)
                     for v in range(len(num_frames))]) if len(num_frames) else np.zeros((0, frames.shape[1]))
    means = sums / np.maximum(num_frames, 1)[:, None] * QUANT_SCALE + QUANT_BIAS
    means[num_frames == 0] = 0.0
    return means.astype(np.float32)


def chunk_records(videos: Videos, chunk: slice, frames: np.ndarray, kinds: Sequence[str],
                  id_key: str, with_labels: bool, frame_names: Sequence[str],
                  video_names: Sequence[str], sizes: Sequence[int]) -> dict[str, list[bytes]]:
    """Serialized records of a chunk of videos, per kind ("frame", "video")."""
    counts = videos.num_frames[chunk]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    means = _dequantized_means(frames, counts) if "video" in kinds else None
    records: dict[str, list[bytes]] = {kind: [] for kind in kinds}
    for j, v in enumerate(range(chunk.start, chunk.stop)):
        context = _context(videos.ids[v], videos.labels[v], id_key, with_labels)
        if "frame" in kinds:
            video_frames = frames[offsets[j]:offsets[j + 1]]
            records["frame"].append(_sequence_example(
                _frame_context(context, videos, v, id_key, with_labels), video_frames,
                frame_names, sizes))
        if "video" in kinds:
            records["video"].append(_example(context, means[j], video_names, sizes))
    return records


def _frame_context(context: dict[str, tf.train.Feature], videos: Videos, v: int, id_key: str,
                   with_labels: bool) -> dict[str, tf.train.Feature]:
    """A frame-level record's context: with segments, plus the ratings
    (labeled draws) or only the id (test draws)."""
    if videos.segments is None:
        return context
    if not with_labels:
        return {id_key: context[id_key]}
    return {**context, **_rating_context(videos.segments.ratings[v])}


def feature_names(count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Frame-level and video-level feature names for `count` features."""
    frame = ("rgb", "audio") if count == 2 else tuple(f"feature{i}" for i in range(count))
    return frame, tuple(f"mean_{name}" for name in frame)
