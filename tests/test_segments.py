"""Segment-level (2019) reading, training and evaluation: hand-built records,
and the original's SegEval numbers on its own train_dir (SPEC section 15)."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_script, shared_path
from youtube8m_willow.data.readers import ReaderConfig
from youtube8m_willow.data.segments import make_rated_segment_dataset, make_test_segment_dataset

SIZES = (4, 2)
CONFIG = ReaderConfig(("rgb", "audio"), SIZES, True, num_classes=6, max_frames=12)


def _frames(num_frames: int, size: int, offset: int) -> list[tf.train.Feature]:
    """Frame t holds the byte (offset + t) in every dimension."""
    return [tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[bytes([(offset + t) % 256] * size)])) for t in range(num_frames)]


def _record(video_id: str, num_frames: int, ratings=()) -> bytes:
    """ratings: (start, class, score) triples."""
    context = {"id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id.encode()])),
               "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
    if ratings:
        starts, classes, scores = zip(*ratings)
        context["segment_start_times"] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=starts))
        context["segment_end_times"] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=[s + 5 for s in starts]))
        context["segment_labels"] = tf.train.Feature(int64_list=tf.train.Int64List(value=classes))
        context["segment_scores"] = tf.train.Feature(float_list=tf.train.FloatList(value=scores))
    lists = {name: tf.train.FeatureList(feature=_frames(num_frames, size, 10 * (i + 1)))
             for i, (name, size) in enumerate(zip(("rgb", "audio"), SIZES))}
    return tf.train.SequenceExample(context=tf.train.Features(feature=context),
                                    feature_lists=tf.train.FeatureLists(
                                        feature_list=lists)).SerializeToString()


def _write(path, records) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _dequantized(byte: int) -> float:
    return byte * 4 / 255 + 4 / 512 - 2


def _all(dataset) -> dict[str, np.ndarray]:
    batches = list(dataset)
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


def test_rated_segments_one_per_start_time_with_labels_and_weights(tmp_path):
    path = _write(tmp_path / "v.tfrecord", [
        _record("a", 12, [(5, 2, 1.0), (0, 3, 0.0), (5, 4, 0.0)]),
        _record("b", 8, [(5, 1, 1.0)]),  # frames 5..9 of an 8-frame video: 3 real, 2 zero
    ])
    dataset = make_rated_segment_dataset(path, CONFIG, 2, training=False, num_readers=1)
    assert dataset.options().autotune.enabled is False  # see test_readers
    got = _all(dataset)
    assert got["video_ids"].tolist() == [b"a", b"a", b"b"]  # first seen start first
    assert got["num_frames"].tolist() == [5, 5, 5]
    expected_labels = np.zeros((3, 6), np.float32)
    expected_labels[0, 2] = expected_labels[2, 1] = 1
    np.testing.assert_array_equal(got["labels"], expected_labels)
    weights = np.zeros((3, 6), np.float32)
    weights[0, [2, 4]] = weights[1, 3] = weights[2, 1] = 1
    np.testing.assert_array_equal(got["label_weights"], weights)
    matrix = got["video_matrix"]
    assert matrix.shape == (3, 5, 6)
    np.testing.assert_allclose(matrix[0, :, 0], [_dequantized(10 + t) for t in range(5, 10)],
                               rtol=1e-6)
    np.testing.assert_allclose(matrix[1, :, 4], [_dequantized(20 + t) for t in range(5)],
                               rtol=1e-6)
    np.testing.assert_allclose(matrix[2, :3, 0], [_dequantized(10 + t) for t in (5, 6, 7)],
                               rtol=1e-6)
    assert not matrix[2, 3:].any()


def test_test_records_cut_into_segments_with_a_partial_last_one(tmp_path):
    path = _write(tmp_path / "t.tfrecord", [_record("x", 12), _record("y", 5), _record("z", 3)])
    got = _all(make_test_segment_dataset(path, CONFIG, 4, num_readers=1))
    assert got["video_ids"].tolist() == [b"x:0", b"x:5", b"x:10", b"y:0", b"z:0"]
    assert got["num_frames"].tolist() == [5, 5, 2, 5, 3]
    np.testing.assert_allclose(got["video_matrix"][2, :2, 0],
                               [_dequantized(20), _dequantized(21)], rtol=1e-6)
    assert not got["video_matrix"][2, 2:].any() and not got["video_matrix"][4, 3:].any()


def test_an_out_of_range_segment_label_names_the_record(tmp_path):
    path = _write(tmp_path / "v.tfrecord", [_record("a", 10, [(0, 9, 1.0)])])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"v.tfrecord \(record 0\).*9"):
        _all(make_rated_segment_dataset(path, CONFIG, 2, training=False, num_readers=1))


# ------------------------------------------------------------------ the original's train_dir

FIXTURE = ("segment_fixtures", "frame_logistic")
TAGS = {"Avg_Hit@1": "Epoch/SegEval_Avg_Hit@1", "Avg_PERR": "Epoch/SegEval_Avg_Perr",
        "MAP": "Epoch/SegEval_MAP", "GAP": "Epoch/SegEval_GAP",
        "Avg_Loss": "Epoch/SegEval_Avg_Loss"}


def _event_scalars(folder) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name in ("histograms", "pr_curves"):
                    continue  # the per-class AP histogram and the PR curve: not scalars
                values.setdefault(value.tag, []).append(
                    float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                    else value.simple_value)
    return values


def in_folder(flags: list[str], folder) -> list[str]:
    """The fixture's command line, its relative paths made absolute."""
    def absolute(flag: str) -> str:
        name, _, value = flag.partition("=")
        return f"{name}={folder / value}" if value and (folder / value).exists() else flag
    return [absolute(flag) for flag in flags]


