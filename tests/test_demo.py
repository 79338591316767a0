"""`make demo` end to end: data, training, evaluation, submission."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO, STEP_LINE, chatter, read_submission, run_in_a_terminal, screen_lines
from youtube8m_willow.demo import EXPECTED_GAP, batch_norm_note


def test_make_demo(tmp_path):
    """The README's `make demo`, on a terminal as a user runs it: the files,
    the stated GAP reached, every line it leaves on one screen of 40 lines
    (bars replace the per-step and per-batch lines, which a log file keeps:
    tests/test_run_output.py), and pointers to the per-class report and
    TensorBoard at the end."""
    out = tmp_path / "demo"
    code, output = run_in_a_terminal(["make", "demo", f"DEMO_DIR={out}"])
    shown = screen_lines(output)
    assert code == 0, "\n".join(shown[-30:])
    assert len(shown) <= 40, "\n".join(shown)
    done = [i for i, line in enumerate(shown) if re.fullmatch(
        r"Done in \d+ s \(train.py \d+ s, eval.py \d+ s, inference.py \d+ s\)\.", line)]
    assert done, "\n".join(shown)
    closing = shown[done[-1]:]  # the summary the demo ends with
    assert f"  submission:  {out / 'submission.csv'}" in closing, closing
    rows = read_submission(out / "submission.csv")
    assert len(rows) == 400 and all(len(pairs) == 20 for pairs in rows.values())
    assert (out / "train_dir" / "model.ckpt-300.index").exists()
    assert (out / "train_dir" / "export" / "step_300" / "saved_model.pb").exists()
    # Each script drew its bar; train.py left one step line, the last.
    drawn = screen_lines(output.replace("\x1b[1A", ""))
    for bar in (r"^step .* 300/300 ", r"^eval .* 400/400 videos", r"^predict .* 400/400 videos"):
        assert any(re.search(bar, line) for line in drawn), bar
    assert [int(step) for step in STEP_LINE.findall(output)] == [300]
    # It ends by pointing at the per-class report and at TensorBoard.
    report = out / "train_dir" / "eval_per_class_step_300.csv"
    assert report.exists()
    assert any(line.startswith(f"  per class:   {report}") for line in closing), closing
    assert any(line.startswith(f"  TensorBoard: tensorboard --logdir={out / 'train_dir'}")
               for line in closing), closing
    assert any(line.endswith(f"per-class report: {report} (40 classes, 40 with positives)")
               for line in shown)
    # The demo states the GAP to expect, and reaches it: learnable, far from perfect.
    gap = float(re.search(r"epoch/eval number \d+ .*\| GAP: ([\d.]+)", output).group(1))
    assert f"between {EXPECTED_GAP[0]:.2f} and {EXPECTED_GAP[1]:.2f}" in output
    assert EXPECTED_GAP[0] <= gap <= EXPECTED_GAP[1], gap
    assert chatter(output) == []  # TensorFlow's start-up notices stay hidden
    # It says why batch norm is off; its checkpoint has no batch norm to warn of.
    assert batch_norm_note(300) in shown
    assert "batch-norm moving statistics" not in output


def test_segment_demo(tmp_path):
    """The README's segment-level demo command, on a terminal: files,
    whitelist, stated ranges, and all of it on one screen of 40 lines."""
    import sys

    from youtube8m_willow.demo import (EXPECTED_SEGMENT_GAP, EXPECTED_SEGMENT_MAP,
                                       SEGMENT_CLASSES, SEGMENT_MAX_PRED)

    out = tmp_path / "demo"
    code, output = run_in_a_terminal([sys.executable, "-m", "youtube8m_willow.demo",
                                      "--segments", f"--out_dir={out}"])
    shown = screen_lines(output)
    assert code == 0, "\n".join(shown[-30:])
    assert len(shown) <= 40, "\n".join(shown)
    whitelist = (out / "segment_label_ids.csv").read_text().split()
    assert whitelist == ["Index"] + [str(c) for c in range(SEGMENT_CLASSES)]
    for name in ("test", "validate"):
        lines = (out / f"{name}_segments.csv").read_text().splitlines()
        assert lines[0] == "Class,Segments" and len(lines) > 1
        rows = dict(line.split(",", 1) for line in lines[1:])
        assert set(rows) <= set(whitelist[1:])
        assert all(0 < len(ids.split()) <= SEGMENT_MAX_PRED for ids in rows.values())
        first = next(iter(rows.values())).split()
        assert all(re.fullmatch(rf"{name}\d{{6}}:\d+", i) for i in first)
    assert f"  submission:  {out / 'test_segments.csv'}" in shown
    done = (r"Done in \d+ s \(train.py \d+ s, eval.py \d+ s, inference.py \d+ s, "
            r"inference.py \d+ s, segment_eval_inference.py \d+ s\)\.")
    assert any(re.fullmatch(done, line) for line in shown), "\n".join(shown)
    gap = float(re.search(r"epoch/eval number \d+ .*\| GAP: ([\d.]+)", output).group(1))
    map_at_n = float(re.search(rf"mAP@{SEGMENT_MAX_PRED}: ([\d.]+)", output).group(1))
    assert (f"between {EXPECTED_SEGMENT_GAP[0]:.2f} and {EXPECTED_SEGMENT_GAP[1]:.2f}"
            in output)
    assert EXPECTED_SEGMENT_GAP[0] <= gap <= EXPECTED_SEGMENT_GAP[1], gap
    assert EXPECTED_SEGMENT_MAP[0] <= map_at_n <= EXPECTED_SEGMENT_MAP[1], map_at_n
    assert chatter(output) == []


def _recipe(*args: str) -> str:
    return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True).stdout


def test_make_demo_segments_runs_the_segment_demo_in_its_own_folder():
    """The two demos write to different folders, so the segment demo never
    replaces `make demo`'s data or train_dir nor leaves its submission
    beside its own outputs."""
    assert "-m youtube8m_willow.demo --out_dir=demo_output\n" in _recipe("demo")
    assert ("-m youtube8m_willow.demo --segments --out_dir=demo_segments_output\n"
            in _recipe("demo-segments"))
    assert ("-m youtube8m_willow.demo --segments --out_dir=x\n"
            in _recipe("demo-segments", "DEMO_SEGMENTS_DIR=x", "DEMO_DIR=y"))
    assert "rm -rf .venv demo_output demo_segments_output" in _recipe("clean")
