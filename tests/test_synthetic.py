"""Tests of the synthetic YouTube-8M-format generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from youtube8m_willow.data import synthetic, synthetic_records, synthetic_videos
from youtube8m_willow.data.synthetic import write_synthetic_dataset, write_synthetic_splits

SIZES = (24, 8)


def _records(pattern: str, proto):
    files = sorted(tf.io.gfile.glob(pattern))
    return [proto.FromString(r.numpy()) for f in files for r in tf.data.TFRecordDataset(f)]


def _frames(example: tf.train.SequenceExample, name: str, size: int) -> np.ndarray:
    values = [f.bytes_list.value[0] for f in example.feature_lists.feature_list[name].feature]
    return np.frombuffer(b"".join(values), np.uint8).reshape(-1, size)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    patterns = write_synthetic_dataset(str(out), num_videos=30, num_classes=12, num_shards=3,
                                       feature_sizes=SIZES, min_frames=0, max_frames=7, seed=5)
    return out, patterns


def test_layout_and_patterns(small):
    out, patterns = small
    assert patterns == {"frame": str(out / "frame" / "train*.tfrecord"),
                        "video": str(out / "video" / "train*.tfrecord")}
    for kind in ("frame", "video"):
        names = sorted(p.name for p in (out / kind).iterdir())
        assert names == ["train0000.tfrecord", "train0001.tfrecord", "train0002.tfrecord"]


def test_records_have_the_youtube8m_format(small):
    _, patterns = small
    frames = _records(patterns["frame"], tf.train.SequenceExample)
    videos = _records(patterns["video"], tf.train.Example)
    assert len(frames) == len(videos) == 30
    counts = []
    for i, (seq, vid) in enumerate(zip(frames, videos)):
        labels = list(seq.context.feature["labels"].int64_list.value)
        assert seq.context.feature["id"].bytes_list.value == [f"train{i:06d}".encode()]
        # Up to 5 true labels, some missing, plus at most one spurious label.
        assert 1 <= len(labels) <= 6 and len(set(labels)) == len(labels) and max(labels) < 12
        assert list(vid.features.feature["labels"].int64_list.value) == labels
        rgb, audio = _frames(seq, "rgb", SIZES[0]), _frames(seq, "audio", SIZES[1])
        assert len(rgb) == len(audio) <= 7
        counts.append(len(rgb))
        assert set(vid.features.feature) == {"id", "labels", "mean_rgb", "mean_audio"}
    assert min(counts) < max(counts)


def test_video_level_is_the_dequantized_frame_mean(small):
    _, patterns = small
    frames = _records(patterns["frame"], tf.train.SequenceExample)
    videos = _records(patterns["video"], tf.train.Example)
    for seq, vid in zip(frames, videos):
        for name, size in zip(("rgb", "audio"), SIZES):
            q = _frames(seq, name, size).astype(np.float64)
            expected = (q * (4 / 255) + (4 / 512 - 2)).mean(axis=0) if len(q) else np.zeros(size)
            got = np.array(vid.features.feature[f"mean_{name}"].float_list.value)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_zero_frame_video_keeps_empty_feature_lists(tmp_path):
    patterns = write_synthetic_dataset(str(tmp_path), num_videos=4, num_classes=3, num_shards=1,
                                       feature_sizes=SIZES, min_frames=0, max_frames=0)
    seq = _records(patterns["frame"], tf.train.SequenceExample)[0]
    assert set(seq.feature_lists.feature_list) == {"rgb", "audio"}
    assert len(seq.feature_lists.feature_list["rgb"].feature) == 0
    vid = _records(patterns["video"], tf.train.Example)[0]
    assert list(vid.features.feature["mean_rgb"].float_list.value) == [0.0] * SIZES[0]


def test_feature_list_bytes_match_the_proto_library():
    frames = np.random.default_rng(0).integers(0, 256, (5, 300), dtype=np.uint8)  # 2-byte varints
    reference = tf.train.FeatureList(feature=[
        tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.tobytes()])) for row in frames])
    assert synthetic_records._feature_list_bytes(frames) == reference.SerializeToString()
    assert synthetic_records._varint(300) == bytes([0xAC, 0x02])


def test_deterministic_given_seed_and_prefix(tmp_path):
    def draw(name, **kwargs):
        out = tmp_path / name
        write_synthetic_dataset(str(out), num_videos=6, num_classes=5, num_shards=1, feature_sizes=SIZES,
                                max_frames=5, min_frames=1, **kwargs)
        return (out / "frame" / f"{kwargs.get('prefix', 'train')}0000.tfrecord").read_bytes()

    assert draw("a", seed=1) == draw("b", seed=1)
    assert draw("c", seed=2) != draw("a", seed=1)
    assert draw("d", seed=1, prefix="validate") != draw("a", seed=1)


# The SHA-256 of what each draw writes (per shard in path order: its path and
# its records, each re-serialized deterministically: protobuf writes a map's
# entries, the context features, in an order that varies between processes),
# taken from the generator before it was split into modules: same seeds, same
# records. A change here changes every dataset drawn with these seeds (the
# demo's among them); update the digests only for a deliberate change of the
# data.
PINNED_DRAWS = {
    "realistic": (dict(num_videos=70, num_classes=12, num_shards=2, feature_sizes=(24, 8),
                       min_frames=0, max_frames=12, seed=3),
                  "771913d37bd5c0699c7933bcdc935e3a627c55ea822bfc59552afb021f99631b"),
    "segments": (dict(num_videos=70, num_classes=12, num_shards=2, feature_sizes=(24, 8),
                      min_frames=0, max_frames=23, seed=3, segments=True, prefix="validate"),
                 "d97d338402abd0c156ff446ab1f2d1d81c16a1432abc1764af6678082e0ead86"),
    "segments_test": (dict(num_videos=20, num_classes=12, num_shards=1, feature_sizes=(24, 8),
                           min_frames=3, max_frames=23, seed=3, segments=True, prefix="test",
                           with_labels=False),
                      "55bdcb9a2cb74faa98e5ef7432c83a1baf405a48478ded882bff0783e0fcfd19"),
    "easy_three_features": (dict(num_videos=20, num_classes=5, num_shards=1,
                                 feature_sizes=(16, 8, 4), min_frames=1, max_frames=6, seed=9,
                                 difficulty="easy", id_key="video_id"),
                            "f5090b0f78b9e3ce8167c0a62413353243e4610f8ee22a7d0a6dc6662b9a16f3"),
}


@pytest.mark.parametrize("name", sorted(PINNED_DRAWS))
def test_draws_write_the_pinned_records(name, tmp_path):
    """Frame- and video-level shards, segments on and off, labeled and test
    draws, two chunks of videos (70 > 64): record for record what they were."""
    options, expected = PINNED_DRAWS[name]
    write_synthetic_dataset(str(tmp_path), **options)
    digest = hashlib.sha256()
    shards = sorted(tmp_path.rglob("*.tfrecord"))
    assert {path.parent.name for path in shards} == {"frame", "video"}
    for path in shards:
        digest.update(str(path.relative_to(tmp_path)).encode())
        proto = tf.train.SequenceExample if path.parent.name == "frame" else tf.train.Example
        for record in tf.data.TFRecordDataset(str(path)):
            digest.update(proto.FromString(record.numpy()).SerializeToString(deterministic=True))
    assert digest.hexdigest() == expected


def test_test_shards_have_empty_labels_and_video_id_key(tmp_path):
    patterns = write_synthetic_dataset(str(tmp_path), num_videos=3, num_classes=5, num_shards=1,
                                       feature_sizes=SIZES, max_frames=3, min_frames=1,
                                       with_labels=False, id_key="video_id", prefix="test",
                                       frame_level=False)
    assert set(patterns) == {"video"} and not (tmp_path / "frame").exists()
    for example in _records(patterns["video"], tf.train.Example):
        feature = example.features.feature
        assert "id" not in feature and feature["video_id"].bytes_list.value[0].startswith(b"test")
        assert "labels" in feature and len(feature["labels"].int64_list.value) == 0


def _video_level(pattern: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    examples = _records(pattern, tf.train.Example)
    x = np.array([list(e.features.feature["mean_rgb"].float_list.value)
                  + list(e.features.feature["mean_audio"].float_list.value) for e in examples])
    y = np.zeros((len(examples), num_classes))
    for i, e in enumerate(examples):
        y[i, list(e.features.feature["labels"].int64_list.value)] = 1
    return x, y


def test_easy_structure_is_learnable_and_shared_across_prefixes(tmp_path):
    """A ridge-regression probe fit on "train" ranks a true label first on "validate" videos."""
    kwargs = dict(num_classes=20, num_shards=1, frame_level=False, feature_sizes=(64, 16),
                  min_frames=5, max_frames=20, seed=11, difficulty="easy")
    train = write_synthetic_dataset(str(tmp_path), num_videos=400, prefix="train", **kwargs)
    valid = write_synthetic_dataset(str(tmp_path), num_videos=200, prefix="validate", **kwargs)
    x, y = _video_level(train["video"], 20)
    xv, yv = _video_level(valid["video"], 20)
    weights = np.linalg.solve(x.T @ x + 1.0 * np.eye(x.shape[1]), x.T @ (y - y.mean(0)))
    hit_at_1 = yv[np.arange(len(yv)), np.argmax(xv @ weights, axis=1)].mean()
    assert hit_at_1 > 0.8  # chance (always the most frequent class) is about 0.3
    frequencies = y.sum(0)
    assert frequencies[:5].sum() > 2 * frequencies[-5:].sum()  # skewed class frequencies


def test_command_line_writes_every_split(tmp_path, capsys):
    synthetic.main(["--out_dir", str(tmp_path), "--num_videos", "4", "--num_eval_videos", "3",
                    "--num_classes", "6", "--num_shards", "2", "--max_frames", "3",
                    "--min_frames", "1", "--skip_video_level"])
    names = sorted(p.name for p in (tmp_path / "frame").iterdir())
    assert names == [f"{split}000{i}.tfrecord" for split in ("test", "train", "validate")
                     for i in (0, 1)]
    assert not Path(tmp_path / "video").exists()
    records = {split: _records(str(tmp_path / "frame" / f"{split}*.tfrecord"),
                               tf.train.SequenceExample) for split in synthetic.SPLITS}
    assert {split: len(found) for split, found in records.items()} == {
        "train": 4, "validate": 3, "test": 3}
    labels = {split: [len(r.context.feature["labels"].int64_list.value) for r in found]
              for split, found in records.items()}
    assert min(labels["train"] + labels["validate"]) >= 1 and set(labels["test"]) == {0}
    assert capsys.readouterr().out.splitlines()[0] == (
        f"train frame: {tmp_path / 'frame' / 'train'}*.tfrecord")


def test_the_splits_are_the_draws_of_their_prefix(tmp_path):
    """write_synthetic_splits writes what write_synthetic_dataset writes for
    each split's prefix (the demo's data, among others, depend on it)."""
    options = dict(num_classes=5, max_frames=3, min_frames=1, seed=4, video_level=False)
    write_synthetic_splits(str(tmp_path / "all"), num_videos=4, num_eval_videos=2,
                           num_shards=2, num_eval_shards=1, **options)
    for split, videos, shards in (("train", 4, 2), ("validate", 2, 1), ("test", 2, 1)):
        write_synthetic_dataset(str(tmp_path / split), num_videos=videos, num_shards=shards,
                                prefix=split, with_labels=split != "test", **options)
        for shard in range(shards):
            name = f"frame/{split}000{shard}.tfrecord"
            assert (tmp_path / "all" / name).read_bytes() == (tmp_path / split / name).read_bytes()


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="min_frames"):
        write_synthetic_dataset(str(tmp_path), num_videos=1, min_frames=5, max_frames=2)


def _frame_statistics(pattern: str, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per video: mean and std of the L2-normalized dequantized frames, and labels."""
    means, stds, labels = [], [], np.zeros((0, num_classes))
    for seq in _records(pattern, tf.train.SequenceExample):
        frames = np.hstack([_frames(seq, "rgb", 1024), _frames(seq, "audio", 128)])
        frames = frames * (4 / 255) + (4 / 512 - 2)
        frames /= np.linalg.norm(frames, axis=1, keepdims=True)
        means.append(frames.mean(0))
        stds.append(frames.std(0))
        row = np.zeros((1, num_classes))
        row[0, list(seq.context.feature["labels"].int64_list.value)] = 1
        labels = np.vstack([labels, row])
    return np.array(means), np.array(stds), labels


