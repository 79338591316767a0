"""Quality under ``--precision=bfloat16``: the eval GAP of one training run
in float32 and the same run in bfloat16 (mixed: float32 weights, bfloat16
compute), the same flags and seed, on two workloads:

* ``MoeModel``: the video-level MoE on the real 2018 records
  (``../shared/data/yt8m-2018-video``), the command lines of
  ``tests/test_real_data.py`` (train on validate0000-0039: 230 steps of
  batch 256, learning rate 0.01, 3862 classes, seed 1; eval.py on
  validate0040-0049);
* ``Gated NetVLAD (demo)``: the demo's frame-level model and training
  (``make demo``'s synthetic data and flags: 300 steps of batch 64), eval.py
  on its 400 validate videos.

Each row gives both GAPs and bfloat16's minus float32's. With several
``--seeds`` each precision trains once per seed (the same seed in both) and
the row gives the mean GAPs, their difference with the standard error of
the mean of the seeds' differences, and each run's GAPs: training
on two cores is not bitwise repeatable (its reductions' order varies), and
300 steps of the frame-level model move its GAP by several thousandths from
run to run in either precision. The bar this project holds bfloat16 to:
within 0.003 GAP of float32 for the MoE, 0.005 for the frame-level model.

    PYTHONPATH=. .venv/bin/python bench/precision_quality.py [--only=MoeModel] [--seeds=1,2,3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (the bench directory's shared helpers)

from youtube8m_willow import demo  # noqa: E402

DATA_2018 = _common.REPO_ROOT.parent / "shared" / "data" / "yt8m-2018-video"
PRECISIONS = ("float32", "bfloat16")
MOE_FLAGS = ["--model=MoeModel", "--feature_names=mean_rgb,mean_audio",
             "--feature_sizes=1024,128", "--batch_size=256", "--base_learning_rate=0.01",
             "--num_classes=3862"]
DEMO_TRAINING = ["--batch_size=64", "--base_learning_rate=0.005"]


def eval_gap(train_dir: str, patterns: tuple[str, str], model_flags: list[str], steps: int,
             precision: str) -> float:
    """train.py (on ``patterns[0]``) for ``steps`` steps in ``precision``,
    then eval.py's GAP (on ``patterns[1]``)."""
    _common.run_script("train.py", f"--train_dir={train_dir}",
                       f"--train_data_pattern={patterns[0]}", "--start_new_model=True",
                       f"--max_steps={steps}", "--export_model_steps=1000000",
                       f"--precision={precision}", *model_flags)
    log = _common.run_script("eval.py", f"--train_dir={train_dir}",
                             f"--eval_data_pattern={patterns[1]}", "--run_once=True",
                             "--batch_size=512")
    step, gap = _common.EVAL_LINE.search(log).groups()
    if int(step) != steps:
        raise RuntimeError(f"eval.py evaluated step {step}, not {steps}")
    return float(gap)


def difference_cell(float32: list[float], bfloat16: list[float]) -> str:
    """bfloat16's mean GAP minus float32's; with several seeds, ``± `` the
    standard error of the mean of the per-seed differences."""
    differences = [b - f for f, b in zip(float32, bfloat16, strict=True)]
    cell = f"{statistics.mean(bfloat16) - statistics.mean(float32):+.4f}"
    if len(differences) < 2:
        return cell
    return f"{cell} ± {statistics.stdev(differences) / len(differences) ** 0.5:.4f}"


def workloads(args, folder: Path) -> dict:
    """{row: (model flags, (train pattern, eval pattern), steps, bar)}."""
    rows = {"MoeModel": (MOE_FLAGS, (str(args.data_2018 / args.moe_train),
                                     str(args.data_2018 / args.moe_eval)), args.moe_steps, 0.003)}
    if "Gated NetVLAD (demo)".startswith(args.only):
        patterns = demo.make_data(str(folder / "demo_data"))
        rows["Gated NetVLAD (demo)"] = ([*demo.MODEL_FLAGS, *DEMO_TRAINING],
                                        (patterns["train"], patterns["validate"]),
                                        args.frame_steps, 0.005)
    return {name: row for name, row in rows.items() if name.startswith(args.only)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="the rows whose name starts with this")
    parser.add_argument("--data_2018", type=Path, default=DATA_2018,
                        help="the 2018 video-level records")
    parser.add_argument("--moe_train", default="validate00[0-3]?.tfrecord")
    parser.add_argument("--moe_eval", default="validate004?.tfrecord")
    parser.add_argument("--moe_steps", type=int, default=230)
    parser.add_argument("--frame_steps", type=int, default=300)
    parser.add_argument("--seeds", default="1",
                        help="comma-separated training seeds; the row gives the mean GAPs")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    if "MoeModel".startswith(args.only) and not args.data_2018.is_dir():
        print(f"no 2018 records in {args.data_2018} (--data_2018)", file=sys.stderr)
        return 2
    print(f"machine: {_common.machine()}")
    print("native bfloat16: " + (", ".join(sorted(_common.cpu_flags() & set(
        _common.NATIVE_BFLOAT16))) or "none (bfloat16 is emulated here)"))
    print("| workload | steps | float32 GAP | bfloat16 GAP | difference | bar | "
          "seeds: float32 / bfloat16 GAPs |")
    print("|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for name, (flags, patterns, steps, bar) in workloads(args, folder).items():
            gaps = {precision: [] for precision in PRECISIONS}
            for seed in seeds:
                for precision in PRECISIONS:
                    gaps[precision].append(eval_gap(
                        str(folder / f"{name[:3]}_{precision}_{seed}"), patterns,
                        [*flags, f"--seed={seed}"], steps, precision))
            means = {precision: statistics.mean(values) for precision, values in gaps.items()}
            difference = means["bfloat16"] - means["float32"]
            runs = ", ".join(f"{seed}: {f32:.4f} / {bf16:.4f}" for seed, f32, bf16
                             in zip(seeds, gaps["float32"], gaps["bfloat16"]))
            print(f"| {name} | {steps} | {means['float32']:.4f} | {means['bfloat16']:.4f} | "
                  f"{difference_cell(gaps['float32'], gaps['bfloat16'])} | "
                  f"{'within' if abs(difference) <= bar else 'outside'} "
                  f"{bar} | {runs} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
