"""NeXtVLAD training speed and peak memory against the NeXtVLAD fork, side by side.

The fork (linrongc/youtube-8m, 2018) is not part of this project. Point
``--reference_dir`` (or ``$REFERENCE_DIR``) at a folder where it is set up to
run: its code in ``nextvlad/`` and an interpreter in ``venv/``. Without one,
this script says so and exits 1: a ratio is only printed when both sides ran
here, in one run, on one machine.

Each row trains one model of the author's recipes (``model_flags`` of
``recipes/nextvlad_local.sh`` and ``recipes/mix_nextvlad_final.sh``, with the
training line of ``recipes/nextvlad_stages.sh``: LogisticModel head,
CrossEntropyLoss, Adam, batch 80, 3862 classes) from scratch on the same
synthetic frame-level records (300 frames at most), alternating fork, port,
port, fork. Each run's seconds per step are the median of the intervals
between its logged steps FIRST..STEPS; each side keeps its better run. Peak
memory is each training process's max RSS; each side keeps its lower run.

    PYTHONPATH=. .venv/bin/python bench/bench_vs_fork.py --reference_dir=/tmp/reference
    ... --only=Mix --steps=8 --first=3
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from bench_paper_models import nextvlad_recipe_lines  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Both sides train from scratch on the synthetic records, without exports.
RUN_FLAGS = ["--num_epochs=1000", "--export_model_steps=1000000", "--start_new_model=True"]


def measure(side: str, reference: Path, flags: list[str], data: str, steps: int,
            work: Path) -> tuple[str, int, float]:
    train_dir = work / f"{side}_train_dir"
    args = [f"--train_data_pattern={data}", f"--train_dir={train_dir}", f"--max_steps={steps}",
            *flags]
    env = _common.instrument_env(TF_CPP_MIN_LOG_LEVEL="2", YT8M_PROGRESS="lines")
    if side == "fork":
        env["TF_USE_LEGACY_KERAS"] = "1"  # the fork's TF1 layers
        command = [str(_common.reference_python(reference)), "train.py", *args]
        cwd = reference / "nextvlad"  # it loads yt8m_pca/ by a relative path
    else:
        env["PYTHONPATH"] = str(REPO)
        command = [sys.executable, str(REPO / "train.py"), *args]
        cwd = REPO
    try:
        return _common.run_training(command, cwd, env, timeout=3600)
    finally:
        shutil.rmtree(train_dir, ignore_errors=True)
        os.sync()
        time.sleep(3)  # a quiet disk for the next run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference_dir", default=os.environ.get("REFERENCE_DIR", ""),
                        help="folder with the fork in nextvlad/ and venv/ (default: "
                             "$REFERENCE_DIR)")
    parser.add_argument("--only", default="", help="substring of the model names to run")
    parser.add_argument("--steps", type=int, default=12, help="steps per run")
    parser.add_argument("--first", type=int, default=4,
                        help="first timed step (the median covers FIRST..STEPS)")
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=2,
                        help="2: fork, port, port, fork")
    parser.add_argument("--videos", type=int, default=1000, help="synthetic training videos")
    parser.add_argument("--project_flags", default="",
                        help="flags for this project's side only (e.g. --precision=bfloat16)")
    args = parser.parse_args()
    reference = _common.reference_set_up(args.reference_dir, "nextvlad/train.py")
    if reference is None:
        print("no NeXtVLAD fork set up (--reference_dir or $REFERENCE_DIR with nextvlad/ and "
              "venv/): nothing measured", file=sys.stderr)
        return 1
    print(f"machine: {_common.machine()}")
    print(_common.instrument_setting())
    print(f"steps {args.first}..{args.steps} (median), {args.rounds} round(s) per side, "
          f"batch 80, {args.videos} synthetic videos of 100-300 frames, 3862 classes"
          + (f", project flags {args.project_flags}" if args.project_flags else ""))
    print("| model | fork s/step | port s/step | speed-up | fork max RSS | port max RSS | "
          "memory ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    order = ["fork", "port", "port", "fork"][:2 * args.rounds]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = _common.write_frame_records(work / "records", args.videos)
        for model, recipe_flags in nextvlad_recipe_lines().items():
            if args.only not in model:
                continue
            flags = [*recipe_flags, *RUN_FLAGS]
            seconds = {"fork": [], "port": []}
            memory = {"fork": [], "port": []}
            failed = ""
            for side in order:
                extra = shlex.split(args.project_flags) if side == "port" else []
                log, code, rss = measure(side, reference, flags + extra, data, args.steps, work)
                if code != 0:
                    failed = f"{side} failed ({code}): {log.strip().splitlines()[-1:]}"
                    break
                seconds[side].append(_common.seconds_per_step(log, args.first, args.steps))
                memory[side].append(rss)
            if failed:
                print(f"| {model} | {failed} | | | | | |", flush=True)
                continue
            fork, port = min(seconds["fork"]), min(seconds["port"])
            fork_gb, port_gb = min(memory["fork"]), min(memory["port"])
            print(f"| {model} | {fork:.3f} | {port:.3f} | {fork / port:.2f}x | {fork_gb:.2f} GB | "
                  f"{port_gb:.2f} GB | {port_gb / fork_gb:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
