"""Input pipeline throughput (videos/s) against the rate training consumes.

Writes synthetic YouTube-8M TFRecords (``write_synthetic_dataset``: frame
level with 300 frames of rgb+audio per video, and the matching video-level
records), then reads them with the training reader (``make_dataset``,
training mode: shuffled files and examples, parallel interleave, batched
parsing, prefetch) and reports:
- videos/s of the pipeline alone, and its CPU cost per video, for each reader:
  ``buffer`` (``make_dataset``: a shuffle buffer, nondeterministic reads),
  ``planned`` (``make_planned_dataset``, the resumable order training uses,
  deterministic reads) and ``planned-uint8`` (the same with frames kept as
  bytes, as training reads them);
- the training consumption rate: Gated NetVLAD at the paper configuration
  (``bench_train.py --model=netvlad``, run in a child process) for frame
  level, the video-level MoE for video level, or ``--train_rate``;
- with ``--end_to_end``: the training rate when the pipeline feeds the train
  step (both share the CPU), against the in-memory rate.

    PYTHONPATH=. .venv/bin/python bench/bench_input.py [--num_videos=256] \
        [--train_rate=37] [--end_to_end]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

FRAME_FEATURES = dict(feature_names=("rgb", "audio"), feature_sizes=(1024, 128))
VIDEO_FEATURES = dict(feature_names=("mean_rgb", "mean_audio"), feature_sizes=(1024, 128))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_videos", type=int, default=480, help="videos written")
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300, help="frames per video")
    parser.add_argument("--num_classes", type=int, default=4716)
    parser.add_argument("--batch_size", type=int, default=80, help="frame-level batch")
    parser.add_argument("--video_batch_size", type=int, default=256)
    parser.add_argument("--num_readers", type=int, default=8)
    parser.add_argument("--passes", type=int, default=3, help="epochs read after warm-up")
    parser.add_argument("--train_rate", type=float, default=None,
                        help="frame-level training examples/s (default: measure)")
    parser.add_argument("--video_train_rate", type=float, default=None,
                        help="video-level training examples/s (default: measure)")
    parser.add_argument("--train_steps", type=int, default=3,
                        help="timed steps when measuring or running end to end")
    parser.add_argument("--end_to_end", action="store_true",
                        help="also train Gated NetVLAD fed by the pipeline")
    parser.add_argument("--data_dir", default=None, help="default: a temporary directory")
    return parser.parse_args(argv)


def write_data(args, root: str) -> dict:
    from youtube8m_willow.data.synthetic import write_synthetic_dataset

    start = time.perf_counter()
    patterns = write_synthetic_dataset(root, num_videos=args.num_videos,
                                       num_classes=args.num_classes,
                                       num_shards=args.num_shards, max_frames=args.frames,
                                       min_frames=args.frames, feature_sizes=(1024, 128))
    print(f"wrote {args.num_videos} videos ({args.frames} frames) in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return patterns


def reader(args, frame_level: bool):
    from youtube8m_willow.data.readers import ReaderConfig

    features = FRAME_FEATURES if frame_level else VIDEO_FEATURES
    return ReaderConfig(frame_features=frame_level, num_classes=args.num_classes,
                        max_frames=args.frames, **features)


READERS = ("buffer", "planned", "planned-uint8")


def training_dataset(kind: str, pattern: str, config, batch_size: int, num_readers: int):
    """The training batches of one of READERS, repeated forever."""
    import dataclasses

    from youtube8m_willow.data.readers import file_sizes, make_dataset, make_planned_dataset
    from youtube8m_willow.data.resumable import Plan

    if kind == "buffer":
        return make_dataset(pattern, config, batch_size, training=True, num_epochs=None,
                            num_readers=num_readers)
    if kind == "planned-uint8":
        config = dataclasses.replace(config, quantized_frames=config.frame_features)
    plan = Plan(tuple(file_sizes(pattern)), True, 1, num_readers, 5 * batch_size)
    return make_planned_dataset(plan, config, batch_size, num_epochs=None)


def pipeline_rate(kind: str, pattern: str, config, batch_size: int,
                  args) -> tuple[float, float]:
    """(videos/s, CPU-ms per video) of one reader over ``args.passes`` epochs."""
    iterator = iter(training_dataset(kind, pattern, config, batch_size, args.num_readers))
    warmup = max(2, args.num_videos // batch_size // 2)
    for _ in range(warmup):
        next(iterator)
    batches = max(1, args.passes * args.num_videos // batch_size)
    videos, wall, cpu = 0, time.perf_counter(), time.process_time()
    for _ in range(batches):
        videos += int(next(iterator)["labels"].shape[0])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return videos / wall, cpu / videos * 1e3


def consumption_rate(model: str, args) -> float:
    result = _common.run_child(str(Path(__file__).with_name("bench_train.py")),
                               [f"--model={model}", "--warmup=1",
                                f"--steps={args.train_steps}"])
    return result["batch_size"] / result["seconds_per_step"]


def end_to_end(pattern: str, args) -> float:
    """Examples/s of Gated NetVLAD (paper configuration) fed by the pipeline."""
    from bench_train import model_config

    from youtube8m_willow.training.trainer import TrainConfig, Trainer

    config = model_config(argparse.Namespace(
        model="netvlad", num_classes=args.num_classes, iterations=300, cluster_size=256,
        hidden_size=1024))
    trainer = Trainer(TrainConfig(train_dir="/nonexistent", train_data_pattern=pattern,
                                  batch_size=args.batch_size), config)
    dataset = training_dataset("planned-uint8", pattern, reader(args, True), args.batch_size,
                               args.num_readers)
    iterator = iter(dataset)
    trainer.step(next(iterator))
    start = time.perf_counter()
    examples = sum(trainer.step(next(iterator))["examples"] for _ in range(args.train_steps))
    return examples / (time.perf_counter() - start)


def verdict(name: str, input_rate: float, cpu_ms: float, train_rate: float) -> str:
    share = train_rate * cpu_ms / 1e3 / os.cpu_count()
    return (f"{name}: input {input_rate:,.0f} videos/s alone ({cpu_ms * 1e3:,.0f} CPU-us/video); "
            f"training consumes {train_rate:,.1f} videos/s -> {input_rate / train_rate:.1f}x "
            f"headroom; feeding it takes {share:.0%} of the {os.cpu_count()} cores")


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"machine: {_common.machine()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        patterns = write_data(args, args.data_dir or scratch)
        frame = {kind: pipeline_rate(kind, patterns["frame"], reader(args, True),
                                     args.batch_size, args) for kind in READERS}
        video = {kind: pipeline_rate(kind, patterns["video"], reader(args, False),
                                     args.video_batch_size, args) for kind in READERS[:2]}
        train_rate = args.train_rate or consumption_rate("netvlad", args)
        video_train_rate = args.video_train_rate or consumption_rate("moe", args)
        for kind, (rate, cpu) in frame.items():
            print(verdict(f"frame level, {kind} ({args.frames} frames, batch {args.batch_size}, "
                          "Gated NetVLAD)", rate, cpu, train_rate))
        for kind, (rate, cpu) in video.items():
            print(verdict(f"video level, {kind} (batch {args.video_batch_size}, MoE)", rate,
                          cpu, video_train_rate))
        if args.end_to_end:
            rate = end_to_end(patterns["frame"], args)
            print(f"end to end: Gated NetVLAD fed by the pipeline trains at {rate:.1f} "
                  f"examples/s ({rate / train_rate:.0%} of the in-memory rate)")


if __name__ == "__main__":
    main()
