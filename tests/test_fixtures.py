"""The original code's numbers, reproduced through the command line (SPEC 12).

Each fixture holds an original TF1 train_dir, its input records and the
original's eval-mode predictions; inference.py must reproduce them to 1e-5.
The train fixture holds an original run after K steps (with Adam slots):
train.py continues it one step and inference.py must then match the
original's predictions after that step to 2e-4.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import read_submission, run_script, shared_path

FIXTURES = ["moe_video", "netvlad_gated"]


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


@pytest.mark.parametrize("name", FIXTURES)
def test_inference_reproduces_original_predictions(name, tmp_path):
    fixture = shared_path("fixtures", name)
    meta = json.loads((fixture / "meta.json").read_text())
    expected = np.load(fixture / "expected_predictions.npy")
    predictions = _infer(fixture / "train_dir", fixture / "data.tfrecord", meta,
                         tmp_path / "out.csv")
    # The CSV rounds to 6 decimals (%f); the tolerance is the spec's 1e-5.
    np.testing.assert_allclose(predictions, expected, atol=1e-5, rtol=0)
    assert (tmp_path / "out.csv").read_text().splitlines()[1].split(",")[0] == meta["video_ids"][0]


@pytest.mark.parametrize("name", FIXTURES)
def test_expected_csv_matches_top_20(name, tmp_path):
    fixture = shared_path("fixtures", name)
    meta = json.loads((fixture / "meta.json").read_text())
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


# --xla compiles the step: it must keep the original's numbers too.
@pytest.mark.parametrize("extra", [[], ["--xla=True"]], ids=["default", "xla"])
def test_train_continues_original_run(extra, tmp_path):
    fixture = shared_path("train_fixtures", "train_netvlad")
    meta = json.loads((fixture / "meta.json").read_text())
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
    assert (train_dir / f"model.ckpt-{step + 1}.index").exists()
    predictions = _infer(train_dir, fixture / "data.tfrecord", meta, tmp_path / "after.csv")
    expected = np.load(fixture / "expected_predictions.npy")
    np.testing.assert_allclose(predictions, expected, atol=2e-4, rtol=0)
