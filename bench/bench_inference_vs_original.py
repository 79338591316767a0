"""Inference end to end against the original WILLOW code, side by side: process start to finished CSV.

WILLOW is not part of this project. Point ``--reference_dir`` (or
``$REFERENCE_DIR``) at a folder where it is set up to run: its code in
``willow/`` and an interpreter in ``venv/``. Without one, this script says so
and exits 1: a ratio is only printed when both sides ran here, in one run,
on one machine.

For each model (WILLOW's Gated NetVLAD paper line, the video-level MoE):
1. synthetic labelled records (2017 format, key ``video_id``, 4716 classes;
   frame-level with 100 to 300 frames, or video-level), in shards of 400;
2. the original trains ``--train_steps`` steps on the first shard, which
   makes an original train_dir: its checkpoint and the meta graph that
   WILLOW's inference.py restores;
3. both inference.py scripts read that train_dir and write the CSV of the
   first 400 records, then of all of them, alternating original, port, port,
   original, with WILLOW's inference batch (``--batch_size``).

Each row gives videos/s (the videos over the process's whole life, start to
exit), the seconds from the start to the first batch written (each side
logs ``num examples processed``), and peak memory (max RSS); each side keeps
its better run. Both CSVs must list every video.

And the port's floor: TensorFlow's import alone (a process that only imports
it as the port's scripts do, timed start to exit, alternating with the
original's ``import tensorflow.compat.v1``: the better of as many runs as the
rounds) plus the model's forward matmul FLOPs for the videos
(``bench_train.forward_flops``) at the machine's float32 rate (a 4096^2
matmul, measured in a process of its own). "speed-up at the floor" is the
speed-up a port that reached its floor would show: the original's seconds
over it.

    PYTHONPATH=. .venv/bin/python bench/bench_inference_vs_original.py --reference_dir=/tmp/reference
    ... --only=MoE --videos=400
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import bench_train  # noqa: E402
import machine  # noqa: E402
from bench_paper_models import recipe_train_lines  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARD = 400  # videos per record file: the small row reads the first one
FEATURES = {"frame": ["--frame_features=True", "--feature_names=rgb,audio",
                      "--feature_sizes=1024,128"],
            "video": ["--frame_features=False", "--feature_names=mean_rgb,mean_audio",
                      "--feature_sizes=1024,128"]}
# Flags of a training line that are not the model's (inference.py takes the rest).
TRAINING_ONLY = ("--train_data_pattern", "--train_dir", "--batch_size", "--base_learning_rate",
                 "--learning_rate_decay", "--max_step", "--frame_features", "--feature_names",
                 "--feature_sizes")
FIRST_BATCH = re.compile(r"(\d\d):(\d\d):(\d\d\.\d+).*num examples processed")


def models() -> dict[str, tuple[str, list[str], int, str]]:
    """``{row: (record kind, training flags, training batch, bench_train model)}``."""
    netvlad = next(flags for name, flags in recipe_train_lines().items()
                   if name.startswith("gatednetvlad"))
    return {"Gated NetVLAD (paper)": ("frame", netvlad, 80, "netvlad"),
            "MoE (video-level)": ("video", ["--model=MoeModel", *FEATURES["video"]], 256, "moe")}


def forward_flops_per_video(model: str) -> float:
    """A bench_train model's forward matmul FLOPs per video at the records'
    4716 classes, at the paper config (the rows' flags)."""
    config = bench_train.model_config(argparse.Namespace(
        model=model, num_classes=4716, **machine.FULL_MODEL_ARGS))
    return bench_train.forward_flops(config)


def model_flags(flags: list[str]) -> list[str]:
    return [flag for flag in flags if not flag.startswith(TRAINING_ONLY)]


def write_records(folder: Path, videos: int) -> None:
    """``folder/{frame,video}/test*.tfrecord``: ``videos`` labelled videos in shards of SHARD."""
    subprocess.run([sys.executable, "-m", "youtube8m_willow.data.synthetic",
                    f"--out_dir={folder}", f"--num_videos={videos}", "--num_eval_videos=1",
                    f"--num_shards={max(1, videos // SHARD)}", "--num_classes=4716",
                    "--id_key=video_id", "--min_frames=100", "--max_frames=300", "--prefix=test"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def first_shards(shards: list[Path], number: int, folder: Path) -> str:
    """A glob of the first ``number`` shards (links in ``folder``): WILLOW
    takes one glob, not a list."""
    folder.mkdir(exist_ok=True)
    for shard in shards[:number]:
        if not (folder / shard.name).exists():
            (folder / shard.name).symlink_to(shard)
    return str(folder / "*.tfrecord")


def original_env() -> dict:
    return _common.instrument_env(TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")


def train_original(reference: Path, flags: list[str], batch: int, records: str, steps: int,
                   train_dir: Path) -> None:
    """An original train_dir: WILLOW's train.py for ``steps`` steps; only the
    last checkpoint is kept (not its SavedModel exports)."""
    command = [str(_common.reference_python(reference)), "train.py",
               f"--train_data_pattern={records}", f"--train_dir={train_dir}",
               f"--max_steps={steps}", f"--batch_size={batch}", "--start_new_model",
               "--export_model_steps=100000000", *flags]
    log, code, _ = _common.run_training(command, reference / "willow", original_env(), 7200)
    if code != 0:
        raise RuntimeError(f"the original's training failed ({code}): "
                           f"{log.strip().splitlines()[-1:]}")
    shutil.rmtree(train_dir / "export", ignore_errors=True)
    latest = Path((train_dir / "checkpoint").read_text().split('"')[1]).name
    for path in train_dir.glob("model.ckpt-*"):
        if not path.name.startswith(latest + "."):
            path.unlink()


def seconds_of_day(stamp: datetime.datetime) -> float:
    return stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6


def first_batch_seconds(log: str, started: float) -> float:
    """From the process start (seconds of the day) to its first batch's log line."""
    match = FIRST_BATCH.search(log)
    if match is None:
        return float("nan")
    hours, minutes, seconds = match.groups()
    return (int(hours) * 3600 + int(minutes) * 60 + float(seconds) - started) % 86400


def infer(side: str, reference: Path, kind: str, flags: list[str], train_dir: Path,
          records: str, batch: int, output: Path) -> dict:
    """One inference.py process; its wall seconds, first batch, max RSS and CSV rows."""
    args = [f"--train_dir={train_dir}", f"--input_data_pattern={records}",
            f"--output_file={output}", f"--batch_size={batch}", *FEATURES[kind]]
    python, cwd, env = side_process(side, reference)
    if side == "original":
        command = [python, "inference.py", *args]
    else:  # WILLOW's README gives inference.py the model flags too
        command = [python, str(REPO / "inference.py"), *args, *model_flags(flags)]
    os.sync()
    time.sleep(2)  # a quiet disk
    started = seconds_of_day(datetime.datetime.now())
    start = time.monotonic()
    log, code, rss = _common.run_training(command, cwd, env, 7200)
    seconds = time.monotonic() - start
    if code != 0:
        raise RuntimeError(f"{side} inference failed ({code}): {log.strip().splitlines()[-1:]}")
    rows = output.read_text().splitlines()[1:]
    output.unlink()
    return {"seconds": seconds, "first": first_batch_seconds(log, started), "rss": rss,
            "ids": sorted(row.split(",", 1)[0] for row in rows)}


def side_process(side: str, reference: Path) -> tuple[str, Path, dict]:
    """``side``'s interpreter, working directory and environment."""
    if side == "original":
        return str(_common.reference_python(reference)), reference / "willow", original_env()
    return sys.executable, REPO, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                  "PYTHONPATH": str(REPO)}


# What a process that only imports TensorFlow runs: the original's first line
# of TensorFlow; the port's scripts' start-up (``startup.start_tool``: Keras
# too, and their quick exit).
IMPORTS = {"original": "import tensorflow.compat.v1",
           "port": "from youtube8m_willow import startup; startup.start_tool()"}


def import_seconds(side: str, reference: Path) -> float:
    """Start to exit of a process of ``side``'s that only imports TensorFlow."""
    python, cwd, env = side_process(side, reference)
    start = time.monotonic()
    subprocess.run([python, "-c", IMPORTS[side]], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def float32_rate() -> float:
    """The machine's float32 matmul GFLOP/s (4096^2), measured in a process of its own."""
    code = "import _common; print(_common.matmul_gflops(4096, 4096, 4096, repeats=3))"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=True,
                            capture_output=True, text=True)
    return float(result.stdout.split()[-1])


def run_order(rounds: int) -> list[str]:
    """``rounds`` runs a side, alternating: original, port, port, original, ..."""
    return (["original", "port", "port", "original"] * rounds)[:2 * rounds]


def row(name: str, videos: int, runs: dict[str, list[dict]], floor: float) -> str:
    """A table row; ``floor``: the port's floor in seconds."""
    best = {side: min(results, key=lambda r: r["seconds"]) for side, results in runs.items()}
    first = {side: min(r["first"] for r in results) for side, results in runs.items()}
    rss = {side: min(r["rss"] for r in results) for side, results in runs.items()}
    rate = {side: videos / best[side]["seconds"] for side in runs}
    return (f"| {name} | {videos} | {rate['original']:.0f} | {rate['port']:.0f} | "
            f"{rate['port'] / rate['original']:.2f}x | {floor:.1f} s | "
            f"{best['port']['seconds'] / floor:.2f} | "
            f"{best['original']['seconds'] / floor:.2f}x | {first['original']:.1f} s | "
            f"{first['port']:.1f} s | {rss['original']:.2f} GB | {rss['port']:.2f} GB | "
            f"{rss['port'] / rss['original']:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference_dir", default=os.environ.get("REFERENCE_DIR", ""),
                        help="folder with WILLOW in willow/ and venv/ (default: $REFERENCE_DIR)")
    parser.add_argument("--only", default="", help="substring of the model names to run")
    parser.add_argument("--videos", default="400,4000",
                        help="comma-separated video counts, each a multiple of 400")
    parser.add_argument("--batch_size", type=int, default=1024,
                        help="inference batch, both sides (WILLOW's recipe: 1024)")
    parser.add_argument("--train_steps", type=int, default=1,
                        help="steps the original trains to make its train_dir")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs a side, alternating: original, port, port, original, "
                             "original, port, ...")
    args = parser.parse_args()
    reference = _common.reference_set_up(args.reference_dir, "willow/inference.py")
    if reference is None:
        print("no WILLOW set up (--reference_dir or $REFERENCE_DIR with willow/ and venv/): "
              "nothing measured", file=sys.stderr)
        return 1
    if args.rounds < 1:
        print(f"--rounds={args.rounds}: at least 1", file=sys.stderr)
        return 2
    counts = [int(count) for count in args.videos.split(",")]
    if any(count <= 0 or count % SHARD for count in counts):
        print(f"--videos={args.videos}: each count must be a positive multiple of {SHARD}",
              file=sys.stderr)
        return 2
    print(f"machine: {_common.machine()}")
    print(_common.instrument_setting())
    print(f"inference batch {args.batch_size}, the original's train_dir after "
          f"{args.train_steps} step(s), {args.rounds} round(s) per side, synthetic 2017-format "
          "records (frame-level: 100-300 frames)")
    order = run_order(args.rounds)
    imports = {"original": [], "port": []}
    for side in order:
        imports[side].append(import_seconds(side, reference))
    imported, gflops = min(imports["port"]), float32_rate()
    print(f"a process that only imports TensorFlow, start to exit (the port's: its scripts' "
          f"start-up, Keras included): original {min(imports['original']):.2f} s, port "
          f"{imported:.2f} s; float32 matmuls at {gflops:.0f} GFLOP/s (4096^2). Port floor: "
          "that import plus the forward's matmul FLOPs at that rate")
    print("| model | videos | original videos/s | port videos/s | speed-up | port floor | "
          "port / floor | speed-up at the floor | original first batch | port first batch | "
          "original max RSS | port max RSS | memory ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        write_records(work / "records", max(counts))
        for name, (kind, flags, train_batch, model) in models().items():
            if args.only not in name:
                continue
            shards = sorted((work / "records" / kind).glob("test*.tfrecord"))
            train_dir = work / "original_train_dir"
            train_original(reference, flags, train_batch, str(shards[0]), args.train_steps,
                           train_dir)
            for count in counts:
                records = first_shards(shards, count // SHARD, work / f"{kind}{count}")
                runs = {"original": [], "port": []}
                for side in order:
                    runs[side].append(infer(side, reference, kind, flags, train_dir, records,
                                            args.batch_size, work / f"{side}.csv"))
                ids = {side: results[0]["ids"] for side, results in runs.items()}
                if ids["original"] != ids["port"] or len(ids["port"]) != count:
                    raise RuntimeError(f"{name}: the CSVs do not both list the {count} videos")
                floor = imported + count * forward_flops_per_video(model) / (gflops * 1e9)
                print(row(name, count, runs, floor), flush=True)
            shutil.rmtree(train_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
