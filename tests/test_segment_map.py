"""mAP@N of segment submissions (segment_eval_inference.py): the original's
numbers on the fixture, each of its five bugs fixed, and the script's
one-line errors."""

from __future__ import annotations

import json
import re
import logging

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_script, shared_path
from youtube8m_willow.data.readers import DataError
from youtube8m_willow.errors import UserError
from youtube8m_willow.segments.map_at_n import (
    RatedSegments, evaluate_segment_submission, load_rated_segments, read_rated_segments,
    score_submission)
from youtube8m_willow.submission.ensemble import SubmissionFormatError

FIXTURE = ("segment_fixtures", "frame_logistic")


def _fixture(name):
    return str(shared_path(*FIXTURE, name))


def _expected():
    return json.loads(shared_path(*FIXTURE, "expected_map.json").read_text())


# ------------------------------------------------------------------ fixture

def test_fixture_map_per_class_and_kept_predictions():
    expected = _expected()
    result = evaluate_segment_submission(_fixture("expected_validate_submission.csv"),
                                         _fixture("validate.tfrecord"), top_n=expected["top_n"])
    # The fixture's last ids are never positive, so the original's value
    # (trailing "\n" bug) and the fixed one agree.
    assert expected["map_at_n"] == expected["map_at_n_newline_stripped"]
    assert result.map_at_n == pytest.approx(expected["map_at_n_newline_stripped"], abs=1e-6)
    assert result.num_rated_pairs == expected["num_rated_pairs"]
    assert {str(k): v for k, v in result.per_class_ap.items()} == pytest.approx(
        expected["per_class_ap"], abs=1e-12)
    assert {str(k): v for k, v in result.num_positives.items()} == expected["num_positives"]
    kept = {str(k): v for k, v in result.kept.items()}
    for label, ids in expected["kept_predictions"].items():
        assert kept[label][:len(ids)] == ids     # the original lost the last id's match
        assert len(kept[label]) - len(ids) in (0, 1)


@pytest.mark.parametrize("top_n", ["0", "10", "25"])
def test_fixture_other_top_n(top_n):
    rated = read_rated_segments(_fixture("validate.tfrecord"))
    result = score_submission(_fixture("expected_validate_submission.csv"), rated, int(top_n))
    assert result.map_at_n == pytest.approx(
        _expected()["other_top_n"][top_n]["map_at_n_newline_stripped"], abs=1e-6)


@pytest.mark.slow
def test_script_on_the_fixture():
    result = run_script("segment_eval_inference.py",
                        f"--eval_data_pattern={_fixture('validate.tfrecord')}",
                        f"--submission_file={_fixture('expected_validate_submission.csv')}",
                        "--top_n=50")
    assert f"Num classes: 16 | mAP@50: {_expected()['map_at_n']:.6f}" in result.stdout


# ------------------------------------------------------- hand-made records

def _record(video, labels, starts, scores) -> bytes:
    context = tf.train.Features(feature={
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video.encode()])),
        "segment_labels": tf.train.Feature(int64_list=tf.train.Int64List(value=labels)),
        "segment_start_times": tf.train.Feature(int64_list=tf.train.Int64List(value=starts)),
        "segment_scores": tf.train.Feature(float_list=tf.train.FloatList(value=scores)),
    })
    return tf.train.SequenceExample(context=context).SerializeToString()


@pytest.fixture
def validation(tmp_path):
    """Class 3: positives a:0, a:5, b:0; negative b:5. Class 7: one positive
    c:10. Class 9: rated, no positive."""
    path = tmp_path / "validate.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(_record("a", [3, 3], [0, 5], [1, 1]))
        writer.write(_record("b", [3, 3, 9], [0, 5, 5], [1, 0, 0]))
        writer.write(_record("c", [7], [10], [1]))
    return str(path)


def _score(tmp_path, validation, text, top_n=0):
    path = tmp_path / "submission.csv"
    path.write_text(text)
    return score_submission(str(path), read_rated_segments(validation), top_n)


def test_rated_pairs_use_text_ids_not_bytes_reprs(validation):
    rated = read_rated_segments(validation)              # bug 2: "b'a':0" in the original
    assert rated.segment_ids.tolist() == [b"a:0", b"a:5", b"b:0", b"b:5", b"c:10", b"b:5"]
    assert rated.classes.tolist() == [3, 3, 3, 3, 7, 9]
    assert rated.num_positives(3) == 3


def test_hand_computed_ap(tmp_path, validation):
    # class 3: x:0 unrated (dropped), a:0 +, b:5 -, b:0 +  -> kept [+, -, +]
    # AP = (1/1 + 2/3) / 3 positives
    result = _score(tmp_path, validation, "3,x:0 a:0 b:5 b:0\n")
    assert result.kept == {3: ["a:0", "b:5", "b:0"]}
    assert result.map_at_n == pytest.approx((1 + 2 / 3) / 3)


