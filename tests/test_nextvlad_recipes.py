"""recipes/nextvlad_local.sh and recipes/mix_nextvlad_final.sh: the NeXtVLAD
author's train, eval and inference lines, run on tiny synthetic frame data."""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import REPO, fed_videos, read_submission, recorded_recipe_lines, run_in_process, run_recipe
from youtube8m_willow.data.synthetic import write_synthetic_splits

LOCAL = REPO / "recipes" / "nextvlad_local.sh"
FINAL = REPO / "recipes" / "mix_nextvlad_final.sh"
LOCAL_DIR = "nextvlad_8g_5l2_5drop_128k_2048_2x80_logistic"
FINAL_DIR = "mix3_nextvlad_3T_8g_5l2_5drop_112k_2048_2x80_logistic"
NUM_TRAIN, NUM_EVAL = 64, 12

# The author's sizes shrunk (appended to the train and eval lines, so the
# later flag wins): each line runs in seconds instead of building 89M or
# 236M parameters (the paper sizes run in bench/). 20 classes, not the 3862
# of the records' 2018 id key, so that 2 steps give a GAP above 0.
TINY_MODEL = ("--nextvlad_cluster_size=4 --nextvlad_hidden_size=16 --groups=2 --expansion=1 "
              "--gating_reduction=4 --max_frames=8 --num_classes=20")
EPOCH_LINE = re.compile(r"epoch/eval number (\d+) \| .* GAP: (\d\.\d+)")


@pytest.fixture(scope="module")
def frame_data(tmp_path_factory) -> Path:
    """The author's layout: <data>/train/train*.tfrecord,
    <data>/validate/validate*.tfrecord, <data>/test/test*.tfrecord (2018
    records: 'id' keys, 3862 classes)."""
    generated = tmp_path_factory.mktemp("generated")
    write_synthetic_splits(str(generated), num_videos=NUM_TRAIN, num_eval_videos=NUM_EVAL,
                           num_shards=1, num_classes=20, video_level=False, min_frames=3,
                           max_frames=8)
    data = tmp_path_factory.mktemp("data")
    for split in ("train", "validate", "test"):
        (data / split).mkdir()
        for shard in (generated / "frame").glob(f"{split}*.tfrecord"):
            shard.rename(data / split / shard.name)
    return data


def _run_lines(lines: list[list[str]], work: Path, monkeypatch) -> list[str]:
    """Runs the recorded lines of a recipe in order, in this process and in
    its working directory; returns each one's log."""
    monkeypatch.chdir(work)
    logs = []
    for script, *args in lines:
        assert Path(script).parent == REPO
        logs.append(run_in_process(Path(script).name, *args).stderr)
    return logs


def _assert_outputs(work: Path, train_dir: str, eval_log: str, steps: int) -> None:
    """Checkpoints at ``steps``, eval.py's epoch line for them, the test
    CSV (20 labels by score for each of the test videos) and the .tgz."""
    assert (work / train_dir / f"model.ckpt-{steps}.index").exists()
    assert not (work / train_dir / f"model.ckpt-{steps + 1}.index").exists()
    step, gap = EPOCH_LINE.search(eval_log).groups()
    assert int(step) == steps and 0 < float(gap) <= 1
    rows = read_submission(work / "results" / f"{train_dir}.csv")
    assert sorted(rows) == [f"test{i:06d}" for i in range(NUM_EVAL)]
    for labels in rows.values():
        scores = [score for _, score in labels]
        assert len(labels) == 20 and scores == sorted(scores, reverse=True)
    with tarfile.open(work / "results" / f"{train_dir}.tgz") as packed:
        names = {Path(name).name for name in packed.getnames()}
    assert {"model_flags.json", f"model.ckpt-{steps}.index"} <= names


