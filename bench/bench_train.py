"""Training throughput (examples/s) and peak memory of the real train step.

Two models, each in its own process (so each peak memory is its own):
- ``netvlad``: Gated NetVLAD at the paper configuration (256 clusters,
  hidden 1024, 300 frames of rgb+audio, context gating, MoE with 2 mixtures
  and probability gating, 4716 classes, batch 80; about 333M parameters).
- ``moe``: the video-level MoE (mean_rgb+mean_audio, 3862 classes, batch 256).

A random in-memory batch (no input pipeline: see bench_input.py) goes through
``--warmup`` steps (tracing included), then ``--steps`` timed steps of
``Trainer.step``: forward, loss, gradients, per-tensor clipping, Adam, batch
norm updates and the batch metrics. The compute floor is the model's matmul
FLOPs (forward x 3 for training, x 2 when the input needs no gradient) at
this machine's best float32 matmul rate.

    PYTHONPATH=. .venv/bin/python bench/bench_train.py [--model=moe] [--steps=3]
    PYTHONPATH=. .venv/bin/python bench/bench_train.py --model=netvlad \
        --cluster_size=64 --hidden_size=256 --iterations=100   # a smaller NetVLAD
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (the bench directory's shared helpers)

MODELS = ("netvlad", "moe")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=(*MODELS, "all"), default="all")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps (default: 2 netvlad, 5 moe)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default: 5 netvlad, 30 moe)")
    parser.add_argument("--batch_size", type=int, default=None, help="default: 80 / 256")
    add_model_args(parser)
    parser.add_argument("--precision", choices=("float32", "bfloat16", "float16"),
                        default="float32")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags ``model_config`` reads (shared with bench_inference.py)."""
    parser.add_argument("--num_classes", type=int, default=None,
                        help="default: 4716 (netvlad) / 3862 (moe)")
    parser.add_argument("--cluster_size", type=int, default=256, help="NetVLAD clusters")
    parser.add_argument("--hidden_size", type=int, default=1024, help="NetVLAD hidden size")
    parser.add_argument("--iterations", type=int, default=300, help="NetVLAD frames sampled")


def model_config(args):
    from youtube8m_willow.config import ModelConfig

    if args.model == "netvlad":
        return ModelConfig(
            model="NetVLADModelLF", frame_features=True, feature_names=("rgb", "audio"),
            feature_sizes=(1024, 128), num_classes=args.num_classes or 4716,
            max_frames=max(300, args.iterations), iterations=args.iterations,
            netvlad_cluster_size=args.cluster_size, netvlad_hidden_size=args.hidden_size,
            gating=True, moe_prob_gating=True, moe_num_mixtures=2)
    return ModelConfig(model="MoeModel", feature_names=("mean_rgb", "mean_audio"),
                       feature_sizes=(1024, 128), num_classes=args.num_classes or 3862,
                       moe_num_mixtures=2)


def forward_flops(config) -> float:
    """Matmul FLOPs of one example's forward pass (a prediction)."""
    classes, mixtures = config.num_classes, config.moe_num_mixtures
    if config.model == "MoeModel":
        return 2 * config.feature_size * classes * (2 * mixtures + 1)
    frames, video = config.iterations, config.feature_sizes[0]
    audio = config.feature_size - video
    clusters = config.netvlad_cluster_size
    hidden = config.netvlad_hidden_size
    pooled = video * clusters + audio * (clusters // 2)
    return (2 * 2 * frames * pooled + 2 * pooled * hidden + 2 * hidden * hidden
            + 2 * hidden * classes * (2 * mixtures + 1) + 2 * classes * classes)


def training_flops(config) -> float:
    """Matmul FLOPs of one training example (forward x3, or x2 without input gradient)."""
    return (2 if config.model == "MoeModel" else 3) * forward_flops(config)


def random_batch(config, batch_size: int, seed: int) -> dict:
    """Raw features in the dequantized range and about 3 labels per video."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shape = ((batch_size, config.max_frames, config.feature_size) if config.frame_features
             else (batch_size, config.feature_size))
    labels = rng.random((batch_size, config.num_classes)) < 3.0 / config.num_classes
    return {"video_matrix": tf.constant(rng.uniform(-2, 2, shape).astype(np.float32)),
            "num_frames": tf.fill([batch_size], config.max_frames if config.frame_features
                                  else 1),
            "labels": tf.constant(labels.astype(np.float32))}


def measure(args) -> dict:
    """In this process: time the train step of one model."""
    from youtube8m_willow.training.trainer import TrainConfig, Trainer

    config = model_config(args)
    batch_size = args.batch_size or (80 if args.model == "netvlad" else 256)
    warmup = args.warmup if args.warmup is not None else (2 if args.model == "netvlad" else 5)
    steps = args.steps or (5 if args.model == "netvlad" else 30)
    trainer = Trainer(TrainConfig(train_dir="/nonexistent", train_data_pattern="",
                                  batch_size=batch_size, precision=args.precision,
                                  xla=args.xla, seed=args.seed), config)
    batch = random_batch(config, batch_size, args.seed)
    for _ in range(warmup):
        trainer.step(batch)
    _common.reset_tensor_memory()
    times, cpu = [], time.process_time()
    for _ in range(steps):
        start = time.perf_counter()
        trainer.step(batch)
        times.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    parameters = sum(int(v.shape.num_elements()) for v in trainer.model.trainable_variables)
    return {"model": args.model, "batch_size": batch_size, "parameters": parameters,
            "seconds_per_step": statistics.median(times), "mean_seconds": sum(times) / steps,
            "cpu_seconds_per_step": cpu / steps, "steps": steps,
            "peak_memory_gb": _common.peak_memory_gb(), **_common.tensor_memory_gb(),
            "flops_per_example": training_flops(config),
            "matmul_gflops": _common.matmul_rate_gflops(), "config": config.to_json()}


def report(result: dict) -> str:
    rate = result["batch_size"] / result["seconds_per_step"]
    floor = result["matmul_gflops"] * 1e9 / result["flops_per_example"]
    name = {"netvlad": "Gated NetVLAD", "moe": "video-level MoE"}[result["model"]]
    return (f"{name} ({result['parameters'] / 1e6:.0f}M parameters, batch "
            f"{result['batch_size']}): {rate:,.1f} examples/s ({result['seconds_per_step']:.3f}"
            f" s/step, median of {result['steps']}; {result['cpu_seconds_per_step']:.2f} CPU-s"
            f"/step), peak memory {result['peak_memory_gb']:.2f} GiB{_tensors(result)}; "
            f"{result['flops_per_example'] / 1e9:.3f} GFLOP/example, floor {floor:,.0f} "
            f"examples/s at {result['matmul_gflops']:.0f} GFLOP/s ({rate / floor:.0%} of it)")


def _tensors(result: dict) -> str:
    if "tensor_peak_gb" not in result:
        return ""
    return (f" (tensors: {result['tensor_peak_gb']:.2f} GiB at the steps' peak, "
            f"{result['tensor_held_gb']:.2f} GiB held between steps)")


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"machine: {_common.machine()}", flush=True)
    _common.measure_models(__file__, args.model, MODELS,
                           argv if argv is not None else sys.argv[1:],
                           lambda: measure(args), report)


if __name__ == "__main__":
    main()
