"""Preemption: train.py killed (kill -9, also inside a checkpoint write) or
stopped (SIGTERM, SIGINT) and restarted is the same run: the same videos at
every global step, the same final weights bit for bit, and ``--num_epochs``
passes over the data however often it restarts.

Each run checkpoints after every step (``--save_checkpoint_secs=0``) and logs
the ids of every batch it trains on (``--verbosity=1``); steps done after the
last checkpoint are done again after a restart, with the same videos.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

import forked
from conftest import REPO, fed_videos
from youtube8m_willow import checkpoint
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.training import resume

STEPS = 14
TIMEOUT = 180
MODEL_FLAGS = ["--frame_features=True", "--feature_names=rgb,audio", "--feature_sizes=16,8",
               "--num_classes=10", "--model=NetVLADModelLF", "--netvlad_cluster_size=4",
               "--netvlad_hidden_size=8", "--iterations=5", "--sample_random_frames=True"]
RUN_FLAGS = ["--batch_size=8", "--num_readers=2", "--seed=5", "--num_epochs=3",
             "--save_checkpoint_secs=0", "--export_model_steps=0", "--keep_checkpoints=3",
             "--verbosity=1"]
# Runs train.py and has it signal itself once, at global step $STOP_STEP:
# right after the step ($STOP_WHERE=step; the step's checkpoint is not
# written yet) or inside the checkpoint write of that step (=save: the
# companion input state written, the index that completes it not yet).
# The signal is a real one: SIGKILL ends the process there.
STOP_AT = """
import os, runpy, signal, sys
from youtube8m_willow import checkpoint
from youtube8m_willow.training import trainer
step, where = int(os.environ["STOP_STEP"]), os.environ["STOP_WHERE"]
how = getattr(signal, os.environ["STOP_SIGNAL"])
train_step, write = trainer.Trainer.step, checkpoint._write_text_atomic
def stop():
    os.kill(os.getpid(), how)
def step_then_stop(self, *args, **kwargs):
    metrics = train_step(self, *args, **kwargs)
    if where == "step" and self.global_step == step:
        stop()
    return metrics
def write_then_stop(path, text):
    write(path, text)
    if where == "save" and path.endswith(f"-{step}.input.json"):
        stop()
trainer.Trainer.step, checkpoint._write_text_atomic = step_then_stop, write_then_stop
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("preemption")
    frame = write_synthetic_dataset(str(root / "frame"), num_videos=45, num_classes=10,
                                    num_shards=3, feature_sizes=(16, 8), min_frames=3,
                                    max_frames=12, seed=1, video_level=False)["frame"]
    video = write_synthetic_dataset(str(root / "video"), num_videos=21, num_classes=10,
                                    num_shards=1, feature_sizes=(16, 8), seed=2,
                                    frame_level=False, prefix="clip")["video"]
    return {"root": root, "frame": frame, "video": video}


def _command(train_dir, data_pattern, extra=()):
    return [f"--train_dir={train_dir}", f"--train_data_pattern={data_pattern}", *MODEL_FLAGS,
            *RUN_FLAGS, *extra]


