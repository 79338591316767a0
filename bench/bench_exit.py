"""How long a process takes to exit once TensorFlow is loaded: with
Python's finalization as it is; with TensorFlow's objects frozen at import
(``startup.loaded_out_of_collection``) and nothing more; and with the
scripts' exit besides (``startup.skip_final_collection``: the garbage
collector frozen after TensorFlow's and the script's exit handlers).

Each round starts three child processes, in an order that turns each
round: each starts as the package's tools do (``startup.start_tool``: the
scripts' environment, TensorFlow imported quietly and frozen); the first
two then take the exit freeze's handler back, and the plain one unfreezes
the import's objects. Each runs one op, prints the time and returns; the
exit time is from that print to the process's end, as the parent sees it.
Prints the median of each over ``--rounds``.

    PYTHONPATH=. .venv/bin/python bench/bench_exit.py [--rounds=5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (the bench directory's shared helpers)

CHILD = """
import atexit, gc, sys, time
from youtube8m_willow import startup
startup.start_tool()
if sys.argv[1] != "frozen":
    atexit.unregister(startup.freeze_garbage_collector)
if sys.argv[1] == "plain":
    gc.unfreeze()
import tensorflow as tf
(tf.ones([64, 64]) @ tf.ones([64, 64])).numpy()
print("done at", time.time(), flush=True)
"""
EXITS = {"plain": "Python's finalization", "import": "TensorFlow's import frozen",
         "frozen": "the scripts' exit (collector frozen)"}


def exit_seconds(kind: str) -> float:
    """Seconds from a child's "done at" line to its end. A real process
    (``Popen``, which the test suite's fork server does not stand in for):
    a forked stand-in would skip finalization, whatever its kind."""
    path = os.pathsep.join(filter(None, [str(_common.REPO_ROOT), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen([sys.executable, "-c", CHILD, kind], stdout=subprocess.PIPE,
                               text=True, cwd=_common.REPO_ROOT,
                               env={**os.environ, "PYTHONPATH": path})
    stamp = None
    for line in process.stdout:
        if line.startswith("done at "):
            stamp = float(line.split()[-1])
            break
    process.communicate()
    ended = time.time()
    if process.returncode != 0 or stamp is None:
        raise RuntimeError(f"the {kind} child failed ({process.returncode})")
    return ended - stamp


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each, alternating")
    args = parser.parse_args(argv)
    print(f"machine: {_common.machine()}", flush=True)
    seconds: dict[str, list[float]] = {kind: [] for kind in EXITS}
    for round_ in range(args.rounds):
        kinds = list(EXITS)
        for kind in kinds[round_ % len(kinds):] + kinds[:round_ % len(kinds)]:
            seconds[kind].append(exit_seconds(kind))
    print(f"exit after importing TensorFlow, median of {args.rounds} runs in turning order:")
    print("| exit | seconds | runs |\n|---|---:|---|")
    for kind, label in EXITS.items():
        runs = ", ".join(f"{value:.2f}" for value in seconds[kind])
        print(f"| {label} | {statistics.median(seconds[kind]):.2f} | {runs} |")


if __name__ == "__main__":
    main()