README_BLOCK = re.compile(r"<!-- nextvlad recipes: begin -->\n```\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def readme_lines(frame_data, tmp_path_factory) -> tuple[Path, list[list[str]]]:
    """The python lines of the README's two recipe commands, run by bash with
    DATA and VAL set to the synthetic data and /tmp/ in a temporary folder;
    returns that folder and the lines (the local recipe's 3, the final's 3)."""
    folder = tmp_path_factory.mktemp("recipes")
    block = README_BLOCK.search((REPO / "README.md").read_text()).group(1)
    block = block.replace("/tmp/", f"{folder}/")
    values = {"DATA": frame_data, "VAL": frame_data / "validate"}
    assert re.findall(r"^(\w+)=\S+", block, re.M) == list(values)
    for name, value in values.items():
        block = re.sub(rf"^{name}=\S+", f"{name}={value}", block, flags=re.M)
    lines = recorded_recipe_lines(folder, "-ec", block, EVAL_FLAGS=TINY_MODEL,
                                  TRAIN_FLAGS=f"{TINY_MODEL} --max_step=1 --verbosity=1")
    assert [Path(line[0]).name for line in lines] == ["train.py", "eval.py", "inference.py"] * 2
    return folder, lines


def test_local_recipe_end_to_end(frame_data, readme_lines, monkeypatch):
    """NeXtVLADModel: the train line stops at --max_step (alias of
    --max_steps; the author's 5 epochs of 64 videos would run 2 steps of
    80 x 2 examples), eval.py and inference.py read the train_dir's model."""
    folder, lines = readme_lines
    work = folder / "nextvlad_local"
    train, evaluate, infer = (line[1:] for line in lines[:3])
    assert f"--train_data_pattern={frame_data}/train/train*.tfrecord" in train
    assert ["--learning_rate_decay_examples", "2000000"] == train[
        train.index("--learning_rate_decay_examples"):][:2]
    assert "--num_epochs=5" in train and "--model=NeXtVLADModel" in train
    assert not any(arg.startswith("--model=") for arg in evaluate + infer)
    assert (work / "results").is_dir()  # made by the inference stage
    try:
        train_log, eval_log, _ = _run_lines(lines[:3], work, monkeypatch)
        assert "training NeXtVLADModel" in train_log
        assert ", batch 160, " in train_log  # the plan line states the examples per step
        fed = fed_videos([train_log])  # --batch_size=80 per tower, --num_gpu=2
        assert list(fed) == [1] and len(fed[1].split(",")) == 160
        assert "stopped (max_steps) at global step 1" in train_log
        assert "ignored" not in eval_log  # EVAL_FLAGS repeated the train line's sizes
        _assert_outputs(work, LOCAL_DIR, eval_log, steps=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_final_recipe_end_to_end(frame_data, readme_lines, monkeypatch):
    """MixNeXtVladModel on the train and validate records."""
    folder, lines = readme_lines
    work = folder / "mix_nextvlad"
    train = lines[3][1:]
    assert f"--train_data_pattern={frame_data}/[tv][ar]*/[tv]*.tfrecord" in train
    assert ["--learning_rate_decay_examples", "2500000"] == train[
        train.index("--learning_rate_decay_examples"):][:2]
    assert "--num_epochs=15" in train and "--cl_lambda=9" in train
    try:
        train_log, eval_log, _ = _run_lines(lines[3:], work, monkeypatch)
        # The pattern reads the train and the validate folder, not test.
        assert f"2 files matching '{frame_data}/[tv][ar]*/[tv]*.tfrecord'" in train_log
        assert f"{NUM_TRAIN + NUM_EVAL:,} records" in train_log
        assert "training MixNeXtVladModel" in train_log
        assert "stopped (max_steps) at global step 1" in train_log
        _assert_outputs(work, FINAL_DIR, eval_log, steps=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_unknown_stage_fails(tmp_path):
    for recipe in (LOCAL, FINAL):
        result = run_recipe(recipe, tmp_path, tmp_path, tmp_path, tmp_path, STAGES="deploy")
        assert result.returncode == 1
        assert "ERROR: unknown stage deploy; valid: train eval inference" in result.stderr


def test_missing_arguments_print_the_usage(tmp_path):
    result = run_recipe(FINAL, tmp_path)
    assert result.returncode != 0
    assert "usage: " in result.stderr and "FRAME_PATH EVAL_PATH TEST_PATH [WORK_DIR]" in result.stderr
