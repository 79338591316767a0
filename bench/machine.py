"""What this machine allows the models: its CPU features, the oneDNN ISA
TensorFlow uses, matmul rates in float32 and bfloat16 on the paper models'
shapes, memory bandwidth, and from these each model's floor per training step.

- Flags (``/proc/cpuinfo``): avx2, avx512f, avx512_bf16, amx_bf16, amx_tile.
  Without avx512_bf16 or amx_bf16 there is no native bfloat16: its matmuls
  are emulated (measured all the same).
- ISA: a tiny float32 and bfloat16 matmul in a child process with
  ``ONEDNN_VERBOSE=1``; its ``info,cpu,isa:`` line, and the kernel each
  matmul ran ("unknown" when oneDNN is off).
- Matmul GFLOP/s: best of ``--repeats`` inside a ``tf.function``, on the
  Gated NetVLAD paper config's shapes (batch 80, 300 frames, 256 clusters,
  hidden 1024, 4716 classes), the video-level MoE's (3862 classes) and a
  square 4096^2.
- Bandwidth: an in-place add of two 512 MB float32 arrays in TensorFlow
  (read twice, written once, as an optimizer's update streams its tensors).
- Floor per training step: the matmul FLOPs of the real training step's
  graph (traced, not run: ``Trainer.traced_step``) at the best rate measured,
  plus Adam's bytes (28 per float32 parameter: reads parameter, gradient, m,
  v; writes parameter, m, v) at the bandwidth.

    PYTHONPATH=. .venv/bin/python bench/machine.py [--quick] [--repeats=3]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (the bench directory's shared helpers)
import bench_train  # noqa: E402  (the models' paper configs and random batches)

HIDDEN_INPUT = 1024 * 256 + 128 * 128  # Gated NetVLAD's pooled rgb + audio
MOE_GATES = 3862 * (2 + 1)  # 2 mixtures and the dummy expert per class
# (what, m, k, n) of an [m, k] x [k, n] matmul.
SHAPES = (
    ("Gated NetVLAD frame cluster assignment", 80 * 300, 1024, 256),
    ("Gated NetVLAD hidden layer", 80, HIDDEN_INPUT, 1024),
    ("Gated NetVLAD hidden-layer weight gradient", HIDDEN_INPUT, 80, 1024),
    ("video-level MoE gates", 256, 1152, MOE_GATES),
    ("square", 4096, 4096, 4096),
)
QUICK_SIZE = 128  # every dimension at most this with --quick
ADAM_BYTES_PER_PARAMETER = 4 * (4 + 3)  # float32: 4 tensors read, 3 written
# The floor's models: bench_train's paper configs (name, model, batch, classes).
# The MoE twice: at the 2018 vocabulary's 3862 classes, and at the 4716 of
# the 2017 records that bench_vs_original.py's MoE row trains on (a
# floor is only comparable with a step of the same class count).
FLOOR_MODELS = (("Gated NetVLAD paper config", "netvlad", 80, 4716),
                ("video-level MoE, 3862 classes", "moe", 256, 3862),
                ("video-level MoE, 4716 classes", "moe", 256, 4716))
QUICK_MODEL_ARGS = {"num_classes": 20, "cluster_size": 4, "hidden_size": 16, "iterations": 5}
FULL_MODEL_ARGS = {"cluster_size": 256, "hidden_size": 1024, "iterations": 300}
ISA_PROBE = ("import tensorflow as tf\n"
             "for dtype in (tf.float32, tf.bfloat16):\n"
             "    a = tf.ones([64, 64], dtype)\n"
             "    tf.matmul(a, a).numpy()\n")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, arrays and models (a check that it runs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measure")
    parser.add_argument("--bandwidth_mb", type=int, default=512, help="size of each array")
    return parser.parse_args(argv)


def feature_lines(flags: set[str]) -> list[str]:
    """The features that matter, present or absent, and whether bfloat16 is native."""
    lines = ["flags: " + ", ".join(f"{name} {'present' if name in flags else 'absent'}"
                                   for name in _common.CPU_FEATURES)]
    native = [name for name in _common.NATIVE_BFLOAT16 if name in flags]
    lines.append(f"bfloat16: native ({', '.join(native)})" if native else
                 "bfloat16: no native bfloat16 (emulated; measured all the same)")
    return lines


def parse_isa(verbose: str) -> str:
    """The ISA of oneDNN's ``info,cpu,isa:`` line in ONEDNN_VERBOSE output."""
    match = re.search(r"^onednn_verbose,(?:v\d+,)?info,cpu,isa:(.+)$", verbose, re.M)
    return match.group(1).strip() if match else "unknown"


