"""TensorFlow's start-up and export chatter is hidden from the scripts'
stderr by default; YT8M_VERBOSE_TF=1 brings it back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, chatter, user_env
from youtube8m_willow.data.synthetic import write_synthetic_dataset

MODEL = ["--model=LogisticModel", "--feature_names=mean_rgb,mean_audio", "--feature_sizes=16,8",
         "--num_classes=6"]


def run(script: str, *args: str, **env: str) -> str:
    """Runs a script in a user's environment; returns its stderr."""
    result = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True,
                            text=True, timeout=600, env=user_env(**env), cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
    root = tmp_path_factory.mktemp("quiet")
    return write_synthetic_dataset(str(root), num_videos=32, num_classes=6, num_shards=1,
                                   frame_level=False, feature_sizes=(16, 8), max_frames=4,
                                   min_frames=1)["video"]


def train(train_dir, pattern, **env) -> str:
    # The final SavedModel export is where TF logs its signature renaming.
    return run("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
               "--batch_size=16", "--max_steps=2", *MODEL, **env)


def test_scripts_start_quietly(pattern, tmp_path):
    stderr = train(tmp_path, pattern)
    assert "training step 2 " in stderr and "training stopped" in stderr
    assert chatter(stderr) == []
    stderr = run("eval.py", f"--train_dir={tmp_path}", f"--eval_data_pattern={pattern}",
                 "--run_once=True")
    assert "epoch/eval number 2 " in stderr and chatter(stderr) == []
    stderr = run("inference.py", f"--train_dir={tmp_path}", f"--input_data_pattern={pattern}",
                 f"--output_file={tmp_path / 'out.csv'}")
    assert "wrote 32 videos" in stderr and chatter(stderr) == []


def test_verbose_switch_brings_tensorflow_messages_back(pattern, tmp_path):
    stderr = train(tmp_path, pattern, YT8M_VERBOSE_TF="1")
    lines = chatter(stderr)
    assert any("Assets written" in line for line in lines), stderr[-3000:]  # TF's Python INFO
    # TF's C++ log level is no longer raised: its INFO lines (I0000 ... file.cc:N]) show.
    assert any(line.startswith("I") and ".cc:" in line for line in stderr.splitlines()), (
        stderr[-3000:])


def test_an_explicit_tf_log_level_is_respected(pattern, tmp_path):
    stderr = train(tmp_path, pattern, TF_CPP_MIN_LOG_LEVEL="0")
    assert any(line.startswith("I") and ".cc:" in line for line in stderr.splitlines())


FILTER_PROBE = """
import os, sys
from youtube8m_willow.cli import stderr_without
with stderr_without((b"notice A", b"notice B")):
    os.write(2, b"before\\nnotice A from C++\\n")
    print("python line", file=sys.stderr)
    os.write(2, b"notice B again\\nafter\\n")
os.write(2, b"notice A once the block is over\\n")
"""


def test_stderr_filter_drops_only_the_notices():
    # Writes straight to file descriptor 2, as TensorFlow's C++ code does.
    result = subprocess.run([sys.executable, "-c", FILTER_PROBE], capture_output=True,
                            text=True, timeout=120, cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["before", "python line", "after",
                                          "notice A once the block is over"]