def test_unrated_ids_use_up_top_n_slots(tmp_path, validation):
    result = _score(tmp_path, validation, "3,x:0 y:0 a:0 b:0\n", top_n=3)
    assert result.kept == {3: ["a:0"]}
    assert result.map_at_n == pytest.approx(1 / 3)


def test_header_line_is_skipped(tmp_path, validation):          # bug 1
    result = _score(tmp_path, validation, "Class,Segments\n7,c:10\n3,a:0\n")
    assert result.per_class_ap == {7: 1.0, 3: pytest.approx(1 / 3)}


def test_last_id_of_a_line_matches(tmp_path, validation):       # bug 3
    assert _score(tmp_path, validation, "7,x:0 c:10\n").per_class_ap == {7: 1.0}
    assert _score(tmp_path, validation, "7,c:10\r\n").per_class_ap == {7: 1.0}


def test_class_without_positives_scores_zero(tmp_path, validation, caplog):  # bug 4
    with caplog.at_level(logging.WARNING, logger="youtube8m_willow"):
        result = _score(tmp_path, validation, "9,b:5\n7,c:10\n42,a:0\n")
    assert result.per_class_ap == {9: 0.0, 7: 1.0, 42: 0.0}
    assert result.classes_without_positives == [9, 42]
    assert result.map_at_n == pytest.approx(1 / 3)
    assert "no positive" in caplog.text


def test_one_class_submission(tmp_path, validation):           # bug 5
    assert _score(tmp_path, validation, "7,c:10\n").map_at_n == 1.0


def test_class_with_no_ids_counts_zero(tmp_path, validation):
    result = _score(tmp_path, validation, "7,c:10\n3,\n")
    assert result.per_class_ap == {7: 1.0, 3: 0.0}
    assert result.map_at_n == 0.5


@pytest.mark.parametrize("text, message", [
    ("7 c:10\n", "submission.csv:1: expected '<class>,"),
    ("7,c:10\nClass,Segments\n", "submission.csv:2: expected"),
    ("7,c:10\n7,c:10\n", "submission.csv:2: class 7 appears twice (first on line 1)"),
    ("7,c:10 c:10\n", "submission.csv:1: segment 'c:10' listed twice"),
    ("Class,Segments\n", "no class lines"),
])
def test_malformed_submissions(tmp_path, validation, text, message):
    with pytest.raises(SubmissionFormatError, match=re.escape(message)):
        _score(tmp_path, validation, text)


def test_pair_rated_twice_keeps_the_last_score():
    rated = RatedSegments.from_pairs([b"a:0", b"a:0", b"b:0"], [1, 1, 1], [1, 0, 1])
    assert rated.segment_ids.tolist() == [b"a:0", b"b:0"]
    assert rated.scores.tolist() == [0, 1]


def test_mismatched_rating_lists_name_the_record(tmp_path):
    path = tmp_path / "bad.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(_record("a", [3], [0], [1]))
        writer.write(_record("b", [3, 4], [0], [1, 1]))
    with pytest.raises(DataError, match=r"bad.tfrecord: record 1 \(id 'b'\)"):
        read_rated_segments(str(path))


def test_records_without_ratings_are_an_error(tmp_path):
    path = tmp_path / "test.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(_record("a", [], [], []))
    with pytest.raises(DataError, match="no rated segments"):
        read_rated_segments(str(path))


# ------------------------------------------------------------- label cache

def test_label_cache_is_written_then_read_instead_of_the_records(tmp_path, validation):
    cache = tmp_path / "labels.csv"
    first = load_rated_segments(validation, str(cache))
    assert cache.read_text().splitlines()[0] == "a:0,3,1.0"
    again = load_rated_segments(str(tmp_path / "gone*.tfrecord"), str(cache))
    for field in ("segment_ids", "classes", "scores"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))


def test_bad_label_cache_is_a_user_error(tmp_path):
    cache = tmp_path / "labels.csv"
    cache.write_text("a:0,three,1\n")
    with pytest.raises(UserError, match="not a label cache"):
        load_rated_segments("", str(cache))


# ---------------------------------------------------------- script errors

def _script_error(*args) -> str:
    result = run_script("segment_eval_inference.py", *args, check=False, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return errors[0]


@pytest.mark.slow
def test_script_one_line_errors(tmp_path, validation):
    assert "no such submission file" in _script_error(
        f"--eval_data_pattern={validation}", f"--submission_file={tmp_path / 'none.csv'}")
    bad = tmp_path / "bad.csv"
    bad.write_text("Class,Segments\n3,a:0\nnot a line\n")
    assert f"{bad}:3: expected" in _script_error(f"--eval_data_pattern={validation}",
                                                 f"--submission_file={bad}")
    assert "no files match" in _script_error(f"--eval_data_pattern={tmp_path / 'x*.tfrecord'}",
                                             f"--submission_file={bad}")
    assert "--submission_file is required" in _script_error(f"--eval_data_pattern={validation}")


def test_script_is_thin():
    source = (REPO / "segment_eval_inference.py").read_text()
    assert "run_guarded" in source and len(source.splitlines()) < 60
