"""eval.py and inference.py warn when a checkpoint's batch-norm moving
statistics are still near their initial values (a short run: eval-mode
predictions near random), and stay quiet on the original's checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_script, shared_path
from youtube8m_willow.data.synthetic import write_synthetic_dataset

NUM_CLASSES, STEPS = 6, 3
# A tiny NetVLAD, batch norm on (the default), frame-level features.
NETVLAD = ["--model=NetVLADModelLF", "--frame_features=True", "--feature_names=rgb,audio",
           "--feature_sizes=16,8", "--netvlad_cluster_size=2", "--netvlad_hidden_size=4",
           "--iterations=4", f"--num_classes={NUM_CLASSES}"]


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "batch-norm moving statistics" in line]


def _eval_and_infer(train_dir, data, tmp_path, *flags) -> list[str]:
    """The batch-norm warnings of eval.py and of inference.py on ``train_dir``."""
    evaluated = run_script("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={data}",
                           "--run_once=True", *flags)
    inferred = run_script("inference.py", f"--train_dir={train_dir}",
                          f"--input_data_pattern={data}",
                          f"--output_file={tmp_path / 'out.csv'}", *flags)
    assert (tmp_path / "out.csv").exists()
    return [_warnings(evaluated.stderr), _warnings(inferred.stderr)]


def test_a_short_run_with_batch_norm_warns(tmp_path):
    data = write_synthetic_dataset(str(tmp_path / "data"), num_videos=16, num_classes=NUM_CLASSES,
                                   num_shards=1, video_level=False, feature_sizes=(16, 8),
                                   max_frames=6, min_frames=2, seed=1)["frame"]
    train_dir = tmp_path / "train_dir"
    run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={data}",
               "--batch_size=8", f"--max_steps={STEPS}", "--export_model_steps=100000", *NETVLAD)
    checkpoint = train_dir / f"model.ckpt-{STEPS}"
    for lines in _eval_and_infer(train_dir, data, tmp_path, "--batch_size=8"):
        assert len(lines) == 1, lines  # one line, naming the checkpoint, step, cause and cure
        line = lines[0]
        assert f"checkpoint {checkpoint} (global step {STEPS})" in line
        assert "decay 0.999" in line and f"0.999**{STEPS} = 0.997" in line
        assert "Train longer" in line and "--netvlad_add_batch_norm=False" in line


@pytest.mark.parametrize("name", ["netvlad_gated", "moe_video"])
def test_the_original_checkpoints_do_not_warn(name, tmp_path):
    # Both at global step 123: netvlad_gated's moving statistics were set
    # (the data's, perturbed), moe_video has no batch norm.
    fixture = shared_path("fixtures", name)
    meta = json.loads((fixture / "meta.json").read_text())
    shutil.copytree(fixture / "train_dir", tmp_path / "train_dir")  # eval.py writes events
    flags = [f"--num_classes={meta['num_classes']}", "--frame_sampling=uniform",
             *meta["model_flags"]]
    assert _eval_and_infer(tmp_path / "train_dir", fixture / "data.tfrecord", tmp_path,
                           *flags) == [[], []]