def parse_matmul_kernels(verbose: str) -> dict[str, str]:
    """The kernel of the first matmul oneDNN ran for each source dtype
    (``f32``, ``bf16``), from ONEDNN_VERBOSE's ``exec`` lines."""
    kernels: dict[str, str] = {}
    for line in verbose.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose,") or "exec" not in fields:
            continue
        at = fields.index("exec")  # exec, engine, primitive, implementation, ...
        if len(fields) < at + 6 or fields[at + 2] not in ("matmul", "gemm_api", "inner_product"):
            continue
        dtype = re.search(r"src[_:](\w+?):", line)
        if dtype:  # the sgemm API names no implementation
            kernels.setdefault(dtype.group(1), fields[at + 3] or fields[at + 2])
    return kernels


def onednn_line(timeout: float = 300) -> str:
    """oneDNN's ISA and matmul kernels, read from a child process's verbose output."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", ISA_PROBE], capture_output=True, text=True,
                            timeout=timeout, env=env)
    kernels = parse_matmul_kernels(result.stdout)
    named = [f"{label} {kernels[dtype]}" for dtype, label in (("f32", "float32"),
                                                               ("bf16", "bfloat16"))
             if dtype in kernels]
    return (f"oneDNN ISA: {parse_isa(result.stdout)}"
            + (f" (matmul kernels: {', '.join(named)})" if named else ""))


def matmul_table(quick: bool, repeats: int) -> tuple[list[str], dict[str, float]]:
    """A row of float32 and bfloat16 GFLOP/s per shape, and each dtype's best rate."""
    rows = ["| matmul | float32 GFLOP/s | bfloat16 GFLOP/s |", "|---|---:|---:|"]
    best = {"float32": 0.0, "bfloat16": 0.0}
    for what, *dims in SHAPES:
        m, k, n = (min(d, QUICK_SIZE) for d in dims) if quick else dims
        rates = {dtype: _common.matmul_gflops(m, k, n, dtype, repeats) for dtype in best}
        best = {dtype: max(best[dtype], rates[dtype]) for dtype in best}
        rows.append(f"| {what} [{m}, {k}] x [{k}, {n}] | {rates['float32']:,.1f} | "
                    f"{rates['bfloat16']:,.1f} |")
    return rows, best


def add_floor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--floor_size`` and ``--floor_megabytes``: what a bench's floor
    columns are measured on (the tests measure smaller ones)."""
    parser.add_argument("--floor_size", type=int, default=4096,
                        help="side of the square matmul that measures the floor's rate")
    parser.add_argument("--floor_megabytes", type=int, default=512,
                        help="size of each array that measures the floor's bandwidth")


def memory_bandwidth_gbs(megabytes: int, repeats: int) -> float:
    """Best GB/s of ``a += b`` over two float32 arrays of ``megabytes`` MB in
    TensorFlow, counting both reads and the write."""
    import tensorflow as tf

    size = megabytes * 2**20 // 4
    a = tf.Variable(tf.ones([size]))
    b = tf.ones([size])

    @tf.function
    def add():
        a.assign_add(b, read_value=False)

    add()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        add()
        best = min(best, time.perf_counter() - start)
    return 3 * 4 * size / best / 1e9


def live_ops(graph) -> list:
    """The ops of a traced function graph that run: those its outputs or a
    stateful op (a weight update) depend on. TensorFlow prunes the others
    when it instantiates the function, e.g. the gradient of a model's input."""
    pending = [tensor.op for tensor in graph.outputs]
    pending += [op for op in graph.get_operations() if op.op_def.is_stateful]
    live = {}
    while pending:
        op = pending.pop()
        if op.name not in live:
            live[op.name] = op
            pending += [tensor.op for tensor in op.inputs] + list(op.control_inputs)
    return list(live.values())


