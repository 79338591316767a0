"""Training speed and peak memory against the TF Model Garden's YouTube-8M
DBoF + MoE (``official/projects/yt8m``), the TF2 peer, side by side.

For each precision and batch size, runs an external instrument,
``compare.sh MG_DEST PROJECT_DIR STEPS FIRST BATCH CLUSTER HIDDEN FRAMES
MIXTURES``, which trains the Model Garden (A) and this project's
``DbofModel`` + ``MoeModel`` (B) alternately, A B A B, on the same synthetic
frame-level records, and prints each run's median seconds per step (steps
FIRST..STEPS, from the log's timestamps) and peak RSS. The Model Garden runs
with max pooling and relu6 (the starter's computation), both sides in the
row's precision (``--precision``: float32, or mixed bfloat16, the Model
Garden's default). Each side's better median and lower peak RSS are
tabulated with the ratios: examples/s (the Model Garden's step over this
project's) and memory (this project's over the Model Garden's). The floor
of each batch size (both sides compute the same model) is this project's
traced training step's matmul FLOPs at the machine's matmul rate in the
row's precision (4096^2) plus Adam's bytes at its memory bandwidth, as
``bench_paper_models.py`` counts it; ``--no_floor`` leaves it out.

The instrument is not part of the project: name it with ``--instrument``
(or ``$MODEL_GARDEN_COMPARE``) and its set-up folder with ``--model_garden``
(or ``$MODEL_GARDEN``). Without them this script says so and measures this
project's side alone, the same train.py command line on its own synthetic
records, and prints no ratio: a ratio only comes from both sides run here,
in one invocation, on one machine.

    MODEL_GARDEN=/tmp/mg MODEL_GARDEN_COMPARE=../shared/reference/modelgarden/compare.sh \\
        PYTHONPATH=. .venv/bin/python bench/bench_vs_modelgarden.py [--batch_sizes=32,64]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import machine  # noqa: E402
from bench_paper_models import step_flops, trainer_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The Model Garden's flags that give the starter's DBoF computation.
STARTER_COMPUTATION = ("--pooling_method=max "
                       "--params_override=task.model.norm_activation.activation=relu6")
RUN = re.compile(r"^(?P<side>[AB])\d+\s+median_s_per_step=(?P<s>[\d.]+|nan)\s+"
                 r"examples_per_s=[\d.na]+\s+maxrss_GB=(?P<gb>[\d.]+)", re.M)


def parse_runs(output: str) -> dict[str, dict[str, float]]:
    """``{"A": {...}, "B": {...}}`` from the instrument's run lines: each
    side's better median s/step and lower peak RSS (GB)."""
    sides: dict[str, list[tuple[float, float]]] = {}
    for match in RUN.finditer(output):
        seconds = float(match["s"])
        if seconds == seconds:  # a run without timed steps is left out
            sides.setdefault(match["side"], []).append((seconds, float(match["gb"])))
    return {side: {"seconds": min(s for s, _ in runs), "gb": min(gb for _, gb in runs)}
            for side, runs in sides.items()}


def project_flags(batch: int, args) -> list[str]:
    """The project's side of compare.sh: the starter's DbofModel and MoE."""
    return ["--model=DbofModel", "--frame_features=True", "--feature_names=rgb,audio",
            "--feature_sizes=1024,128", f"--batch_size={batch}",
            f"--dbof_cluster_size={args.cluster}", f"--dbof_hidden_size={args.hidden}",
            f"--iterations={args.frames}", "--video_level_classifier_model=MoeModel",
            f"--moe_num_mixtures={args.mixtures}", "--num_classes=3862",
            f"--precision={args.precision}"]


def step_cost(flag_args: list[str]) -> dict:
    """In a child process: the traced training step's matmul FLOPs (None
    where the graph does not give them) and trainable parameters."""
    from bench_train import random_batch

    trainer, model_config, batch_size = trainer_for(flag_args)
    graph = trainer.traced_step(random_batch(model_config, batch_size, 0)).graph
    parameters = sum(int(v.shape.num_elements()) for v in trainer.model.trainable_variables)
    return {"flops": step_flops(graph), "parameters": parameters}


class Floor(machine.MeasuredFloor):
    """The floor (s/step) of each batch size: matmul FLOPs at the
    precision's matmul rate plus Adam's bytes at the memory bandwidth."""

    def of_batch(self, batch: int, args) -> float:
        flags = [f for f in project_flags(batch, args) if not f.startswith("--precision")]
        cost = _common.run_child(__file__, [f"--floor_child={json.dumps(flags)}"])
        if cost["flops"] is None:
            return float("nan")
        return self.seconds(cost["flops"], cost["parameters"])


def floor_cells(floor: float, *steps: float) -> str:
    """`` floor | step / floor ...`` cells of a row ("" without a floor)."""
    if floor is None:
        return ""
    if floor != floor:  # the graph did not give the FLOPs
        return " n/a |" * (1 + len(steps))
    return f" {floor:.3f} |" + "".join(f" {step / floor:.2f}x |" for step in steps)


