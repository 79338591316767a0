"""The input gradient of a per-video matmul (``dy @ W^T`` for a batch of rows
against a large weight) in each form TensorFlow can run it: the measurement
behind ``layers/kernels._input_gradient`` choosing its form per dtype.

Forms, each a compiled function of the same ``W`` ``[rows, columns]`` and
``dy`` ``[batch, columns]`` (random normal):

- ``transpose_b``: ``matmul(dy, W, transpose_b=True)``, TensorFlow's own
  gradient;
- ``(W dy^T)^T``: the weight streamed in its own row order, with grappler
  folding the transpose of ``dy`` into the matmul's ``transpose_b``;
- ``(W snapshot(dy^T))^T``: the same with ``dy^T`` written out first.

Rows are the paper models' per-video weights (Gated NetVLAD's hidden layer,
its gating and MoE) and the Model Garden comparison's MoE; each cell is the
median of ``--repeats`` calls in ms:

    PYTHONPATH=. .venv/bin/python bench/bench_video_matmul.py
    ... --shapes=278528x1024x80 --repeats=5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

# rows x columns x batch: Gated NetVLAD's hidden layer, its MoE experts and
# context gating (4716 classes, batch 80), the Model Garden comparison's MoE
# gates (3862 classes x 5, batch 256).
SHAPES = "278528x1024x80,1024x9432x80,4716x4716x80,2048x19310x256"
FORMS = ("transpose_b", "(W dy^T)^T", "(W snapshot(dy^T))^T")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--shapes", default=SHAPES,
                        help="comma-separated rows x columns x batch of W and dy")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each (median)")
    return parser.parse_args(argv)


def input_gradient(form: str, weight, upstream):
    """A compiled call of one form of ``upstream @ weight^T`` (returns a
    corner of it: the whole product is computed, little is copied out)."""
    import tensorflow as tf

    @tf.function
    def call():
        if form == "transpose_b":
            product = tf.matmul(upstream, weight, transpose_b=True)
        else:
            upstream_t = tf.transpose(upstream)
            if "snapshot" in form:
                upstream_t = tf.raw_ops.Snapshot(input=upstream_t)
            product = tf.transpose(tf.matmul(weight, upstream_t))
        return product[0, :4]

    return call


def main(argv=None) -> None:
    import tensorflow as tf

    args = parse_args(argv)
    shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]
    print(f"machine: {_common.machine()}")
    print(f"dy @ W^T, W [rows, columns], dy [batch, columns]; median of {args.repeats}, ms")
    print("| W | batch | dtype | " + " | ".join(FORMS) + " |")
    print("|---|---:|---|" + "---:|" * len(FORMS))
    for rows, columns, batch in shapes:
        for dtype in ("float32", "bfloat16"):
            # One weight and upstream gradient for the three forms, one
            # shape and dtype at a time (1.1 GB for the hidden layer's weight).
            weight = tf.Variable(tf.cast(tf.random.normal([rows, columns]), dtype))
            upstream = tf.Variable(tf.cast(tf.random.normal([batch, columns]), dtype))
            cells = [_common.median_ms(input_gradient(form, weight, upstream), args.repeats)
                     for form in FORMS]
            del weight, upstream
            times = " | ".join(f"{ms:.1f}" for ms in cells)
            print(f"| {rows} x {columns} | {batch} | {dtype} | {times} |", flush=True)


if __name__ == "__main__":
    main()
