"""What the readers read (`ReaderConfig`) and what their tolerant modes
skipped (`ReadStats`).

Tolerant modes (opt-in, counted in a `ReadStats`):
- `skip_bad_records`: a damaged record ends the reading of its file (TFRecord
  framing cannot be resynchronized); the records before it are kept, and the
  event is counted in `corrupt_records` with the unread bytes in
  `skipped_bytes`. Records that fail to parse or validate (missing keys, wrong
  sizes, out-of-range labels, no video id) are dropped and counted in
  `malformed_records`; in this mode each record is validated on its own
  before batching, which costs a second parse.
- `drop_out_of_range_labels`: labels outside [0, num_classes) are dropped and
  counted in `dropped_labels`.
Pass `stats=ReadStats()` to `make_dataset` to read the counters after (or
while) iterating; without it the dataset creates one, reachable as
`dataset.read_stats` on the returned dataset. Counters are CPU variables
updated from inside the pipeline; create the `ReadStats` outside any
distribution strategy scope.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    """What to read from each record and how to shape it.

    Attributes:
        feature_names: features to read, concatenated in this order, e.g.
            ("rgb", "audio") or ("mean_rgb", "mean_audio").
        feature_sizes: values per frame (frame level) or per video, per feature.
        frame_features: True for frame-level `SequenceExample` records.
        num_classes: length of the dense label vector.
        max_frames: frame-level videos are clipped / zero-padded to this length.
        id_key: force the video id key; None accepts "id" or "video_id" per record.
        skip_bad_records: skip (and count) damaged or malformed records.
        drop_out_of_range_labels: drop (and count) labels >= num_classes or < 0.
        quantized_frames: frame level: keep ``video_matrix`` as the records'
            uint8 bytes (zero bytes as padding) and add ``feature_frames``
            [B, features]; ``dequantize_frames`` then gives the float frames
            (a quarter of the memory in the pipeline's buffers).
    """

    feature_names: tuple[str, ...]
    feature_sizes: tuple[int, ...]
    frame_features: bool
    num_classes: int = 4716
    max_frames: int = 300
    id_key: str | None = None
    skip_bad_records: bool = False
    drop_out_of_range_labels: bool = False
    quantized_frames: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "feature_sizes", tuple(int(s) for s in self.feature_sizes))
        if not self.feature_names or len(self.feature_names) != len(self.feature_sizes):
            raise ValueError(
                f"feature_names {self.feature_names} and feature_sizes {self.feature_sizes} "
                "must be non-empty and of the same length")
        if min(self.feature_sizes) < 1 or self.num_classes < 1 or self.max_frames < 1:
            raise ValueError("feature_sizes, num_classes and max_frames must be positive")
        if self.id_key == "":
            raise ValueError("id_key must be None or a key name such as 'id' or 'video_id'")

    @property
    def feature_size(self) -> int:
        return sum(self.feature_sizes)

    @classmethod
    def for_model(cls, model_config, skip_bad_records: bool = False,
                  drop_out_of_range_labels: bool = False,
                  quantized_frames: bool = False) -> "ReaderConfig":
        """The input layout a model expects (a ``ModelConfig``'s features,
        classes and frames), with the tolerant modes as given."""
        return cls(feature_names=model_config.feature_names,
                   feature_sizes=model_config.feature_sizes,
                   frame_features=model_config.frame_features,
                   num_classes=model_config.num_classes, max_frames=model_config.max_frames,
                   skip_bad_records=skip_bad_records,
                   drop_out_of_range_labels=drop_out_of_range_labels,
                   quantized_frames=quantized_frames and model_config.frame_features)


class ReadStats:
    """Counters of what the tolerant modes skipped or dropped.

    Attributes (int64 `tf.Variable`s on the CPU): corrupt_records (damaged
    TFRecord framing; the rest of that file is skipped), skipped_bytes (bytes
    left unread after such damage), malformed_records (records that failed to
    parse or validate), dropped_labels (out-of-range labels dropped).
    """

    FIELDS = ("corrupt_records", "skipped_bytes", "malformed_records", "dropped_labels")

    def __init__(self) -> None:
        with tf.init_scope(), tf.device("/cpu:0"):
            for field in self.FIELDS:
                setattr(self, field, tf.Variable(0, dtype=tf.int64, trainable=False, name=field))

    def as_dict(self) -> dict[str, int]:
        return {field: int(getattr(self, field).numpy()) for field in self.FIELDS}

    def reset(self) -> None:
        for field in self.FIELDS:
            getattr(self, field).assign(0)

    def summary(self) -> str:
        """A one-line report, e.g. for the end of a training or evaluation run."""
        return ", ".join(f"{k}={v}" for k, v in self.as_dict().items())


def stats_for(config: ReaderConfig, stats: ReadStats | None = None) -> ReadStats | None:
    """``stats``, or new counters when none are given and a tolerant mode is on."""
    if stats is None and (config.skip_bad_records or config.drop_out_of_range_labels):
        return ReadStats()
    return stats