def _ridge_gap(x, y, xv, yv, penalty=1000.0) -> float:
    from youtube8m_willow.metrics.eval_util import calculate_gap

    center, scale = x.mean(0), x.std(0) + 1e-6
    x, xv = (x - center) / scale, (xv - center) / scale
    weights = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ (y - y.mean(0)))
    return calculate_gap(xv @ weights, yv)


@pytest.mark.parametrize("difficulty", ["realistic", "easy"])
def test_difficulty_sets_how_far_a_linear_probe_gets(difficulty, tmp_path):
    """Realistic data (the default): a linear probe on the video means stays
    far from perfect, frame statistics add to it, the labels are several per
    video and long-tailed. Easy data: the same probe is nearly perfect."""
    kwargs = dict(num_classes=20, num_shards=1, video_level=False, min_frames=5, max_frames=20,
                  seed=4, difficulty=difficulty)
    train = write_synthetic_dataset(str(tmp_path), num_videos=600, prefix="train", **kwargs)
    valid = write_synthetic_dataset(str(tmp_path), num_videos=300, prefix="validate", **kwargs)
    x, s, y = _frame_statistics(train["frame"], 20)
    xv, sv, yv = _frame_statistics(valid["frame"], 20)
    mean_gap = _ridge_gap(x, y, xv, yv)
    if difficulty == "easy":
        assert mean_gap > 0.95
        return
    both_gap = _ridge_gap(np.hstack([x, s]), y, np.hstack([xv, sv]), yv)
    assert 0.2 < mean_gap < 0.8 and both_gap > mean_gap + 0.05, (mean_gap, both_gap)
    counts, frequencies = y.sum(1), y.sum(0)
    assert 2 <= counts.mean() <= 3.5 and counts.max() >= 5
    assert np.sort(frequencies)[-1] > 8 * np.sort(frequencies)[0]  # a long tail


