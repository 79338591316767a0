"""Throughput of EvaluationMetrics: accumulate over many batches, then get().

Random predictions and sparse labels (about 3 per video, frequent classes
first as in the YouTube-8M vocabulary); only the metric calls are timed.

    python bench/bench_metrics.py --num_videos 20480 --compare_reference

(from the repository root, with the package installed or PYTHONPATH=.).

With --compare_reference, HeapReference (the starter code's algorithm: one
argpartition and Python loop per video, one heap per class, a seeded shuffle
and a Python loop per ranked list) runs on the first --reference_videos
videos, and the two results are compared.
"""

import argparse
import heapq
import os
import platform
import random
import time

import numpy as np

from youtube8m_willow.metrics import EvaluationMetrics


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_videos", type=int, default=20480)
    parser.add_argument("--num_classes", type=int, default=3862)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--top_k", type=int, default=20)
    parser.add_argument("--labels_per_video", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare_reference", action="store_true",
                        help="also time the heap-based reference implementation")
    parser.add_argument("--reference_videos", type=int, default=2048)
    return parser.parse_args(argv)


def make_batch(rng: np.random.Generator, batch_size: int, num_classes: int,
               labels_per_video: float):
    """Uniform float32 predictions; 1 + Poisson(labels_per_video - 1) labels per video."""
    predictions = rng.random((batch_size, num_classes), dtype=np.float32)
    class_weights = 1.0 / (np.arange(num_classes) + 10.0)
    class_weights /= class_weights.sum()
    counts = 1 + rng.poisson(labels_per_video - 1, batch_size)
    rows = np.repeat(np.arange(batch_size), counts)
    labels = np.zeros((batch_size, num_classes), dtype=np.float32)
    labels[rows, rng.choice(num_classes, rows.size, p=class_weights)] = 1.0
    return predictions, labels


def batches(args, num_videos):
    rng = np.random.default_rng(args.seed)
    for start in range(0, num_videos, args.batch_size):
        size = min(args.batch_size, num_videos - start)
        predictions, labels = make_batch(rng, size, args.num_classes, args.labels_per_video)
        yield predictions, labels, rng.random(size, dtype=np.float32)


