"""The segment-level Class,Segments writer: the original's output on the
fixture, and hand-computed cases for each ranking rule."""

from __future__ import annotations

import heapq
import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import shared_path
from youtube8m_willow.errors import ConfigError
from youtube8m_willow.segments.submission import (
    HEADER, SegmentSubmissionWriter, read_segment_label_ids, round_g, top_k_mask)

FIXTURE = ("segment_fixtures", "frame_logistic")
NUM_CLASSES = 100


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


def _write(path, whitelist, batches, max_pred=100, top_k=20) -> dict[int, list[str]]:
    with SegmentSubmissionWriter(str(path), whitelist, max_pred=max_pred, top_k=top_k) as writer:
        for ids, scores in batches:
            writer.add(ids, np.asarray(scores, np.float32))
    lines = _lines(path)
    assert lines[0] == HEADER
    return {int(c): s.split() for c, s in (line.split(",") for line in lines[1:])}


# ------------------------------------------------------------------ fixture

def _test_video_ids() -> list[str]:
    dataset = tf.data.TFRecordDataset(str(shared_path(*FIXTURE, "test.tfrecord")))
    spec = {"id": tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_sequence_example(r, context_features=spec)[0]["id"].numpy().decode()
            for r in dataset]


def _fixture_segments():
    """Per-segment score rows rebuilt from expected_segment_scores.json
    (every test segment is a candidate of every whitelisted class there), in
    the original's order: file order of the videos, then start time."""
    scores = json.loads(shared_path(*FIXTURE, "expected_segment_scores.json").read_text())
    rows: dict[str, np.ndarray] = {}
    for cls, entry in scores["classes"].items():
        for segment_id, text in entry["all_candidates_g"]:
            rows.setdefault(segment_id, np.zeros(NUM_CLASSES, np.float32))[int(cls)] = float(text)
    video_order = {video: i for i, video in enumerate(_test_video_ids())}
    ids = sorted(rows, key=lambda s: (video_order[s.split(":")[0]], int(s.split(":")[1])))
    assert len(ids) == scores["num_test_segments"]
    return np.array(ids), np.stack([rows[i] for i in ids]), scores


def test_fixture_submission_matches_the_original(tmp_path):
    ids, rows, scores = _fixture_segments()
    whitelist = read_segment_label_ids(str(shared_path(*FIXTURE, "segment_label_ids.csv")))
    batches = [(ids[i:i + 64], rows[i:i + 64]) for i in range(0, len(ids), 64)]
    ours = _write(tmp_path / "s.csv", whitelist, batches, max_pred=scores["segment_max_pred"],
                  top_k=scores["top_k"])
    expected_lines = _lines(shared_path(*FIXTURE, "expected_submission.csv"))
    assert expected_lines[0] == HEADER
    expected = {int(c): s.split() for c, s in (line.split(",") for line in expected_lines[1:])}
    assert list(ours) == list(expected)          # same classes, first-seen order
    for cls, segments in expected.items():
        entry = scores["classes"][str(cls)]
        tied = {s for pair in entry["near_tie_adjacent_pairs"] for s in pair}
        tied |= {s for s, *_ in entry["excluded_but_tied_with_cutoff"]}
        assert len(ours[cls]) == len(segments) == entry["num_output"]
        for position, (mine, theirs) in enumerate(zip(ours[cls], segments)):
            assert mine == theirs or {mine, theirs} <= tied, (cls, position, mine, theirs)


def test_fixture_order_survives_any_batching(tmp_path):
    ids, rows, scores = _fixture_segments()
    whitelist = read_segment_label_ids(str(shared_path(*FIXTURE, "segment_label_ids.csv")))
    one = _write(tmp_path / "a.csv", whitelist, [(ids, rows)], max_pred=7)
    many = _write(tmp_path / "b.csv", whitelist, [(ids[i:i + 1], rows[i:i + 1])
                                                  for i in range(len(ids))], max_pred=7)
    assert list(one.items()) == list(many.items())


# ------------------------------------------------------- the original, literal

