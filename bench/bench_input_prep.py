"""The LF models' input preparation in a training step, through the
project's kernels and through TensorFlow's ops: the sampled frames' bytes to
floats (``data.parsing.dequantize_frames``: ``native.dequantize_frames``),
then the L2 input scaling, input_bn's moments and standardization and the
stream split (``BatchNorm.standardize``: ``native.frame_streams``); and in
inference, the L2 scaling and the split, input_bn's map left to the
poolings (``BatchNorm.inference_parts``: the same kernel).

Each row times one batch of ``--videos`` x ``--frames`` sampled frames of
``--sizes`` features (default: WILLOW's batch of 80 videos, 300 frames,
rgb 1024 + audio 128), compiled, and prints the median of ``--repeats``;
TensorFlow's ops are traced inside ``tensorflow_ops_only`` (as for an
export; the same values), each row's two forms timed one after the other:

    PYTHONPATH=. .venv/bin/python bench/bench_input_prep.py
    ... --videos=80 --frames=300 --sizes=1024,128 --repeats=9
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--videos", type=int, default=80, help="videos in the batch")
    parser.add_argument("--frames", type=int, default=300,
                        help="frames of each video, all of them sampled (at random positions)")
    parser.add_argument("--sizes", default="1024,128", help="comma-separated feature sizes")
    parser.add_argument("--repeats", type=int, default=9, help="timed calls of each (median)")
    return parser.parse_args(argv)


def steps(videos: int, frames: int, sizes: list[int]) -> dict:
    """``{row: compiled call}``: each part alone and both, on one random batch."""
    import tensorflow as tf

    from youtube8m_willow.data.parsing import dequantize_frames
    from youtube8m_willow.layers.core import BatchNorm

    width = sum(sizes)
    video_matrix = tf.cast(tf.random.uniform([videos, frames, width], 0, 256, tf.int32), tf.uint8)
    counts = tf.random.uniform([videos, 1], min(30, frames), frames + 1, tf.int32)
    feature_frames = tf.tile(counts, [1, len(sizes)])
    positions = tf.random.uniform([videos, frames], 0, frames, tf.int32)
    floats = dequantize_frames(video_matrix, feature_frames, sizes, positions)
    input_bn = BatchNorm()
    input_bn.build((None, width))

    def dequantize():
        return dequantize_frames(video_matrix, feature_frames, sizes, positions)

    def standardize(frames_):
        blocks = input_bn.standardize(tf.reshape(frames_, [-1, width]), sizes, l2_first=True)
        return tf.add_n([block[0, 0] for block, _ in blocks])

    def inference(frames_):
        blocks = input_bn.inference_parts(tf.reshape(frames_, [-1, width]), sizes, l2_first=True)
        return tf.add_n([block[0, 0] for block, _ in blocks])

    return {"bytes to floats": tf.function(lambda: dequantize()[0, 0, 0]),
            "L2 scaling, input_bn, stream split": tf.function(lambda: standardize(floats)),
            "both": tf.function(lambda: standardize(dequantize())),
            "inference: L2 scaling, stream split": tf.function(lambda: inference(floats))}


def main(argv=None) -> None:
    args = parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    from youtube8m_willow.native import loading

    print(f"machine: {_common.machine()}")
    print(f"one batch's input preparation, {args.videos} videos x {args.frames} "
          f"sampled frames of {'+'.join(map(str, sizes))} features, median of {args.repeats}")
    print("| part | project's kernels ms | TensorFlow's ops ms | speed-up |")
    print("|---|---:|---:|---:|")
    fused = steps(args.videos, args.frames, sizes)
    with loading.tensorflow_ops_only():  # traced here, so with TensorFlow's ops
        plain = steps(args.videos, args.frames, sizes)
        for call in plain.values():
            call()
    for name, call in fused.items():  # each row's two forms timed one after the other
        ms, plain_ms = (_common.median_ms(c, args.repeats) for c in (call, plain[name]))
        print(f"| {name} | {ms:.1f} | {plain_ms:.1f} | {plain_ms / ms:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
