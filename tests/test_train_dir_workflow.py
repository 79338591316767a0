"""The daily workflow on one train_dir: resuming without repeating the model
flags, contradicting flags, checkpoint rotation that spares what this run did
not write, exports, and eval.py started beside train.py."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import forked
from conftest import REPO, fed_videos, read_submission, run_script, shared_path
from youtube8m_willow import checkpoint, evaluation
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.evaluation import EvalConfig

NUM_CLASSES = 10
MODEL_FLAGS = ["--model=MoeModel", "--feature_names=mean_rgb,mean_audio",
               "--feature_sizes=1024,128", f"--num_classes={NUM_CLASSES}",
               "--moe_num_mixtures=3"]


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("data")), num_videos=64,
                                   num_classes=NUM_CLASSES, num_shards=1,
                                   frame_level=False)["video"]


def _train(train_dir, pattern, *flags, check=True):
    return run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
                      "--batch_size=16", "--export_model_steps=0", *flags, check=check)


def _error_line(result) -> str:
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()
            and not p.name.startswith("events.")}


def test_resume_without_model_flags_and_contradicting_flags(pattern, tmp_path):
    train_dir = tmp_path / "run"
    _train(train_dir, pattern, "--max_steps=2", *MODEL_FLAGS)
    saved = (train_dir / "model_flags.json").read_text()
    assert json.loads(saved)["moe_num_mixtures"] == 3

    # No model flags: the saved MoeModel (not the default LogisticModel) resumes.
    resumed = _train(train_dir, pattern, "--max_steps=4")
    assert "restored" in resumed.stderr and "model.ckpt-2" in resumed.stderr
    assert checkpoint.checkpoint_steps(str(train_dir)) == [2, 4]
    assert (train_dir / "model_flags.json").read_text() == saved

    # A contradicting flag: one line naming it and both values; nothing changes.
    before = _files(train_dir)
    refused = _train(train_dir, pattern, "--max_steps=6", "--moe_num_mixtures=2", check=False)
    line = _error_line(refused)
    assert "--moe_num_mixtures=2" in line and "moe_num_mixtures=3" in line
    assert "--start_new_model" in line
    assert _files(train_dir) == before

    # The same flag with --start_new_model trains a new model.
    _train(train_dir, pattern, "--max_steps=1", "--moe_num_mixtures=2", "--start_new_model")
    assert json.loads((train_dir / "model_flags.json").read_text())["moe_num_mixtures"] == 2
    assert checkpoint.checkpoint_steps(str(train_dir)) == [1]


def test_eval_and_inference_ignore_a_contradicting_model_flag(pattern, tmp_path):
    # WILLOW's Gated Soft-DBoF inference line passes a model flag its training
    # line never set: the saved model defines the graph, the flag is ignored.
    train_dir = tmp_path / "run"
    _train(train_dir, pattern, "--max_steps=2", *MODEL_FLAGS)
    plain, flagged = tmp_path / "plain.csv", tmp_path / "flagged.csv"
    run_script("inference.py", f"--train_dir={train_dir}", f"--input_data_pattern={pattern}",
               f"--output_file={plain}")
    result = run_script("inference.py", f"--train_dir={train_dir}",
                        f"--input_data_pattern={pattern}", f"--output_file={flagged}",
                        "--moe_prob_gating=True", "--moe_num_mixtures=3")
    warnings = [line for line in result.stderr.splitlines() if "ignored" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert "--moe_prob_gating=True" in warnings[0] and "moe_prob_gating=False" in warnings[0]
    assert flagged.read_text() == plain.read_text()
    evaluated = run_script("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={pattern}",
                           "--run_once=True", "--moe_num_mixtures=5")
    assert "--moe_num_mixtures=5 ignored" in evaluated.stderr
    assert "epoch/eval number 2 " in evaluated.stderr


def _original_train_dir(tmp_path):
    """A copy of an original (TF1) train_dir, with its records and model flags."""
    fixture = shared_path("fixtures", "moe_video")
    meta = json.loads((fixture / "meta.json").read_text())
    train_dir = tmp_path / "original"
    shutil.copytree(fixture / "train_dir", train_dir)
    flags = [*meta["model_flags"], f"--num_classes={meta['num_classes']}"]
    return train_dir, str(fixture / "data.tfrecord"), flags


def test_flags_that_do_not_fit_an_original_checkpoint_record_nothing(tmp_path):
    train_dir, data, flags = _original_train_dir(tmp_path)
    before = _files(train_dir)
    result = _train(train_dir, data, "--max_steps=124", *flags, "--moe_num_mixtures=4",
                    check=False)
    assert "does not fit the model flags" in _error_line(result)
    assert _files(train_dir) == before  # no model_flags.json, the checkpoint untouched


def test_continuing_an_original_train_dir_never_deletes_its_checkpoints(tmp_path):
    train_dir, data, flags = _original_train_dir(tmp_path)
    original = _files(train_dir)
    # Checkpoint every step, keep one: only this run's own checkpoints rotate.
    first = _train(train_dir, data, "--max_steps=126", "--keep_checkpoints=1",
                   "--save_checkpoint_secs=0", *flags)
    assert "has no saved input position" in first.stderr  # the input starts over
    assert checkpoint.checkpoint_steps(str(train_dir)) == [123, 126]
    # Each of this run's checkpoints has its input state; rotation removes it too.
    assert sorted(p.name for p in train_dir.glob("*.input.json")) == ["model.ckpt-126.input.json"]
    for name in ("model.ckpt-123.index", "model.ckpt-123.data-00000-of-00001"):
        assert (train_dir / name).read_bytes() == original[name]
    assert checkpoint.latest_checkpoint(str(train_dir)).endswith("model.ckpt-126")
    # --keep_checkpoints=0 keeps every checkpoint, as TF1's max_to_keep=0.
    second = _train(train_dir, data, "--max_steps=129", "--keep_checkpoints=0",
                    "--save_checkpoint_secs=0")
    assert "the input resumes at epoch" in second.stderr
    assert checkpoint.checkpoint_steps(str(train_dir)) == [123, 126, 127, 128, 129]
    state = (train_dir / "checkpoint").read_text()
    assert state.count("all_model_checkpoint_paths") == 5


def test_exports_every_export_model_steps_and_once_at_the_end(pattern, tmp_path):
    train_dir = tmp_path / "run"
    result = run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
                        "--batch_size=16", "--max_steps=4", "--export_model_steps=2",
                        "--save_checkpoint_secs=100000", *MODEL_FLAGS)
    exports = re.findall(r"exported the model at global step (\d+)", result.stderr)
    written = re.findall(r"wrote checkpoint \S+model\.ckpt-(\d+)", result.stderr)
    assert exports == ["2", "4"] and written == ["2", "4"]  # step 4 once, not twice
    assert sorted(p.name for p in (train_dir / "export").iterdir()) == ["step_2", "step_4"]
    # Continued to a step that is no multiple: one more export, at the end.
    result = run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
                        "--batch_size=16", "--max_steps=5", "--export_model_steps=2")
    assert re.findall(r"exported the model at global step (\d+)", result.stderr) == ["5"]
    assert sorted(p.name for p in (train_dir / "export").iterdir()) == [
        "step_2", "step_4", "step_5"]


def test_eval_started_before_train_waits_for_the_first_checkpoint(pattern, tmp_path):
    train_dir = tmp_path / "run"  # does not exist yet
    command = [sys.executable, str(REPO / "eval.py"), f"--train_dir={train_dir}",
               f"--eval_data_pattern={pattern}", "--poll_secs=1", "--batch_size=32"]
    process = forked.Popen(command, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines, trained = [], False
    deadline = time.monotonic() + 300
    try:
        for line in process.stderr:
            lines.append(line)
            if "waiting for a first checkpoint" in line and not trained:
                time.sleep(2)  # a few polls go by before training starts
                _train(train_dir, pattern, "--max_steps=2", *MODEL_FLAGS)
                trained = True
            if "epoch/eval number" in line:
                break
            assert time.monotonic() < deadline, "eval.py did not evaluate in time"
    finally:
        process.terminate()
        process.communicate(timeout=60)
    text = "".join(lines)
    assert trained, text[-3000:]
    assert text.count("waiting for a first checkpoint") == 1
    assert "epoch/eval number 2 " in text


def test_a_checkpoint_rotated_away_before_it_is_read_is_skipped(pattern, tmp_path, monkeypatch,
                                                                  caplog):
    train_dir = tmp_path / "run"
    _train(train_dir, pattern, "--max_steps=3", "--save_checkpoint_secs=0",
           "--model=LogisticModel", "--feature_names=mean_rgb,mean_audio",
           "--feature_sizes=1024,128", f"--num_classes={NUM_CLASSES}")
    gone = str(train_dir / "model.ckpt-2")
    for path in train_dir.glob("model.ckpt-2.*"):
        path.unlink()  # as the trainer's rotation does, after eval listed it
    answers = iter([gone])
    real = evaluation.wait_for_checkpoint
    monkeypatch.setattr(evaluation, "wait_for_checkpoint",
                        lambda *args: next(answers, None) or real(*args))
    config = EvalConfig(train_dir=str(train_dir), data_pattern=pattern, batch_size=32,
                        poll_secs=0)
    model_config = ModelConfig.from_json((train_dir / "model_flags.json").read_text())
    with caplog.at_level(logging.WARNING, logger="youtube8m_willow"):
        results = evaluation.evaluate(config, model_config, max_evaluations=1)
    assert [r["global_step"] for r in results] == [3]
    assert any("model.ckpt-2" in r.message and "rotation" in r.message for r in caplog.records)


@pytest.mark.parametrize("id_key,classes", [("id", 3862), ("video_id", 4716)])
def test_a_new_run_without_num_classes_takes_it_from_the_id_key(id_key, classes, tmp_path):
    pattern = write_synthetic_dataset(str(tmp_path / "data"), num_videos=16, num_classes=20,
                                      num_shards=1, frame_level=False, id_key=id_key)["video"]
    result = _train(tmp_path / "run", pattern, "--max_steps=1", "--model=LogisticModel",
                    "--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128")
    if classes != 4716:  # 4716 is the default: nothing to say
        assert f"num_classes={classes}, from the records' video id key '{id_key}'" in result.stderr
    assert json.loads((tmp_path / "run" / "model_flags.json").read_text())[
        "num_classes"] == classes


def test_a_resume_without_flags_keeps_the_run_training_flags(pattern, tmp_path):
    train_dir = tmp_path / "run"
    flags = [f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
             "--export_model_steps=0", "--verbosity=1"]
    run_script("train.py", *flags, "--max_steps=2", "--batch_size=8",
               "--optimizer=RMSPropOptimizer", "--base_learning_rate=0.01", *MODEL_FLAGS)
    kept = json.loads((train_dir / "train_flags.json").read_text())
    assert (kept["batch_size"], kept["optimizer"], kept["base_learning_rate"]) == (
        8, "RMSPropOptimizer", 0.01)
    assert "batch_size" not in json.loads((train_dir / "model_flags.json").read_text())

    # No flags: the run goes on with its own batch size and optimizer (the
    # defaults would be 1024 and Adam), its input where it stopped.
    resumed = run_script("train.py", *flags, "--max_steps=4")
    batches = fed_videos([resumed.stderr])
    assert sorted(batches) == [3, 4]
    assert all(len(ids.split(",")) == 8 for ids in batches.values())
    assert "starts over" not in resumed.stderr and "slots" not in resumed.stderr
    assert "changes the run's" not in resumed.stderr

    # A given flag that changes a kept one: one line naming it; it is kept from then on.
    changed = run_script("train.py", *flags, "--max_steps=5", "--batch_size=16")
    lines = [line for line in changed.stderr.splitlines() if "changes the run's" in line]
    assert len(lines) == 1, changed.stderr[-3000:]
    assert "--batch_size=16" in lines[0] and "batch_size=8" in lines[0]
    assert json.loads((train_dir / "train_flags.json").read_text())["batch_size"] == 16


def _avg_loss(result) -> float:
    return float(re.search(r"Avg_Loss: ([0-9.]+)", result.stderr).group(1))


def test_eval_reports_the_loss_the_run_was_trained_with(pattern, tmp_path):
    train_dir = tmp_path / "run"
    _train(train_dir, pattern, "--max_steps=1", "--label_loss=HingeLoss", *MODEL_FLAGS)
    evaluate = [f"--train_dir={train_dir}", f"--eval_data_pattern={pattern}", "--run_once=True"]
    unflagged = _avg_loss(run_script("eval.py", *evaluate))
    hinge = _avg_loss(run_script("eval.py", *evaluate, "--label_loss=HingeLoss"))
    cross_entropy = _avg_loss(run_script("eval.py", *evaluate, "--label_loss=CrossEntropyLoss"))
    assert unflagged == hinge != cross_entropy


def test_a_damaged_input_state_is_a_one_line_error_and_changes_nothing(pattern, tmp_path):
    train_dir = tmp_path / "run"
    _train(train_dir, pattern, "--max_steps=1", *MODEL_FLAGS)
    state = train_dir / "model.ckpt-1.input.json"
    state.write_text(state.read_text()[:20])
    before = _files(train_dir)
    line = _error_line(_train(train_dir, pattern, "--max_steps=2", check=False))
    assert str(state) in line and "delete it" in line
    assert _files(train_dir) == before


def test_every_user_facing_error_is_a_user_error():
    import inspect

    from youtube8m_willow import errors
    from youtube8m_willow.data import readers
    from youtube8m_willow.portable import weights_file
    from youtube8m_willow.training import resume, trainer

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if c.__module__ == errors.__name__]
    assert len(classes) >= 10
    assert all(issubclass(c, errors.UserError) for c in classes)
    # The modules that raise them re-export the same classes.
    assert readers.DataError is errors.DataError
    assert checkpoint.CheckpointError is errors.CheckpointError
    assert resume.InputStateError is errors.InputStateError
    assert trainer.NonFiniteLossError is errors.NonFiniteLossError
    assert weights_file.WeightsFileError is errors.WeightsFileError


# --- a train_dir copied from another machine ---------------------------------

FOREIGN_STATE = ('model_checkpoint_path: "/some/other/disk/train_dir/model.ckpt-123"\n'
                 'all_model_checkpoint_paths: "/some/other/disk/train_dir/model.ckpt-123"\n')


def _copied_starter_train_dir(tmp_path):
    """The starter's train_dir as copied from another disk: its state file
    names the absolute paths TF1's Saver wrote there."""
    fixture = shared_path("starter_fixtures", "starter_moe_video")
    meta = json.loads((fixture / "meta.json").read_text())
    train_dir = tmp_path / "copied"
    shutil.copytree(fixture / "train_dir", train_dir)
    for path in [train_dir, *train_dir.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the fixture is read-only
    (train_dir / "checkpoint").write_text(FOREIGN_STATE)
    flags = [*meta["model_flags"], f"--num_classes={meta['num_classes']}",
             "--frame_sampling=uniform"]
    return train_dir, fixture, flags


def _assert_fixture_predictions(csv, fixture):
    ours, theirs = read_submission(csv), read_submission(fixture / "expected.csv")
    assert list(ours) == list(theirs)
    for video_id, pairs in theirs.items():
        assert [label for label, _ in ours[video_id]] == [label for label, _ in pairs]
        np.testing.assert_allclose([s for _, s in ours[video_id]], [s for _, s in pairs],
                                   atol=2e-6)


def test_a_state_file_naming_another_disk_finds_the_checkpoint_here(tmp_path):
    train_dir, fixture, flags = _copied_starter_train_dir(tmp_path)
    data = fixture / "data.tfrecord"
    csv = tmp_path / "out.csv"
    inferred = run_script("inference.py", f"--train_dir={train_dir}",
                          f"--input_data_pattern={data}", f"--output_file={csv}", *flags)
    assert f"predicting with {train_dir / 'model.ckpt-123'} (global step 123)" in inferred.stderr
    _assert_fixture_predictions(csv, fixture)
    evaluated = run_script("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={data}",
                           "--run_once=True", *flags)
    assert "epoch/eval number 123 " in evaluated.stderr
    # train.py continues the copied run from its step, never a new model from step 1.
    trained = _train(train_dir, data, "--max_steps=124", "--batch_size=8", *flags)
    assert "at global step 123" in trained.stderr and "training step 124 " in trained.stderr
    assert "training step 1 " not in trained.stderr
    assert checkpoint.checkpoint_steps(str(train_dir)) == [123, 124]


@pytest.mark.parametrize("state", [None, 'model_checkpoint_path: "model.ckpt-999"\n'],
                         ids=["no-state-file", "names-an-absent-one"])
def test_without_a_usable_state_file_the_newest_complete_checkpoint_is_used(state, tmp_path):
    train_dir, fixture, flags = _copied_starter_train_dir(tmp_path)
    if state is None:
        (train_dir / "checkpoint").unlink()
    else:
        (train_dir / "checkpoint").write_text(state)
    for suffix in (".index", ".data-00000-of-00001"):  # an older complete one
        shutil.copy(train_dir / f"model.ckpt-123{suffix}", train_dir / f"model.ckpt-100{suffix}")
    (train_dir / "model.ckpt-200.index").write_bytes(b"")  # a newer one without its data
    csv = tmp_path / "out.csv"
    result = run_script("inference.py", f"--train_dir={train_dir}",
                        f"--input_data_pattern={fixture / 'data.tfrecord'}",
                        f"--output_file={csv}", *flags)
    warnings = [line for line in result.stderr.splitlines()
                if "using the newest complete checkpoint" in line]
    assert len(warnings) == 1 and warnings[0].startswith("W"), result.stderr[-3000:]
    assert str(train_dir / "model.ckpt-123") in warnings[0]
    assert f"predicting with {train_dir / 'model.ckpt-123'} " in result.stderr
    _assert_fixture_predictions(csv, fixture)


def test_eval_polling_says_the_fallback_once(tmp_path, caplog, monkeypatch):
    train_dir, _, _ = _copied_starter_train_dir(tmp_path)
    (train_dir / "checkpoint").unlink()

    def no_wait(seconds):
        raise AssertionError("eval.py kept waiting beside a complete checkpoint")

    monkeypatch.setattr(evaluation.time, "sleep", no_wait)
    with caplog.at_level(logging.INFO, logger="youtube8m_willow"):
        paths = {evaluation.wait_for_checkpoint(str(train_dir), 0) for _ in range(3)}
    assert paths == {str(train_dir / "model.ckpt-123")}
    said = [r for r in caplog.records if "newest complete checkpoint" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING


def _only_data_file(train_dir):
    for name in ("checkpoint", "model.ckpt-123.index", "model.ckpt-123.meta"):
        (train_dir / name).unlink()


def _unreadable_index(train_dir):
    (train_dir / "model.ckpt-123.index").write_bytes(b"not an index")


def _state_file_alone(train_dir):
    for path in train_dir.glob("model.ckpt-123.*"):
        path.unlink()


@pytest.mark.parametrize("damage", [_only_data_file, _unreadable_index, _state_file_alone],
                         ids=["data-without-index", "unreadable-index", "state-file-alone"])
def test_train_never_starts_a_new_model_beside_checkpoint_files_it_cannot_use(damage, tmp_path):
    train_dir, fixture, flags = _copied_starter_train_dir(tmp_path)
    damage(train_dir)
    before = _files(train_dir)
    result = _train(train_dir, fixture / "data.tfrecord", "--max_steps=124", "--batch_size=8",
                    *flags, check=False)
    line = _error_line(result)
    assert "--start_new_model" in line and str(train_dir) in line
    assert _files(train_dir) == before  # nothing written beside them


def test_rotation_covers_every_resumed_run_but_never_the_originals(tmp_path):
    train_dir, data, flags = _original_train_dir(tmp_path)
    original = _files(train_dir)
    for max_steps in (126, 128, 129):  # resumed twice, a checkpoint every step, keep 2
        _train(train_dir, data, f"--max_steps={max_steps}", "--keep_checkpoints=2",
               "--save_checkpoint_secs=0", *flags)
    assert checkpoint.checkpoint_steps(str(train_dir)) == [123, 128, 129]
    assert sorted(p.name for p in train_dir.glob("model.ckpt-12[4-9].*")) == [
        f"model.ckpt-{step}.{suffix}" for step in (128, 129)
        for suffix in ("data-00000-of-00001", "index", "input.json", "writer.json")]
    for name, content in original.items():
        if name.startswith("model.ckpt-123"):
            assert (train_dir / name).read_bytes() == content
