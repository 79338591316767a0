"""eval.py without --run_once polls train_dir and evaluates each new
checkpoint exactly once; --check_point picks one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import forked
from conftest import REPO, run_script
from youtube8m_willow.data.synthetic import write_synthetic_dataset

FLAGS = ["--model=LogisticModel", "--feature_names=mean_rgb,mean_audio",
         "--feature_sizes=1024,128", "--num_classes=10"]


def _train(train_dir, pattern, steps):
    run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
               "--batch_size=16", f"--max_steps={steps}", *FLAGS)


def test_polling_evaluates_each_new_checkpoint_once(tmp_path):
    pattern = write_synthetic_dataset(str(tmp_path / "data"), num_videos=64, num_classes=10,
                                      num_shards=1, frame_level=False)["video"]
    train_dir = tmp_path / "run"
    _train(train_dir, pattern, 2)
    command = [sys.executable, str(REPO / "eval.py"), f"--train_dir={train_dir}",
               f"--eval_data_pattern={pattern}", "--poll_secs=1", "--batch_size=32"]
    process = forked.Popen(command, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    evaluated, trained_more = [], False
    deadline = time.monotonic() + 240
    try:
        for line in process.stderr:
            match = re.search(r"epoch/eval number (\d+)", line)
            if match:
                evaluated.append(int(match.group(1)))
                if not trained_more:
                    _train(train_dir, pattern, 4)
                    trained_more = True
                elif len(evaluated) >= 2:
                    # Give the poller a few more polls: it must not re-evaluate.
                    time.sleep(2.5)
                    break
            assert time.monotonic() < deadline, "eval.py did not evaluate in time"
    finally:
        process.terminate()
        remaining = process.communicate(timeout=60)[1]
    evaluated += [int(s) for s in re.findall(r"epoch/eval number (\d+)", remaining)]
    assert evaluated == [2, 4]


def test_check_point_selects_a_step(tmp_path):
    pattern = write_synthetic_dataset(str(tmp_path / "data"), num_videos=32, num_classes=10,
                                      num_shards=1, frame_level=False)["video"]
    train_dir = tmp_path / "run"
    _train(train_dir, pattern, 3)
    _train(train_dir, pattern, 5)  # the latest is now step 5
    result = run_script("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={pattern}",
                        "--check_point=3", "--batch_size=32")
    assert "epoch/eval number 3 " in result.stderr
    assert "epoch/eval number 5 " not in result.stderr
    missing = run_script("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={pattern}",
                         "--check_point=99", check=False)
    assert missing.returncode == 1 and "--check_point=99" in missing.stderr