def _run(flags, log_path, stop=None):
    """Runs train.py with ``flags``; ``stop``: (step, "step" | "save", signal
    name) to signal itself there (see STOP_AT). Returns (exit code, log)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if stop:
        env.update(STOP_STEP=str(stop[0]), STOP_WHERE=stop[1], STOP_SIGNAL=stop[2])
        command = [sys.executable, "-c", STOP_AT, *flags]
    else:
        command = [sys.executable, str(REPO / "train.py"), *flags]
    with open(log_path, "w") as log:
        result = forked.run(command, stdout=subprocess.DEVNULL, stderr=log, env=env,
                            cwd=str(REPO), timeout=TIMEOUT)
    return result.returncode, log_path.read_text()


def _final_tensors(train_dir):
    return checkpoint.read_checkpoint(checkpoint.latest_checkpoint(str(train_dir)))


def _assert_same_tensors(ours, reference):
    assert sorted(ours) == sorted(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(data):
    train_dir = data["root"] / "uninterrupted"
    code, log = _run(_command(train_dir, data["frame"], [f"--max_steps={STEPS}"]),
                     data["root"] / "uninterrupted.log")
    assert code == 0, log[-3000:]
    return {"dir": train_dir, "fed": fed_videos([log]), "log": log}


def test_uninterrupted_runs_are_identical(data, uninterrupted):
    train_dir = data["root"] / "again"
    code, log = _run(_command(train_dir, data["frame"], [f"--max_steps={STEPS}"]),
                     data["root"] / "again.log")
    assert code == 0, log[-3000:]
    assert sorted(uninterrupted["fed"]) == list(range(1, STEPS + 1))
    assert fed_videos([log]) == uninterrupted["fed"]
    _assert_same_tensors(_final_tensors(train_dir), _final_tensors(uninterrupted["dir"]))


def test_killed_four_times_and_restarted_is_the_same_run(data, uninterrupted):
    """kill -9 at three random steps, each right after the step or inside
    its checkpoint write, then once more inside a checkpoint write."""
    train_dir = data["root"] / "killed"
    command = _command(train_dir, data["frame"], [f"--max_steps={STEPS}"])
    chance = random.Random(7)
    stops = [(step, chance.choice(["step", "save"]), "SIGKILL")
             for step in sorted(chance.sample(range(2, STEPS - 2), 3))]
    stops.append((stops[-1][0] + 2, "save", "SIGKILL"))
    logs = []
    for number, stop in enumerate(stops):
        code, log = _run(command, data["root"] / f"killed{number}.log", stop)
        assert code == -signal.SIGKILL, log[-3000:]
        logs.append(log)
        # A checkpoint killed in its write is not the latest: its index is missing.
        latest = int(checkpoint.latest_checkpoint(str(train_dir)).rsplit("-", 1)[1])
        assert latest == stop[0] - 1, (stop, latest)
        if stop[1] == "save":
            assert os.path.exists(resume.companion(str(train_dir / f"model.ckpt-{stop[0]}")))
    code, log = _run(command, data["root"] / "killed_last.log")
    assert code == 0, log[-3000:]
    logs.append(log)
    assert "the input resumes at epoch" in log and "starts over" not in "".join(logs)
    assert fed_videos(logs) == uninterrupted["fed"]
    _assert_same_tensors(_final_tensors(train_dir), _final_tensors(uninterrupted["dir"]))
    # The input state is a few hundred bytes, whatever the data.
    assert os.path.getsize(resume.companion(checkpoint.latest_checkpoint(str(train_dir)))) < 1024


def test_num_epochs_counts_passes_across_restarts(data):
    """Two passes over one 21-video file in batches of 8, stopped mid-epoch
    by SIGTERM, then SIGINT: every video is trained on exactly twice."""
    train_dir = data["root"] / "epochs"
    flags = ["--feature_names=mean_rgb,mean_audio", "--frame_features=False", "--model=MoeModel",
             "--num_epochs=2"]
    command = _command(train_dir, data["video"], flags)
    logs = []
    for number, stop in enumerate([(1, "step", "SIGTERM"), (4, "step", "SIGINT")]):
        code, log = _run(command, data["root"] / f"epochs{number}.log", stop)
        stopped = f"received {stop[2]}: checkpointing and exporting at global step {stop[0]}"
        assert code == 0 and stopped in log, (
            log[-3000:])
        logs.append(log)
    code, log = _run(command, data["root"] / "epochs_last.log")
    assert code == 0 and "stopped (end_of_data)" in log, log[-3000:]
    logs.append(log)
    fed = fed_videos(logs)
    assert sorted(fed) == list(range(1, 7))  # 42 videos: 5 batches of 8, one of 2
    counts = collections.Counter(i for ids in fed.values() for i in ids.split(","))
    assert len(counts) == 21 and set(counts.values()) == {2}
    # Once the passes are done, another start trains nothing and says so.
    code, log = _run(command, data["root"] / "epochs_done.log")
    assert code == 0 and "--num_epochs=2 passes are done" in log, log[-3000:]
    assert int(_final_tensors(train_dir)["global_step"]) == 6
