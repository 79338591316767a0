"""Where a training step's time goes: TensorFlow's profiler over a few real
training steps of one model (forward, loss, gradients, clipping, Adam, on a
random batch in the reader's form: frames as uint8 bytes), each op's time
summed by kind, beside the machine's floor (``machine.py``).

Kinds, by op type (oneDNN's ``_Mkl`` forms as their plain ops):

- matmuls: every MatMul and BatchMatMul, fused or not; their achieved
  GFLOP/s is the traced step's matmul FLOPs (``bench_paper_models``' count)
  over their time;
- Adam and norms: TF1's Adam kernels (``ResourceApplyAdam`` and the
  project's ``RowBlockApplyAdam``) and the squared norms of the clipping and
  the L2 penalty; the GB/s is Adam's 28 bytes per parameter over their time;
- the project's kernels: the other ops registered by ``native/*.cc``;
- XLA: the compiled functions' executions (the L2 term's pass; under
  bfloat16, Adam's compiled pass as well; the MoE's mixture where it is not
  the project's kernel: float16, or the kernel not built);
- copies: transposes, concatenations, slices, splits, pads, tiles, gathers;
- the rest: element-wise ops, reductions, batch norms, softmax, top-k, ...

The floor column is each kind's share of the floor: the matmul FLOPs at the
square matmul's rate, Adam's bytes at the measured bandwidth, nothing for
the other kinds. Op times are summed over the executor's threads: where
ops ran at the same time, the sum exceeds the step's wall time.

    PYTHONPATH=. .venv/bin/python bench/step_profile.py [--row=gatednetvladLF] [--steps=4]
    PYTHONPATH=. .venv/bin/python bench/step_profile.py --model_flags="--model=MoeModel \\
        --frame_features=False --feature_names=mean_rgb,mean_audio --feature_sizes=1024,128 \\
        --batch_size=256"
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (the bench directory's shared helpers)
import bench_paper_models  # noqa: E402  (the recipe rows, the trainer, the FLOP count)
import machine  # noqa: E402  (the floor)

KINDS = ("matmuls", "Adam and norms", "the project's kernels", "XLA", "copies", "the rest")
# An op's event on an executor thread: "<op name>:<op type>".
OP_EVENT = re.compile(r"^(?P<name>[^:]+):(?P<type>\w+)$")
# An XLA-compiled function's execution (its fusions are events inside it).
XLA_EVENT = "CpuExecutable::ExecuteAsyncOnStream"
EXECUTOR_LINE = "tf_Compute"
ADAM_AND_NORMS = {"ApplyAdam", "ResourceApplyAdam", "RowBlockApplyAdam", "PenalizedSquaredNorm",
                  "L2Loss"}
COPIES = {"Transpose", "ConcatV2", "Slice", "StridedSlice", "Split", "SplitV", "Pad", "PadV2",
          "Tile", "GatherV2", "Snapshot", "Reverse", "ReverseV2"}
NATIVE = _common.REPO_ROOT / "youtube8m_willow" / "native"


@dataclass(frozen=True)
class OpTime:
    """One op's summed time over the profiled steps."""

    name: str
    type: str
    seconds: float
    calls: int


def project_op_types(native: Path = NATIVE) -> set[str]:
    """The op types the project's kernels register (``REGISTER_OP`` in ``native/*.cc``)."""
    return {name for source in native.glob("*.cc")
            for name in re.findall(r'REGISTER_OP\("(\w+)"\)', source.read_text())}


def plain_type(op_type: str) -> str:
    """An op type without oneDNN's prefix: ``_MklNativeFusedMatMul`` -> ``FusedMatMul``."""
    return re.sub(r"^_Mkl(Native)?", "", op_type)


def kind_of(op_type: str, project_ops: set[str]) -> str:
    """The kind (one of KINDS) of an op type; ``XLA_EVENT`` is XLA's."""
    if op_type == XLA_EVENT:
        return "XLA"
    plain = plain_type(op_type)
    if "MatMul" in plain:
        return "matmuls"
    if plain in ADAM_AND_NORMS:
        return "Adam and norms"
    if plain in project_ops:
        return "the project's kernels"
    if plain in COPIES:
        return "copies"
    return "the rest"


