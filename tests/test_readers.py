"""Tests of the tf.data readers: values, order, epochs, real data and bad data."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import tensorflow as tf

from conftest import shared_path
from youtube8m_willow.data import parsing, readers
from youtube8m_willow.data.readers import DataError, ReaderConfig, ReadStats
from youtube8m_willow.data.synthetic import write_synthetic_dataset

SIZES = (16, 4)
NUM_CLASSES = 10
MAX_FRAMES = 6

FRAME = ReaderConfig(("rgb", "audio"), SIZES, True, num_classes=NUM_CLASSES, max_frames=MAX_FRAMES)
VIDEO = ReaderConfig(("mean_rgb", "mean_audio"), SIZES, False, num_classes=NUM_CLASSES)


# --------------------------------------------------------------------------- helpers


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def seq_example(lists: dict[str, list[bytes]], labels=(1,), vid=b"v", id_key="id") -> bytes:
    """A frame-level record; `lists` maps feature name to its per-frame byte strings."""
    example = tf.train.SequenceExample()
    example.context.feature[id_key].CopyFrom(_bytes([vid]))
    example.context.feature["labels"].CopyFrom(_ints(list(labels)))
    for name, frames in lists.items():
        feature_list = example.feature_lists.feature_list[name]
        for frame in frames:
            feature_list.feature.add().CopyFrom(_bytes([frame]))
    return example.SerializeToString()


def video_example(features: dict[str, list[float]], labels=(1,), vid=b"v", id_key="id") -> bytes:
    feats = {id_key: _bytes([vid]), "labels": _ints(list(labels))}
    feats.update({name: _floats(values) for name, values in features.items()})
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def good_frames(num_frames: int, seed: int = 0) -> dict[str, list[bytes]]:
    rng = np.random.default_rng(seed)
    return {name: [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(num_frames)]
            for name, size in zip(("rgb", "audio"), SIZES)}


def write_records(path: Path, records: list[bytes]) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def read_all(pattern, config, batch_size=4, **kwargs) -> dict[str, np.ndarray]:
    """Iterates a reader dataset; returns the batches' arrays concatenated (and batch sizes)."""
    kwargs.setdefault("training", False)
    parts = collections.defaultdict(list)
    for batch in readers.raise_data_errors(readers.make_dataset(pattern, config, batch_size, **kwargs)):
        for key, value in batch.items():
            parts[key].append(value.numpy())
        parts["batch_sizes"].append(len(value))
    return {key: np.concatenate(value) if key != "batch_sizes" else value for key, value in parts.items()}


def raw_records(pattern: str) -> list[bytes]:
    return [r.numpy() for f in sorted(tf.io.gfile.glob(pattern)) for r in tf.data.TFRecordDataset(f)]


def expected_frame(record: bytes, names=("rgb", "audio"), sizes=SIZES, max_frames=MAX_FRAMES):
    """Reference decoding of one SequenceExample with numpy: matrix, num_frames, labels."""
    example = tf.train.SequenceExample.FromString(record)
    blocks = []
    for name, size in zip(names, sizes):
        frames = example.feature_lists.feature_list[name].feature
        q = np.frombuffer(b"".join(f.bytes_list.value[0] for f in frames), np.uint8).reshape(-1, size)
        block = np.zeros((max_frames, size))
        block[:min(len(q), max_frames)] = q[:max_frames] * (4 / 255) + (4 / 512 - 2)
        blocks.append(block)
    num_frames = min(len(example.feature_lists.feature_list[names[0]].feature), max_frames)
    return np.concatenate(blocks, axis=1), num_frames, _dense(example.context.feature["labels"])


def _dense(feature, num_classes=NUM_CLASSES):
    dense = np.zeros(num_classes)
    dense[list(feature.int64_list.value)] = 1
    return dense


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """3 shards x 4 videos, 0-9 frames each (so some are clipped to MAX_FRAMES)."""
    out = tmp_path_factory.mktemp("synth")
    return write_synthetic_dataset(str(out), num_videos=12, num_classes=NUM_CLASSES, num_shards=3,
                                   feature_sizes=SIZES, min_frames=0, max_frames=9, seed=3)


