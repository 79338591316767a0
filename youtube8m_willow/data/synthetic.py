"""Synthetic data in the YouTube-8M record format, with learnable structure.

`write_synthetic_dataset` writes frame-level shards (`SequenceExample`s with
one uint8 bytes entry per frame and feature) and matching video-level shards
(`Example`s whose float features are the dequantized mean of the same frames),
so every reader, model and script can run end to end without the real data.

The structure a model can learn: each class owns a prototype direction over
the concatenated feature dimensions; a video draws its labels from a
long-tailed (Zipf-like) class distribution, and each of its frames mixes its
labels' prototypes (their sum, with one label drawn per frame weighted up)
with per-video and per-frame noise, quantized to uint8 over the original's
dequantization range [-2, 2]. Frame counts are uniform in [min_frames,
max_frames].

`difficulty` chooses how hard that structure is to learn:

* ``"realistic"`` (the default): classes come in topics of a few classes whose
  prototypes share most of their direction (siblings are easily confused), a
  video's labels tend to come from one topic, the class frequencies fall off
  steeply, a video has 1-5 labels, the per-video nuisance is as large as the
  class signal, part of each class's appearance changes sign from frame to
  frame (visible to frame-level pooling, averaged away in the video-level
  mean), and the written labels are noisy: each true label but a video's
  first is missing with probability 0.15 and a video gets a spurious label
  with probability 0.15. A trained model ends well below a perfect
  score (the demo's Gated NetVLAD: see README), and models differ.
* ``"easy"``: well-separated independent classes, 1-4 clean labels; a small
  model ranks the labels almost perfectly after a few hundred steps. For
  tests that need a model to learn within a few steps.

Segment ratings (the 2019 challenge, ``segments=True``): a video's true
labels are present only in some of its 5-frame segments (each in about half,
at least one), and only there do its frames carry those labels' prototypes;
a segment with none of them is background and noise. Frame-level records of
labeled draws then carry a few rated segments (``segment_start_times``,
multiples of 5, full segments only; ``segment_end_times`` = start + 5;
``segment_labels``; ``segment_scores`` 1.0 where the class is present in the
segment, 0.0 where it is rated but absent). Unlabeled draws
(``with_labels=False``) are 2019 test records: ``id`` and frames only.

Determinism: `seed` fixes the class prototypes and frequencies (the "world");
`prefix` selects an independent draw of videos from that world, so
`prefix="train"` and `prefix="validate"` with the same seed share classes but
not videos. Test shards (`with_labels=False`) keep the `labels` key with an
empty list (readers treat a missing key the same way).

`write_synthetic_splits` writes a whole dataset: train, validate and test
draws of one world, the test split without labels (as the real test split).

Command line (every split; ``--prefix=NAME`` writes that one alone):
    python -m youtube8m_willow.data.synthetic --out_dir=/tmp/yt8m --num_videos=2000 [--segments]
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: quiet TensorFlow's start-up before it is imported below
    from youtube8m_willow.startup import start_tool

    start_tool()

import argparse
import dataclasses
import os
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from youtube8m_willow.data.segments import SEGMENT_FRAMES
from youtube8m_willow.startup import HelpFormatter

# The original's quantization range and its dequantization affine map.
_QUANT_SCALE = 4.0 / 255.0
_QUANT_BIAS = 4.0 / 512.0 - 2.0

_SEGMENT_PRESENCE = 0.5  # P(a true label is present in a given 5-frame segment)
_MAX_RATED_SEGMENTS = 5  # rated segments per video: 1..5 (at most its full segments)
_EXTRA_RATING = 0.3      # P(a rated segment is rated for another true label too)
_NOISE_BANK_SIZE = 512   # per-frame noise is drawn from a bank of this many frames
_CHUNK_VIDEOS = 64  # videos quantized at once (bounds memory)


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """The knobs of the generated structure (dequantized units per component).

    prototype_scale: size of a class prototype; background_scale: per-video
    nuisance offset shared by its frames; frame_noise: per-frame noise;
    frame_emphasis: weight of the one label prototype a frame stresses;
    label_count_probs: P(1, 2, ... true labels); zipf_exponent: class
    frequency ~ rank ** -zipf_exponent; topic_size / topic_share: classes per
    topic and the share of a prototype's variance common to its topic;
    topic_bonus: log-odds boost of a video's own topic when drawing labels;
    frame_variation: size of the per-class appearance whose sign changes per
    frame; missing_rate / spurious_rate: label noise of the written labels.
    """

    prototype_scale: float
    background_scale: float
    frame_noise: float
    frame_emphasis: float
    label_count_probs: tuple[float, ...]
    zipf_exponent: float
    topic_size: int = 1
    topic_share: float = 0.0
    topic_bonus: float = 0.0
    frame_variation: float = 0.0
    missing_rate: float = 0.0
    spurious_rate: float = 0.0


DIFFICULTIES = {
    "easy": Difficulty(prototype_scale=0.6, background_scale=0.2, frame_noise=0.35,
                       frame_emphasis=0.5, label_count_probs=(0.4, 0.3, 0.2, 0.1),
                       zipf_exponent=0.7),
    "realistic": Difficulty(prototype_scale=0.018, background_scale=0.15, frame_noise=0.45,
                            frame_emphasis=0.5, label_count_probs=(0.3, 0.3, 0.2, 0.12, 0.08),
                            zipf_exponent=1.0, topic_size=4, topic_share=0.6, topic_bonus=2.5,
                            frame_variation=0.27, missing_rate=0.15, spurious_rate=0.15),
}


@dataclasses.dataclass(frozen=True)
class _World:
    """Class structure shared by all draws with the same seed."""

    prototypes: np.ndarray   # [num_classes, feature_dim] float32
    variations: np.ndarray   # [num_classes, feature_dim] float32, sign flips per frame
    class_probs: np.ndarray  # [num_classes] float64, sums to 1
    topics: np.ndarray       # [num_classes] int64, the topic of each class


@dataclasses.dataclass(frozen=True)
class _Segments:
    """Which true labels each 5-frame segment shows, and the ratings written."""

    offsets: np.ndarray        # [V + 1] int64: first segment of each video in `present`
    present: np.ndarray        # [sum(ceil(num_frames / 5)), S] bool: label slot shown
    ratings: list[np.ndarray]  # per video [R, 3] int64: (start time, class, score 0/1)


@dataclasses.dataclass(frozen=True)
class _Videos:
    """One draw of videos: ids, written labels, content, frame counts, centers."""

    ids: list[str]
    labels: list[np.ndarray]     # written labels (noisy), each int64 [k]
    slots: np.ndarray            # [V, S] int64: true labels, the last repeated to fill S
    label_counts: np.ndarray     # [V] int64: number of true labels
    num_frames: np.ndarray       # [V] int64
    centers: np.ndarray          # [V, feature_dim] float32 (dequantized units)
    segments: _Segments | None = None  # segment-level content and ratings


def _make_world(seed: int, num_classes: int, feature_dim: int, knobs: Difficulty) -> _World:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    own = rng.standard_normal((num_classes, feature_dim)).astype(np.float32)
    # Topics group classes of spread-out frequency ranks (not the top ones together).
    topics = rng.permutation(np.arange(num_classes) // knobs.topic_size)
    shared = rng.standard_normal((int(topics.max()) + 1, feature_dim)).astype(np.float32)
    protos = (np.sqrt(1.0 - knobs.topic_share) * own + np.sqrt(knobs.topic_share) * shared[topics])
    protos *= knobs.prototype_scale
    variations = rng.standard_normal((num_classes, feature_dim)).astype(np.float32)
    variations *= knobs.frame_variation
    weights = 1.0 / np.arange(1, num_classes + 1) ** knobs.zipf_exponent
    return _World(prototypes=protos, variations=variations, class_probs=weights / weights.sum(),
                  topics=topics)


def _prefix_rng(seed: int, prefix: str) -> np.random.Generator:
    """A generator that depends on the seed and (stably) on the prefix."""
    return np.random.default_rng(np.random.SeedSequence([seed, 1, zlib.crc32(prefix.encode())]))


def _true_labels(rng: np.random.Generator, world: _World, num_videos: int,
                 knobs: Difficulty) -> tuple[np.ndarray, np.ndarray]:
    """Distinct labels per video by frequency, favoring one topic per video
    (Gumbel top-k, vectorized). Returns ranked labels [V, max_k] and counts [V]."""
    num_classes = world.class_probs.size
    max_k = min(len(knobs.label_count_probs), num_classes)
    probs = np.asarray(knobs.label_count_probs[:max_k])
    counts = rng.choice(np.arange(1, max_k + 1), size=num_videos, p=probs / probs.sum())
    keys = np.log(world.class_probs)[None, :] + rng.gumbel(size=(num_videos, num_classes))
    if knobs.topic_bonus:
        topic = world.topics[np.argmax(keys, axis=1)]  # the topic of the first label
        keys = keys + knobs.topic_bonus * (world.topics[None, :] == topic[:, None])
    return np.argsort(-keys, axis=1)[:, :max_k], counts


def _written_labels(rng: np.random.Generator, world: _World, ranked: np.ndarray,
                    counts: np.ndarray, knobs: Difficulty) -> list[np.ndarray]:
    """The labels written to the records: the true ones, each missing with
    probability missing_rate (the first never), plus a spurious one with
    probability spurious_rate (drawn by frequency). Sorted, distinct."""
    num_videos, num_classes = len(counts), world.class_probs.size
    keep = np.arange(ranked.shape[1])[None, :] < counts[:, None]
    keep &= rng.random(ranked.shape) >= knobs.missing_rate
    keep[:, 0] = counts > 0
    membership = np.zeros((num_videos, num_classes), bool)
    membership[np.nonzero(keep)[0], ranked[keep]] = True
    spurious = np.argmax(np.log(world.class_probs)[None, :]
                         + rng.gumbel(size=(num_videos, num_classes)), axis=1)
    add = rng.random(num_videos) < knobs.spurious_rate
    membership[np.arange(num_videos)[add], spurious[add]] = True
    rows, classes = np.nonzero(membership)
    return np.split(classes.astype(np.int64), np.cumsum(np.bincount(rows, minlength=num_videos))[:-1])


def _draw_presence(rng: np.random.Generator, num_frames: np.ndarray, counts: np.ndarray,
                   width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per 5-frame segment (the trailing partial one included), which of its
    video's true label slots it shows: each with probability
    _SEGMENT_PRESENCE, and each label in at least one (full, if any) segment.
    Returns segment offsets [V + 1] and presence [segments, width]."""
    per_video = -(-num_frames // SEGMENT_FRAMES)
    offsets = np.concatenate([[0], np.cumsum(per_video)]).astype(np.int64)
    real = np.arange(width)[None, :] < counts[:, None]
    present = (rng.random((int(offsets[-1]), width)) < _SEGMENT_PRESENCE) & np.repeat(
        real, per_video, axis=0)
    full = np.maximum(num_frames // SEGMENT_FRAMES, 1)
    forced = offsets[:-1, None] + (rng.random(real.shape) * full[:, None]).astype(np.int64)
    real &= (per_video > 0)[:, None]
    present[forced[real], np.nonzero(real)[1]] = True
    return offsets, present


def _draw_ratings(rng: np.random.Generator, slots: np.ndarray, counts: np.ndarray,
                  num_frames: np.ndarray, offsets: np.ndarray,
                  present: np.ndarray) -> list[np.ndarray]:
    """Rated segments: per video 1.._MAX_RATED_SEGMENTS distinct full segments
    (in random order), each rated for one of its true labels and, each with
    probability _EXTRA_RATING, for its others; score 1 where the label is
    present in the segment, 0 where not. Per video [R, 3] (start, class, score)."""
    num_videos, width = slots.shape
    full = num_frames // SEGMENT_FRAMES
    owner = np.repeat(np.arange(num_videos), full)
    index = np.arange(owner.size) - np.repeat(np.cumsum(full) - full, full)
    order = np.lexsort((rng.random(owner.size), owner))  # by video, shuffled within
    wanted = np.minimum(full, rng.integers(1, _MAX_RATED_SEGMENTS + 1, size=num_videos))
    chosen = order[index < wanted[owner]]
    video, segment = owner[chosen], index[chosen]
    primary = (rng.random(video.size) * counts[video]).astype(np.int64)
    columns = np.arange(width)[None, :]
    rated = (columns < counts[video][:, None]) & (
        (columns == primary[:, None]) | (rng.random((video.size, width)) < _EXTRA_RATING))
    row, slot = np.nonzero(rated)
    rated_video, rated_segment = video[row], segment[row]
    table = np.stack([rated_segment * SEGMENT_FRAMES, slots[rated_video, slot],
                      present[offsets[rated_video] + rated_segment, slot]], axis=1)
    per_video = np.bincount(rated_video, minlength=num_videos)
    return np.split(table.astype(np.int64), np.cumsum(per_video)[:-1])


def _draw_segments(rng: np.random.Generator, slots: np.ndarray, counts: np.ndarray,
                   num_frames: np.ndarray) -> _Segments:
    offsets, present = _draw_presence(rng, num_frames, counts, slots.shape[1])
    ratings = _draw_ratings(rng, slots, counts, num_frames, offsets, present)
    return _Segments(offsets=offsets, present=present, ratings=ratings)


def _draw_videos(rng: np.random.Generator, world: _World, num_videos: int, prefix: str,
                 min_frames: int, max_frames: int, knobs: Difficulty,
                 segments: bool = False) -> _Videos:
    ranked, counts = _true_labels(rng, world, num_videos, knobs)
    labels = _written_labels(rng, world, ranked, counts, knobs)
    slots = ranked[np.arange(num_videos)[:, None],
                   np.minimum(np.arange(ranked.shape[1])[None, :], counts[:, None] - 1)]
    feature_dim = world.prototypes.shape[1]
    membership = np.zeros((num_videos, world.class_probs.size), np.float32)
    true = np.arange(ranked.shape[1])[None, :] < counts[:, None]
    membership[np.nonzero(true)[0], ranked[true]] = 1.0
    background = rng.standard_normal((num_videos, feature_dim)).astype(np.float32)
    centers = knobs.background_scale * background
    if not segments:  # with segments, labels show only in their segments (_frames_for)
        centers = membership @ world.prototypes + centers
    num_frames = rng.integers(min_frames, max_frames + 1, size=num_videos)
    ids = [f"{prefix}{i:06d}" for i in range(num_videos)]
    return _Videos(ids=ids, labels=labels, slots=slots, label_counts=counts,
                   num_frames=num_frames, centers=centers,
                   segments=_draw_segments(rng, slots, counts, num_frames) if segments else None)


def _frames_for(rng: np.random.Generator, world: _World, videos: _Videos, chunk: slice,
                noise_bank: np.ndarray, knobs: Difficulty) -> np.ndarray:
    """Quantized frames of a chunk of videos, concatenated: [sum(num_frames), D] uint8.

    A frame is its video's center (sum of its true labels' prototypes plus a
    background; with segments, the labels its segment shows), plus one of
    those labels' prototypes again (drawn per frame, so the content changes
    over time) and that label's variation with a random sign, plus noise.
    Works in quantized units (int16): per frame, a few gathers and adds.
    """
    num_frames = videos.num_frames[chunk]
    slots = videos.slots[chunk]
    owner = np.repeat(np.arange(len(num_frames)), num_frames)
    if videos.segments is None:
        centers_q = np.rint((videos.centers[chunk] - _QUANT_BIAS) / _QUANT_SCALE).astype(np.int16)
        frames = centers_q[owner]
        slot = (rng.random(owner.size) * videos.label_counts[chunk][owner]).astype(np.int64)
        shown = None
    else:
        frames, slot, shown = _segment_frames(rng, world, videos, chunk, owner)
    emphasis_q = np.rint(world.prototypes[slots] * (knobs.frame_emphasis / _QUANT_SCALE)
                         ).astype(np.int16)
    emphasis = emphasis_q[owner, slot]
    if knobs.frame_variation:
        variation_q = np.rint(world.variations[slots] / _QUANT_SCALE).astype(np.int16)
        sign = rng.integers(0, 2, size=owner.size).astype(np.int16) * 2 - 1
        emphasis += variation_q[owner, slot] * sign[:, None]
    frames += emphasis if shown is None else emphasis * shown[:, None]
    frames += noise_bank[rng.integers(0, noise_bank.shape[0], size=owner.size)]
    np.clip(frames, 0, 255, out=frames)
    return frames.astype(np.uint8)


def _segment_frames(rng: np.random.Generator, world: _World, videos: _Videos, chunk: slice,
                    owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment-level centers of a chunk's frames ([F, D] int16: background plus
    the prototypes of the labels the frame's segment shows), the label slot
    each frame stresses (one of those shown) and whether it shows any."""
    segments, num_frames = videos.segments, videos.num_frames[chunk]
    first, last = segments.offsets[chunk.start], segments.offsets[chunk.stop]
    present = segments.present[first:last]
    per_video = np.diff(segments.offsets[chunk.start:chunk.stop + 1])
    segment_video = np.repeat(np.arange(len(num_frames)), per_video)
    membership = np.zeros((present.shape[0], world.class_probs.size), np.float32)
    rows, slot_of = np.nonzero(present)
    membership[rows, videos.slots[chunk][segment_video[rows], slot_of]] = 1.0
    centers = videos.centers[chunk][segment_video] + membership @ world.prototypes
    centers_q = np.rint((centers - _QUANT_BIAS) / _QUANT_SCALE).astype(np.int16)
    frame_index = np.arange(owner.size) - np.repeat(np.cumsum(num_frames) - num_frames, num_frames)
    segment_of_frame = segments.offsets[chunk.start + owner] - first + frame_index // SEGMENT_FRAMES
    shown = present[segment_of_frame]
    slot = np.argmax(rng.random(shown.shape) * shown, axis=1)
    return centers_q[segment_of_frame], slot, shown.any(axis=1)


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
    means = sums / np.maximum(num_frames, 1)[:, None] * _QUANT_SCALE + _QUANT_BIAS
    means[num_frames == 0] = 0.0
    return means.astype(np.float32)


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
    (see the module docstring); the train and validate draws of one dataset
    need the same seed and difficulty.

    `segments=True` gives labels segment-level content and, with labels,
    writes segment ratings into the frame-level records; without labels, the
    frame-level records hold only the id and the frames (2019 test records;
    see the module docstring).

    Returns:
        {"frame": pattern, "video": pattern} for the kinds written.
    """
    _check_args(num_videos, num_classes, num_shards, min_frames, max_frames, feature_sizes)
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; valid: {sorted(DIFFICULTIES)}")
    knobs = DIFFICULTIES[difficulty]
    frame_names, video_names = _feature_names(len(feature_sizes))
    world = _make_world(seed, num_classes, int(sum(feature_sizes)), knobs)
    rng = _prefix_rng(seed, prefix)
    videos = _draw_videos(rng, world, num_videos, prefix, min_frames, max_frames, knobs, segments)
    noise_bank = np.rint(rng.standard_normal((_NOISE_BANK_SIZE, int(sum(feature_sizes))))
                         * (knobs.frame_noise / _QUANT_SCALE)).astype(np.int16)

    kinds = [k for k, on in (("frame", frame_level), ("video", video_level)) if on]
    writers = {kind: _open_shards(out_dir, kind, prefix, num_shards) for kind in kinds}
    shard_sizes = [len(part) for part in np.array_split(np.arange(num_videos), num_shards)]
    shard_of = np.repeat(np.arange(num_shards), shard_sizes)
    try:
        for start in range(0, num_videos, _CHUNK_VIDEOS):
            chunk = slice(start, min(start + _CHUNK_VIDEOS, num_videos))
            frames = _frames_for(rng, world, videos, chunk, noise_bank, knobs)
            records = _chunk_records(videos, chunk, frames, kinds, id_key, with_labels,
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


def _chunk_records(videos: _Videos, chunk: slice, frames: np.ndarray, kinds: Sequence[str],
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


def _frame_context(context: dict[str, tf.train.Feature], videos: _Videos, v: int, id_key: str,
                   with_labels: bool) -> dict[str, tf.train.Feature]:
    """A frame-level record's context: with segments, plus the ratings
    (labeled draws) or only the id (test draws)."""
    if videos.segments is None:
        return context
    if not with_labels:
        return {id_key: context[id_key]}
    return {**context, **_rating_context(videos.segments.ratings[v])}


def _feature_names(count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Frame-level and video-level feature names for `count` features."""
    frame = ("rgb", "audio") if count == 2 else tuple(f"feature{i}" for i in range(count))
    return frame, tuple(f"mean_{name}" for name in frame)


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