def op_times(xspace) -> list[OpTime]:
    """Each op's summed time on the executor's threads (the XLA functions'
    executions as one entry), longest first. An event inside one already
    counted on its thread (an op's own inner events) is not counted again."""
    seconds, calls = collections.Counter(), collections.Counter()
    for plane in xspace.planes:
        metadata = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith(EXECUTOR_LINE):
                continue
            counted_until = -1
            for event in sorted(line.events, key=lambda e: e.offset_ps):
                label = metadata[event.metadata_id].name
                match = OP_EVENT.match(label)
                if (match is None and label != XLA_EVENT) or event.offset_ps < counted_until:
                    continue  # the executor's own events, around the ops; nested ones
                counted_until = event.offset_ps + event.duration_ps
                key = (match["name"], match["type"]) if match else ("XLA", XLA_EVENT)
                seconds[key] += event.duration_ps / 1e12
                calls[key] += 1
    return [OpTime(name, op_type, total, calls[(name, op_type)])
            for (name, op_type), total in seconds.most_common()]


def by_kind(ops: list[OpTime], project_ops: set[str]) -> dict[str, float]:
    """Seconds per kind, every kind present (0.0 where none ran)."""
    totals = dict.fromkeys(KINDS, 0.0)
    for op in ops:
        totals[kind_of(op.type, project_ops)] += op.seconds
    return totals