LOOPS = ("While", "StatelessWhile")
CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def called_op_types(graph, function_name: str) -> set[str]:
    """The op types a called function runs, those of the functions it calls included."""
    definition = graph._get_function(function_name).cached_definition
    types = set()
    for node in definition.node_def:
        types.add(node.op)
        if node.op in CALLS:
            types |= called_op_types(graph, node.attr["f"].func.name)
    return types


def factored_adam_loop_flops(graph, loop) -> int | None:
    """The row blocks of a weight gradient that a factored Adam update
    (``training/factored_adam.py``) makes in its loop: ``2 F B H`` from the
    loop's ``[F, B]`` columns and ``[B, H]`` upstream gradient (the rows past
    the loop's blocks are a MatMul outside it, counted with the others);
    None for any other loop."""
    if "RowBlockApplyAdam" not in called_op_types(graph, loop.get_attr("body").name):
        return None
    from youtube8m_willow.training import factored_adam

    matrices = [tuple(tensor.shape) for tensor in loop.inputs if tensor.shape.rank == 2]
    if len(matrices) != 2 or None in matrices[0] + matrices[1]:
        return None
    # [F, B] then [B, H] in the loop's captures, in either order.
    first, second = matrices if matrices[0][1] == matrices[1][0] else matrices[::-1]
    if first[1] != second[0]:
        return None
    (rows, batch), columns = first, second[1]
    block = min(factored_adam.BLOCK_ROWS, rows)
    return 2 * (rows - rows % block) * batch * columns


def matmul_flops(graph) -> int:
    """Sum of 2 m k n over the live MatMul and BatchMatMul ops of a traced
    function graph (their shapes fully known), and the matmuls of a factored
    Adam update's loop (``factored_adam_loop_flops``)."""
    total = 0
    for op in live_ops(graph):
        if op.type in LOOPS:
            total += factored_adam_loop_flops(graph, op) or 0
            continue
        if op.type == "MatMul":
            transposed = op.get_attr("transpose_a")
        elif op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
            transposed = op.get_attr("adj_x")
        else:
            continue
        a, output = op.inputs[0].shape, op.outputs[0].shape
        inner = a[-2] if transposed else a[-1]
        if inner is None or output.num_elements() is None:
            raise ValueError(f"{op.name}: shape not fully known ({a} -> {output})")
        total += 2 * output.num_elements() * inner
    return total


def training_step_cost(model: str, batch_size: int, model_args: dict) -> tuple[int, int]:
    """Matmul FLOPs of one training step of a bench_train model (counted in
    its traced step graph) and its trainable parameters."""
    from youtube8m_willow.training.trainer import TrainConfig, Trainer

    config = bench_train.model_config(argparse.Namespace(model=model, **model_args))
    trainer = Trainer(TrainConfig(train_dir="/nonexistent", train_data_pattern="",
                                  batch_size=batch_size, seed=0), config)
    graph = trainer.traced_step(bench_train.random_batch(config, batch_size, 0)).graph
    parameters = sum(int(v.shape.num_elements()) for v in trainer.model.trainable_variables)
    return matmul_flops(graph), parameters


def adam_bytes(parameters: int) -> int:
    """Bytes Adam moves per step over float32 parameters."""
    return ADAM_BYTES_PER_PARAMETER * parameters


