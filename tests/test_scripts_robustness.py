"""The scripts under bad flags, missing inputs, signals and kills: a clear
one-line error and a non-zero exit, and nothing already written is lost."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import forked
from conftest import REPO, read_submission, run_script
from youtube8m_willow import checkpoint
from youtube8m_willow.data.synthetic import write_synthetic_dataset

NUM_CLASSES = 12
VIDEO_FLAGS = ["--model=MoeModel", "--feature_names=mean_rgb,mean_audio",
               "--feature_sizes=1024,128", f"--num_classes={NUM_CLASSES}"]


@pytest.fixture(scope="module")
def video_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    train = write_synthetic_dataset(str(root), num_videos=400, num_classes=NUM_CLASSES,
                                    num_shards=4, frame_level=False, prefix="train")["video"]
    test = write_synthetic_dataset(str(root), num_videos=600, num_classes=NUM_CLASSES,
                                   num_shards=3, frame_level=False, with_labels=False,
                                   prefix="test")["video"]
    return {"train": train, "test": test}


@pytest.fixture(scope="module")
def trained_dir(video_data, tmp_path_factory):
    train_dir = tmp_path_factory.mktemp("trained")
    run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={video_data['train']}",
               "--batch_size=32", "--max_steps=5", *VIDEO_FLAGS)
    return train_dir


def _error_line(result) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_glob_matching_nothing_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing*.tfrecord")
    result = run_script("train.py", f"--train_dir={tmp_path / 't'}",
                        f"--train_data_pattern={pattern}", *VIDEO_FLAGS, check=False)
    assert pattern in _error_line(result)


@pytest.mark.parametrize("script,data_flag", [("eval.py", "--eval_data_pattern"),
                                              ("inference.py", "--input_data_pattern")])
def test_missing_train_dir_is_named(script, data_flag, tmp_path, video_data):
    missing = str(tmp_path / "no_such_dir")
    result = run_script(script, f"--train_dir={missing}", f"{data_flag}={video_data['test']}",
                        f"--output_file={tmp_path / 'x.csv'}" if script == "inference.py" else
                        "--run_once=True", *VIDEO_FLAGS, check=False)
    assert missing in _error_line(result)


@pytest.mark.parametrize("flag,valid", [
    ("--model=NetVLAD", "NetVLADModelLF"),
    ("--label_loss=FocalLoss", "CrossEntropyLoss"),
    ("--optimizer=LambOptimizer", "AdamOptimizer"),
    ("--video_level_classifier_model=SvmModel", "MoeModel"),
    ("--frame_sampling=every_other", "uniform"),
])
def test_unknown_names_list_the_valid_ones(flag, valid, tmp_path, video_data):
    result = run_script("train.py", f"--train_dir={tmp_path / 't'}",
                        f"--train_data_pattern={video_data['train']}", *VIDEO_FLAGS, flag,
                        check=False)
    line = _error_line(result)
    assert flag.split("=")[0].lstrip("-") in line and valid in line


def test_checkpoint_that_does_not_fit_lists_variables(trained_dir, video_data, tmp_path):
    # An original train_dir (no model_flags.json): the flags build the graph.
    original = tmp_path / "original"
    shutil.copytree(trained_dir, original)
    (original / "model_flags.json").unlink()
    result = run_script("inference.py", f"--train_dir={original}",
                        f"--input_data_pattern={video_data['test']}",
                        f"--output_file={tmp_path / 'x.csv'}", *VIDEO_FLAGS,
                        "--moe_low_rank_gating=4", check=False)
    line = _error_line(result)
    assert "missing variables: gates1/weights, gates2/weights" in line
    assert "unexpected variables: gates/weights" in line
    assert not (tmp_path / "x.csv").exists()


def _start_training(train_dir, pattern, max_steps, extra=()):
    command = [sys.executable, str(REPO / "train.py"), f"--train_dir={train_dir}",
               f"--train_data_pattern={pattern}", "--batch_size=16", f"--max_steps={max_steps}",
               "--num_epochs=0", "--save_checkpoint_secs=1", *VIDEO_FLAGS, *extra]
    return forked.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _wait_for_step(process, step: int) -> list[str]:
    """Reads the log until `training step <step>` appears."""
    lines, deadline = [], time.monotonic() + 300
    for line in process.stderr:
        lines.append(line)
        match = re.search(r"training step (\d+) \|", line)
        if match and int(match.group(1)) >= step:
            return lines
        assert time.monotonic() < deadline, "training did not reach the step in time"
    raise AssertionError("training ended early:\n" + "".join(lines[-30:]))


def _steps_logged(text: str) -> list[int]:
    return [int(s) for s in re.findall(r"training step (\d+) \|", text)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_and_resumes(sig, video_data, tmp_path):
    train_dir = tmp_path / "run"
    process = _start_training(train_dir, video_data["train"], max_steps=100000)
    _wait_for_step(process, 3)
    process.send_signal(sig)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 0, rest[-3000:]
    assert f"received {sig.name}" in rest
    stopped_at = checkpoint.step_of(checkpoint.latest_checkpoint(str(train_dir)))
    assert stopped_at >= 3
    # The stopped step is exported too, as a periodic export would be.
    assert f"received {sig.name}: checkpointing and exporting at global step {stopped_at}" in rest
    assert (train_dir / "export" / f"step_{stopped_at}" / "saved_model.pb").exists()
    assert f"exported the model at global step {stopped_at}" in rest
    # Resuming continues at the next step, with the schedule of that step,
    # and ends at max_steps: the same total as an uninterrupted run.
    resumed = run_script("train.py", f"--train_dir={train_dir}",
                         f"--train_data_pattern={video_data['train']}", "--batch_size=16",
                         f"--max_steps={stopped_at + 4}", *VIDEO_FLAGS)
    assert f"at global step {stopped_at}" in resumed.stderr
    assert _steps_logged(resumed.stderr) == list(range(stopped_at + 1, stopped_at + 5))
    assert checkpoint.step_of(checkpoint.latest_checkpoint(str(train_dir))) == stopped_at + 4


def test_a_second_signal_during_the_final_export_stops_at_once(video_data, tmp_path,
                                                               monkeypatch):
    """After the first signal, the signals keep their default action (stop
    at once) while the stopped step is checkpointed and exported: the export
    sees SIGINT's default handler. (In this process: the signal is sent by
    the step itself, so it arrives at a known step.)"""
    from youtube8m_willow.training.run import Trainer

    step, export, handlers = Trainer.step, Trainer.export, []

    def step_then_signal(self, batch, **kwargs):
        metrics = step(self, batch, **kwargs)
        if self.global_step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return metrics

    def export_noting_the_handler(self):
        handlers.append(signal.getsignal(signal.SIGINT))
        return export(self)

    monkeypatch.setattr(Trainer, "step", step_then_signal)
    monkeypatch.setattr(Trainer, "export", export_noting_the_handler)
    previous = signal.getsignal(signal.SIGINT)
    result = run_script("train.py", f"--train_dir={tmp_path}", "--max_steps=100",
                        f"--train_data_pattern={video_data['train']}", "--batch_size=16",
                        *VIDEO_FLAGS)
    assert "received SIGINT: checkpointing and exporting at global step 2" in result.stderr
    assert handlers == [signal.SIG_DFL]
    assert (tmp_path / "export" / "step_2" / "saved_model.pb").exists()
    assert signal.getsignal(signal.SIGINT) is previous  # restored once training is over


def _listing(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_failed_runs_leave_no_event_files(trained_dir, video_data, tmp_path):
    """A run that fails before writing a summary writes nothing: a first
    train.py run on bad data leaves no train_dir, a failed continued run and
    an eval.py of bad data leave a train_dir as they found it, and eval.py of
    a train_dir without checkpoints leaves it empty."""
    wrong = ["--model=MoeModel", "--feature_names=mean_rgb,mean_foo", "--feature_sizes=1024,128",
             f"--num_classes={NUM_CLASSES}"]
    new_dir = tmp_path / "new"
    failed = run_script("train.py", f"--train_dir={new_dir}",
                        f"--train_data_pattern={video_data['train']}", *wrong, check=False)
    assert "missing feature 'mean_foo'" in _error_line(failed) and not new_dir.exists()

    continued = tmp_path / "continued"
    shutil.copytree(trained_dir, continued)
    before = _listing(continued)
    assert any(name.startswith("events.out.tfevents.") for name in before)
    failed = run_script("train.py", f"--train_dir={continued}", "--max_steps=50",
                        f"--train_data_pattern={video_data['train']}", "--batch_size=32",
                        *VIDEO_FLAGS, "--feature_names=mean_rgb,mean_foo", check=False)
    assert "mean_foo" in _error_line(failed) and _listing(continued) == before
    junk = tmp_path / "junk.tfrecord"
    junk.write_bytes(b"not a TFRecord file at all")
    failed = run_script("eval.py", f"--train_dir={continued}", "--run_once=True",
                        f"--eval_data_pattern={junk}", check=False)
    assert "junk.tfrecord (record 0): damaged" in _error_line(failed)
    assert _listing(continued) == before

    empty = tmp_path / "empty"
    empty.mkdir()
    failed = run_script("eval.py", f"--train_dir={empty}", "--run_once=True",
                        f"--eval_data_pattern={video_data['train']}", *VIDEO_FLAGS, check=False)
    assert "no checkpoint" in _error_line(failed) and _listing(empty) == []


def test_kill_9_resumes_from_last_complete_checkpoint(video_data, tmp_path):
    train_dir = tmp_path / "killed"
    process = _start_training(train_dir, video_data["train"], max_steps=100000)
    deadline = time.monotonic() + 300
    while checkpoint.latest_checkpoint(str(train_dir)) is None:
        assert time.monotonic() < deadline
        process.stderr.readline()
    _wait_for_step(process, checkpoint.step_of(checkpoint.latest_checkpoint(str(train_dir))) + 20)
    process.kill()
    process.wait(timeout=60)
    latest = checkpoint.latest_checkpoint(str(train_dir))
    tensors = checkpoint.read_checkpoint(latest)  # complete and readable
    assert int(tensors["global_step"]) == checkpoint.step_of(latest)
    resumed = run_script("train.py", f"--train_dir={train_dir}",
                         f"--train_data_pattern={video_data['train']}", "--batch_size=16",
                         f"--max_steps={checkpoint.step_of(latest) + 2}", *VIDEO_FLAGS)
    assert f"at global step {checkpoint.step_of(latest)}" in resumed.stderr


def test_killed_inference_leaves_no_partial_csv(trained_dir, video_data, tmp_path):
    output = tmp_path / "submission.csv"
    command = [sys.executable, str(REPO / "inference.py"), f"--train_dir={trained_dir}",
               f"--input_data_pattern={video_data['test']}", f"--output_file={output}",
               "--batch_size=10", "--num_readers=3"]
    process = forked.Popen(command, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    for line in process.stderr:
        if "num examples processed: 100 " in line:
            break
    process.kill()
    process.wait(timeout=60)
    assert not output.exists()
    run_script("inference.py", f"--train_dir={trained_dir}",
               f"--input_data_pattern={video_data['test']}", f"--output_file={output}",
               "--batch_size=64", "--num_readers=3")
    rows = read_submission(output)  # asserts each video at most once
    assert len(rows) == 600


def test_nan_loss_stops_and_keeps_last_good_checkpoint(video_data, tmp_path):
    train_dir = tmp_path / "nan_run"
    run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={video_data['train']}",
               "--batch_size=8", "--max_steps=1", *VIDEO_FLAGS)
    before = checkpoint.checkpoint_steps(str(train_dir))
    assert before == [1]
    # Adam steps of 1e38 overflow the weights: the loss is NaN within a few steps.
    result = run_script("train.py", f"--train_dir={train_dir}",
                        f"--train_data_pattern={video_data['train']}", "--batch_size=8",
                        "--max_steps=20", "--base_learning_rate=1e38", check=False)
    line = _error_line(result)
    assert "NaN or Inf" in line and "model.ckpt-1" in line
    assert checkpoint.checkpoint_steps(str(train_dir)) == before


def _write_video_records(path, count: int, nan_at: int | None = None, id_key: str = "id",
                         label: int = 1) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            audio = np.full(128, np.inf if i == nan_at else 0.1, np.float32)
            example = tf.train.Example(features=tf.train.Features(feature={
                id_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"v%d" % i])),
                "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "mean_rgb": tf.train.Feature(float_list=tf.train.FloatList(
                    value=np.full(1024, np.nan if i == nan_at else 0.1, np.float32))),
                "mean_audio": tf.train.Feature(float_list=tf.train.FloatList(value=audio)),
            }))
            writer.write(example.SerializeToString())
    return str(path)


def test_nan_input_is_named_or_skipped_in_all_three_scripts(trained_dir, tmp_path):
    bad = _write_video_records(tmp_path / "nan.tfrecord", 8, nan_at=5)
    output = tmp_path / "out.csv"
    runs = {
        "train.py": [f"--train_dir={tmp_path / 't'}", f"--train_data_pattern={bad}",
                     "--max_steps=3", *VIDEO_FLAGS],
        "eval.py": [f"--train_dir={trained_dir}", f"--eval_data_pattern={bad}", "--run_once=True"],
        "inference.py": [f"--train_dir={trained_dir}", f"--input_data_pattern={bad}",
                         f"--output_file={output}"],
    }
    for script, args in runs.items():
        line = _error_line(run_script(script, *args, "--batch_size=4", check=False))
        assert f"{bad} (record 5)" in line and "mean_rgb" in line and "NaN or Inf" in line, script
    assert not output.exists() and not (tmp_path / "t" / "checkpoint").exists()
    skipped = run_script("inference.py", *runs["inference.py"], "--skip_bad_records=True")
    assert "malformed_records=1" in skipped.stderr
    assert sorted(read_submission(output)) == [f"v{i}" for i in range(8) if i != 5]


def test_input_without_records_is_an_error_in_all_three_scripts(trained_dir, tmp_path):
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    output = tmp_path / "out.csv"
    new_dir = tmp_path / "new"
    runs = {
        "train.py": [f"--train_dir={new_dir}", f"--train_data_pattern={empty}", *VIDEO_FLAGS],
        "eval.py": [f"--train_dir={trained_dir}", f"--eval_data_pattern={empty}", "--run_once=True"],
        "inference.py": [f"--train_dir={trained_dir}", f"--input_data_pattern={empty}",
                         f"--output_file={output}"],
    }
    for script, args in runs.items():
        line = _error_line(run_script(script, *args, check=False))
        assert f"'{empty}'" in line and "no records" in line, script
    assert not output.exists()
    assert not (new_dir / "export").exists() and not (new_dir / "checkpoint").exists()


@pytest.mark.parametrize("flag,named", [
    ("--feature_sizes=abc", "--feature_sizes"),
    ("--feature_sizes=1024,x", "--feature_sizes"),
    ("--frame_features=True", "--frame_features"),
])
def test_bad_or_contradicting_flags_are_named(flag, named, video_data, tmp_path):
    result = run_script("train.py", f"--train_dir={tmp_path / 't'}",
                        f"--train_data_pattern={video_data['train']}", *VIDEO_FLAGS, flag,
                        check=False)
    line = _error_line(result)
    assert named in line
    if flag.startswith("--frame_features"):
        assert "--model=MoeModel" in line  # a video-level model on frame-level input
    assert not (tmp_path / "t").exists()


def test_known_errors_are_one_line_internal_errors_keep_their_traceback(monkeypatch, capsys):
    from youtube8m_willow import cli
    from youtube8m_willow.data.readers import DataError

    def bad_data():
        raise DataError("data.tfrecord (record 3): broken")

    with pytest.raises(SystemExit) as exit_info:
        cli.run_guarded(bad_data)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "ERROR: data.tfrecord (record 3): broken\n"

    def bug():
        raise KeyError("an internal bug")

    with pytest.raises(KeyError):  # propagates: Python prints its traceback
        cli.run_guarded(bug)
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    with pytest.raises(DataError):  # the full traceback of a known error, on request
        cli.run_guarded(bad_data)


def test_second_interrupt_stops_at_once(video_data, tmp_path):
    train_dir = tmp_path / "run"
    process = _start_training(train_dir, video_data["train"], max_steps=100000)
    _wait_for_step(process, 3)
    process.send_signal(signal.SIGINT)
    for line in process.stderr:
        if "received SIGINT" in line:
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == -signal.SIGINT, rest[-3000:]
    assert "training stopped" not in rest
    # The last complete checkpoint, if the first signal's one completed in
    # time, is the latest; a partial one never is.
    latest = checkpoint.latest_checkpoint(str(train_dir))
    if latest is None:
        assert not list(train_dir.glob("model.ckpt-*.index")), sorted(train_dir.iterdir())
    else:
        assert int(checkpoint.read_checkpoint(latest)["global_step"]) == checkpoint.step_of(latest)


def test_truncated_file_is_named_and_skippable(trained_dir, video_data, tmp_path):
    source = sorted(tf.io.gfile.glob(video_data["test"]))[0]
    data = open(source, "rb").read()
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(data[: len(data) // 2 + 100])  # cut inside a record
    output = tmp_path / "out.csv"
    args = [f"--train_dir={trained_dir}", f"--input_data_pattern={truncated}",
            f"--output_file={output}", "--batch_size=64"]
    result = run_script("inference.py", *args, check=False)
    assert str(truncated) in _error_line(result)
    assert not output.exists()
    skipped = run_script("inference.py", *args, "--skip_bad_records=True")
    assert "corrupt_records=1" in skipped.stderr
    assert 0 < len(read_submission(output)) < 200
    trained = run_script("train.py", f"--train_dir={tmp_path / 'skip'}",
                         f"--train_data_pattern={truncated}", "--batch_size=64", "--num_epochs=1",
                         "--skip_bad_records=True", *VIDEO_FLAGS)
    assert "corrupt_records=1" in trained.stderr


SMALL_FRAME_FLAGS = ["--model=FrameLevelLogisticModel", "--frame_features=True",
                     "--feature_names=rgb,audio", "--feature_sizes=8,4"]
SMALL_VIDEO_FLAGS = ["--model=LogisticModel", "--feature_names=mean_rgb,mean_audio",
                     "--feature_sizes=8,4"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """Six segment-rated frame-level videos (and their video-level means),
    and a frame-level and a segment-level train_dir trained one step on them."""
    root = tmp_path_factory.mktemp("small")
    patterns = write_synthetic_dataset(str(root / "data"), num_videos=6, num_classes=8,
                                       num_shards=1, feature_sizes=(8, 4), min_frames=10,
                                       max_frames=20, segments=True)
    files = {kind: pattern.replace("*", "0000") for kind, pattern in patterns.items()}
    for name, extra in (("frame_dir", ()), ("segment_dir", ("--segment_labels=True",))):
        run_script("train.py", f"--train_dir={root / name}", f"--train_data_pattern={files['frame']}",
                   "--batch_size=4", "--max_steps=1", "--export_model_steps=0", "--num_classes=8",
                   *SMALL_FRAME_FLAGS, *extra)
    whitelist = root / "segment_label_ids.csv"
    whitelist.write_text("Index\n" + "".join(f"{c}\n" for c in range(8)))
    submission = root / "segments.csv"
    submission.write_text("Class,Segments\n1,x:0\n")
    return {**files, "root": root, "whitelist": whitelist, "submission": submission}


def _first_record_flipped(source: str, target) -> str:
    """A copy of ``source`` with one payload byte of its first record flipped."""
    data = bytearray(open(source, "rb").read())
    data[12 + 5] ^= 0x40  # past the 8-byte length and its 4-byte CRC
    target.write_bytes(bytes(data))
    return str(target)


# Each entry point that reads records: (kind of records read, script and flags
# given the small_data fixture, an output file and a pattern). Training runs
# without --num_classes, so the class-count probe reads the first record too.
_ENTRY_POINTS = {
    "train_frame": ("frame", lambda d, out, p: [
        "train.py", f"--train_dir={out}", f"--train_data_pattern={p}", "--batch_size=4",
        "--num_epochs=1", "--export_model_steps=0", *SMALL_FRAME_FLAGS]),
    "train_video": ("video", lambda d, out, p: [
        "train.py", f"--train_dir={out}", f"--train_data_pattern={p}", "--batch_size=4",
        "--num_epochs=1", "--export_model_steps=0", *SMALL_VIDEO_FLAGS]),
    "train_segments": ("frame", lambda d, out, p: [
        "train.py", f"--train_dir={out}", f"--train_data_pattern={p}", "--batch_size=4",
        "--num_epochs=1", "--export_model_steps=0", "--segment_labels=True", *SMALL_FRAME_FLAGS]),
    "eval": ("frame", lambda d, out, p: [
        "eval.py", f"--train_dir={d['root'] / 'frame_dir'}", f"--eval_data_pattern={p}",
        "--run_once=True", "--batch_size=4"]),
    "eval_segments": ("frame", lambda d, out, p: [
        "eval.py", f"--train_dir={d['root'] / 'segment_dir'}", f"--eval_data_pattern={p}",
        "--run_once=True", "--batch_size=4"]),
    "inference": ("frame", lambda d, out, p: [
        "inference.py", f"--train_dir={d['root'] / 'frame_dir'}", f"--input_data_pattern={p}",
        f"--output_file={out}", "--batch_size=4"]),
    "inference_segments": ("frame", lambda d, out, p: [
        "inference.py", f"--train_dir={d['root'] / 'segment_dir'}", f"--input_data_pattern={p}",
        f"--output_file={out}", "--batch_size=4", "--segment_labels=True",
        f"--segment_label_ids_file={d['whitelist']}"]),
    "segment_map": ("frame", lambda d, out, p: [
        "segment_eval_inference.py", f"--eval_data_pattern={p}",
        f"--submission_file={d['submission']}", "--top_n=5"]),
}


@pytest.mark.parametrize("entry_point", sorted(_ENTRY_POINTS))
def test_corrupt_first_record_is_named_or_skipped(entry_point, small_data, tmp_path):
    kind, command = _ENTRY_POINTS[entry_point]
    good = small_data[kind]
    bad = _first_record_flipped(good, tmp_path / "bad.tfrecord")
    output = tmp_path / "out"
    result = run_script(*command(small_data, output, bad), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    line = _error_line(result)
    assert f"{bad} (record 0): damaged or truncated TFRecord data" in line
    assert not output.exists() or output.is_dir() and not (output / "checkpoint").exists()
    if entry_point == "segment_map":  # no --skip_bad_records there
        return
    skipped = run_script(*command(small_data, output, f"{bad},{good}"), "--skip_bad_records=True")
    assert "corrupt_records=1" in skipped.stderr


def _release_model(tmp_path, num_classes: int):
    """A LogisticModel train_dir of one release's class count, trained on `id` records."""
    train_dir = tmp_path / f"model{num_classes}"
    records = _write_video_records(tmp_path / "train.tfrecord", 4)
    run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={records}",
               "--model=LogisticModel", "--feature_names=mean_rgb,mean_audio",
               "--feature_sizes=1024,128", f"--num_classes={num_classes}", "--batch_size=4",
               "--max_steps=1", "--export_model_steps=0")
    return train_dir


