"""recipes/willow_ensemble.sh: WILLOW's seven training lines, seven inference
lines and the averaging step, run on a tiny synthetic frame-level dataset."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, read_submission, recorded_recipe_lines, run_in_process, run_recipe
from youtube8m_willow.data.synthetic import write_synthetic_dataset

RECIPE = REPO / "recipes" / "willow_ensemble.sh"
TRAIN_DIRS = [
    "gatednetvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe",
    "gatednetfvLF-128k-1024-80-0002-300iter-norelu-basic-gatedmoe",
    "gateddboflf-4096-1024-80-0002-300iter",
    "softdboflf-8000-1024-80-0002-300iter",
    "gatedlightvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe",
    "GRU-0002-1200",
    "lstm-0002-val-150-random",
]
CSVS = [
    "test-gatednetvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-GRU-0002-1200.csv",
    "test-gatednetfvLF-128k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-gateddboflf-4096-1024-80-0002-300iter-gatedmoe.csv",
    "test-softdboflf-8000-1024-80-0002-300iter.csv",
    "test-gatedlightvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-lstm-0002-val-150-random.csv",
]


def _run_recipe(features, work, timeout: float, **env) -> subprocess.CompletedProcess:
    return run_recipe(RECIPE, features, work, timeout=timeout, **env)


def _assert_sorted_pairs(rows: dict, video_ids: list[str], pairs: int) -> None:
    assert sorted(rows) == sorted(video_ids)
    for video_id, labels in rows.items():
        assert len(labels) == pairs, video_id
        scores = [score for _, score in labels]
        assert scores == sorted(scores, reverse=True), video_id


def test_averaging_stage_reads_the_files_inference_writes(tmp_path):
    # FIX 2: the seven names written by the README's inference lines.
    for i, name in enumerate(CSVS):
        (tmp_path / name).write_text(f"VideoId,LabelConfidencePairs\n007,{i} 0.7 99 0.2\n")
    result = _run_recipe(tmp_path, tmp_path, 300, STAGES="average")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_submission(tmp_path / "WILLOW_submission.csv")
    assert list(rows) == ["007"]
    assert rows["007"][0] == (99, pytest.approx(0.2))
    assert sorted(label for label, _ in rows["007"][1:]) == list(range(7))
    assert all(score == pytest.approx(0.1) for _, score in rows["007"][1:])


def test_unknown_stage_fails(tmp_path):
    result = _run_recipe(tmp_path, tmp_path, 60, STAGES="deploy")
    assert result.returncode == 1
    assert "ERROR: unknown stage deploy" in result.stderr


# Shrinks every paper model (appended to each training and inference line, so
# the later flag wins): the recipe's plumbing end to end in about a minute
# instead of 333M-parameter train_dirs (the paper sizes run in bench/).
SMALL_MODELS = ("--iterations=6 --netvlad_cluster_size=8 --netvlad_hidden_size=16 "
                "--fv_cluster_size=8 --fv_hidden_size=16 --dbof_cluster_size=16 "
                "--dbof_hidden_size=16 --gru_cells=16 --lstm_cells=16")


def test_recipe_end_to_end_on_tiny_frame_data(tmp_path, monkeypatch):
    """The recipe's fourteen command lines, as bash expands them, run (in
    this process, in the recipe's working directory) in order; then its
    averaging stage runs for real on the CSVs they wrote."""
    data = tmp_path / "data"
    shape = dict(num_classes=30, num_shards=1, video_level=False, min_frames=3, max_frames=6)
    # 20 videos x 15 epochs: at least two batches of 128 (GRU, LSTM lines).
    write_synthetic_dataset(str(data), num_videos=20, prefix="train", **shape)
    write_synthetic_dataset(str(data), num_videos=6, prefix="test", with_labels=False, **shape)
    test_ids = [f"test{i:06d}" for i in range(6)]
    work = tmp_path / "work"
    lines = recorded_recipe_lines(tmp_path, RECIPE, data / "frame", work,
                                  STAGES="train inference",
                                  TRAIN_FLAGS=f"--max_step=2 {SMALL_MODELS}",
                                  INFERENCE_FLAGS=SMALL_MODELS)
    scripts = [Path(line[0]) for line in lines]
    assert [s.name for s in scripts] == ["train.py"] * 7 + ["inference.py"] * 7
    assert all(s.parent == REPO for s in scripts)
    start = time.monotonic()
    try:
        monkeypatch.chdir(work)  # the recipe runs its lines in WORK_DIR
        for script, (_, *args) in zip(scripts, lines):
            run_in_process(script.name, *args)
        for train_dir in TRAIN_DIRS:
            assert (work / train_dir / "model.ckpt-2.index").exists(), train_dir
        for name in CSVS:  # inference ran with --top_k=50
            _assert_sorted_pairs(read_submission(work / name), test_ids, 50)
        result = _run_recipe(data / "frame", work, 300, STAGES="average")
        assert result.returncode == 0, result.stderr[-4000:]
        _assert_sorted_pairs(read_submission(work / "WILLOW_submission.csv"), test_ids, 20)
    finally:
        print(f"recipe: {time.monotonic() - start:.0f} s")
        shutil.rmtree(work, ignore_errors=True)
