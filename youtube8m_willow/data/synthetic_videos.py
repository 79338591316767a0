"""The synthetic world and its videos: labels, segments and quantized frames.

Written in NumPy; TensorFlow comes in only with the segment length, which
the generator takes from the segment readers (`data.segments`) so that the
two agree. Encoding these videos as YouTube-8M records is
`synthetic_records`; writing the shards, and the command line, `synthetic`.

The structure a model can learn: each class owns a prototype direction over
the concatenated feature dimensions; a video draws its labels from a
long-tailed (Zipf-like) class distribution, and each of its frames mixes its
labels' prototypes (their sum, with one label drawn per frame weighted up)
with per-video and per-frame noise, quantized to uint8 over the original's
dequantization range [-2, 2]. Frame counts are uniform in [min_frames,
max_frames].

The difficulty (`DIFFICULTIES`) chooses how hard that structure is to learn:

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
a segment with none of them is background and noise. Each video then gets a
few rated segments (full segments only, starting at multiples of 5), each
rated for some of its true labels: score 1 where the class is present in
the segment, 0 where it is rated but absent.

Determinism: the seed fixes the class prototypes and frequencies (the
"world", `make_world`); the prefix selects an independent draw of videos
from that world (`prefix_rng`), so ``prefix="train"`` and
``prefix="validate"`` with the same seed share classes but not videos. One
generator draws the videos, then the noise bank, then the frames chunk by
chunk, in that order:

>>> knobs = DIFFICULTIES["easy"]
>>> world = make_world(seed=0, num_classes=4, feature_dim=6, knobs=knobs)
>>> rng = prefix_rng(0, "train")
>>> videos = draw_videos(rng, world, 3, "train", min_frames=2, max_frames=5, knobs=knobs)
>>> videos.ids
['train000000', 'train000001', 'train000002']
>>> frames = frames_for(rng, world, videos, slice(0, 3), draw_noise_bank(rng, 6, knobs), knobs)
>>> frames.dtype, frames.shape == (videos.num_frames.sum(), 6)
(dtype('uint8'), True)
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from youtube8m_willow.data.segments import SEGMENT_FRAMES

# The original's quantization range and its dequantization affine map.
QUANT_SCALE = 4.0 / 255.0
QUANT_BIAS = 4.0 / 512.0 - 2.0

_SEGMENT_PRESENCE = 0.5  # P(a true label is present in a given 5-frame segment)
_MAX_RATED_SEGMENTS = 5  # rated segments per video: 1..5 (at most its full segments)
_EXTRA_RATING = 0.3      # P(a rated segment is rated for another true label too)
_NOISE_BANK_SIZE = 512   # per-frame noise is drawn from a bank of this many frames


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
class World:
    """Class structure shared by all draws with the same seed."""

    prototypes: np.ndarray   # [num_classes, feature_dim] float32
    variations: np.ndarray   # [num_classes, feature_dim] float32, sign flips per frame
    class_probs: np.ndarray  # [num_classes] float64, sums to 1
    topics: np.ndarray       # [num_classes] int64, the topic of each class


@dataclasses.dataclass(frozen=True)
class Segments:
    """Which true labels each 5-frame segment shows, and the ratings written."""

    offsets: np.ndarray        # [V + 1] int64: first segment of each video in `present`
    present: np.ndarray        # [sum(ceil(num_frames / 5)), S] bool: label slot shown
    ratings: list[np.ndarray]  # per video [R, 3] int64: (start time, class, score 0/1)


@dataclasses.dataclass(frozen=True)
class Videos:
    """One draw of videos: ids, written labels, content, frame counts, centers."""

    ids: list[str]
    labels: list[np.ndarray]     # written labels (noisy), each int64 [k]
    slots: np.ndarray            # [V, S] int64: true labels, the last repeated to fill S
    label_counts: np.ndarray     # [V] int64: number of true labels
    num_frames: np.ndarray       # [V] int64
    centers: np.ndarray          # [V, feature_dim] float32 (dequantized units)
    segments: Segments | None = None  # segment-level content and ratings


def make_world(seed: int, num_classes: int, feature_dim: int, knobs: Difficulty) -> World:
    """The classes of `seed`: prototypes, variations, frequencies and topics."""
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
    return World(prototypes=protos, variations=variations, class_probs=weights / weights.sum(),
                 topics=topics)


def prefix_rng(seed: int, prefix: str) -> np.random.Generator:
    """A generator that depends on the seed and (stably) on the prefix."""
    return np.random.default_rng(np.random.SeedSequence([seed, 1, zlib.crc32(prefix.encode())]))


def _true_labels(rng: np.random.Generator, world: World, num_videos: int,
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


def _written_labels(rng: np.random.Generator, world: World, ranked: np.ndarray,
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
                   num_frames: np.ndarray) -> Segments:
    offsets, present = _draw_presence(rng, num_frames, counts, slots.shape[1])
    ratings = _draw_ratings(rng, slots, counts, num_frames, offsets, present)
    return Segments(offsets=offsets, present=present, ratings=ratings)


def draw_videos(rng: np.random.Generator, world: World, num_videos: int, prefix: str,
                min_frames: int, max_frames: int, knobs: Difficulty,
                segments: bool = False) -> Videos:
    """`num_videos` videos of `world` (ids ``<prefix>NNNNNN``): true and
    written labels, frame counts, per-video centers and, with `segments`,
    which segments show which labels and their ratings."""
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
    if not segments:  # with segments, labels show only in their segments (frames_for)
        centers = membership @ world.prototypes + centers
    num_frames = rng.integers(min_frames, max_frames + 1, size=num_videos)
    ids = [f"{prefix}{i:06d}" for i in range(num_videos)]
    return Videos(ids=ids, labels=labels, slots=slots, label_counts=counts,
                  num_frames=num_frames, centers=centers,
                  segments=_draw_segments(rng, slots, counts, num_frames) if segments else None)


def draw_noise_bank(rng: np.random.Generator, feature_dim: int, knobs: Difficulty) -> np.ndarray:
    """The per-frame noise, in quantized units: [_NOISE_BANK_SIZE, feature_dim] int16."""
    return np.rint(rng.standard_normal((_NOISE_BANK_SIZE, feature_dim))
                   * (knobs.frame_noise / QUANT_SCALE)).astype(np.int16)


def frames_for(rng: np.random.Generator, world: World, videos: Videos, chunk: slice,
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
        centers_q = np.rint((videos.centers[chunk] - QUANT_BIAS) / QUANT_SCALE).astype(np.int16)
        frames = centers_q[owner]
        slot = (rng.random(owner.size) * videos.label_counts[chunk][owner]).astype(np.int64)
        shown = None
    else:
        frames, slot, shown = _segment_frames(rng, world, videos, chunk, owner)
    emphasis_q = np.rint(world.prototypes[slots] * (knobs.frame_emphasis / QUANT_SCALE)
                         ).astype(np.int16)
    emphasis = emphasis_q[owner, slot]
    if knobs.frame_variation:
        variation_q = np.rint(world.variations[slots] / QUANT_SCALE).astype(np.int16)
        sign = rng.integers(0, 2, size=owner.size).astype(np.int16) * 2 - 1
        emphasis += variation_q[owner, slot] * sign[:, None]
    frames += emphasis if shown is None else emphasis * shown[:, None]
    frames += noise_bank[rng.integers(0, noise_bank.shape[0], size=owner.size)]
    np.clip(frames, 0, 255, out=frames)
    return frames.astype(np.uint8)


def _segment_frames(rng: np.random.Generator, world: World, videos: Videos, chunk: slice,
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
    centers_q = np.rint((centers - QUANT_BIAS) / QUANT_SCALE).astype(np.int16)
    frame_index = np.arange(owner.size) - np.repeat(np.cumsum(num_frames) - num_frames, num_frames)
    segment_of_frame = segments.offsets[chunk.start + owner] - first + frame_index // SEGMENT_FRAMES
    shown = present[segment_of_frame]
    slot = np.argmax(rng.random(shown.shape) * shown, axis=1)
    return centers_q[segment_of_frame], slot, shown.any(axis=1)
