"""Segment-level output and scoring: SegmentSubmissionWriter and mAP@N.

Synthetic 5-frame segments with uniform random scores over --num_classes,
a whitelist of --whitelist classes, the Kaggle settings (--top_k 20,
--segment_max_pred 100000); then mAP@N of the CSV written against a
matching synthetic rated-segment set (--rated_per_segment classes per
segment, half positive). Each phase runs in its own process, so its peak
memory (max RSS) is its own; generating the scores is not timed.

    python bench/bench_segments.py --num_segments 200000

(from the repository root, with PYTHONPATH=.).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, peak_memory_gb, print_result, run_child  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_segments", type=int, default=200_000)
    parser.add_argument("--num_classes", type=int, default=3862)
    parser.add_argument("--whitelist", type=int, default=1000)
    parser.add_argument("--top_k", type=int, default=20)
    parser.add_argument("--segment_max_pred", type=int, default=100_000)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--rated_per_segment", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phase", choices=["writer", "scorer"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def segment_ids(count: int) -> np.ndarray:
    """``<video>:<start>``, 12 segments per video."""
    return np.array([f"v{i // 12:07d}:{5 * (i % 12)}" for i in range(count)], dtype=bytes)


def whitelist(args) -> np.ndarray:
    return np.random.default_rng(args.seed).choice(args.num_classes, args.whitelist, replace=False)


def run_writer(args) -> dict:
    from youtube8m_willow.segments.submission import SegmentSubmissionWriter

    rng = np.random.default_rng(args.seed + 1)
    ids = segment_ids(args.num_segments)
    before = peak_memory_gb()
    seconds = 0.0
    path = os.path.join(args.workdir, "segments.csv")
    writer = SegmentSubmissionWriter(path, whitelist(args), args.segment_max_pred, args.top_k)
    for start in range(0, args.num_segments, args.batch_size):
        scores = rng.random((min(args.batch_size, args.num_segments - start), args.num_classes),
                            dtype=np.float32)
        begin = time.perf_counter()
        writer.add(ids[start:start + scores.shape[0]], scores)
        seconds += time.perf_counter() - begin
    begin = time.perf_counter()
    writer.close()
    seconds += time.perf_counter() - begin
    entries = writer.num_entries
    return {"segments_per_s": args.num_segments / seconds, "seconds": seconds,
            "peak_gb": peak_memory_gb(), "start_gb": before, "entries": entries,
            "csv_mb": os.path.getsize(path) / 2**20}


def run_scorer(args) -> dict:
    from youtube8m_willow.segments.map_at_n import RatedSegments, score_submission

    rng = np.random.default_rng(args.seed + 2)
    ids = np.repeat(segment_ids(args.num_segments), args.rated_per_segment)
    classes = rng.choice(whitelist(args), ids.size)
    scores = (rng.random(ids.size) < 0.5).astype(np.float32)
    before = peak_memory_gb()
    begin = time.perf_counter()
    rated = RatedSegments.from_pairs(ids, classes, scores)
    result = score_submission(os.path.join(args.workdir, "segments.csv"), rated,
                              args.segment_max_pred)
    seconds = time.perf_counter() - begin
    return {"segments_per_s": args.num_segments / seconds, "seconds": seconds,
            "peak_gb": peak_memory_gb(), "start_gb": before, "rated": int(rated.classes.size),
            "map": result.map_at_n}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.phase:
        print_result(run_writer(args) if args.phase == "writer" else run_scorer(args))
        return
    common = list(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as workdir:
        results = {phase: run_child(__file__, common + [f"--phase={phase}", f"--workdir={workdir}"])
                   for phase in ("writer", "scorer")}
    from youtube8m_willow.segments.submission import ENTRY_BYTES

    writer, scorer = results["writer"], results["scorer"]
    bound = args.whitelist * args.segment_max_pred
    print(machine())
    print(f"{args.num_segments:,} segments, {args.num_classes} classes, whitelist "
          f"{args.whitelist}, top_k {args.top_k}, segment_max_pred {args.segment_max_pred:,}")
    print("| step | seconds | segments/s | peak RSS (start) | held |")
    print("|---|---:|---:|---:|---|")
    print(f"| SegmentSubmissionWriter add + close | {writer['seconds']:.2f} | "
          f"{writer['segments_per_s']:,.0f} | {writer['peak_gb']:.2f} GiB "
          f"({writer['start_gb']:.2f}) | {writer['entries']:,} entries x {ENTRY_BYTES} B "
          f"(bound: min({bound:,}, candidates) kept, {writer['csv_mb']:.1f} MB CSV) |")
    print(f"| mAP@{args.segment_max_pred} (score_submission) | {scorer['seconds']:.2f} | "
          f"{scorer['segments_per_s']:,.0f} | {scorer['peak_gb']:.2f} GiB "
          f"({scorer['start_gb']:.2f}) | {scorer['rated']:,} rated pairs, "
          f"mAP {scorer['map']:.4f} |")


if __name__ == "__main__":
    main()
