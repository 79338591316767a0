"""`make demo` end to end: data, training, evaluation, submission."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO, chatter, read_submission, user_env
from youtube8m_willow.demo import EXPECTED_GAP


def test_make_demo(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(["make", "demo", f"DEMO_DIR={out}"], cwd=REPO, capture_output=True,
                            text=True, timeout=1200, env=user_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"submission:  {out / 'submission.csv'}" in result.stdout
    rows = read_submission(out / "submission.csv")
    assert len(rows) == 400 and all(len(pairs) == 20 for pairs in rows.values())
    assert (out / "train_dir" / "model.ckpt-300.index").exists()
    assert (out / "train_dir" / "export" / "step_300" / "saved_model.pb").exists()
    gap = float(re.search(r"\| GAP: ([\d.]+)", result.stderr).group(1))
    # The demo states the GAP to expect, and reaches it: learnable, far from perfect.
    assert f"between {EXPECTED_GAP[0]:.2f} and {EXPECTED_GAP[1]:.2f}" in result.stdout
    assert EXPECTED_GAP[0] <= gap <= EXPECTED_GAP[1], gap
    assert chatter(result.stderr) == []  # TensorFlow's start-up notices stay hidden
