"""TensorFlow's start-up and ml_dtypes' import, this project's and the original's.

What a process pays before its first op: TensorFlow's import, and within it
ml_dtypes' (TensorFlow's, JAX's and Keras's bfloat16 and float8 types),
whose import time depends much on its version.

For this project's interpreter, and with ``--reference_dir`` (or
``$REFERENCE_DIR``) the original WILLOW's too (its ``venv/``), each round
starts, alternating the sides:
- a process that imports ml_dtypes alone, under ``python -X importtime``:
  its cumulative time as Python reports it (NumPy's import included);
- a process that only imports TensorFlow as that side's scripts do (the
  port: ``startup.start_tool()``, Keras included; the original: ``import
  tensorflow.compat.v1``), timed from its start to its exit.

Prints each side's ml_dtypes version and the median of each over
``--rounds``.

    PYTHONPATH=. .venv/bin/python bench/bench_startup.py [--reference_dir=DIR] [--rounds=5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from bench_inference_vs_original import import_seconds, side_process  # noqa: E402

VERSION = "import importlib.metadata as m; print(m.version('ml_dtypes'))"
IMPORTTIME = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| ml_dtypes$", re.M)


def ml_dtypes_version(side: str, reference: Path | None) -> str:
    python, cwd, env = side_process(side, reference)
    return subprocess.run([python, "-c", VERSION], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def ml_dtypes_import_seconds(side: str, reference: Path | None) -> float:
    """ml_dtypes' cumulative import time in a process of ``side``'s that
    imports it alone (``-X importtime``)."""
    python, cwd, env = side_process(side, reference)
    result = subprocess.run([python, "-X", "importtime", "-c", "import ml_dtypes"], cwd=cwd,
                            env=env, check=True, capture_output=True, text=True)
    match = IMPORTTIME.search(result.stderr)
    if match is None:
        raise RuntimeError(f"no ml_dtypes line in {side}'s -X importtime output")
    return int(match.group(1)) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference_dir", default=os.environ.get("REFERENCE_DIR", ""),
                        help="a folder with WILLOW's code in willow/ and an interpreter in venv/")
    parser.add_argument("--rounds", type=int, default=5, help="processes of each kind a side")
    args = parser.parse_args()
    if args.rounds < 1:
        print(f"--rounds={args.rounds}: at least 1", file=sys.stderr)
        return 2
    reference = (_common.reference_set_up(args.reference_dir, "willow/inference.py")
                 if args.reference_dir else None)
    sides = ["port"] + (["original"] if reference is not None else [])
    print(f"machine: {_common.machine()}")
    if reference is None:
        where = f"in {args.reference_dir!r}" if args.reference_dir else (
            "(--reference_dir or $REFERENCE_DIR)")
        print(f"no WILLOW set up {where}: this project's side alone")
    times = {side: {"ml_dtypes": [], "start-up": []} for side in sides}
    for round_ in range(args.rounds):
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            times[side]["ml_dtypes"].append(ml_dtypes_import_seconds(side, reference))
            times[side]["start-up"].append(import_seconds(side, reference))
    print(f"medians of {args.rounds} process(es) of each kind a side, alternating")
    print("| side | ml_dtypes | its import alone (NumPy's included) | "
          "TensorFlow's import, start to exit |")
    print("|---|---|---:|---:|")
    for side in sides:
        print(f"| {side} | {ml_dtypes_version(side, reference)} | "
              f"{statistics.median(times[side]['ml_dtypes']) * 1e3:.0f} ms | "
              f"{statistics.median(times[side]['start-up']):.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