def _release_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "have the video id key" in line]


def test_model_of_the_other_release_is_named_in_eval_and_inference(tmp_path):
    train_dir = _release_model(tmp_path, 4716)  # a 2017 model
    records = _write_video_records(tmp_path / "2018.tfrecord", 8, id_key="id")
    output = tmp_path / "out.csv"
    for script, args in (("eval.py", [f"--eval_data_pattern={records}", "--run_once=True"]),
                         ("inference.py", [f"--input_data_pattern={records}",
                                           f"--output_file={output}"])):
        result = run_script(script, f"--train_dir={train_dir}", *args, "--batch_size=4")
        warnings = _release_warnings(result.stderr)
        assert len(warnings) == 1, (script, result.stderr[-3000:])
        assert all(text in warnings[0] for text in (records, "'id'", "3862", "4716")), script
    assert len(read_submission(output)) == 8


def test_labels_out_of_range_for_the_model_fail_eval_as_training(tmp_path):
    train_dir = _release_model(tmp_path, 3862)  # a 2018 model
    # One record: training's shuffle cannot change which record is named.
    records = _write_video_records(tmp_path / "2017.tfrecord", 1, id_key="video_id", label=4000)
    evaluated = run_script("eval.py", f"--train_dir={train_dir}",
                           f"--eval_data_pattern={records}", "--run_once=True", check=False)
    trained = run_script("train.py", f"--train_dir={tmp_path / 'new'}",
                         f"--train_data_pattern={records}", "--model=LogisticModel",
                         "--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128",
                         "--num_classes=3862", "--max_steps=1", check=False)
    assert evaluated.returncode == trained.returncode == 1
    line = _error_line(evaluated)
    assert line == _error_line(trained)
    assert f"{records} (record 0): label 4000 is out of range for --num_classes=3862" in line
    warnings = _release_warnings(evaluated.stderr)
    assert len(warnings) == 1 and "'video_id'" in warnings[0] and "4716" in warnings[0]


def test_video_level_records_given_to_a_frame_level_model(video_data, tmp_path):
    result = run_script("train.py", f"--train_dir={tmp_path / 't'}",
                        f"--train_data_pattern={video_data['train']}", "--model=NetVLADModelLF",
                        "--frame_features=True", "--feature_names=rgb,audio",
                        "--feature_sizes=1024,128", f"--num_classes={NUM_CLASSES}",
                        "--max_steps=2", check=False)
    line = _error_line(result)
    assert "--frame_features" in line and re.search(r"train000\d\.tfrecord \(record \d+\)", line)


def test_label_out_of_range_names_the_flag(video_data, tmp_path):
    result = run_script("train.py", f"--train_dir={tmp_path / 't'}",
                        f"--train_data_pattern={video_data['train']}", "--model=MoeModel",
                        "--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128",
                        "--num_classes=3", "--max_steps=2", check=False)
    line = _error_line(result)
    assert "--num_classes" in line and "tfrecord" in line
