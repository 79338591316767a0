"""TensorFlow's fused batch norm (the kernel the layers run in training,
``FusedBatchNormV3``) on frame rows in float32 and in bfloat16, by channel
count: the measurement behind ``layers/kernels.normalize_batch`` running a
half-precision batch norm in float32 when its channels are not a multiple
of 16 (oneDNN's bfloat16 kernel has a fast path only for those).

Each row times one training step's worth of the op on ``[rows, channels]``
(forward and gradient, ``--rows`` 24000: Gated NetVLAD's and Soft-DBoF's
batch of 80 videos x 300 frames) and prints the median of ``--repeats``:

    PYTHONPATH=. .venv/bin/python bench/bench_batch_norm.py
    ... --channels=1000,1024 --rows=24000 --repeats=5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

# Soft-DBoF 8000's audio clusters (1000), counts near them, a multiple of 16
# (1008, 1024) and twice the count (2000): where the fast path is and is not.
CHANNELS = "500,1000,1008,1016,1020,1024,2000"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--channels", default=CHANNELS, help="comma-separated channel counts")
    parser.add_argument("--rows", type=int, default=24000, help="rows normalized together")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each (median)")
    return parser.parse_args(argv)


def fused_step(dtype: str, rows: int, channels: int):
    """A compiled call of the fused kernel on ``[rows, channels]`` in
    ``dtype``, training mode, forward and gradient, as the layers run it."""
    import tensorflow as tf

    x = tf.cast(tf.random.normal([rows, 1, 1, channels]), dtype)
    gamma, beta = tf.ones([channels]), tf.zeros([channels])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]),
                epsilon=1e-3, exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        return tape.gradient(loss, x)[0, 0, 0, 0]

    return step


def main(argv=None) -> None:
    args = parse_args(argv)
    channels = [int(c) for c in args.channels.split(",")]
    print(f"machine: {_common.machine()}")
    print(f"FusedBatchNormV3, training mode, forward and gradient, [{args.rows}, C], "
          f"median of {args.repeats}")
    print("| channels | multiple of 16 | float32 ms | bfloat16 ms | bfloat16 / float32 |")
    print("|---:|---|---:|---:|---:|")
    for count in channels:
        ms = {dtype: _common.median_ms(fused_step(dtype, args.rows, count), args.repeats)
              for dtype in ("float32", "bfloat16")}
        print(f"| {count} | {'yes' if count % 16 == 0 else 'no'} | {ms['float32']:.1f} | "
              f"{ms['bfloat16']:.1f} | {ms['bfloat16'] / ms['float32']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