def _original(ids, scores, whitelist, max_pred, top_k):
    """The original's post-processing, literally: %g lines, heaps, stable sort."""
    mask = np.zeros(scores.shape[1], np.float32)
    mask[list(whitelist)] = 1
    heaps: dict[int, list] = {}
    for segment_id, row in zip(ids, scores):
        row = row * mask
        line = sorted(((c, row[c]) for c in np.argsort(-row, kind="stable")[:top_k]),
                      key=lambda p: -p[1])
        for cls, score in ((c, float("%g" % s)) for c, s in line):
            if not mask[cls]:
                continue
            heap = heaps.setdefault(cls, [])
            (heapq.heappushpop if len(heap) >= max_pred else heapq.heappush)(heap, (score, segment_id))
    return {c: [s for _, s in sorted(h, key=lambda x: x[0], reverse=True)] for c, h in heaps.items()}


def test_random_streams_match_the_literal_original(tmp_path):
    rng = np.random.default_rng(3)
    for trial in range(5):
        n, c = 400, 30
        scores = rng.random((n, c)).astype(np.float32) - 0.4 * (trial % 2)  # odd: negatives
        ids = np.array([f"v{i // 7:03d}:{5 * (i % 7)}" for i in range(n)])
        whitelist = rng.choice(c, 12, replace=False)
        expected = _original(ids, scores, whitelist, max_pred=25, top_k=8)
        batches = [(ids[i:i + 33], scores[i:i + 33]) for i in range(0, n, 33)]
        ours = _write(tmp_path / f"{trial}.csv", whitelist, batches, max_pred=25, top_k=8)
        assert list(ours.items()) == list(expected.items())


def test_prunes_many_times_with_a_small_threshold(tmp_path, monkeypatch):
    import youtube8m_willow.segments.submission as module

    monkeypatch.setattr(module, "_MIN_PRUNE", 16)
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 4, (600, 10)).astype(np.float32) / 4  # many ties
    ids = np.array([f"s{i:04d}" for i in rng.permutation(600)])
    whitelist = [1, 2, 3, 5, 8]
    ours = _write(tmp_path / "p.csv", whitelist, [(ids[i:i + 10], scores[i:i + 10])
                                                  for i in range(0, 600, 10)], max_pred=20, top_k=4)
    expected = _original(ids, scores, whitelist, max_pred=20, top_k=4)
    for cls in expected:   # same kept sets; order: score desc, then id ascending
        kept = {s: i for i, s in enumerate(ids)}
        assert set(ours[cls]) == set(expected[cls])
        keys = [(-float(scores[kept[s], cls]), s) for s in ours[cls]]
        assert keys == sorted(keys)


# ------------------------------------------------------------- hand-computed

def test_ties_keep_larger_ids_and_list_them_ascending(tmp_path):
    ids = ["c", "a", "d", "b", "e"]
    scores = np.zeros((5, 3), np.float32)
    scores[:, 1] = [0.5, 0.5, 0.5, 0.9, 0.5]
    out = _write(tmp_path / "t.csv", [1], [(ids, scores)], max_pred=3, top_k=1)
    # heap on (score, id): b (0.9) and the two largest ids of the 0.5 tie (e, d)
    assert out == {1: ["b", "d", "e"]}


def test_g_rounding_makes_ties(tmp_path):
    scores = np.zeros((2, 2), np.float32)
    scores[:, 0] = [0.1234561, 0.1234564]          # both print 0.123456
    out = _write(tmp_path / "g.csv", [0], [(["y", "x"], scores)], max_pred=1, top_k=1)
    assert out == {0: ["y"]}                       # tie: the larger id wins the place


def test_whitelist_masks_and_first_seen_order(tmp_path):
    scores = np.array([[0.1, 0.9, 0.8, 0.3],       # whitelist 0, 2, 3; top_k 2 of masked
                       [0.7, 0.95, 0.2, 0.6]], np.float32)
    out = _write(tmp_path / "w.csv", [0, 2, 3], [(["s:0", "s:5"], scores)], max_pred=5, top_k=2)
    # segment 1 masked: [0.1, 0, 0.8, 0.3] -> 2, 3;  segment 2: [0.7, 0, 0.2, 0.6] -> 0, 3
    assert list(out.items()) == [(2, ["s:0"]), (3, ["s:5", "s:0"]), (0, ["s:5"])]


