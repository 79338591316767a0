"""Parameters, seconds per training step and peak memory of the frame-level
models: WILLOW's seven paper models, and with ``--all`` every other one.

WILLOW's configurations are read from the training lines of
``recipes/willow_ensemble.sh`` (WILLOW's README), NeXtVLAD's from its
author's recipes (``recipes/nextvlad_local.sh``, ``mix_nextvlad_final.sh``:
3862 classes, batch 80 on one device), so they cannot drift from the
recipes; the other models (``OTHER_MODELS``) run at their defaults with
batch 80. Each model runs in its own process (clean peak memory): a random
in-memory batch with 300 frames (30 to 300 of them valid), ``--warmup``
steps, then ``--steps`` timed steps of the real train step (forward, loss,
gradients, clipping, Adam, batch-norm updates). The peak memory cell adds,
where the CPU allocator keeps statistics, the most memory the timed steps'
tensors took at once.

    PYTHONPATH=. .venv/bin/python bench/bench_paper_models.py [--steps=3] [--only=GRU] [--all]
    PYTHONPATH=. .venv/bin/python bench/bench_paper_models.py --only=lstm --flags=--precision=bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (the bench directory's shared helpers)
import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "willow_ensemble.sh"
NOT_MODEL_FLAGS = ("--train_data_pattern", "--train_dir", "--max_step")
NEXTVLAD_RECIPES = {"NeXtVLADModel": REPO / "recipes" / "nextvlad_local.sh",
                    "MixNeXtVladModel": REPO / "recipes" / "mix_nextvlad_final.sh"}
# The train_model line of recipes/nextvlad_stages.sh on one device
# (--num_gpu=1: batch 80 a step).
NEXTVLAD_TRAINING = [
    "--video_level_classifier_model=LogisticModel", "--l2_penalty=1e-5",
    "--label_loss=CrossEntropyLoss", "--frame_features=True", "--feature_names=rgb,audio",
    "--feature_sizes=1024,128", "--batch_size=80", "--num_gpu=1", "--num_classes=3862",
    "--base_learning_rate=0.0002", "--learning_rate_decay=0.8",
    "--learning_rate_decay_examples=2000000"]
FRAMES = ["--frame_features=True", "--feature_names=rgb,audio", "--feature_sizes=1024,128",
          "--batch_size=80"]
# The frame-level models no recipe trains, at their defaults.
OTHER_MODELS = {
    "NetVLADModelLF --vlagd (NetVLAGD), 256 clusters, hidden 1024": [
        "--model=NetVLADModelLF", "--vlagd=True", "--netvlad_cluster_size=256",
        "--netvlad_hidden_size=1024", "--iterations=300", *FRAMES],
    "DbofModelLF (defaults)": ["--model=DbofModelLF", *FRAMES],
    "DbofModel (the starter's, defaults)": ["--model=DbofModel", *FRAMES],
    "LstmModel (the starter's, defaults)": ["--model=LstmModel", "--lstm_variant=starter",
                                            *FRAMES],
    "FrameLevelLogisticModel": ["--model=FrameLevelLogisticModel", *FRAMES],
    "FrameStatisticsModel (defaults)": ["--model=FrameStatisticsModel", *FRAMES],
}


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


def recipe_model_flags(recipe: Path) -> list[str]:
    """The ``model_flags=(...)`` array of a NeXtVLAD recipe, as arguments."""
    match = re.search(r"^model_flags=\((.*?)\)", recipe.read_text(), re.M | re.S)
    if match is None:
        raise ValueError(f"{recipe}: no model_flags=(...) array")
    return shlex.split(match.group(1))


def nextvlad_recipe_lines() -> dict[str, list[str]]:
    """``{model: flags}`` of the NeXtVLAD recipes' training, on one device."""
    return {model: [f"--model={model}", *recipe_model_flags(recipe), *NEXTVLAD_TRAINING]
            for model, recipe in NEXTVLAD_RECIPES.items()}


def trainer_for(flag_args: list[str]):
    """In a child process: a Trainer of train.py's flags ``flag_args``
    (4716 classes unless they say otherwise; their --precision and --xla
    too); returns it, its model config and its batch size."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import flags

    from youtube8m_willow import flags as yt_flags

    yt_flags.define_train_flags()
    flags.FLAGS(["bench", "--num_classes=4716", *flag_args])
    from youtube8m_willow.training.trainer import TrainConfig, Trainer

    model_config = yt_flags.model_config_from_flags()
    batch_size = flags.FLAGS.batch_size
    trainer = Trainer(TrainConfig(train_dir="/tmp/unused", train_data_pattern="unused",
                                  batch_size=batch_size, precision=flags.FLAGS.precision,
                                  xla=flags.FLAGS.xla), model_config)
    return trainer, model_config, batch_size


def run_one(flag_args: list[str], steps: int, warmup: int) -> dict:
    """In a child process: parse the line's flags, time the train step."""
    trainer, model_config, batch_size = trainer_for(flag_args)
    import tensorflow as tf

    batch = {
        "video_matrix": tf.random.uniform([batch_size, 300, model_config.feature_size], -2, 2),
        "num_frames": tf.random.uniform([batch_size], 30, 301, tf.int32),
        "labels": tf.cast(tf.random.uniform([batch_size, model_config.num_classes]) < 0.001,
                          tf.float32),
    }
    for _ in range(warmup):
        trainer.step(batch)
    _common.reset_tensor_memory()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(batch)
    seconds = (time.perf_counter() - start) / steps
    parameters = sum(int(tf.size(v)) for v in trainer.model.trainable_variables)
    return {"model": model_config.model, "batch_size": batch_size, "parameters": parameters,
            "seconds_per_step": seconds, "examples_per_second": batch_size / seconds,
            "peak_memory_gb": _common.peak_memory_gb(), **_common.tensor_memory_gb(),
            "flops": step_flops(trainer.traced_step(batch).graph)}