class Timer:
    """Accumulates wall-clock and CPU seconds over the timed blocks."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *unused):
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += time.process_time() - self._start[1]


def run(metrics, args, num_videos):
    """Feeds num_videos videos, then calls get(); returns (its result, Timer)."""
    timer = Timer()
    for predictions, labels, loss in batches(args, num_videos):
        with timer:
            metrics.accumulate(predictions, labels, loss)
    with timer:
        result = metrics.get()
    return result, timer


def rates(num_videos: int, timer: Timer) -> str:
    return (f"{num_videos / timer.wall:,.0f} videos/s wall-clock, "
            f"{num_videos / timer.cpu:,.0f} videos per CPU-second")


class _HeapAP:
    """One ranked list as in the starter code: a heap, then a shuffled sort and a loop."""

    def __init__(self):
        self.heap, self.total_positives = [], 0.0

    def accumulate(self, predictions, actuals, num_positives):
        self.total_positives += float(num_positives)
        for i in range(np.size(predictions)):
            heapq.heappush(self.heap, (predictions[i], actuals[i]))

    def peek(self):
        if not self.heap or self.total_positives == 0:
            return 0.0
        predictions, actuals = np.array(list(zip(*self.heap)))
        random.seed(0)
        shuffle = random.sample(range(len(predictions)), len(predictions))
        predictions, actuals = predictions[shuffle], actuals[shuffle]
        ranked = sorted(range(len(predictions)), key=lambda i: predictions[i], reverse=True)
        ap, hits, delta_recall = 0.0, 0.0, 1.0 / self.total_positives
        for rank, i in enumerate(ranked):
            if actuals[i] > 0:
                hits += 1
                ap += hits / (rank + 1) * delta_recall
        return ap


class HeapReference:
    """The starter code's EvaluationMetrics algorithm, video by video and class by class."""

    def __init__(self, num_class: int, top_k: int):
        self.num_class, self.top_k = num_class, top_k
        self.class_aps = [_HeapAP() for _ in range(num_class)]
        self.global_ap = _HeapAP()
        self.sums, self.num_examples = [0.0, 0.0, 0.0], 0

    @staticmethod
    def _perr(predictions, labels):
        total = 0.0
        for row, row_labels in zip(predictions, labels):
            num_labels = int(np.sum(row_labels))
            top = np.argpartition(row, -num_labels)[-num_labels:]
            total += sum(float(row_labels[j]) for j in top if row[j] > 0) / top.size
        return total / len(labels)

    def _top_k_by_class(self, predictions, labels):
        out_predictions = [[] for _ in range(self.num_class)]
        out_labels = [[] for _ in range(self.num_class)]
        for row, row_labels in zip(predictions, labels):
            for j in np.argpartition(row, -self.top_k)[-self.top_k:]:
                out_predictions[j].append(row[j])
                out_labels[j].append(row_labels[j])
        positives = [np.sum(labels[:, j]) for j in range(self.num_class)]
        return out_predictions, out_labels, positives

    def accumulate(self, predictions, labels, loss):
        batch_size = labels.shape[0]
        hit = float(np.average(labels[np.arange(batch_size), np.argmax(predictions, 1)]))
        perr = self._perr(predictions, labels)
        out_predictions, out_labels, positives = self._top_k_by_class(predictions, labels)
        for calculator, p, a, n in zip(self.class_aps, out_predictions, out_labels, positives):
            calculator.accumulate(p, a, n)
        self.global_ap.accumulate([p for ps in out_predictions for p in ps],
                                  [a for As in out_labels for a in As], sum(positives))
        for index, value in enumerate((hit, perr, float(np.mean(loss)))):
            self.sums[index] += value * batch_size
        self.num_examples += batch_size

    def get(self):
        aps = [calculator.peek() for calculator in self.class_aps]
        positive_aps = [ap for ap, c in zip(aps, self.class_aps) if c.total_positives > 0]
        hit, perr, loss = (value / self.num_examples for value in self.sums)
        return {"avg_hit_at_one": hit, "avg_perr": perr, "avg_loss": loss, "aps": aps,
                "gap": self.global_ap.peek(), "map_all_classes": float(np.mean(aps)),
                "map_positive_classes": float(np.mean(positive_aps)) if positive_aps else 0.0}


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def max_difference(result, expected) -> float:
    keys = ["avg_hit_at_one", "avg_perr", "avg_loss", "gap",
            "map_all_classes", "map_positive_classes"]
    differences = [abs(result[key] - expected[key]) for key in keys]
    differences.append(np.max(np.abs(np.subtract(result["aps"], expected["aps"]))))
    return float(max(differences))


def main(argv=None) -> None:
    args = parse_args(argv)
    result, timer = run(EvaluationMetrics(args.num_classes, args.top_k), args, args.num_videos)
    print(f"EvaluationMetrics: {rates(args.num_videos, timer)} ({args.num_videos} videos, "
          f"{args.num_classes} classes, batch {args.batch_size}, top_k {args.top_k}, "
          f"GAP {result['gap']:.6f}) on {machine()}")
    if not args.compare_reference:
        return
    num_videos = min(args.reference_videos, args.num_videos)
    fast, _ = run(EvaluationMetrics(args.num_classes, args.top_k), args, num_videos)
    reference, reference_timer = run(HeapReference(args.num_classes, args.top_k), args,
                                     num_videos)
    speed_up = (args.num_videos / timer.cpu) / (num_videos / reference_timer.cpu)
    print(f"reference (heaps and loops): {rates(num_videos, reference_timer)} "
          f"({num_videos} videos); speed-up x{speed_up:.0f} per CPU-second; max |difference| "
          f"on those videos {max_difference(fast, reference):.1e} (tied float32 predictions "
          f"are ranked differently)")


if __name__ == "__main__":
    main()
