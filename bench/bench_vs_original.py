"""Training speed and peak memory against the original code, side by side.

For each of WILLOW's paper models (the training lines of
``recipes/willow_ensemble.sh``) and the video-level MoE, runs an external
side-by-side instrument that trains the original TF1 code and this project on
the same data and flags, alternating (original, port, port, original), and
prints its medians (seconds per step after warm-up), both processes' max RSS
and the ratios as one Markdown table.

The instrument is not part of the project: pass its path (``--instrument``,
or ``$SIDE_BY_SIDE``); it must print one line ``NAME: original S s/step (runs
..) M GB, project S s/step (runs ..) M GB, ratio R, memory ratio Q``. Without
one, this script says so and exits 1: a ratio is only printed when both sides
ran here, in one run, on one machine.

    SIDE_BY_SIDE=/path/to/side_by_side.sh PYTHONPATH=. .venv/bin/python \\
        bench/bench_vs_original.py --only=gatednetvlad --steps=10 --first=4
    ... --only=MoeModel --video_data='/data/yt8m-2017-video/validatea*.tfrecord'
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from bench_paper_models import REPO, recipe_train_lines  # noqa: E402

MOE_FLAGS = ["--model=MoeModel", "--feature_names=mean_rgb,mean_audio",
             "--feature_sizes=1024,128", "--batch_size=256", "--base_learning_rate=0.01"]
LINE = re.compile(
    r"original (?P<o>[\d.na]+) s/step \(runs [^)]*\) (?P<om>[\d.]+) GB, project "
    r"(?P<p>[\d.na]+) s/step \(runs [^)]*\) (?P<pm>[\d.]+) GB, ratio (?P<r>[\d.na]+), "
    r"memory ratio (?P<mr>[\d.na]+)")


def rows(video_data: str | None) -> dict[str, list[str]]:
    """``{name: model flags}``: the recipe's seven lines, then the MoE."""
    table = dict(recipe_train_lines())
    if video_data:
        table["MoeModel-video-level"] = MOE_FLAGS
    return table


def measure(instrument: str, name: str, flags: list[str], steps: int, first: int,
            rounds: int, video_data: str | None, extra: str) -> dict:
    env = _common.instrument_env(SBS_ROUNDS=str(rounds), PEXTRA=extra)
    if video_data:
        env["SBS_DATA"] = video_data
    result = subprocess.run(["bash", instrument, name, str(steps), str(first), " ".join(flags)],
                            cwd=REPO, env=env, capture_output=True, text=True)
    match = LINE.search(result.stdout)
    if result.returncode != 0 or match is None:
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{name}: the instrument failed ({result.returncode}): {tail[0]}")
    return {key: float(value) for key, value in match.groupdict().items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrument", default=os.environ.get("SIDE_BY_SIDE", ""),
                        help="the side-by-side script (default: $SIDE_BY_SIDE)")
    parser.add_argument("--only", default="", help="substring of the row names to run")
    parser.add_argument("--steps", type=int, default=10, help="steps per run")
    parser.add_argument("--first", type=int, default=4,
                        help="first timed step (the median covers FIRST..STEPS)")
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=2,
                        help="2: original, port, port, original (best of each side)")
    parser.add_argument("--video_data", default=None,
                        help="glob of 2017 video-level records (adds the MoE row)")
    parser.add_argument("--project_flags", default="",
                        help="flags for the project's side only (e.g. --precision=bfloat16)")
    args = parser.parse_args()
    if not args.instrument or not Path(args.instrument).is_file():
        print("no side-by-side instrument (--instrument or $SIDE_BY_SIDE): nothing measured; "
              "bench_paper_models.py gives this project's own figures", file=sys.stderr)
        return 1
    print(f"machine: {_common.machine()}")
    print(_common.instrument_setting())
    print(f"steps {args.first}..{args.steps} (median), {args.rounds} round(s) per side"
          + (f", project flags {args.project_flags}" if args.project_flags else ""))
    print("| model | original s/step | port s/step | speed-up | original max RSS | "
          "port max RSS | memory ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, flags in rows(args.video_data).items():
        if args.only not in name:
            continue
        try:
            r = measure(args.instrument, name, flags, args.steps, args.first, args.rounds,
                        args.video_data, args.project_flags)
        except RuntimeError as error:
            print(f"| {name} | {error} | | | | | |", flush=True)
            continue
        print(f"| {name} | {r['o']:.3f} | {r['p']:.3f} | {r['r']:.2f}x | {r['om']:.2f} GB | "
              f"{r['pm']:.2f} GB | {r['mr']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
