"""The bench/ scripts the README quotes run and report (tiny settings; the
numbers themselves are measured by running the scripts, never asserted)."""

from __future__ import annotations

import os
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
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_bench_script_reports(script):
    result = subprocess.run([sys.executable, str(REPO / "bench" / script), *RUNS[script]],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO),
                                 "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/s" in result.stdout or "333.2M" in result.stdout, result.stdout[-2000:]
