"""Shared test helpers: where the reference material is, and running the scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference material not present: {path}")
    return path


def fixture_path(*parts: str) -> Path:
    """A fixture under ../shared that a test needs: failing, not skipping,
    when it is absent (a missing fixture must not pass as a green run)."""
    path = SHARED.joinpath(*parts)
    assert path.exists(), f"fixture missing: {path}"
    return path


def run_script(script: str, *args: str, check: bool = True, timeout: float = 900,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs train.py / eval.py / inference.py as a user would."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True,
                            text=True, timeout=timeout, env=full_env, cwd=str(REPO))
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def read_submission(path) -> dict[str, list[tuple[int, float]]]:
    """Parses a submission CSV into {video_id: [(label, score), ...]}."""
    lines = Path(path).read_text().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs"
    rows = {}
    for line in lines[1:]:
        video_id, pairs = line.split(",", 1)
        values = pairs.split()
        assert video_id not in rows, f"duplicate video {video_id}"
        rows[video_id] = [(int(values[i]), float(values[i + 1])) for i in range(0, len(values), 2)]
    return rows
