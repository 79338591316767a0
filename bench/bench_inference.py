"""Inference throughput (videos/s): the video-level MoE and Gated NetVLAD.

For each model (in its own process, for its own peak memory): the
predictor of inference.py and eval.py (``prediction.Predictor``: eval mode,
one compiled function) on random in-memory batches, then end to end: records
written by ``write_synthetic_dataset`` read as inference.py reads them
(``prediction.eval_dataset``: eval order, frame-level videos as their bytes),
predicted and reduced to the top 20 classes, as inference.py does before
writing the CSV (timed after ``WARMUP_BATCHES``, while the pipeline starts).

    PYTHONPATH=. .venv/bin/python bench/bench_inference.py [--model=moe] [--batches=5]
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
from bench_train import add_model_args, model_config, random_batch  # noqa: E402

MODELS = ("moe", "netvlad")
WARMUP_BATCHES = 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=(*MODELS, "all"), default="all")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="default: 1024 (moe), 128 (netvlad)")
    parser.add_argument("--batches", type=int, default=None,
                        help="timed batches (default: 20 moe, 8 netvlad)")
    add_model_args(parser)
    parser.add_argument("--num_readers", type=int, default=4)
    parser.add_argument("--top_k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def measure(args) -> dict:
    import tensorflow as tf

    from youtube8m_willow.evaluation import EvalConfig
    from youtube8m_willow.data.synthetic import write_synthetic_dataset
    from youtube8m_willow.prediction import Predictor, eval_dataset

    config = model_config(args)
    batch_size = args.batch_size or (1024 if args.model == "moe" else 128)
    batches = args.batches or (20 if args.model == "moe" else 8)
    predictor = Predictor(config)
    batch = random_batch(config, batch_size, args.seed)
    predictor(batch)
    start = time.perf_counter()
    for _ in range(batches):
        predictor(batch).numpy()
    in_memory = batches * batch_size / (time.perf_counter() - start)

    k = min(args.top_k, config.num_classes)
    with tempfile.TemporaryDirectory() as root:
        patterns = write_synthetic_dataset(
            root, num_videos=(batches + WARMUP_BATCHES) * batch_size, num_classes=config.num_classes,
            num_shards=4, frame_level=config.frame_features,
            video_level=not config.frame_features, max_frames=config.max_frames,
            min_frames=config.max_frames)
        pattern = patterns["frame" if config.frame_features else "video"]
        dataset = eval_dataset(EvalConfig(train_dir="", data_pattern=pattern,
                                          batch_size=batch_size, num_readers=args.num_readers),
                               config)  # inference.py's input (frames as their bytes)
        videos = 0
        for index, records in enumerate(dataset):
            if index == WARMUP_BATCHES:
                videos, start = 0, time.perf_counter()
            scores, classes = tf.math.top_k(predictor(records), k=k)
            videos += int(classes.numpy().shape[0])
        end_to_end = videos / (time.perf_counter() - start)
    return {"model": args.model, "batch_size": batch_size, "in_memory": in_memory,
            "end_to_end": end_to_end, "videos": videos,
            "peak_memory_gb": _common.peak_memory_gb()}


def report(result: dict) -> str:
    name = {"netvlad": "Gated NetVLAD", "moe": "video-level MoE"}[result["model"]]
    return (f"{name} inference (batch {result['batch_size']}): model {result['in_memory']:,.0f}"
            f" videos/s on in-memory batches; end to end (records -> top-k) "
            f"{result['end_to_end']:,.0f} videos/s over {result['videos']} videos; peak "
            f"memory {result['peak_memory_gb']:.2f} GiB")


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"machine: {_common.machine()}", flush=True)
    _common.measure_models(__file__, args.model, MODELS,
                           argv if argv is not None else sys.argv[1:],
                           lambda: measure(args), report)


if __name__ == "__main__":
    main()