def data_error(pattern, config, match: str, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        read_all(pattern, config, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- values


def test_dequantize_hand_computed():
    q = np.array([0.0, 1.0, 128.0, 255.0])
    expected = [-1.9921875, -1.9921875 + 4 / 255, -1.9921875 + 512 / 255, 2.0078125]
    np.testing.assert_allclose(readers.dequantize(q), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(readers.dequantize(q, 1.0, -1.0), q * 2 / 255 + 2 / 512 - 1, atol=1e-12)


def test_dequantize_bytes_is_bit_identical_to_formula():
    q = tf.constant(np.arange(256, dtype=np.uint8))
    reference = readers.dequantize(tf.cast(q, tf.float32))
    np.testing.assert_array_equal(parsing._dequantize_bytes(q).numpy(), reference.numpy())


def test_frame_level_round_trip(synth):
    got = read_all(synth["frame"], FRAME, batch_size=5, num_readers=1)
    records = raw_records(synth["frame"])
    assert got["batch_sizes"] == [5, 5, 2]
    assert got["video_matrix"].shape == (12, MAX_FRAMES, sum(SIZES))
    assert got["video_matrix"].dtype == np.float32 and got["num_frames"].dtype == np.int32
    for i, record in enumerate(records):
        matrix, num_frames, labels = expected_frame(record)
        np.testing.assert_allclose(got["video_matrix"][i], matrix, rtol=0, atol=1e-6)
        assert got["num_frames"][i] == num_frames
        np.testing.assert_array_equal(got["labels"][i], labels)
    assert [v.decode() for v in got["video_ids"]] == [f"train{i:06d}" for i in range(12)]
    frames = [len(tf.train.SequenceExample.FromString(r).feature_lists.feature_list["rgb"].feature)
              for r in records]
    assert max(frames) > MAX_FRAMES and min(frames) < MAX_FRAMES  # clipping and padding both exercised


def test_video_level_round_trip(synth):
    got = read_all(synth["video"], VIDEO, batch_size=5, num_readers=1)
    for i, record in enumerate(raw_records(synth["video"])):
        feature = tf.train.Example.FromString(record).features.feature
        expected = list(feature["mean_rgb"].float_list.value) + list(feature["mean_audio"].float_list.value)
        np.testing.assert_array_equal(got["video_matrix"][i], np.float32(expected))
        np.testing.assert_array_equal(got["labels"][i], _dense(feature["labels"]))
    np.testing.assert_array_equal(got["num_frames"], np.ones(12, np.int32))


def test_feature_order_follows_feature_names(synth):
    swapped = ReaderConfig(("audio", "rgb"), SIZES[::-1], True, num_classes=NUM_CLASSES,
                           max_frames=MAX_FRAMES)
    normal = read_all(synth["frame"], FRAME, num_readers=1)["video_matrix"]
    got = read_all(synth["frame"], swapped, num_readers=1)["video_matrix"]
    np.testing.assert_array_equal(got[..., :SIZES[1]], normal[..., SIZES[0]:])
    np.testing.assert_array_equal(got[..., SIZES[1]:], normal[..., :SIZES[0]])


def test_both_id_keys_accepted_and_forced(tmp_path):
    path = write_records(tmp_path / "ids.tfrecord", [
        video_example({"mean_rgb": [0.5] * 16, "mean_audio": [0.0] * 4}, vid=b"old", id_key="video_id"),
        video_example({"mean_rgb": [0.5] * 16, "mean_audio": [0.0] * 4}, vid=b"new", id_key="id")])
    assert list(read_all(path, VIDEO)["video_ids"]) == [b"old", b"new"]
    forced = ReaderConfig(("mean_rgb", "mean_audio"), SIZES, False, num_classes=NUM_CLASSES,
                          id_key="video_id")
    data_error(path, forced, r"ids\.tfrecord \(record 1\): no video id under the key video_id")


def test_synthetic_video_id_key(tmp_path):
    patterns = write_synthetic_dataset(str(tmp_path), num_videos=3, num_classes=NUM_CLASSES, num_shards=1,
                                       feature_sizes=SIZES, min_frames=1, max_frames=4, id_key="video_id")
    ids = read_all(patterns["frame"], FRAME)["video_ids"]
    assert list(ids) == [b"train000000", b"train000001", b"train000002"]


def test_zero_frames_unequal_counts_and_clipping(tmp_path):
    frames = good_frames(9)
    uneven = {"rgb": frames["rgb"][:3], "audio": frames["audio"][:2]}
    path = write_records(tmp_path / "frames.tfrecord", [
        seq_example({"rgb": [], "audio": []}, labels=(), vid=b"empty"),
        seq_example(uneven, vid=b"uneven"),
        seq_example(frames, vid=b"long")])
    got = read_all(path, FRAME)
    np.testing.assert_array_equal(got["num_frames"], [0, 3, MAX_FRAMES])
    np.testing.assert_array_equal(got["video_matrix"][0], np.zeros((MAX_FRAMES, 20)))
    np.testing.assert_array_equal(got["labels"][0], np.zeros(NUM_CLASSES))
    for i, record in enumerate(raw_records(path)):
        np.testing.assert_allclose(got["video_matrix"][i], expected_frame(record)[0], atol=1e-6)
    assert np.all(got["video_matrix"][1, 2, 16:] == 0) and np.any(got["video_matrix"][1, 2, :16] != 0)


@pytest.mark.parametrize("uneven_batch", [False, True])
def test_quantized_frames_dequantize_to_the_float_reader_bitwise(tmp_path, uneven_batch):
    """uint8 frames plus per-feature counts give back the float matrix bit for bit
    (padding +0.0), whether a batch's features share frame counts or not."""
    frames = good_frames(9, seed=5)
    records = [seq_example({"rgb": [], "audio": []}, vid=b"empty"),
               seq_example({k: v[:4] for k, v in frames.items()}, vid=b"four"),
               seq_example(frames, vid=b"long")]
    if uneven_batch:
        records.append(seq_example({"rgb": frames["rgb"][:5], "audio": frames["audio"][:2]}))
    path = write_records(tmp_path / "frames.tfrecord", records)
    floats = read_all(path, FRAME)
    quantized = read_all(path, dataclasses.replace(FRAME, quantized_frames=True))
    assert quantized["video_matrix"].dtype == np.uint8
    expected_counts = [[0, 0], [4, 4], [MAX_FRAMES, MAX_FRAMES]] + ([[5, 2]] if uneven_batch else [])
    np.testing.assert_array_equal(quantized["feature_frames"], expected_counts)
    np.testing.assert_array_equal(quantized["num_frames"], floats["num_frames"])
    restored = readers.dequantize_frames(quantized["video_matrix"], quantized["feature_frames"],
                                         SIZES).numpy()
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored.view(np.uint32), floats["video_matrix"].view(np.uint32))


def test_a_models_sampled_frames_dequantize_alone_to_the_same_floats(tmp_path):
    """With a model's frame_indices, only the frames it samples are gathered
    as bytes and dequantized: bitwise the sampled float frames, zero where a
    position is past its feature's frames (the uneven video's audio)."""
    from youtube8m_willow.data.parsing import with_float_frames

    frames = good_frames(9, seed=6)
    path = write_records(tmp_path / "frames.tfrecord", [
        seq_example(frames, vid=b"long"),
        seq_example({"rgb": frames["rgb"][:5], "audio": frames["audio"][:2]}, vid=b"uneven")])
    floats = read_all(path, FRAME)
    quantized = read_all(path, dataclasses.replace(FRAME, quantized_frames=True))
    positions = np.array([[5, 0, 3, 3], [4, 1, 2, 0]], np.int32)
    drawn = []

    def frame_indices(num_frames, sampling_seed):
        drawn.append((np.asarray(num_frames).tolist(), sampling_seed))
        return tf.constant(positions)

    inputs = {"video_matrix": quantized["video_matrix"], "num_frames": quantized["num_frames"],
              "feature_frames": quantized["feature_frames"], "sampling_seed": "seed"}
    sampled = with_float_frames(inputs, SIZES, frame_indices)
    assert drawn == [([MAX_FRAMES, 5], "seed")]
    assert set(sampled) == {"video_matrix", "num_frames", "sampling_seed", "frame_indices"}
    np.testing.assert_array_equal(sampled["frame_indices"], positions)
    expected = np.take_along_axis(floats["video_matrix"], positions[:, :, None], axis=1)
    got = sampled["video_matrix"].numpy()
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert np.all(got[1, [0, 2], 16:] == 0) and np.all(got[1, [1, 3], 16:] != 0)  # audio: 2 frames
    everything = with_float_frames(inputs, SIZES, lambda num_frames, seed: None)
    assert "frame_indices" not in everything
    np.testing.assert_array_equal(everything["video_matrix"], floats["video_matrix"])


def test_labels_duplicates_and_missing_key(tmp_path):
    record = tf.train.Example(features=tf.train.Features(feature={
        "id": _bytes([b"x"]), "mean_rgb": _floats([0.0] * 16), "mean_audio": _floats([0.0] * 4)}))
    path = write_records(tmp_path / "labels.tfrecord", [
        video_example({"mean_rgb": [0.0] * 16, "mean_audio": [0.0] * 4}, labels=(3, 3, 9, 0)),
        record.SerializeToString()])
    labels = read_all(path, VIDEO)["labels"]
    np.testing.assert_array_equal(labels[0], np.eye(NUM_CLASSES)[[0, 3, 9]].sum(0))
    np.testing.assert_array_equal(labels[1], np.zeros(NUM_CLASSES))


def test_parse_serialized_matches_the_dataset(synth):
    records = raw_records(synth["frame"])
    parsed = readers.parse_serialized(tf.constant(records), FRAME)
    got = read_all(synth["frame"], FRAME, num_readers=1)
    for key in ("video_ids", "video_matrix", "num_frames", "labels"):
        np.testing.assert_array_equal(parsed[key].numpy(), got[key])
    bad = tf.constant([records[0], seq_example({"rgb": [b"x"], "audio": [b"y" * 4]})])
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        readers.parse_serialized(bad, FRAME, source="request")
    message = str(readers.data_error_from(info.value))
    assert message.startswith("request (record 1): frame feature rgb has a frame of 1 bytes")


def test_one_configuration_traces_its_parse_once(synth):
    """Without read statistics the parse is one tf.function per ReaderConfig:
    a second pipeline and a serving request of that configuration reuse its
    graph; another configuration gets its own."""
    config = dataclasses.replace(FRAME, num_classes=FRAME.num_classes + 1)  # new to this process
    parse = parsing._parse_function(config)
    first = read_all(synth["frame"], config, num_readers=1)
    again = read_all(synth["frame"], config, num_readers=1)
    served = readers.parse_serialized(tf.constant(raw_records(synth["frame"])), config)
    assert parse.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(first["video_matrix"], again["video_matrix"])
    np.testing.assert_array_equal(served["video_matrix"].numpy(), first["video_matrix"])
    assert parsing._parse_function(dataclasses.replace(config)) is parse
    assert parsing._parse_function(FRAME) is not parse


# --------------------------------------------------------------------------- order and epochs


def _ids(pattern, config=VIDEO, **kwargs) -> list[bytes]:
    return list(read_all(pattern, config, **kwargs)["video_ids"])


def test_eval_reads_each_record_once_in_a_fixed_order(synth):
    sequential = _ids(synth["video"], num_readers=1)
    assert sequential == [f"train{i:06d}".encode() for i in range(12)]  # sorted files, file order
    parallel = _ids(synth["video"], num_readers=2)
    assert parallel == _ids(synth["video"], num_readers=2)
    assert sorted(parallel) == sequential
    for shard in range(3):  # records of each file keep their file order
        in_shard = [v for v in parallel if int(v[-6:]) // 4 == shard]
        assert in_shard == sorted(in_shard)


def test_training_epochs_shuffle_and_partial_batch(synth):
    got = read_all(synth["video"], VIDEO, batch_size=5, training=True, num_epochs=2, seed=7)
    assert got["batch_sizes"] == [5, 5, 5, 5, 4]
    counts = collections.Counter(got["video_ids"])
    assert len(counts) == 12 and set(counts.values()) == {2}
    again = _ids(synth["video"], batch_size=5, training=True, num_epochs=2, seed=7)
    assert list(got["video_ids"]) == again  # a seed makes training order reproducible
    other = _ids(synth["video"], batch_size=5, training=True, num_epochs=2, seed=8)
    assert other != again
    assert list(got["video_ids"][:12]) != _ids(synth["video"], num_readers=1)


def test_training_reshuffles_files_each_epoch(synth):
    def file_order(seed):  # no example shuffling, one reader: epochs are file sequences
        ids = _ids(synth["video"], batch_size=12, training=True, num_epochs=2, num_readers=1,
                   shuffle_buffer=1, seed=seed)
        return [[int(v[-6:]) // 4 for v in ids[e * 12:(e + 1) * 12:4]] for e in range(2)]

    orders = [file_order(seed) for seed in range(4)]
    assert all(sorted(epoch) == [0, 1, 2] for order in orders for epoch in order)
    assert any(first != second for first, second in orders)


def test_forever_repeats(synth):
    dataset = readers.make_dataset(synth["video"], VIDEO, 5, training=True, num_epochs=None)
    assert sum(len(b["video_ids"]) for b in dataset.take(8)) == 40


# --------------------------------------------------------------------------- files


def test_list_files_sorted_comma_separated_and_missing(synth):
    frame = readers.list_files(synth["frame"])
    assert frame == sorted(frame) and len(frame) == 3
    both = readers.list_files(f"{synth['video']},{synth['frame']}")
    assert both == sorted(frame + readers.list_files(synth["video"]))
    assert readers.list_files([synth["frame"], synth["video"]]) == both
    with pytest.raises(DataError, match=r"no files match data pattern '/nonexistent/\*\.tfrecord'"):
        readers.list_files("/nonexistent/*.tfrecord")
    with pytest.raises(DataError, match="no files match"):
        readers.make_dataset("/nonexistent/x*", VIDEO, 2, training=False)


def test_count_records(synth):
    assert readers.count_records(synth["frame"]) == 12
    assert readers.count_records([synth["frame"], synth["video"]]) == 24


def test_config_validation():
    with pytest.raises(ValueError, match="same length"):
        ReaderConfig(("rgb", "audio"), (1024,), True)
    assert ReaderConfig(["rgb"], [1024], True).feature_names == ("rgb",)


# --------------------------------------------------------------------------- real data


def _real(name: str) -> Path:
    return shared_path("data", name)


def _check_against_protos(pattern: str, config: ReaderConfig, id_key: str, count: int = 40):
    got = read_all(pattern, config, batch_size=64, num_readers=1)
    records = raw_records(pattern)
    assert len(got["video_ids"]) == len(records) == readers.count_records(pattern)
    for i in range(0, len(records), max(1, len(records) // count)):
        feature = tf.train.Example.FromString(records[i]).features.feature
        assert got["video_ids"][i] == feature[id_key].bytes_list.value[0]
        expected = np.concatenate([feature[n].float_list.value for n in config.feature_names])
        np.testing.assert_array_equal(got["video_matrix"][i], expected.astype(np.float32))
        np.testing.assert_array_equal(got["labels"][i], _dense(feature["labels"], config.num_classes))
    return got


def test_real_2018_video_level():
    path = _real("yt8m-2018-video") / "validate0000.tfrecord"
    config = ReaderConfig(("mean_rgb", "mean_audio"), (1024, 128), False, num_classes=3862)
    got = _check_against_protos(str(path), config, "id")
    assert got["labels"].sum(axis=1).min() >= 1


def test_real_2017_video_level_with_and_without_labels():
    folder = _real("yt8m-2017-video")
    config = ReaderConfig(("mean_rgb", "mean_audio"), (1024, 128), False)  # 4716 classes
    got = _check_against_protos(str(folder / "validatea0.tfrecord"), config, "video_id")
    assert all(len(v) == 11 for v in got["video_ids"]) and got["labels"].sum(axis=1).min() >= 1
    test = _check_against_protos(str(folder / "testa0.tfrecord"), config, "video_id")
    assert test["labels"].sum() == 0


@pytest.mark.parametrize("name", ["netvlad_gated", "moe_video"])
def test_fixture_records_match_their_metadata(name):
    folder = shared_path("fixtures", name)
    meta = json.loads((folder / "meta.json").read_text())
    flags = dict(flag.lstrip("-").split("=", 1) for flag in meta["model_flags"])
    config = ReaderConfig(tuple(flags["feature_names"].split(",")),
                          tuple(int(s) for s in flags["feature_sizes"].split(",")),
                          flags.get("frame_features") == "True", num_classes=meta["num_classes"])
    got = read_all(str(folder / "data.tfrecord"), config, batch_size=10)
    assert [v.decode() for v in got["video_ids"]] == meta["video_ids"]
    assert list(got["num_frames"]) == meta["num_frames"]
    if config.frame_features:  # padding after each video's frames is exactly zero
        frames = np.arange(config.max_frames)[None, :] >= got["num_frames"][:, None]
        assert np.all(got["video_matrix"][frames] == 0)
        assert np.all(np.abs(got["video_matrix"][~frames]).max(axis=-1) > 0)


# --------------------------------------------------------------------------- bad data


def _good_file(tmp_path: Path, name="good.tfrecord", count=5) -> tuple[str, list[bytes]]:
    records = [seq_example(good_frames(3, seed=i), vid=b"v%d" % i) for i in range(count)]
    return write_records(tmp_path / name, records), records


def _record_offset(records: list[bytes], index: int) -> int:
    return sum(len(r) + 16 for r in records[:index])


def test_truncated_file(tmp_path):
    path, records = _good_file(tmp_path)
    data = Path(path).read_bytes()
    cut = _record_offset(records, 3) + 20  # inside record 3
    Path(path).write_bytes(data[:cut])
    message = data_error(path, FRAME, r"good\.tfrecord \(record 3\): damaged or truncated")
    assert f"at byte {_record_offset(records, 3)} of {cut}" in message
    assert message.endswith("(copy it again, or pass --skip_bad_records to skip the rest of "
                            "the file)")
    stats = ReadStats()
    skip = ReaderConfig(("rgb", "audio"), SIZES, True, num_classes=NUM_CLASSES, skip_bad_records=True)
    assert list(read_all(path, skip, stats=stats)["video_ids"]) == [b"v0", b"v1", b"v2"]
    assert stats.as_dict() == {"corrupt_records": 1, "skipped_bytes": 20, "malformed_records": 0,
                               "dropped_labels": 0}
    with pytest.raises(DataError, match=r"record 3\): damaged"):
        readers.count_records(path)


def test_crc_mismatch(tmp_path):
    path, records = _good_file(tmp_path)
    data = bytearray(Path(path).read_bytes())
    data[_record_offset(records, 2) + 12 + 5] ^= 0x40  # a payload byte of record 2
    Path(path).write_bytes(bytes(data))
    data_error(path, FRAME, r"good\.tfrecord \(record 2\): damaged or truncated TFRecord data")
    skip = ReaderConfig(("rgb", "audio"), SIZES, True, num_classes=NUM_CLASSES, skip_bad_records=True)
    dataset = readers.make_dataset(path, skip, 4, training=False)
    assert [v for b in dataset for v in b["video_ids"].numpy()] == [b"v0", b"v1"]
    assert dataset.read_stats.as_dict()["corrupt_records"] == 1
    assert dataset.read_stats.as_dict()["skipped_bytes"] == len(data) - _record_offset(records, 2)


def test_id_key_probe_reads_through_the_checks(tmp_path):
    path, records = _good_file(tmp_path, name="a.tfrecord")
    data = bytearray(Path(path).read_bytes())
    data[12 + 5] ^= 0x40  # a payload byte of record 0
    Path(path).write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"a\.tfrecord \(record 0\): damaged or truncated"):
        readers.first_record_id_key(path, FRAME)
    older = write_records(tmp_path / "b.tfrecord", [seq_example(good_frames(2), id_key="video_id")])
    both = f"{path},{older}"
    skip = dataclasses.replace(FRAME, skip_bad_records=True)
    assert readers.first_record_id_key(both, skip) == "video_id"  # a.tfrecord skipped
    junk = write_records(tmp_path / "junk.tfrecord", [b"\xff\x01 not a proto"])
    with pytest.raises(DataError, match=r"junk\.tfrecord \(record 0\): not a valid"):
        readers.first_record_id_key(junk, VIDEO)


def test_id_key_probe_reads_a_sound_first_record_without_a_pipeline(tmp_path, monkeypatch):
    """The first record of the first non-empty file, CRCs checked, read
    straight from the file; the pipeline (which would name the damage) only
    where that fails."""
    from youtube8m_willow.data import files, release

    empty = write_records(tmp_path / "a.tfrecord", [])
    path, records = _good_file(tmp_path, name="b.tfrecord")
    later = write_records(tmp_path / "c.tfrecord", [seq_example(good_frames(2), id_key="video_id")])
    listed = files.file_sizes(f"{empty},{path},{later}")
    assert files.first_sound_record(listed) == (path, records[0])

    def no_pipeline(*args, **kwargs):
        raise AssertionError("the readers' pipeline was built")

    monkeypatch.setattr(release, "read_records", no_pipeline)
    assert readers.first_record_id_key(f"{later},{path},{empty}", FRAME) == "id"
    data = bytearray(Path(path).read_bytes())
    data[12 + 5] ^= 0x40  # a payload byte of record 0: its CRC no longer matches
    Path(path).write_bytes(bytes(data))
    assert files.first_sound_record(files.file_sizes(path)) is None
    Path(later).write_bytes(Path(later).read_bytes()[:20])  # cut inside record 0
    assert files.first_sound_record(files.file_sizes(later)) is None
    with pytest.raises(AssertionError, match="pipeline was built"):
        readers.first_record_id_key(path, FRAME)


def test_missing_feature_key(tmp_path):
    """A record of the right kind without a feature: its own feature names,
    and --feature_names (not --frame_features) named."""
    frames = good_frames(2)
    path = write_records(tmp_path / "noaudio.tfrecord",
                         [seq_example(frames), seq_example({"rgb": frames["rgb"]})])
    message = data_error(path, FRAME, r"noaudio\.tfrecord \(record 1\): missing frame feature list "
                         r"'audio'; the record's feature lists are rgb: check --feature_names$")
    assert "--frame_features" not in message and "SequenceExample" not in message
    vpath = write_records(tmp_path / "v.tfrecord", [video_example({"mean_rgb": [0.0] * 16})])
    message = data_error(vpath, VIDEO, r"v\.tfrecord \(record 0\): missing feature 'mean_audio'; "
                         r"the record's features are id, labels, mean_rgb: check --feature_names$")
    assert "--frame_features" not in message and "SequenceExample" not in message


def test_wrong_feature_names_on_video_level_records_guess_no_frame_level_record(tmp_path):
    path = write_records(tmp_path / "v.tfrecord",
                         [video_example({"mean_rgb": [0.0] * 16, "mean_audio": [0.0] * 4})])
    wrong = ReaderConfig(("mean_rgb", "audio"), SIZES, False, num_classes=NUM_CLASSES)
    message = data_error(path, wrong, r"v\.tfrecord \(record 0\): missing feature 'audio'; the "
                         r"record's features are id, labels, mean_audio, mean_rgb: check "
                         r"--feature_names$")
    assert "frame-level" not in message


def test_wrong_kind_of_file(synth):
    data_error(synth["video"], FRAME, r"video/train0000\.tfrecord \(record 0\): missing frame feature "
               r"list '(rgb|audio)'; the record is a video-level Example \(features id, labels, "
               r"mean_audio, mean_rgb\) read as a frame-level SequenceExample: check --frame_features$")
    data_error(synth["frame"], VIDEO, r"frame/train0000\.tfrecord \(record 0\): "
               r"missing feature 'mean_(rgb|audio)'; the record is a frame-level SequenceExample "
               r"\(feature lists audio, rgb\) read as a video-level Example: check --frame_features$")


def test_a_record_that_cannot_be_read_again_names_both_flags(tmp_path):
    """The cause is read off the record itself; when it cannot be read (here
    the file is gone), the message names both flags and guesses nothing."""
    missing = str(tmp_path / "gone.tfrecord")
    error = tf.errors.InvalidArgumentError(
        None, None, f"Name: {missing} (record 0), Feature: mean_rgb (data type: float) is "
                    "required but could not be found.")
    assert str(readers.data_error_from(error)) == (
        f"{missing} (record 0): missing feature 'mean_rgb'; check --feature_names and "
        "--frame_features")


def test_a_non_finite_value_names_the_flag_that_skips_it(tmp_path):
    path = write_records(tmp_path / "nan.tfrecord", [
        video_example({"mean_rgb": [0.0] * 16, "mean_audio": [0.0] * 4}),
        video_example({"mean_rgb": [0.0] * 16, "mean_audio": [0.0, float("nan"), 0.0, 0.0]})])
    data_error(path, VIDEO, r"nan\.tfrecord \(record 1\): feature mean_audio has a NaN or Inf "
               r"value \(--skip_bad_records skips such records\)$")


def test_wrong_feature_sizes(tmp_path):
    frames = good_frames(3)
    frames["rgb"][1] = frames["rgb"][1][:15]
    path = write_records(tmp_path / "size.tfrecord", [seq_example(good_frames(2)), seq_example(frames)])
    data_error(path, FRAME, r"size\.tfrecord \(record 1\): frame feature rgb has a frame of 15 bytes, "
               r"expected 16 \(check --feature_names / --feature_sizes\)")
    # One byte too many (decoding at a fixed length would cut it), and an
    # empty frame among the real ones (bytes like the padding's).
    for frame, count in ((frames["rgb"][0] + b"x", 17), (b"", 0)):
        frames["rgb"][1] = frame
        path = write_records(tmp_path / f"size{count}.tfrecord",
                             [seq_example(good_frames(2)), seq_example(frames)])
        data_error(path, FRAME, rf"size{count}\.tfrecord \(record 1\): frame feature rgb has a "
                   rf"frame of {count} bytes, expected 16")
    vpath = write_records(tmp_path / "vsize.tfrecord",
                          [video_example({"mean_rgb": [0.0] * 16, "mean_audio": [0.0] * 5})])
    data_error(vpath, VIDEO, r"vsize\.tfrecord \(record 0\): feature 'mean_audio' has 5 values, expected 4")


def test_out_of_range_labels(tmp_path):
    features = {"mean_rgb": [0.0] * 16, "mean_audio": [0.0] * 4}
    path = write_records(tmp_path / "labels.tfrecord", [
        video_example(features, labels=(1,)), video_example(features, labels=(2, NUM_CLASSES, 12)),
        video_example(features, labels=(-1, 4))])
    data_error(path, VIDEO, rf"labels\.tfrecord \(record 1\): label {NUM_CLASSES} is out of range for "
               rf"--num_classes={NUM_CLASSES}")
    negative = write_records(tmp_path / "negative.tfrecord", [video_example(features, labels=(-1, 4))])
    data_error(negative, VIDEO, r"label -1 is out of range")
    drop = ReaderConfig(("mean_rgb", "mean_audio"), SIZES, False, num_classes=NUM_CLASSES,
                        drop_out_of_range_labels=True)
    stats = ReadStats()
    labels = read_all(path, drop, stats=stats)["labels"]
    np.testing.assert_array_equal(labels, np.eye(NUM_CLASSES)[[1, 2, 4]])
    assert stats.as_dict()["dropped_labels"] == 3


def test_the_pipelines_run_without_the_autotuner(tmp_path):
    """Fixed parallelism and buffers, no tf.data autotuning: its model thread
    held up the deletion of an iterator stopped by a read error (and so the
    exit of a script reporting a damaged file) for 10 to 40 s on a busy
    machine."""
    path = write_records(tmp_path / "one.tfrecord", [seq_example(good_frames(2), vid=b"a")])
    for training in (False, True):
        dataset = readers.make_dataset(path, FRAME, 2, training=training)
        assert dataset.options().autotune.enabled is False
        ids = [batch["video_ids"].numpy().tolist() for batch in readers.raise_data_errors(dataset)]
        assert ids == [[b"a"]]


def test_skip_malformed_records(tmp_path):
    frames = good_frames(2)
    bad_size = dict(frames, rgb=[b"x"] * 2)
    path = write_records(tmp_path / "mixed.tfrecord", [
        seq_example(frames, vid=b"a"), b"\xff\x01 not a proto", seq_example({"rgb": frames["rgb"]}, vid=b"c"),
        seq_example(frames, vid=b"d"), seq_example(bad_size, vid=b"e"),
        seq_example(frames, labels=(NUM_CLASSES,), vid=b"f"), seq_example(frames, vid=b"")])
    skip = ReaderConfig(("rgb", "audio"), SIZES, True, num_classes=NUM_CLASSES, skip_bad_records=True)
    stats = ReadStats()
    assert list(read_all(path, skip, stats=stats)["video_ids"]) == [b"a", b"d"]
    assert stats.as_dict()["malformed_records"] == 5
    data_error(path, FRAME, r"mixed\.tfrecord \(record 1\)")


def test_missing_video_id(tmp_path):
    example = tf.train.Example(features=tf.train.Features(feature={
        "mean_rgb": _floats([0.0] * 16), "mean_audio": _floats([0.0] * 4)}))
    path = write_records(tmp_path / "noid.tfrecord", [example.SerializeToString()])
    data_error(path, VIDEO, r"noid\.tfrecord \(record 0\): no video id \(neither an id nor a video_id key\)")


def test_data_error_from_ignores_other_errors():
    assert readers.data_error_from(ValueError("x")) is None
    assert readers.data_error_from(tf.errors.InvalidArgumentError(None, None, "shapes differ")) is None
    error = DataError("f (record 1): bad")
    assert readers.data_error_from(error) is error


def test_data_error_from_eager_and_unrelated_asserts():
    def failing(message):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            tf.debugging.Assert(False, [tf.constant(message)])
        return info.value

    assert str(readers.data_error_from(failing("DataError: f's (record 2): bad"))) == "f's (record 2): bad"
    assert readers.data_error_from(failing("something else")) is None


# --------------------------------------------------------------------------- fuzzing

_BASE_RECORDS = [seq_example(good_frames(n, seed=n), labels=(n % NUM_CLASSES,), vid=b"id%d" % n)
                 for n in (0, 2, 7)]


def _mutate(data: st.DataObject) -> tuple[list[bytes] | None, bytes | None]:
    """Records to frame properly, or raw file bytes, derived from the base records."""
    records = list(_BASE_RECORDS)
    kind = data.draw(st.sampled_from(["truncate", "flip", "random_record", "edit_proto", "random_file"]))
    if kind == "random_file":
        return None, data.draw(st.binary(min_size=1, max_size=200))
    if kind == "random_record":
        records[data.draw(st.integers(0, 2))] = data.draw(st.binary(max_size=120))
        return records, None
    if kind == "edit_proto":
        example = tf.train.SequenceExample.FromString(records[1])
        edit = data.draw(st.sampled_from(
            ["drop_audio", "drop_id", "bad_label", "short_frame", "video_example"]))
        if edit == "drop_audio":
            del example.feature_lists.feature_list["audio"]
        elif edit == "drop_id":
            del example.context.feature["id"]
        elif edit == "bad_label":
            example.context.feature["labels"].int64_list.value.append(data.draw(st.integers(-5, 40)))
        elif edit == "short_frame":
            example.feature_lists.feature_list["rgb"].feature[0].bytes_list.value[0] = b"abc"
        else:
            records[1] = video_example({"mean_rgb": [0.0] * 16, "mean_audio": [0.0] * 4})
            return records, None
        records[1] = example.SerializeToString()
        return records, None
    return records, kind


@hypothesis.settings(max_examples=16, deadline=20000, derandomize=True,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture,
                                            hypothesis.HealthCheck.too_slow])
@hypothesis.given(data=st.data())
def test_fuzz_bad_records_fail_cleanly(tmp_path, data):
    path = tmp_path / "fuzz.tfrecord"
    records, raw = _mutate(data)
    if records is not None:
        write_records(path, records)
        if raw in ("truncate", "flip"):
            blob = bytearray(path.read_bytes())
            position = data.draw(st.integers(0, len(blob) - 1))
            if raw == "truncate":
                blob = blob[:position]
            else:
                blob[position] ^= data.draw(st.integers(1, 255))
            path.write_bytes(bytes(blob))
    else:
        path.write_bytes(raw)
    skip = data.draw(st.sampled_from([False, False, True]))  # skip mode costs twice as much to build
    config = ReaderConfig(("rgb", "audio"), SIZES, True, num_classes=NUM_CLASSES, max_frames=MAX_FRAMES,
                          skip_bad_records=skip)
    try:
        got = read_all(str(path), config, batch_size=2)
    except DataError as error:
        assert not skip, f"skip mode raised {error}"
        assert "fuzz.tfrecord" in str(error)
        return
    if not got:  # every record skipped
        return
    for key in ("video_ids", "num_frames", "labels"):  # whatever parsed is well formed
        assert len(got[key]) == len(got["video_matrix"])
    assert got["video_matrix"].shape[1:] == (MAX_FRAMES, 20)
    assert set(np.unique(got["labels"])) <= {0.0, 1.0}
    assert np.all((got["num_frames"] >= 0) & (got["num_frames"] <= MAX_FRAMES))

