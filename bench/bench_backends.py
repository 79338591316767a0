"""The layers' agreement across Keras backends: the README's table.

Runs the backend suite of ``tests/test_backends.py`` (TensorFlow, JAX and
PyTorch, each in its own process) with ``YT8M_BACKEND_REPORT`` set, so each
backend's run records, per layer case, the worst difference from the
TensorFlow backend's forward outputs (inference and training mode, batch norm
statistics) and gradients, as ``|diff| / (1 + |TensorFlow's value|)`` (what
the suite checks against 1e-5 and 1e-4); prints them as a Markdown table.

    PYTHONPATH=. .venv/bin/python bench/bench_backends.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("jax", "torch")


def run_suite(report: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(REPO / "tests" / "test_backends.py"), "-k", "suite"],
        cwd=REPO, env={**os.environ, "YT8M_BACKEND_REPORT": str(report)})
    if result.returncode != 0:
        sys.exit(f"the backend suite failed (exit {result.returncode})")


def table(report: Path) -> str:
    measured = {backend: json.loads((report / f"{backend}.json").read_text())
                for backend in BACKENDS}
    header = ["layer case", *(f"{b} {kind}" for b in BACKENDS for kind in ("forward", "gradients"))]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for case in measured[BACKENDS[0]]:
        cells = [f"{measured[b][case][kind]:.1e}" for b in BACKENDS
                 for kind in ("forward", "gradients")]
        lines.append(f"| `{case}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder)
        run_suite(report)
        print(table(report))


if __name__ == "__main__":
    main()