def test_label_noise_of_the_realistic_setting():
    """Written labels lose true labels and gain spurious ones at the stated rates."""
    rng = np.random.default_rng(0)
    knobs = synthetic.DIFFICULTIES["realistic"]
    world = synthetic_videos.make_world(0, 30, 8, knobs)
    ranked, counts = synthetic_videos._true_labels(rng, world, 20000, knobs)
    written = synthetic_videos._written_labels(rng, world, ranked, counts, knobs)
    true = [set(ranked[v, :counts[v]]) for v in range(len(counts))]
    missing = sum(len(t - set(w)) for t, w in zip(true, written)) / (counts - 1).sum()
    spurious = np.mean([len(set(w) - t) for t, w in zip(true, written)])
    assert all(len(w) >= 1 for w in written)
    # Each true label but the first may go missing; a spurious draw may bring one back.
    assert 0.8 * knobs.missing_rate < missing < knobs.missing_rate
    assert 0.8 * knobs.spurious_rate < spurious <= knobs.spurious_rate + 0.01
    same_topic = np.mean([world.topics[ranked[v, 0]] == world.topics[ranked[v, 1]]
                          for v in range(len(counts)) if counts[v] > 1])
    assert same_topic > 0.3  # labels of a video tend to share a topic (chance: about 0.1)