def profile_steps(trainer, batch, steps: int):
    """The profiler's XSpace over ``steps`` training steps, and their wall seconds."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as folder:
        tf.profiler.experimental.start(folder)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step(batch)
        seconds = time.perf_counter() - start
        tf.profiler.experimental.stop()
        found = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
        if not found:
            raise RuntimeError(f"the profiler wrote no trace under {folder}")
        xspace = xplane_pb2.XSpace()
        xspace.ParseFromString(Path(found[0]).read_bytes())
    return xspace, seconds


def reader_batch(model_config, batch_size: int):
    """A random batch as the reader gives it: uint8 frames (30 to 300 of
    them valid) for a frame-level model, float features for a video-level one."""
    import tensorflow as tf

    labels = tf.cast(tf.random.uniform([batch_size, model_config.num_classes]) < 0.001,
                     tf.float32)
    if not model_config.frame_features:
        return {"video_matrix": tf.random.uniform([batch_size, model_config.feature_size], -2, 2),
                "num_frames": tf.ones([batch_size], tf.int32), "labels": labels}
    frames = tf.random.uniform([batch_size], 30, 301, tf.int32)
    features = len(model_config.feature_sizes)
    return {"video_matrix": tf.cast(tf.random.uniform(
                [batch_size, 300, model_config.feature_size], 0, 256, tf.int32), tf.uint8),
            "num_frames": frames, "feature_frames": tf.stack([frames] * features, 1),
            "labels": labels}


def kind_rows(totals: dict[str, float], steps: int, flops: int | None, parameters: int,
              floor) -> list[str]:
    """The table of kinds: ms per step, share of the op time, floor ms,
    achieved rate (``floor``: a ``machine.MeasuredFloor``; n/a where the
    graph's shapes do not give the FLOP count)."""
    op_seconds = sum(totals.values()) / steps
    adam_bytes = machine.adam_bytes(parameters)
    floors = {"matmuls": None if flops is None else flops / (floor.rate * 1e9),
              "Adam and norms": adam_bytes / (floor.bandwidth * 1e9)}
    rows = ["| kind | ms per step | share of op time | floor ms | achieved |",
            "|---|---:|---:|---:|---|"]
    for kind in KINDS:
        seconds = totals[kind] / steps
        achieved = ""
        if kind == "matmuls" and flops is not None and seconds > 0:
            achieved = f"{flops / seconds / 1e9:.0f} GFLOP/s (floor {floor.rate:.0f})"
        if kind == "Adam and norms" and seconds > 0:
            achieved = f"{adam_bytes / seconds / 1e9:.1f} GB/s (floor {floor.bandwidth:.1f})"
        floor_ms = floors.get(kind, 0.0)
        floor_cell = "n/a" if floor_ms is None else f"{floor_ms * 1e3:.1f}"
        rows.append(f"| {kind} | {seconds * 1e3:.1f} | {100 * seconds / op_seconds:.1f}% | "
                    f"{floor_cell} | {achieved} |")
    total_floor = None if flops is None else floor.seconds(flops, parameters)
    rows.append(f"| all ops | {op_seconds * 1e3:.1f} | 100.0% | "
                f"{'n/a' if total_floor is None else f'{total_floor * 1e3:.1f}'} | |")
    return rows


def top_rows(ops: list[OpTime], steps: int, count: int, project_ops: set[str]) -> list[str]:
    """The ``count`` longest ops: name, type, kind, ms and calls per step."""
    rows = ["| op | type | kind | ms per step | calls per step |", "|---|---|---|---:|---:|"]
    for op in ops[:count]:
        rows.append(f"| {op.name} | {op.type} | {kind_of(op.type, project_ops)} | "
                    f"{op.seconds / steps * 1e3:.1f} | {op.calls / steps:g} |")
    return rows


def model_flag_args(args) -> tuple[str, list[str]]:
    """The profiled model's label and train.py flags: ``--model_flags``, or
    the one recipe row that ``--row`` names."""
    if args.model_flags:
        return "--model_flags", shlex.split(args.model_flags)
    rows = {name: flags for name, flags in bench_paper_models.recipe_train_lines().items()
            if args.row in name}
    if len(rows) != 1:
        raise SystemExit(f"--row={args.row!r} names {len(rows)} of the recipe's rows "
                         f"({', '.join(bench_paper_models.recipe_train_lines())}); name one")
    (name, flags), = rows.items()
    return name, flags


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", default="gatednetvladLF",
                        help="substring of one WILLOW recipe row (bench_paper_models' rows)")
    parser.add_argument("--model_flags", default="",
                        help="train.py flags of the model instead of a recipe row")
    parser.add_argument("--flags", default="",
                        help="train.py flags added (e.g. --precision=bfloat16)")
    parser.add_argument("--steps", type=int, default=4, help="profiled steps (at least 1)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=15, help="the longest ops listed")
    parser.add_argument("--inter_op_threads", type=int, default=1,
                        help="ops run at once (1: one at a time, so that each op's time "
                             "is its own and they add up to the step; 0: TensorFlow's default)")
    machine.add_floor_arguments(parser)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps={args.steps}: profile at least one step")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    label, flag_args = model_flag_args(args)
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    trainer, model_config, batch_size = bench_paper_models.trainer_for(
        [*flag_args, *shlex.split(args.flags)])
    print(f"machine: {_common.machine()}")
    floor = machine.MeasuredFloor(trainer.config.precision, args.floor_size,
                                  args.floor_megabytes)
    batch = reader_batch(model_config, batch_size)
    for _ in range(args.warmup):
        trainer.step(batch)
    xspace, wall = profile_steps(trainer, batch, args.steps)
    parameters = sum(int(v.shape.num_elements()) for v in trainer.model.trainable_variables)
    flops = bench_paper_models.step_flops(trainer.traced_step(batch).graph)
    project_ops = project_op_types()
    ops = op_times(xspace)
    if not ops:
        raise SystemExit(f"the profile has no op events on threads named {EXECUTOR_LINE}*: "
                         f"this TensorFlow's profiler names them otherwise")
    totals = by_kind(ops, project_ops)
    op_seconds = sum(totals.values()) / args.steps
    print(f"model: {model_config.model} ({label}), batch {batch_size}, "
          f"{parameters / 1e6:.1f}M parameters; profiled steps: {args.steps}, after "
          f"{args.warmup} unprofiled; inter-op threads: {args.inter_op_threads or 'default'}")
    print(f"wall {wall / args.steps:.3f} s/step under the profiler; op time "
          f"{op_seconds:.3f} s/step ({op_seconds / (wall / args.steps):.2f}x the wall time: "
          f"above 1 where ops ran at the same time)")
    print(floor.describe() + "; n/a where the graph's shapes do not give the FLOP count")
    if flops is not None:
        floor_seconds = floor.seconds(flops, parameters)
        print(f"step / floor: {wall / args.steps / floor_seconds:.2f}x (wall time), "
              f"{op_seconds / floor_seconds:.2f}x (op time)")
    print("\n".join(kind_rows(totals, args.steps, flops, parameters, floor)))
    print(f"the {args.top} longest ops:")
    print("\n".join(top_rows(ops, args.steps, args.top, project_ops)))


if __name__ == "__main__":
    main()
