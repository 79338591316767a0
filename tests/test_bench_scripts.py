"""The bench/ scripts the README quotes run and report (tiny settings; the
numbers themselves are measured by running the scripts, never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

SMALL_NETVLAD = ["--cluster_size=4", "--hidden_size=16", "--iterations=5", "--num_classes=20"]
RUNS = {
    "bench_metrics.py": ["--num_videos=2048"],
    "bench_train.py": ["--model=all", "--warmup=1", "--steps=1", "--batch_size=8",
                       *SMALL_NETVLAD],
    "bench_input.py": ["--num_videos=16", "--num_shards=2", "--frames=10", "--num_classes=20",
                       "--batch_size=8", "--video_batch_size=8", "--passes=1", "--train_rate=10",
                       "--video_train_rate=10"],
    "bench_inference.py": ["--model=all", "--batch_size=8", "--batches=2", *SMALL_NETVLAD],
    "bench_paper_models.py": ["--only=gateddboflf", "--steps=1", "--warmup=0"],
    "bench_segments.py": ["--num_segments=3000", "--num_classes=200", "--whitelist=50",
                          "--segment_max_pred=100"],
    "param_counts.py": ["--markdown"],
    "nextvlad_quality.py": ["--steps=2", "--only=NeXtVLADModel"],
}
# What a script's report must hold, where more than a rate or a parameter
# count: NeXtVLADModel's row, its size the README's (a third of the demo's
# Gated NetVLAD), its eval GAP read off eval.py.
REPORTS = {"nextvlad_quality.py": r"\| NeXtVLADModel \| 1,471,220 \| .* \| [01]\.\d{3} \|\n"}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_bench_script_reports(script):
    result = subprocess.run([sys.executable, str(REPO / "bench" / script), *RUNS[script]],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO),
                                 "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    if script in REPORTS:
        assert re.search(REPORTS[script], result.stdout), result.stdout[-2000:]
    else:
        assert "/s" in result.stdout or "333.2M" in result.stdout, result.stdout[-2000:]


def _vs_original(tmp_path, instrument: str | None, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("SIDE_BY_SIDE", None)
    if instrument is not None:
        script = tmp_path / "instrument.sh"
        script.write_text(instrument)
        args = (f"--instrument={script}", *args)
    return subprocess.run([sys.executable, str(REPO / "bench" / "bench_vs_original.py"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def test_vs_original_without_an_instrument_measures_nothing(tmp_path):
    result = _vs_original(tmp_path, None)
    assert result.returncode == 1
    assert "no side-by-side instrument" in result.stderr
    assert "ratio" not in result.stdout and "x |" not in result.stdout


def test_vs_original_tabulates_the_instruments_line(tmp_path):
    # A stand-in instrument: echoes its arguments' model and one result line.
    line = ('echo "$1: original 2.000 s/step (runs 2.000 2.100) 10.00 GB, project 1.000 s/step '
            '(runs 1.000 1.050) 6.00 GB, ratio 2.00, memory ratio 0.60"; '
            'echo "$4" > "$(dirname "$0")/flags_$1"\n')
    result = _vs_original(tmp_path, line, "--only=GRU", "--rounds=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| GRU-0002-1200 | 2.000 | 1.000 | 2.00x | 10.00 GB | 6.00 GB | 0.60 |" in result.stdout
    flags = (tmp_path / "flags_GRU-0002-1200").read_text()
    assert "--gru_cells=1200" in flags and "--train_dir" not in flags


def test_vs_original_reports_a_failed_run(tmp_path):
    result = _vs_original(tmp_path, "echo 'reference not set up'; exit 1\n", "--only=lstm")
    assert result.returncode == 0
    assert "the instrument failed (1): reference not set up" in result.stdout


def test_every_frame_level_model_has_a_row_with_all():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_paper_models.py"), "--all", "--steps=1",
         "--warmup=0", "--only=FrameLevelLogisticModel"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    # 300 frames x 1152 features x 4716 classes, and the biases.
    assert re.search(r"\| FrameLevelLogisticModel \| 5\.4M \| 80 \|",
                     result.stdout), result.stdout[-2000:]


def _bench_module(name):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


def test_nextvlad_rows_are_the_authors_recipes():
    lines = _bench_module("bench_paper_models").nextvlad_recipe_lines()
    single, mixture = lines["NeXtVLADModel"], lines["MixNeXtVladModel"]
    for flag in ("--nextvlad_cluster_size=128", "--gating_reduction=8", "--groups=8",
                 "--expansion=2", "--nextvlad_hidden_size=2048", "--batch_size=80",
                 "--num_classes=3862", "--video_level_classifier_model=LogisticModel"):
        assert flag in single, flag
    for flag in ("--nextvlad_cluster_size=112", "--mix_number=3", "--cl_temperature=3",
                 "--cl_lambda=9", "--gating_reduction=16"):
        assert flag in mixture, flag


def test_vs_fork_without_the_fork_measures_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("REFERENCE_DIR", None)
    result = subprocess.run([sys.executable, str(REPO / "bench" / "bench_vs_fork.py"),
                             f"--reference_dir={tmp_path}"], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 1
    assert "no NeXtVLAD fork set up" in result.stderr and "|" not in result.stdout


def test_vs_fork_times_the_logged_steps():
    log = "\n".join(f"I1205 10:00:{seconds:09.6f} 1 train.py:1] training step {step} | Loss: 1"
                    for step, seconds in [(1, 0.0), (2, 5.0), (3, 6.0), (4, 8.0), (5, 9.5)])
    seconds_per_step = _bench_module("bench_vs_fork").seconds_per_step
    assert seconds_per_step(log, 3, 5) == pytest.approx(1.5)  # gaps 1, 2, 1.5
    assert seconds_per_step(log, 2, 2) == pytest.approx(5.0)
    assert seconds_per_step("no steps", 2, 5) != seconds_per_step("no steps", 2, 5)  # NaN
