"""`make demo` end to end: data, training, evaluation, submission."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO, read_submission


def test_make_demo(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(["make", "demo", f"DEMO_DIR={out}"], cwd=REPO, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"submission:  {out / 'submission.csv'}" in result.stdout
    rows = read_submission(out / "submission.csv")
    assert len(rows) == 400 and all(len(pairs) == 20 for pairs in rows.values())
    assert (out / "train_dir" / "model.ckpt-300.index").exists()
    assert (out / "train_dir" / "export" / "step_300" / "saved_model.pb").exists()
    gap = float(re.search(r"\| GAP: ([\d.]+)", result.stderr).group(1))
    assert gap > 0.8  # the synthetic classes are learnable