# ------------------------------------------------------------------ segment ratings (2019)

SEGMENT_KW = dict(num_classes=10, num_shards=2, video_level=False, min_frames=3, max_frames=40,
                  seed=7, segments=True)


@pytest.fixture(scope="module")
def segment_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("segments")
    return {
        "train": write_synthetic_dataset(str(out), num_videos=300, prefix="train", **SEGMENT_KW),
        "validate": write_synthetic_dataset(str(out), num_videos=150, prefix="validate",
                                            **SEGMENT_KW),
        "test": write_synthetic_dataset(str(out), num_videos=40, prefix="test",
                                        with_labels=False, **SEGMENT_KW),
    }


def _segment_config():
    from youtube8m_willow.data.readers import ReaderConfig

    return ReaderConfig(("rgb", "audio"), (1024, 128), True, num_classes=10, max_frames=300)


def _rated(pattern: str) -> dict[str, np.ndarray]:
    from youtube8m_willow.data.segments import make_rated_segment_dataset

    batches = list(make_rated_segment_dataset(pattern, _segment_config(), 128, training=False,
                                              num_readers=1))
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


def test_segment_ratings_have_the_2019_format(segment_data):
    examples = _records(segment_data["validate"]["frame"], tf.train.SequenceExample)
    scores = []
    for example in examples:
        context = example.context.feature
        starts = np.array(context["segment_start_times"].int64_list.value)
        ends = np.array(context["segment_end_times"].int64_list.value)
        classes = list(context["segment_labels"].int64_list.value)
        num_frames = len(example.feature_lists.feature_list["rgb"].feature)
        assert len(starts) == len(classes) == len(context["segment_scores"].float_list.value)
        assert np.all(starts % 5 == 0) and np.all(starts >= 0) and np.all(ends == starts + 5)
        assert np.all(ends <= num_frames)  # full segments only, inside the video
        assert all(0 <= c < 10 for c in classes)
        assert len(set(zip(starts.tolist(), classes))) == len(classes)  # each pair rated once
        assert (len(starts) > 0) == (num_frames >= 5)
        scores.extend(context["segment_scores"].float_list.value)
    assert set(scores) == {0.0, 1.0}  # both positives and rated negatives
    assert 0.2 < np.mean(scores) < 0.8


