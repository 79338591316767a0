"""Seconds per training step and peak memory of WILLOW's seven paper models.

The configurations are read from the training lines of
``recipes/willow_ensemble.sh`` (WILLOW's README), so they cannot drift from
the recipe. Each model runs in its own process (clean peak memory): a random
in-memory batch of the line's batch size with 300 frames, ``--warmup`` steps,
then ``--steps`` timed steps of the real train step (forward, loss, gradients,
clipping, Adam, batch-norm updates).

    PYTHONPATH=. .venv/bin/python bench/bench_paper_models.py [--steps=3] [--only=GRU]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (the bench directory's shared helpers)

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "willow_ensemble.sh"
NOT_MODEL_FLAGS = ("--train_data_pattern", "--train_dir", "--max_step")


def recipe_train_lines() -> dict[str, list[str]]:
    """``{train_dir: flags}`` of every ``python train.py`` line of the recipe."""
    lines = {}
    for line in RECIPE.read_text().splitlines():
        line = line.strip()
        if not line.startswith("python train.py"):
            continue
        args = shlex.split(line.replace("${TRAIN_FLAGS}", ""))[2:]
        name = next(a.split("=", 1)[1] for a in args if a.startswith("--train_dir="))
        lines[name] = [a for a in args if not a.startswith(NOT_MODEL_FLAGS)]
    return lines


def run_one(flag_args: list[str], steps: int, warmup: int) -> dict:
    """In a child process: parse the line's flags, time the train step."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import flags

    from youtube8m_willow import flags as yt_flags

    yt_flags.define_train_flags()
    flags.FLAGS(["bench", "--num_classes=4716", *flag_args])
    import tensorflow as tf

    from youtube8m_willow.training.trainer import TrainConfig, Trainer

    model_config = yt_flags.model_config_from_flags()
    batch_size = flags.FLAGS.batch_size
    trainer = Trainer(TrainConfig(train_dir="/tmp/unused", train_data_pattern="unused",
                                  batch_size=batch_size), model_config)
    batch = {
        "video_matrix": tf.random.uniform([batch_size, 300, model_config.feature_size], -2, 2),
        "num_frames": tf.random.uniform([batch_size], 30, 301, tf.int32),
        "labels": tf.cast(tf.random.uniform([batch_size, 4716]) < 0.001, tf.float32),
    }
    for _ in range(warmup):
        trainer.step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(batch)
    seconds = (time.perf_counter() - start) / steps
    parameters = sum(int(tf.size(v)) for v in trainer.model.trainable_variables)
    return {"model": model_config.model, "batch_size": batch_size, "parameters": parameters,
            "seconds_per_step": seconds, "examples_per_second": batch_size / seconds,
            "peak_memory_gb": _common.peak_memory_gb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", default="", help="substring of the train_dir names to run")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _common.print_result(run_one(json.loads(args.child), args.steps, args.warmup))
        return
    print(f"machine: {_common.machine()}")
    print("| model (WILLOW train_dir) | parameters | batch | s/step | examples/s | peak memory |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, flag_args in recipe_train_lines().items():
        if args.only not in name:
            continue
        try:
            r = _common.run_child(__file__, [f"--steps={args.steps}", f"--warmup={args.warmup}",
                                             f"--child={json.dumps(flag_args)}"])
        except RuntimeError as error:
            print(f"| {name} | failed: {error} |")
            continue
        print(f"| {r['model']} ({name}) | {r['parameters'] / 1e6:.1f}M | {r['batch_size']} | "
              f"{r['seconds_per_step']:.2f} | {r['examples_per_second']:.1f} | "
              f"{r['peak_memory_gb']:.1f} GB |", flush=True)


if __name__ == "__main__":
    main()
