"""What the scripts print as they run: their first lines say what they will
do; into a log file they keep the original's lines (one per training step,
one per eval batch); on a terminal a progress bar replaces those, so that
the demo fits on one screen (tests/test_demo.py); eval.py's polling says
once that it waits."""

from __future__ import annotations

import re

import pytest

from conftest import STEP_LINE, run_script, screen_lines
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.progress import PROGRESS_ENV

NUM_CLASSES = 8
MODEL = ["--model=LogisticModel", "--feature_names=mean_rgb,mean_audio", "--feature_sizes=16,8",
         f"--num_classes={NUM_CLASSES}"]
# LogisticModel: a (16 + 8) x 8 weight and 8 biases.
PARAMETERS = (16 + 8) * NUM_CLASSES + NUM_CLASSES


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("output_data")
    kwargs = dict(num_classes=NUM_CLASSES, num_shards=2, frame_level=False, feature_sizes=(16, 8),
                  seed=4)
    return (write_synthetic_dataset(str(root), num_videos=96, prefix="train", **kwargs)["video"],
            write_synthetic_dataset(str(root), num_videos=50, prefix="validate", **kwargs)["video"])


def _train(train_dir, pattern, steps, *extra):
    return run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
                      "--batch_size=8", f"--max_steps={steps}", "--export_model_steps=100000",
                      *MODEL, *extra)


def test_log_file_output_keeps_a_line_per_step_and_batch(data, tmp_path, monkeypatch):
    """Not a terminal (the tests' captured stderr, like a log file): the
    original's lines, every step and every batch, after the run's plan."""
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    train_pattern, eval_pattern = data
    trained = _train(tmp_path, train_pattern, 12).stderr
    assert [int(step) for step in STEP_LINE.findall(trained)] == list(range(1, 13))
    assert (f"training LogisticModel ({PARAMETERS} parameters, {NUM_CLASSES} classes) on "
            "1 replica (one device), batch 8, until --max_steps=12") in trained
    assert (f"input: 2 files matching '{train_pattern}', 96 records; checkpoints: {tmp_path} "
            "(a new run)") in trained
    assert trained.index("training LogisticModel") < trained.index("training step 1 |")

    evaluated = run_script("eval.py", f"--train_dir={tmp_path}",
                           f"--eval_data_pattern={eval_pattern}", "--run_once=True",
                           "--batch_size=20").stderr
    assert re.findall(r"examples_processed: (\d+) \|", evaluated) == ["20", "40", "50"]
    assert (f"evaluating {tmp_path / 'model.ckpt-12'} (global step 12): LogisticModel, "
            f"{PARAMETERS} parameters, {NUM_CLASSES} classes") in evaluated
    assert (f"input: 2 files matching '{eval_pattern}', 50 records, batch 20; summaries and the "
            f"per-class report: {tmp_path}") in evaluated
    assert "epoch/eval number 12 | Avg_Hit@1:" in evaluated

    output = tmp_path / "predictions.csv"
    predicted = run_script("inference.py", f"--train_dir={tmp_path}",
                           f"--input_data_pattern={eval_pattern}", f"--output_file={output}",
                           "--batch_size=20").stderr
    assert re.findall(r"num examples processed: (\d+) ", predicted) == ["20", "40", "50"]
    assert (f"input: 2 files matching '{eval_pattern}', 50 records, batch 20; output: "
            f"{output}") in predicted


def test_on_a_terminal_a_bar_replaces_the_line_per_step_and_batch(data, tmp_path, monkeypatch):
    """With the bar (forced here: the tests' stderr is no terminal), training
    logs the original's line only for its last step, eval and inference none
    per batch; the bar showed the steps out of --max_steps and the videos
    out of the records counted."""
    monkeypatch.setenv(PROGRESS_ENV, "bar")
    train_pattern, eval_pattern = data
    trained = _train(tmp_path, train_pattern, 30).stderr
    assert [int(step) for step in STEP_LINE.findall(trained)] == [30]
    assert "training LogisticModel" in trained and "training stopped (max_steps)" in trained
    drawn = "\n".join(screen_lines(trained.replace("\x1b[1A", "")))
    assert re.search(r"^step .* 30/30 [\d,]+ ex/s ETA 00:00 loss [\d.]+  GAP [\d.]+$", drawn, re.M)
    # Once done, the bar gives way to the lines: a screenful, not a line per step.
    shown = screen_lines(trained)
    assert len(shown) < 10 and not any("━" in line for line in shown), shown

    evaluated = run_script("eval.py", f"--train_dir={tmp_path}",
                           f"--eval_data_pattern={eval_pattern}", "--run_once=True",
                           "--batch_size=20").stderr
    assert "examples_processed" not in evaluated and "epoch/eval number 30 |" in evaluated
    drawn = "\n".join(screen_lines(evaluated.replace("\x1b[1A", "")))
    assert re.search(r"^eval .* 50/50 videos [\d,]+ ex/s ETA 00:00 Hit@1 [\d.]+  loss [\d.]+$",
                     drawn, re.M)

    predicted = run_script("inference.py", f"--train_dir={tmp_path}",
                           f"--input_data_pattern={eval_pattern}",
                           f"--output_file={tmp_path / 'predictions.csv'}",
                           "--batch_size=20").stderr
    assert "num examples processed" not in predicted and "wrote 50 videos" in predicted
    assert "50/50 videos" in "".join(screen_lines(predicted.replace("\x1b[1A", "")))


def test_on_a_terminal_the_line_is_logged_at_each_checkpoint(data, tmp_path, monkeypatch):
    """A long run on a terminal keeps a line per checkpoint: here every
    --export_model_steps=5 (a checkpoint and an export)."""
    monkeypatch.setenv(PROGRESS_ENV, "bar")
    trained = run_script("train.py", f"--train_dir={tmp_path}", f"--train_data_pattern={data[0]}",
                         "--batch_size=8", "--max_steps=12", "--export_model_steps=5",
                         *MODEL).stderr
    assert [int(step) for step in STEP_LINE.findall(trained)] == [5, 10, 12]


def test_polling_says_once_that_it_waits(data, tmp_path, monkeypatch, caplog):
    """eval.py without --run_once: one line while no newer checkpoint comes,
    however many polls that takes; one again after the next evaluation."""
    from youtube8m_willow import checkpoint, evaluation
    from youtube8m_willow.config import ModelConfig

    train_pattern, eval_pattern = data
    _train(tmp_path, train_pattern, 2)
    _train(tmp_path, train_pattern, 4)
    paths = [str(tmp_path / "model.ckpt-2")] * 6 + [str(tmp_path / "model.ckpt-4")] * 5
    polls = []
    monkeypatch.setattr(checkpoint, "latest_checkpoint",
                        lambda train_dir: paths[min(len(polls), len(paths) - 1)])
    monkeypatch.setattr(evaluation.time, "sleep", polls.append)
    config = evaluation.EvalConfig(train_dir=str(tmp_path), data_pattern=eval_pattern,
                                   batch_size=25, poll_secs=7)
    model_config = ModelConfig(model="LogisticModel", feature_names=("mean_rgb", "mean_audio"),
                               feature_sizes=(16, 8), num_classes=NUM_CLASSES)
    with caplog.at_level("INFO", logger="youtube8m_willow"):
        results = evaluation.evaluate(config, model_config, max_evaluations=2)
    assert [result["global_step"] for result in results] == [2, 4]
    assert polls == [7] * 6  # six polls found step 2 again
    waiting = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert waiting == [f"waiting for a checkpoint newer than global step 2 in {tmp_path} "
                       "(looking every 7s)"]
