"""Quality sanity of NeXtVLADModel: its eval GAP on the demo's synthetic
frame data against the demo's Gated NetVLAD, same steps, a third of the
parameters.

Both train with the demo's training flags (``--batch_size=64``,
``--base_learning_rate=0.005``, Adam, ``--steps``) on the data of
``make demo`` (``demo.make_data``: 1600 train and 400 validate videos of up
to 60 frames, 40 classes), then eval.py scores the validate videos. Rows:

* Gated NetVLAD with the demo's flags (``demo.MODEL_FLAGS``: 16 clusters,
  hidden 256, 30 sampled frames, batch norm off, MoE head);
* the same with batch norm on;
* NeXtVLADModel (by default 8 clusters, groups 8, expansion 1, hidden 256:
  1,471,220 parameters, under a third of NetVLAD's 4,608,616), with the
  fork's LogisticModel head, dropout 0.5 and its batch norms (the fork's
  model has no switch for them); all ``max_frames`` (60) frames, as the
  fork reads them.

A model with batch norm trained for a few hundred steps evaluates with
moving statistics that still hold 0.999**steps of their initial values
(see ``demo.batch_norm_note``): the second row shows what that costs
NetVLAD; NeXtVLAD runs with that handicap.

    PYTHONPATH=. .venv/bin/python bench/nextvlad_quality.py [--steps=300]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (the bench directory's shared helpers)

from youtube8m_willow import demo  # noqa: E402

TRAIN_LINE = re.compile(r"training step (\d+) \| .*Examples/sec: ([\d.]+) \| .*GAP: ([\d.]+)")
PLAN_LINE = re.compile(r"training \w+ \(([\d,]+) parameters")  # weights and moving statistics


def nextvlad_flags(args) -> list[str]:
    """NeXtVLADModel on the demo's input (rgb and audio frames, 40 classes)."""
    return ["--model=NeXtVLADModel", "--frame_features=True", "--feature_names=rgb,audio",
            "--feature_sizes=1024,128", f"--num_classes={demo.NUM_CLASSES}",
            "--max_frames=60", "--video_level_classifier_model=LogisticModel",
            f"--nextvlad_cluster_size={args.cluster_size}",
            f"--nextvlad_hidden_size={args.hidden_size}", f"--groups={args.groups}",
            f"--expansion={args.expansion}", f"--gating_reduction={args.gating_reduction}"]


def rows(args) -> dict[str, tuple[str, list[str]]]:
    """{label: (batch norm, model flags)}."""
    netvlad_bn = [f for f in demo.MODEL_FLAGS if not f.startswith("--netvlad_add_batch_norm")]
    return {"Gated NetVLAD (demo flags)": ("off", list(demo.MODEL_FLAGS)),
            "Gated NetVLAD, batch norm on": ("on", netvlad_bn + ["--netvlad_add_batch_norm=True"]),
            "NeXtVLADModel": ("on (the model's)", nextvlad_flags(args))}


def train_and_evaluate(model_flags: list[str], patterns: dict, train_dir: str, args) -> dict:
    """Trains ``--steps`` steps as the demo does, then eval.py once."""
    log = _common.run_script(
        "train.py", f"--train_dir={train_dir}", f"--train_data_pattern={patterns['train']}",
        "--start_new_model=True", f"--max_steps={args.steps}", f"--batch_size={args.batch_size}",
        "--base_learning_rate=0.005", "--export_model_steps=100000", *model_flags)
    steps = TRAIN_LINE.findall(log)
    last_step, _, batch_gap = steps[-1]
    assert int(last_step) == args.steps, log[-2000:]
    rate = sum(float(s[1]) for s in steps[1:] or steps) / len(steps[1:] or steps)
    eval_log = _common.run_script("eval.py", f"--train_dir={train_dir}",
                                  f"--eval_data_pattern={patterns['validate']}",
                                  "--run_once=True", "--batch_size=200")
    step, gap = _common.EVAL_LINE.search(eval_log).groups()
    assert int(step) == args.steps, eval_log[-2000:]
    return {"parameters": PLAN_LINE.search(log).group(1), "batch_gap": float(batch_gap),
            "eval_gap": float(gap), "rate": rate}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of each model")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--cluster_size", type=int, default=8, help="NeXtVLAD's clusters")
    parser.add_argument("--hidden_size", type=int, default=256, help="NeXtVLAD's hidden layer")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--expansion", type=int, default=1)
    parser.add_argument("--gating_reduction", type=int, default=8)
    parser.add_argument("--only", default="", help="train only the rows whose label starts "
                        "with this (default: every row)")
    parser.add_argument("--out_dir", default=None, help="data and train_dirs (default: a "
                        "temporary folder, removed at the end)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        out_dir = Path(args.out_dir or temporary)
        patterns = demo.make_data(str(out_dir / "data"))
        print(f"machine: {_common.machine()}")
        print(f"data: make demo's synthetic frame data; {args.steps} steps of batch "
              f"{args.batch_size}, Adam, learning rate 0.005; eval on its 400 validate videos")
        print("| model | parameters | batch norm | train ex/s | training-batch GAP | eval GAP |")
        print("|---|---:|---|---:|---:|---:|")
        chosen = {label: row for label, row in rows(args).items() if label.startswith(args.only)}
        for i, (label, (batch_norm, model_flags)) in enumerate(chosen.items()):
            result = train_and_evaluate(model_flags, patterns, str(out_dir / f"train_dir{i}"),
                                        args)
            print(f"| {label} | {result['parameters']} | {batch_norm} | "
                  f"{result['rate']:.0f} | {result['batch_gap']:.2f} | "
                  f"{result['eval_gap']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
