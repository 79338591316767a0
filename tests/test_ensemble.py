"""Weighted averaging of submission CSVs (file_averaging.py, SPEC section 10)."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import read_submission, run_script
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.metrics.eval_util import calculate_gap
from youtube8m_willow.submission import ensemble
from youtube8m_willow.submission.csv_writer import SubmissionWriter
from youtube8m_willow.submission.ensemble import SubmissionFormatError, average_submissions

HEADER = "VideoId,LabelConfidencePairs"


def write_csv(path: Path, *lines: str, header: str = HEADER) -> str:
    path.write_text("\n".join([header, *lines]) + "\n")
    return str(path)


def averaged(tmp_path, files: list[list[str]], weights=None, top_k=20):
    paths = [write_csv(tmp_path / f"in{i}.csv", *lines) for i, lines in enumerate(files)]
    output = tmp_path / "out.csv"
    count = average_submissions(paths, weights, str(output), top_k=top_k)
    return count, output


def test_two_files_equal_weights_hand_computed(tmp_path):
    count, output = averaged(tmp_path, [["a,1 0.8 2 0.4"], ["a,2 0.6 3 0.2"]])
    assert count == 1
    # class 1: (.8+0)/2, class 2: (.4+.6)/2, class 3: (0+.2)/2
    assert output.read_text() == f"{HEADER}\na,2 0.500000 1 0.400000 3 0.100000\n"


def test_three_files_weights_divide_by_their_sum(tmp_path):
    _, output = averaged(tmp_path, [["a,0 0.9 5 0.3"], ["a,5 0.6"], ["a,0 0.3 7 0.7"]],
                         weights=[1, 2, 3])
    rows = read_submission(output)
    expected = {0: (0.9 + 3 * 0.3) / 6, 5: (0.3 + 2 * 0.6) / 6, 7: 3 * 0.7 / 6}
    assert [label for label, _ in rows["a"]] == [7, 0, 5]  # .35, .30, .25
    assert dict(rows["a"]) == pytest.approx(expected, abs=1e-6)


def test_missing_videos_count_zero_with_the_full_weight_sum(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="youtube8m_willow"):
        count, output = averaged(tmp_path, [["a,1 0.8", "b,2 0.4"], ["c,3 1.0", "a,1 0.2"]],
                                 weights=[1, 3])
    rows = read_submission(output)
    assert count == 3 and list(rows) == ["a", "b", "c"]  # first-appearance order
    assert rows["a"] == [(1, pytest.approx((0.8 + 3 * 0.2) / 4))]
    assert rows["b"] == [(2, pytest.approx(0.1))]
    assert rows["c"] == [(3, pytest.approx(0.75))]
    assert "2 of 3 videos are missing from at least one input" in caplog.text


def test_string_and_zero_padded_ids_are_kept_verbatim(tmp_path):
    _, output = averaged(tmp_path, [["v001,1 0.5", "007,2 0.5", "7,3 0.5"],
                                    ["7,3 0.5", "007,2 0.5", "v001,1 0.5"]])
    lines = output.read_text().splitlines()
    assert lines[0] == HEADER  # not WILLOW's "VideoID"
    assert [line.split(",")[0] for line in lines[1:]] == ["v001", "007", "7"]
    assert lines[2] == "007,2 0.500000"


def test_sorted_descending_ties_by_class_and_top_k(tmp_path):
    _, output = averaged(tmp_path, [["a,9 0.5 4 0.5 1 0.2 6 0.9"]], top_k=3)
    assert output.read_text().splitlines()[1] == "a,6 0.900000 4 0.500000 9 0.500000"


def test_every_pair_of_a_forty_pair_line_is_read(tmp_path):
    # WILLOW's script read only the first 20 of 40 pairs: class 39 (last pair)
    # would then have averaged to 0.5 instead of (0.41 + 1.0) / 2.
    line = "a," + " ".join(f"{c} {0.8 - c / 100:.2f}" for c in range(40))
    _, output = averaged(tmp_path, [[line], ["a,39 1.0"]], top_k=40)
    rows = dict(read_submission(output)["a"])
    assert len(rows) == 40
    assert rows[39] == pytest.approx(0.705)
    assert rows[30] == pytest.approx(0.25)
    assert read_submission(output)["a"][0] == (39, pytest.approx(0.705))


def test_reads_the_header_written_by_willows_script(tmp_path):
    path = write_csv(tmp_path / "old.csv", "a,1 0.5", header="VideoID,LabelConfidencePairs")
    assert ensemble.read_submission(path).video_ids.tolist() == ["a"]


@pytest.mark.parametrize("line, reason", [
    ("b,1 0.5 2", "odd number of values: expected '<label> <confidence>' pairs"),
    ("b,1 0.5 x 0.2", "'x' is not a number"),
    ("b 1 0.5", "expected '<video id>,<label> <confidence> ...'"),
    (",1 0.5", "expected '<video id>,<label> <confidence> ...'"),
    ("a,1 0.5", "video 'a' appears twice"),
    ("b,1 0.5 1 0.2", "label 1 appears twice"),
    ("b,-1 0.5", "label -1 is not a class index (a non-negative integer)"),
    ("b,1.5 0.5", "label 1.5 is not a class index (a non-negative integer)"),
    ("b,1 nan", "confidence is not a finite number"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, reason):
    path = write_csv(tmp_path / "bad.csv", "a,1 0.5", "", line, "c,1 0.5")
    with pytest.raises(SubmissionFormatError) as info:
        ensemble.read_submission(path)
    assert str(info.value) == f"{path}:4: {reason}"


def test_bad_header_and_bad_arguments(tmp_path):
    bad = write_csv(tmp_path / "bad.csv", "a,1 0.5", header="id,pairs")
    with pytest.raises(SubmissionFormatError, match=r"bad.csv:1: expected header"):
        ensemble.read_submission(bad)
    good = write_csv(tmp_path / "good.csv", "a,1 0.5")
    output = str(tmp_path / "out.csv")
    with pytest.raises(ValueError, match="2 weights for 1 submission files"):
        average_submissions([good], [1, 2], output)
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        average_submissions([good, good], [1, -1], output)
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        average_submissions([good], [0], output)
    with pytest.raises(FileNotFoundError, match="nope.csv: no such submission file"):
        average_submissions([good, str(tmp_path / "nope.csv")], None, output)


def test_failed_average_leaves_an_existing_output_untouched(tmp_path):
    output = tmp_path / "out.csv"
    output.write_text("previous\n")
    good = write_csv(tmp_path / "good.csv", "a,1 0.5")
    bad = write_csv(tmp_path / "bad.csv", "a,1")
    with pytest.raises(SubmissionFormatError):
        average_submissions([good, bad], None, str(output))
    assert output.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "good.csv", "out.csv"]


@pytest.mark.slow
def test_command_line(tmp_path):
    a = write_csv(tmp_path / "a.csv", "v1,1 0.8 2 0.4")
    b = write_csv(tmp_path / "b.csv", "v1,2 1.0")
    output = tmp_path / "ens.csv"
    run_script("file_averaging.py", a, f"--inputs={b}", "--weights=1,3", f"--output={output}",
               "--top_k=1")
    assert output.read_text() == f"{HEADER}\nv1,2 0.850000\n"
    failed = run_script("file_averaging.py", a, "--weights=1,x", f"--output={output}",
                        check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == "ERROR: --weights must be numbers, got '1,x'"
    failed = run_script("file_averaging.py", a, str(tmp_path / "nope.csv"), check=False)
    assert failed.returncode == 1 and "no such submission file" in failed.stderr


def _random_submission(path: str, rng: np.random.Generator, num_videos: int, k: int) -> None:
    classes = (np.arange(k) * 193 + rng.integers(0, 193, (num_videos, 1))) % 3862
    scores = -np.sort(-rng.random((num_videos, k)), axis=1)
    with SubmissionWriter(path) as writer:
        writer.write([f"v{i:07d}" for i in range(num_videos)], classes, scores)


def test_large_files_average_fast_with_flat_arrays(tmp_path):
    rng = np.random.default_rng(0)
    num_videos, k = 25_000, 20
    assert num_videos > 2 * ensemble._CHUNK_LINES  # several parsing chunks per file, one partial
    paths = [str(tmp_path / f"big{i}.csv") for i in range(2)]
    for path in paths:
        _random_submission(path, rng, num_videos, k)
    assert average_submissions(paths, None, str(tmp_path / "out.csv")) == num_videos
    # Every 97th video against a plain dict average of its two input lines.
    inputs = [read_submission(path) for path in paths]
    output = read_submission(tmp_path / "out.csv")
    for video in [f"v{i:07d}" for i in range(0, num_videos, 97)]:
        average = {}
        for rows in inputs:
            for label, score in rows[video]:
                average[label] = average.get(label, 0.0) + score / 2
        expected = sorted(average.items(), key=lambda pair: -pair[1])[:20]
        assert [label for label, _ in output[video]] == [label for label, _ in expected]
        np.testing.assert_allclose([s for _, s in output[video]], [s for _, s in expected],
                                   atol=1e-6)
    tracemalloc.start()
    try:
        submission = ensemble.read_submission(paths[0])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    pairs = num_videos * k
    assert submission.classes.size == pairs
    # 16 bytes kept per pair; a Python dict entry per pair would take > 100.
    kept = submission.rows.nbytes + submission.classes.nbytes + submission.scores.nbytes
    assert kept == 16 * pairs
    assert peak < 100 * pairs


# ------------------------------------------------------- ensemble of trained models

NUM_CLASSES = 40
MODEL_FLAGS = ("--feature_names=mean_rgb,mean_audio", "--feature_sizes=64,16",
               f"--num_classes={NUM_CLASSES}")


def _true_labels(pattern: str) -> tuple[list[str], np.ndarray]:
    ids, rows = [], []
    for record in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))):
        example = tf.train.Example.FromString(record.numpy())
        ids.append(example.features.feature["id"].bytes_list.value[0].decode())
        row = np.zeros(NUM_CLASSES)
        row[list(example.features.feature["labels"].int64_list.value)] = 1
        rows.append(row)
    return ids, np.stack(rows)


def csv_predictions(path: str, video_ids: list[str]) -> np.ndarray:
    """A submission as a dense [videos, classes] matrix, rows in ``video_ids`` order."""
    submission = ensemble.read_submission(path)
    row_of = {video: row for row, video in enumerate(submission.video_ids)}
    return submission.to_dense(NUM_CLASSES)[[row_of[video] for video in video_ids]]


def _train_and_predict(tmp_path: Path, model: str, train_pattern: str,
                       validate_pattern: str) -> str:
    train_dir = tmp_path / model
    run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={train_pattern}",
               f"--model={model}", "--batch_size=32", "--max_steps=400", "--num_epochs=1000",
               "--base_learning_rate=0.01", "--seed=1", "--export_model_steps=100000",
               *MODEL_FLAGS)
    output = tmp_path / f"{model}.csv"
    run_script("inference.py", f"--train_dir={train_dir}",
               f"--input_data_pattern={validate_pattern}", f"--output_file={output}",
               f"--top_k={NUM_CLASSES}", *MODEL_FLAGS)
    return str(output)


@pytest.mark.slow
def test_ensemble_of_two_trained_models_is_their_average(tmp_path):
    # Two models trained on different halves of the data (bagging): the
    # ensemble's ranking is that of the mean of their full score matrices.
    train = write_synthetic_dataset(str(tmp_path / "data"), num_videos=300,
                                    num_classes=NUM_CLASSES, num_shards=2, frame_level=False,
                                    feature_sizes=(64, 16), seed=3, prefix="train",
                                    difficulty="easy")["video"]
    validate = write_synthetic_dataset(str(tmp_path / "data"), num_videos=300,
                                       num_classes=NUM_CLASSES, num_shards=1,
                                       frame_level=False, feature_sizes=(64, 16), seed=3,
                                       prefix="validate", difficulty="easy")["video"]
    jobs = [("LogisticModel", train.replace("*", "0000")), ("MoeModel", train.replace("*", "0001"))]
    members = [_train_and_predict(tmp_path, *job, validate) for job in jobs]
    average_submissions(members, None, str(tmp_path / "ensemble.csv"))
    video_ids, labels = _true_labels(validate)
    dense = [csv_predictions(path, video_ids) for path in members]  # every class: top_k=all
    assert min(calculate_gap(d, labels, top_k=20) for d in dense) > 0.5  # both learned
    mean = (dense[0] + dense[1]) / 2
    ensemble_rows = read_submission(tmp_path / "ensemble.csv")
    for row, video in enumerate(video_ids):
        classes = [label for label, _ in ensemble_rows[video]]
        scores = np.array([score for _, score in ensemble_rows[video]])
        np.testing.assert_allclose(scores, mean[row, classes], atol=2e-6)
        # The 20 kept are the 20 best of the mean (up to ties in the 6th decimal).
        assert scores[-1] >= np.sort(mean[row])[-20] - 2e-6