def test_zero_score_whitelisted_class_in_top_k_counts(tmp_path):
    scores = np.array([[0.0, 0.5, 0.0]], np.float32)
    out = _write(tmp_path / "z.csv", [0, 1], [(["s:0"], scores)], max_pred=5, top_k=3)
    assert out == {1: ["s:0"], 0: ["s:0"]}


def test_top_k_ties_go_to_the_lower_class():
    scores = np.array([[0.5, 0.2, 0.5, 0.5, 0.1]], np.float32)
    assert top_k_mask(scores, 2).tolist() == [[True, False, True, False, False]]
    assert top_k_mask(scores, 9).all()


def test_max_pred_cut(tmp_path):
    scores = np.linspace(0.1, 0.9, 9, dtype=np.float32)[:, None]
    ids = [f"v:{5 * i}" for i in range(9)]
    out = _write(tmp_path / "m.csv", [0], [(ids, scores)], max_pred=3, top_k=1)
    assert out == {0: ["v:40", "v:35", "v:30"]}


def test_bytes_ids_and_object_arrays(tmp_path):
    scores = np.array([[0.2], [0.4]], np.float32)
    ids = np.array([b"ab:0", b"ab:5"], dtype=object)   # what a tf string tensor gives
    assert _write(tmp_path / "b.csv", [0], [(ids, scores)], top_k=1) == {0: ["ab:5", "ab:0"]}


def test_empty_input_writes_the_header_only(tmp_path):
    path = tmp_path / "e.csv"
    with SegmentSubmissionWriter(str(path), [1, 2]):
        pass
    assert path.read_text() == HEADER + "\n"


def test_error_inside_with_leaves_no_file(tmp_path):
    path = tmp_path / "x.csv"
    with pytest.raises(RuntimeError):
        with SegmentSubmissionWriter(str(path), [0]) as writer:
            writer.add(["a"], np.ones((1, 2), np.float32))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("whitelist, max_pred, top_k", [([], 5, 2), ([-1], 5, 2), ([0], 0, 2),
                                                        ([0], 5, 0)])
def test_bad_settings_are_config_errors(tmp_path, whitelist, max_pred, top_k):
    with pytest.raises(ConfigError):
        SegmentSubmissionWriter(str(tmp_path / "c.csv"), whitelist, max_pred, top_k)
    assert list(tmp_path.iterdir()) == []


def test_bad_batches_are_errors(tmp_path):
    with SegmentSubmissionWriter(str(tmp_path / "c.csv"), [5]) as writer:
        with pytest.raises(ConfigError, match="whitelisted class 5"):
            writer.add(["a"], np.ones((1, 3), np.float32))
        writer.add(["a"], np.ones((1, 6), np.float32))
        with pytest.raises(ValueError, match="finite"):
            writer.add(["b"], np.full((1, 6), np.nan, np.float32))
        with pytest.raises(ValueError, match="classes"):
            writer.add(["b"], np.ones((1, 7), np.float32))


def test_segment_label_ids_file_skips_non_integer_lines(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("Index\n7\n3\n\n7\nx\n")
    assert read_segment_label_ids(str(path)).tolist() == [3, 7]
    path.write_text("Index\n")
    with pytest.raises(ConfigError):
        read_segment_label_ids(str(path))


def test_round_g_is_the_value_of_percent_g():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(200_000), 10.0 ** rng.uniform(-44, 38, 50_000),
                             [0.1234565, 0.5, 1.0, 9.999995e-1, 1234565.0, 99999.95, -0.25,
                              0.0, 1e-45]]).astype(np.float32)
    expected = np.array([float("%g" % v) for v in values])
    np.testing.assert_array_equal(round_g(values), expected)