LOOPS = machine.LOOPS
CALLS = machine.CALLS
MATMULS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


# The recurrent layers' loop (layers/recurrent.py ``training_scan_states``):
# in a training step, a call of its forward function and one of its gradient.
SCAN_FORWARD, SCAN_BACKWARD = "__forward_scan_states_", "__backward_scan_states_"


def step_flops(graph) -> int | None:
    """The traced step's matmul FLOPs (``machine.matmul_flops``), with the
    recurrent layers' loops counted from their calls' shapes
    (``recurrent_scan_flops``); None where a count from the graph's shapes
    would be wrong: any other loop, a function call with a matmul or a loop
    inside (a call without one, such as the MoE's compiled mixture, adds
    none) or rows known only when it runs (NeXtVLAD's valid frames)."""
    loops = 0
    for op in machine.live_ops(graph):
        if op.type in LOOPS:
            if machine.factored_adam_loop_flops(graph, op) is None:
                return None
            continue  # counted by machine.matmul_flops
        if op.type not in CALLS:
            continue
        name = op.get_attr("f").name
        if SCAN_FORWARD in name:
            flops = recurrent_scan_flops(op)
            if flops is None:
                return None
            loops += flops
        elif SCAN_BACKWARD not in name and (machine.called_op_types(graph, name)
                                             & {*LOOPS, *MATMULS}):
            return None
    try:
        return machine.matmul_flops(graph) + loops
    except ValueError:
        return None


def recurrent_scan_flops(call) -> int | None:
    """A recurrent layer's loop in one training step, from its forward
    call's inputs (the parts of ``projected``, each ``[T, B, G_i]``, the
    lengths ``[B]``, the recurrent kernels ``[U, G_k]``): each frame's
    ``state @ kernel`` (2 B U G_k) three times: forward, the state's
    gradient (a matmul a frame) and the kernel's gradient (one matmul over
    all frames, the same FLOPs)."""
    frames, batch, _ = call.inputs[0].shape
    kernels = [tensor.shape for tensor in call.inputs if tensor.shape.rank == 2]
    if frames is None or batch is None or any(None in shape for shape in kernels):
        return None
    return sum(3 * 2 * frames * batch * rows * columns for rows, columns in kernels)


def floor_cells(result: dict, measured: machine.MeasuredFloor) -> str:
    """``floor s/step | s/step / floor`` of a result, or n/a."""
    if result["flops"] is None:
        return "n/a | n/a"
    floor = measured.seconds(result["flops"], result["parameters"])
    return f"{floor:.2f} | {result['seconds_per_step'] / floor:.2f}x"


def flag_value(flags: str, name: str, default: str) -> str:
    """The value of ``--name=value`` in a flags string (the last one), or ``default``."""
    values = [f.split("=", 1)[1] for f in shlex.split(flags) if f.startswith(f"--{name}=")]
    return values[-1] if values else default


def memory_cell(result: dict) -> str:
    """``6.9 GB`` (the process's peak), with ``(tensors 5.3 GB)`` where the
    allocator keeps statistics."""
    tensors = result.get("tensor_peak_gb")
    cell = f"{result['peak_memory_gb']:.1f} GB"
    return cell if tensors is None else f"{cell} (tensors {tensors:.1f} GB)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", default="", help="substring of the row names to run")
    parser.add_argument("--all", action="store_true",
                        help="every frame-level model, not only WILLOW's paper models")
    parser.add_argument("--flags", default="",
                        help="train.py flags added to every row (e.g. --precision=bfloat16)")
    machine.add_floor_arguments(parser)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _common.print_result(run_one(json.loads(args.child), args.steps, args.warmup))
        return
    print(f"machine: {_common.machine()}")
    floor = machine.MeasuredFloor(flag_value(args.flags, "precision", "float32"),
                                  args.floor_size, args.floor_megabytes)
    print(f"{floor.describe()}; n/a where the graph's shapes do not give the count")
    if args.flags:
        print(f"every row with {args.flags}")
    print("| model (WILLOW train_dir, or configuration) | parameters | batch | s/step | "
          "examples/s | peak memory | floor s/step | step / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = recipe_train_lines()
    if args.all:
        rows.update({f"{model}, the author's recipe": flags_
                     for model, flags_ in nextvlad_recipe_lines().items()})
        rows.update(OTHER_MODELS)
    for name, flag_args in rows.items():
        if args.only not in name:
            continue
        try:
            r = _common.run_child(__file__, [
                f"--steps={args.steps}", f"--warmup={args.warmup}",
                f"--child={json.dumps([*flag_args, *shlex.split(args.flags)])}"])
        except RuntimeError as error:
            print(f"| {name} | failed: {error} |")
            continue
        label = name if name.startswith(r["model"]) else f"{r['model']} ({name})"
        print(f"| {label} | {r['parameters'] / 1e6:.1f}M | {r['batch_size']} | "
              f"{r['seconds_per_step']:.2f} | {r['examples_per_second']:.1f} | "
              f"{memory_cell(r)} | {floor_cells(r, floor)} |",
              flush=True)


if __name__ == "__main__":
    main()
