"""The original code's numbers, reproduced through the command line (SPEC 12, 14).

Each fixture holds an original TF1 train_dir (WILLOW's names, or the Google
starter's ``tower/`` names), its input records and the original's eval-mode
predictions; inference.py must reproduce them to 1e-5. The train fixtures
hold an original run after K steps (with its optimizer's slots): train.py
continues it one step and inference.py must then match the original's
predictions after that step to 2e-4. A missing fixture fails the test.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import shared_path, read_submission, run_script
from youtube8m_willow import checkpoint

FIXTURES = [("fixtures", "moe_video"), ("fixtures", "netvlad_gated"),
            ("starter_fixtures", "starter_moe_video")]
# (folder, name, extra train.py flags); --xla compiles the step: it must
# keep the original's numbers too.
TRAIN_FIXTURES = [("train_fixtures", "train_netvlad", ()),
                  ("train_fixtures", "train_netvlad", ("--xla=True",)),
                  ("starter_fixtures/train", "starter_train_moe_rmsprop", ())]
TRAIN_IDS = ["netvlad", "netvlad-xla", "starter-rmsprop"]


def _load(folder, name):
    fixture = shared_path(folder, name)
    return fixture, json.loads((fixture / "meta.json").read_text())


def _predictions_from_csv(path, video_ids, num_classes) -> np.ndarray:
    rows = read_submission(path)
    assert list(rows) == video_ids, "every video once, in record order"
    predictions = np.zeros([len(video_ids), num_classes], np.float32)
    for i, video_id in enumerate(video_ids):
        pairs = rows[video_id]
        assert len(pairs) == num_classes
        scores = [score for _, score in pairs]
        assert scores == sorted(scores, reverse=True)
        for label, score in pairs:
            predictions[i, label] = score
    return predictions


def _infer(train_dir, data, meta, output, extra=()):
    classes = meta["num_classes"]
    run_script("inference.py", f"--train_dir={train_dir}", f"--input_data_pattern={data}",
               f"--output_file={output}", f"--top_k={classes}", f"--num_classes={classes}",
               "--frame_sampling=uniform", *meta["model_flags"], *extra)
    return _predictions_from_csv(output, meta["video_ids"], classes)


@pytest.mark.parametrize("folder,name", FIXTURES, ids=[name for _, name in FIXTURES])
def test_inference_reproduces_original_predictions(folder, name, tmp_path):
    fixture, meta = _load(folder, name)
    expected = np.load(fixture / "expected_predictions.npy")
    predictions = _infer(fixture / "train_dir", fixture / "data.tfrecord", meta,
                         tmp_path / "out.csv")
    # The CSV rounds to 6 decimals (%f); the tolerance is the spec's 1e-5.
    np.testing.assert_allclose(predictions, expected, atol=1e-5, rtol=0)
    assert (tmp_path / "out.csv").read_text().splitlines()[1].split(",")[0] == meta["video_ids"][0]


@pytest.mark.parametrize("folder,name", FIXTURES, ids=[name for _, name in FIXTURES])
def test_expected_csv_matches_top_20(folder, name, tmp_path):
    fixture, meta = _load(folder, name)
    out = tmp_path / "top20.csv"
    run_script("inference.py", f"--train_dir={fixture / 'train_dir'}",
               f"--input_data_pattern={fixture / 'data.tfrecord'}", f"--output_file={out}",
               f"--num_classes={meta['num_classes']}", "--frame_sampling=uniform",
               *meta["model_flags"])
    ours, theirs = read_submission(out), read_submission(fixture / "expected.csv")
    assert list(ours) == list(theirs)
    for video_id, pairs in theirs.items():
        np.testing.assert_allclose([s for _, s in ours[video_id]], [s for _, s in pairs],
                                   atol=2e-6)
        assert [label for label, _ in ours[video_id]] == [label for label, _ in pairs]


@pytest.mark.parametrize("folder,name,extra", TRAIN_FIXTURES, ids=TRAIN_IDS)
def test_train_continues_original_run(folder, name, extra, tmp_path):
    fixture, meta = _load(folder, name)
    train_dir = tmp_path / "train_dir"
    shutil.copytree(fixture / "train_dir", train_dir)
    step = meta["checkpoint_step"]
    result = run_script(
        "train.py", f"--train_dir={train_dir}", f"--train_data_pattern={fixture / 'data.tfrecord'}",
        f"--batch_size={meta['batch_size']}", f"--max_steps={step + 1}", "--num_epochs=1",
        f"--num_classes={meta['num_classes']}", "--frame_sampling=uniform",
        *meta["model_flags"], *meta["train_flags"], *extra)
    assert f"training step {step + 1} " in result.stderr
    # The fixture records the total loss (label loss + L2 penalties).
    line = result.stderr.split(f"training step {step + 1} | ")[1].splitlines()[0]
    total_loss = float(line.split("Total loss: ")[1])
    assert total_loss == pytest.approx(meta["loss_of_checked_step"], rel=1e-4)
    # The continued run keeps the original's names (the starter's tower/ and
    # its optimizer's slots), so the original's own tools can read it.
    written = checkpoint.read_checkpoint(str(train_dir / f"model.ckpt-{step + 1}"))
    assert set(written) == set(meta["variables"])
    predictions = _infer(train_dir, fixture / "data.tfrecord", meta, tmp_path / "after.csv")
    expected = np.load(fixture / "expected_predictions.npy")
    np.testing.assert_allclose(predictions, expected, atol=2e-4, rtol=0)


@pytest.mark.parametrize("folder, name", [("train_fixtures", "train_netvlad"),
                                          ("starter_fixtures/train", "starter_train_moe_rmsprop")],
                         ids=["netvlad", "starter-rmsprop"])
def test_train_continues_original_run_with_the_training_flags_of_its_graph(folder, name,
                                                                           tmp_path):
    """No training flag given (the defaults would be WILLOW's: batch 1024,
    Adam at 0.001, clip 1.0): the batch size, learning-rate schedule,
    optimizer and clip come from the checkpoint's .meta training graph."""
    fixture, meta = _load(folder, name)
    train_dir = tmp_path / "train_dir"
    shutil.copytree(fixture / "train_dir", train_dir)
    step = meta["checkpoint_step"]
    train_flag_names = {flag.split("=")[0] for flag in meta["train_flags"]}
    model_flags = [f for f in meta["model_flags"] if f.split("=")[0] not in train_flag_names]
    result = run_script(
        "train.py", f"--train_dir={train_dir}", f"--train_data_pattern={fixture / 'data.tfrecord'}",
        f"--max_steps={step + 1}", "--num_epochs=1", f"--num_classes={meta['num_classes']}",
        "--frame_sampling=uniform", *model_flags)
    assert "continuing the original run" in result.stderr
    assert f"--batch_size={meta['batch_size']}" in result.stderr
    line = result.stderr.split(f"training step {step + 1} | ")[1].splitlines()[0]
    assert float(line.split("Total loss: ")[1]) == pytest.approx(meta["loss_of_checked_step"],
                                                                 rel=1e-4)
    predictions = _infer(train_dir, fixture / "data.tfrecord", meta, tmp_path / "after.csv")
    expected = np.load(fixture / "expected_predictions.npy")
    np.testing.assert_allclose(predictions, expected, atol=2e-4, rtol=0)