def floor_seconds(flops: float, gflops: float, nbytes: float, gbs: float) -> float:
    """Seconds of a step that only did its matmuls at ``gflops`` and moved
    ``nbytes`` at ``gbs``."""
    return flops / (gflops * 1e9) + nbytes / (gbs * 1e9)


class MeasuredFloor:
    """The rates a bench's floor is computed at, measured here: a square
    ``size``² matmul in ``precision`` and the bandwidth over two
    ``megabytes`` MB arrays (``add_floor_arguments``)."""

    def __init__(self, precision: str = "float32", size: int = 4096, megabytes: int = 512):
        self.precision, self.size = precision, size
        self.rate = _common.matmul_gflops(size, size, size, precision, repeats=3)
        self.bandwidth = memory_bandwidth_gbs(megabytes, 3)

    def describe(self) -> str:
        return (f"floor: the traced step's matmul FLOPs at {self.rate:.0f} GFLOP/s "
                f"({self.precision}, {self.size}^2) plus Adam's {ADAM_BYTES_PER_PARAMETER} bytes "
                f"per parameter at {self.bandwidth:.1f} GB/s")

    def seconds(self, flops: float, parameters: int) -> float:
        """The floor of a step with ``flops`` of matmuls over ``parameters``."""
        return floor_seconds(flops, self.rate, adam_bytes(parameters), self.bandwidth)


def floor_line(name: str, batch_size: int, flops: int, parameters: int,
               rates: dict[str, float], bandwidth: float) -> str:
    """One model's FLOPs, matmul and Adam times, and floor at both rates."""
    optimizer = adam_bytes(parameters)
    matmuls = ", ".join(f"{flops / rate / 1e9:.4g} s {dtype}" for dtype, rate in rates.items())
    floors = ", ".join(f"{floor_seconds(flops, rate, optimizer, bandwidth):.4g} s/step {dtype}"
                       for dtype, rate in rates.items())
    return "; ".join([
        f"{name} (batch {batch_size}, {parameters / 1e6:.1f}M parameters): "
        f"{flops / 1e9:.4g} GFLOP/step", f"matmuls {matmuls}",
        f"Adam {optimizer / 1e9:.4g} GB in {optimizer / bandwidth / 1e9:.4g} s",
        f"floor {floors}"])


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # each shape traces its own matmul function
    repeats = 1 if args.quick else args.repeats
    print(f"machine: {_common.machine()}", flush=True)
    print(f"CPU: {_common.cpu_model()}, {os.cpu_count()} cores")
    print("\n".join(feature_lines(_common.cpu_flags())))
    print(onednn_line(), flush=True)
    rows, best = matmul_table(args.quick, repeats)
    print(f"matmuls, best of {repeats}:\n" + "\n".join(rows), flush=True)
    megabytes = 8 if args.quick else args.bandwidth_mb
    bandwidth = memory_bandwidth_gbs(megabytes, repeats)
    print(f"memory bandwidth: {bandwidth:.1f} GB/s (a += b over two {megabytes} MB float32 "
          f"arrays: 2 reads + 1 write, best of {repeats})", flush=True)
    print(f"floor per training step: the traced step's matmul FLOPs at the best rate above "
          f"({best['float32']:,.1f} GFLOP/s float32, {best['bfloat16']:,.1f} bfloat16) plus "
          f"Adam's {ADAM_BYTES_PER_PARAMETER} bytes per parameter at {bandwidth:.1f} GB/s"
          + (" (--quick: tiny models)" if args.quick else ""))
    for name, model, batch_size, classes in FLOOR_MODELS:
        if args.quick:
            batch_size = 8
        model_args = QUICK_MODEL_ARGS if args.quick else {**FULL_MODEL_ARGS,
                                                          "num_classes": classes}
        flops, parameters = training_step_cost(model, batch_size, model_args)
        print(floor_line(name, batch_size, flops, parameters, best, bandwidth), flush=True)


if __name__ == "__main__":
    main()