def measure_project(batch: int, data: str, args) -> dict[str, float]:
    """train.py alone, as compare.sh runs it: median s/step and its peak RSS."""
    with tempfile.TemporaryDirectory() as train_dir:
        command = [sys.executable, str(REPO / "train.py"), f"--train_data_pattern={data}",
                   f"--train_dir={train_dir}", "--start_new_model=True",
                   f"--max_steps={args.steps}", "--export_model_steps=1000000",
                   *project_flags(batch, args)]
        log, code, gb = _common.run_training(
            command, REPO, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=3600)
    if code != 0:
        tail = log.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"train.py failed ({code}): {tail[0]}")
    seconds = _common.seconds_per_step(log, args.first, args.steps)
    if seconds != seconds:
        raise RuntimeError(f"no timed training steps {args.first}..{args.steps} in its log")
    return {"seconds": seconds, "gb": gb}


def measure_both(batch: int, args) -> dict[str, dict[str, float]]:
    env = _common.instrument_env(
        ROUNDS=str(args.rounds), MGEXTRA=f"{STARTER_COMPUTATION} --precision={args.precision}",
        PEXTRA=f"--precision={args.precision}")
    result = subprocess.run(
        ["bash", args.instrument, args.model_garden, str(REPO), str(args.steps), str(args.first),
         str(batch), str(args.cluster), str(args.hidden), str(args.frames), str(args.mixtures)],
        env=env, capture_output=True, text=True)
    sides = parse_runs(result.stdout)
    if result.returncode != 0 or set(sides) != {"A", "B"}:
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the instrument failed ({result.returncode}): {tail[0]}")
    return sides


def both_row(batch: int, args, floor: float | None) -> str:
    """The table row of one batch size, both sides measured by the instrument."""
    sides = measure_both(batch, args)
    a, b = sides["A"], sides["B"]
    return (f"| {batch} | {a['seconds']:.3f} | {b['seconds']:.3f} | "
            f"{a['seconds'] / b['seconds']:.2f}x | {a['gb']:.2f} GB | {b['gb']:.2f} GB | "
            f"{b['gb'] / a['gb']:.2f} |" + floor_cells(floor, a["seconds"], b["seconds"]))


def project_row(batch: int, data: str, args, floor: float | None) -> str:
    """The table row of one batch size, this project alone."""
    r = measure_project(batch, data, args)
    return (f"| {batch} | {r['seconds']:.3f} | {batch / r['seconds']:.1f} | {r['gb']:.2f} GB |"
            + floor_cells(floor, r["seconds"]))


def instrument_ready(args) -> bool:
    return bool(args.instrument and Path(args.instrument).is_file() and args.model_garden
                and Path(args.model_garden, "venv", "bin", "python").exists())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrument", default=os.environ.get("MODEL_GARDEN_COMPARE", ""),
                        help="the Model Garden's compare.sh (default: $MODEL_GARDEN_COMPARE)")
    parser.add_argument("--model_garden", default=os.environ.get("MODEL_GARDEN", ""),
                        help="the folder its setup.sh set up (default: $MODEL_GARDEN)")
    parser.add_argument("--batch_sizes", default="32,64,128,256")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--steps", type=int, default=25, help="steps per run")
    parser.add_argument("--first", type=int, default=6,
                        help="first timed step (the median covers FIRST..STEPS)")
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=2,
                        help="2: A B A B (each side's better run)")
    parser.add_argument("--cluster", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--mixtures", type=int, default=4)
    parser.add_argument("--no_floor", action="store_true", help="leave out the floor columns")
    machine.add_floor_arguments(parser)
    parser.add_argument("--floor_child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        _common.print_result(step_cost(json.loads(args.floor_child)))
        return 0
    batches = [int(b) for b in args.batch_sizes.split(",")]
    both = instrument_ready(args)
    print(f"machine: {_common.machine()}; {datetime.now():%Y-%m-%d}")
    print(_common.instrument_setting())
    print(f"DbofModel + MoeModel, 3862 classes, cluster {args.cluster}, hidden {args.hidden}, "
          f"{args.frames} frames, {args.mixtures} mixtures, {args.precision}; steps "
          f"{args.first}..{args.steps} (median)")
    floor = None if args.no_floor else Floor(args.precision, args.floor_size,
                                             args.floor_megabytes)
    if floor:
        print(floor.describe())
    if not both:
        print("no Model Garden instrument (--instrument and --model_garden, or "
              "$MODEL_GARDEN_COMPARE and $MODEL_GARDEN): this project's figures only",
              file=sys.stderr)
        print("| batch | s/step | examples/s | peak RSS |"
              + (" floor s/step | step / floor |" if floor else ""))
        print("|---:|---:|---:|---:|" + ("---:|---:|" if floor else ""))
    else:
        print(f"{args.rounds} round(s) per side, A B A B; the Model Garden with "
              f"{STARTER_COMPUTATION}")
        print("| batch | Model Garden s/step | this project s/step | examples/s ratio | "
              "Model Garden peak RSS | this project peak RSS | memory ratio |"
              + (" floor s/step | Model Garden / floor | this project / floor |"
                 if floor else ""))
        print("|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if floor else ""))
    with tempfile.TemporaryDirectory() as folder:
        # This project alone reads its own records of the instrument's size.
        data = None if both else _common.write_frame_records(Path(folder) / "records", 200)
        for batch in batches:
            try:
                seconds = floor.of_batch(batch, args) if floor else None
                row = (both_row(batch, args, seconds) if both
                       else project_row(batch, data, args, seconds))
            except RuntimeError as error:
                row = f"| {batch} | failed: {error} |"
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