@pytest.fixture
def original_segment_dir(tmp_path):
    fixture = shared_path(*FIXTURE)
    shutil.copytree(fixture, tmp_path / "fixture")
    return tmp_path / "fixture", json.loads((fixture / "meta.json").read_text())


def test_segment_eval_matches_the_original(original_segment_dir):
    folder, meta = original_segment_dir
    expected = json.loads((folder / "expected_eval.json").read_text())
    result = run_script("eval.py", *in_folder(meta["eval_flags"], folder), f"--num_classes={meta['num_classes']}",
                        "--frame_sampling=uniform")
    # The original's epoch line, with the GAP to 4 decimals as in the
    # video-level line (the original's segment line had 3); Avg_Loss's 6th
    # decimal may differ (float32 sums).
    original = re.sub(r"GAP: [\d.]+", f"GAP: {expected['GAP']:.4f}", expected["epoch_line"])
    head, tail = original.split(" | Avg_Loss: ")
    line = next(line for line in result.stderr.splitlines() if "epoch/eval number" in line)
    assert head in line and line.endswith(tail.split(" | ")[1])
    assert re.search(r"\| GAP: \d\.\d{4} \| Avg_Loss: ", line), line
    scalars = _event_scalars(folder / "train_dir")
    for name, tag in TAGS.items():
        assert scalars[tag] == [pytest.approx(expected[name], abs=1e-5)], tag
    assert len(scalars["GlobalStep/SegEval_Hit@1"]) == len(expected["batches"])
    assert scalars["GlobalStep/SegEval_Hit@1"][0] == pytest.approx(
        expected["batches"][0]["hit_at_one"], abs=1e-5)
    # The per-class report's APs are the ones the original's MAP averaged
    # (over the classes with rated positives).
    step = int(meta["checkpoint"].rsplit("-", 1)[1])
    with open(folder / "train_dir" / f"eval_per_class_step_{step}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    aps = [float(row["ap"]) for row in rows if int(row["positives"]) > 0]
    assert len(rows) == meta["num_classes"]
    assert sum(aps) / len(aps) == pytest.approx(expected["MAP"], abs=1e-5)


def test_class_count_comes_from_the_checkpoint_and_segments_train(original_segment_dir):
    # The original's 2019 train_dir records no class count (its readers
    # hard-coded it): eval reads it off the checkpoint, and so does a
    # continued segment-level training run, which then records it.
    folder, meta = original_segment_dir
    expected = json.loads((folder / "expected_eval.json").read_text())
    train_dir = folder / "train_dir"
    evaluated = run_script("eval.py", *in_folder(meta["eval_flags"], folder),
                           "--frame_sampling=uniform")
    assert re.search(r"checkpoint \S+ holds the model with .*num_classes=100", evaluated.stderr)
    assert f"GAP: {expected['GAP']:.4f} |" in evaluated.stderr
    run_script("train.py", f"--train_dir={train_dir}",
               f"--train_data_pattern={folder / 'validate.tfrecord'}", "--segment_labels=True",
               "--batch_size=32", "--max_steps=62", "--num_readers=1")
    recorded = json.loads((train_dir / "model_flags.json").read_text())
    assert recorded["num_classes"] == 100 and recorded["segment_labels"] is True
    assert recorded["model"] == "FrameLevelLogisticModel"
    # eval.py now needs no flags but the data: the train_dir says segments.
    again = run_script("eval.py", f"--train_dir={train_dir}",
                       f"--eval_data_pattern={folder / 'validate.tfrecord'}", "--run_once=True")
    assert "epoch/eval number 62 " in again.stderr and "num_classes: 28" in again.stderr


def _segment_inference(folder, meta, which: str, *extra: str) -> str:
    flags = in_folder(meta[f"inference_flags_{which}"], folder)
    output = next(f.split("=", 1)[1] for f in flags if f.startswith("--output_file="))
    output = str(folder / output) if not output.startswith("/") else output
    flags = [f for f in flags if not f.startswith("--output_file=")]
    run_script("inference.py", *flags, f"--output_file={output}",
               f"--num_classes={meta['num_classes']}", "--frame_sampling=uniform", *extra)
    return output


def _class_lines(path) -> dict[str, list[str]]:
    lines = open(path).read().splitlines()
    assert lines[0] == "Class,Segments"
    return {c: ids.split() for c, ids in (line.split(",", 1) for line in lines[1:])}


def test_segment_inference_and_map_match_the_original(original_segment_dir, tmp_path):
    folder, meta = original_segment_dir
    # The Class,Segments CSV: the same classes in the same order, per class the
    # same segments in the same order (the fixture has no near ties here).
    output = _segment_inference(folder, meta, "test", f"--output_model_tgz={tmp_path / 'm.tgz'}")
    got, expected = _class_lines(output), _class_lines(folder / "expected_submission.csv")
    assert list(got) == list(expected)
    scores = json.loads((folder / "expected_segment_scores.json").read_text())["classes"]
    for name, ids in expected.items():
        ties = {i for pair in scores[name]["near_tie_adjacent_pairs"] for i in pair}
        assert [i for i in got[name] if i not in ties] == [i for i in ids if i not in ties], name
    # On the validation records, from the tarball (no model flags), then mAP@N.
    validate = tmp_path / "validate.csv"
    run_script("inference.py", f"--input_model_tgz={tmp_path / 'm.tgz'}",
               f"--untar_model_dir={tmp_path / 'untar'}",
               f"--input_data_pattern={folder / 'validate.tfrecord'}", f"--output_file={validate}",
               f"--segment_label_ids_file={folder / 'segment_label_ids.csv'}",
               "--segment_max_pred=50", "--num_readers=1", "--frame_sampling=uniform")
    assert _class_lines(validate) == _class_lines(folder / "expected_validate_submission.csv")
    scored = run_script("segment_eval_inference.py",
                        f"--eval_data_pattern={folder / 'validate.tfrecord'}",
                        f"--submission_file={validate}", "--top_n=50")
    map_at_n = float(re.search(r"mAP@50: ([0-9.]+)", scored.stdout + scored.stderr).group(1))
    expected_map = json.loads((folder / "expected_map.json").read_text())
    assert map_at_n == pytest.approx(expected_map["map_at_n_newline_stripped"], abs=1e-6)


def test_model_tgz_round_trip_for_a_video_level_model(tmp_path):
    from youtube8m_willow.data.synthetic import write_synthetic_dataset

    pattern = write_synthetic_dataset(str(tmp_path / "data"), num_videos=24, num_classes=8,
                                      num_shards=1, frame_level=False)["video"]
    flags = ["--model=MoeModel", "--feature_names=mean_rgb,mean_audio",
             "--feature_sizes=1024,128", "--num_classes=8"]
    run_script("train.py", f"--train_dir={tmp_path / 'run'}", f"--train_data_pattern={pattern}",
               "--batch_size=8", "--max_steps=2", "--export_model_steps=0", *flags)
    direct, packed = tmp_path / "direct.csv", tmp_path / "packed.csv"
    run_script("inference.py", f"--train_dir={tmp_path / 'run'}", f"--input_data_pattern={pattern}",
               f"--output_file={direct}", f"--output_model_tgz={tmp_path / 'model.tgz'}")
    run_script("inference.py", f"--input_model_tgz={tmp_path / 'model.tgz'}",
               f"--untar_model_dir={tmp_path / 'untar'}", f"--input_data_pattern={pattern}",
               f"--output_file={packed}")
    assert packed.read_text() == direct.read_text()
    refused = run_script("inference.py", f"--input_model_tgz={tmp_path / 'model.tgz'}",
                         f"--train_dir={tmp_path / 'run'}", f"--input_data_pattern={pattern}",
                         f"--output_file={tmp_path / 'x.csv'}", check=False)
    assert refused.returncode == 1 and "--input_model_tgz" in refused.stderr


def test_the_whitelist_is_a_path_never_a_url_and_ships_by_default():
    from youtube8m_willow.errors import ConfigError
    from youtube8m_willow.segments.inference import DEFAULT_SEGMENT_LABEL_IDS
    from youtube8m_willow.segments.submission import read_segment_label_ids

    with pytest.raises(ConfigError, match="a URL"):
        read_segment_label_ids("https://example.com/segment_label_ids.csv")
    shipped = read_segment_label_ids(DEFAULT_SEGMENT_LABEL_IDS)
    assert shipped.size == 1000 and shipped.min() >= 0 and shipped.max() < 3862