def test_segment_ratings_parse_with_the_segment_reader(segment_data):
    got = _rated(segment_data["validate"]["frame"])
    assert got["video_matrix"].shape[1:] == (5, 1152) and set(got["num_frames"]) == {5}
    weights, labels = got["label_weights"], got["labels"]
    assert weights.sum(1).min() >= 1 and np.all(labels <= weights)  # a label only where rated
    assert 0 < labels.sum() < weights.sum()


def test_segment_test_records_hold_only_ids_and_frames(segment_data):
    from youtube8m_willow.data.segments import make_test_segment_dataset

    examples = _records(segment_data["test"]["frame"], tf.train.SequenceExample)
    assert all(set(e.context.feature) == {"id"} for e in examples)
    lengths = [len(e.feature_lists.feature_list["rgb"].feature) for e in examples]
    ids = [i for b in make_test_segment_dataset(segment_data["test"]["frame"], _segment_config(),
                                                64, num_readers=1) for i in b["video_ids"].numpy()]
    assert len(ids) == sum(-(-n // 5) for n in lengths) and ids[0] == b"test000000:0"


def test_segment_ratings_carry_a_real_signal(segment_data):
    """A per-class probe fit on train segments (mean frame of the rated
    positives minus that of the rated negatives) ranks validate positives
    above validate negatives of the same class (AUC 0.65 on these realistic
    data; chance 0.5)."""
    train, valid = _rated(segment_data["train"]["frame"]), _rated(segment_data["validate"]["frame"])
    x, xv = train["video_matrix"].mean(1), valid["video_matrix"].mean(1)
    aucs = []
    for c in range(10):
        pos, neg = train["labels"][:, c] > 0, (train["label_weights"][:, c] > 0) & (
            train["labels"][:, c] == 0)
        vpos, vneg = valid["labels"][:, c] > 0, (valid["label_weights"][:, c] > 0) & (
            valid["labels"][:, c] == 0)
        if min(pos.sum(), neg.sum(), vpos.sum(), vneg.sum()) < 5:
            continue
        direction = x[pos].mean(0) - x[neg].mean(0)
        s_pos, s_neg = xv[vpos] @ direction, xv[vneg] @ direction
        aucs.append(np.mean(s_pos[:, None] > s_neg[None, :]))
    assert len(aucs) >= 5 and np.mean(aucs) > 0.6 and min(aucs) > 0.5, aucs


def test_segments_command_line(tmp_path, capsys):
    synthetic.main(["--out_dir", str(tmp_path), "--num_videos", "3", "--num_classes", "4",
                    "--num_shards", "1", "--min_frames", "10", "--max_frames", "12",
                    "--skip_video_level", "--segments", "--prefix", "validate"])
    example = _records(str(tmp_path / "frame" / "validate*.tfrecord"), tf.train.SequenceExample)[0]
    assert "segment_scores" in example.context.feature
    assert "frame:" in capsys.readouterr().out
