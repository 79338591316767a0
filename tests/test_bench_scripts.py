"""The bench/ scripts the README quotes run and report (tiny settings; the
numbers themselves are measured by running the scripts, never asserted)."""

from __future__ import annotations

import os
import re
import sys

import pytest

import forked
from conftest import REPO

SMALL_NETVLAD = ["--cluster_size=4", "--hidden_size=16", "--iterations=5", "--num_classes=20"]
RUNS = {
    "bench_metrics.py": ["--num_videos=2048"],
    "bench_exit.py": ["--rounds=1"],
    "bench_startup.py": ["--rounds=1", "--reference_dir="],
    "bench_batch_norm.py": ["--channels=8,16", "--rows=64", "--repeats=1"],
    "bench_video_matmul.py": ["--shapes=64x32x4", "--repeats=1"],
    "bench_input_prep.py": ["--videos=4", "--frames=10", "--sizes=8,4", "--repeats=1"],
    "bench_train.py": ["--model=all", "--warmup=1", "--steps=1", "--batch_size=8",
                       *SMALL_NETVLAD],
    "bench_input.py": ["--num_videos=16", "--num_shards=2", "--frames=10", "--num_classes=20",
                       "--batch_size=8", "--video_batch_size=8", "--passes=1", "--train_rate=10",
                       "--video_train_rate=10"],
    "bench_inference.py": ["--model=all", "--batch_size=8", "--batches=2", *SMALL_NETVLAD],
    "bench_segments.py": ["--num_segments=3000", "--num_classes=200", "--whitelist=50",
                          "--segment_max_pred=100"],
    "param_counts.py": ["--markdown"],
    "step_profile.py": ["--steps=1", "--warmup=1", "--top=3", "--floor_size=128",
                        "--floor_megabytes=8",
                        "--model_flags=--model=NetVLADModelLF --netvlad_cluster_size=4 "
                        "--netvlad_hidden_size=16 --iterations=5 --num_classes=20 "
                        "--frame_features=True --feature_names=rgb,audio "
                        "--feature_sizes=1024,128 --batch_size=8"],
    "nextvlad_quality.py": ["--steps=2", "--only=NeXtVLADModel"],
    "precision_quality.py": ["--only=MoeModel", "--moe_steps=2",
                             "--moe_train=validate0000.tfrecord",
                             "--moe_eval=validate0040.tfrecord"],
}
# What a script's report must hold, where more than a rate or a parameter
# count: this project's start-up row (ml_dtypes' version, its import and
# TensorFlow's); a row per kind of exit; a row per channel count, marked a
# multiple of 16 or not; a row per dtype of each shape, a time for each form
# of the input gradient; a row per part of the input preparation and one for
# both, each timed both ways; the step profile's floor ratios and a row per
# kind (the tiny NetVLAD runs the project's kernels), then its longest ops;
# NeXtVLADModel's row, its size the README's (a third of the demo's Gated
# NetVLAD), its eval GAP read off eval.py; the MoE's GAP in float32 and in
# bfloat16, their difference and the bar it is held to.
REPORTS = {"bench_startup.py": r"\| port \| \d+\.\d+\.\d+ \| \d+ ms \| [\d.]+ s \|\n",
           "bench_exit.py": r"\| Python's finalization \| [\d.]+ \| [\d.]+ \|\n"
                            r"\| TensorFlow's import frozen \| [\d.]+ \| [\d.]+ \|\n"
                            r"\| the scripts' exit \(collector frozen\) \| [\d.]+ \| [\d.]+ \|\n",
           "bench_batch_norm.py": r"\| 8 \| no \| [\d.]+ \| [\d.]+ \| [\d.]+x \|\n"
                                  r"\| 16 \| yes \| [\d.]+ \| [\d.]+ \| [\d.]+x \|\n",
           "bench_video_matmul.py": r"\| 64 x 32 \| 4 \| float32 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|\n"
                                    r"\| 64 x 32 \| 4 \| bfloat16 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|\n",
           "bench_input_prep.py": r"\| bytes to floats \| [\d.]+ \| [\d.]+ \| [\d.]+x \|\n"
                                  r"\| L2 scaling, input_bn, stream split \| [\d.]+ \| [\d.]+ "
                                  r"\| [\d.]+x \|\n\| both \| [\d.]+ \| [\d.]+ \| [\d.]+x \|\n"
                                  r"\| inference: L2 scaling, stream split \| [\d.]+ \| [\d.]+ "
                                  r"\| [\d.]+x \|\n",
           "step_profile.py": r"step / floor: [\d.]+x \(wall time\), [\d.]+x \(op time\)\n"
                              r"(.*\n){2}"
                              r"\| matmuls \| [\d.]+ \| [\d.]+% \| [\d.]+ \| \d+ GFLOP/s .*\n"
                              r"\| Adam and norms \| [\d.]+ \| [\d.]+% \| [\d.]+ "
                              r"\| [\d.]+ GB/s .*\n"
                              r"\| the project's kernels \| [\d.]*[1-9][\d.]* \| .*\n\| XLA \| .*\n"
                              r"\| copies \| .*\n\| the rest \| .*\n"
                              r"\| all ops \| [\d.]+ \| 100\.0% \| [\d.]+ \| \|\n"
                              r"the 3 longest ops:\n(.*\n){2}(\| .* \| [\d.]+ \| [\d.]+ \|\n){3}",
           "nextvlad_quality.py": r"\| NeXtVLADModel \| 1,471,220 \| .* \| [01]\.\d{3} \|\n",
           "precision_quality.py": r"\| MoeModel \| 2 \| 0\.\d{4} \| 0\.\d{4} \| [+-]0\.\d{4} \| "
                                   r"(within|outside) 0\.003 \| 1: 0\.\d{4} / 0\.\d{4} \|\n"}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_bench_script_reports(script):
    result = forked.run([sys.executable, str(REPO / "bench" / script), *RUNS[script]],
                        cwd=REPO, capture_output=True, text=True, timeout=600,
                        env={**os.environ, "PYTHONPATH": str(REPO),
                             "TF_CPP_MIN_LOG_LEVEL": "2"}, fork_nested=True)
    assert result.returncode == 0, result.stderr[-3000:]
    if script in REPORTS:
        assert re.search(REPORTS[script], result.stdout), result.stdout[-2000:]
    elif script == "bench_train.py":
        # Both models' peaks: the process's, then its tensors' (the CPU
        # allocator's statistics), never more, and what stays between steps
        # (0.00 GiB for these tiny models' tensors).
        peaks = re.findall(r"peak memory ([\d.]+) GiB \(tensors: ([\d.]+) GiB at the "
                           r"steps' peak, ([\d.]+) GiB held between steps\)", result.stdout)
        assert len(peaks) == 2, result.stdout[-2000:]
        for process, tensors, held in peaks:
            assert float(held) <= float(tensors) <= float(process) and float(process) > 0, peaks
    else:
        assert "/s" in result.stdout or "333.2M" in result.stdout, result.stdout[-2000:]


def _run_bench(script: str, *args: str, unset: tuple[str, ...] = ()):
    """Runs ``bench/<script> args`` as the README does, with the variables
    in ``unset`` (the instruments' locations) taken out of its environment."""
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return forked.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO,
                      capture_output=True, text=True, timeout=300, env=env, fork_nested=True)


def _vs_original(tmp_path, instrument: str | None, *args):
    if instrument is not None:
        script = tmp_path / "instrument.sh"
        script.write_text(instrument)
        args = (f"--instrument={script}", *args)
    return _run_bench("bench_vs_original.py", *args, unset=("SIDE_BY_SIDE",))


def test_precision_quality_without_the_2018_records_measures_nothing(tmp_path):
    result = _run_bench("precision_quality.py", f"--data_2018={tmp_path / 'absent'}")
    assert result.returncode == 2
    assert f"no 2018 records in {tmp_path / 'absent'} (--data_2018)" in result.stderr
    assert "|" not in result.stdout


def test_vs_original_without_an_instrument_measures_nothing(tmp_path):
    result = _vs_original(tmp_path, None)
    assert result.returncode == 1
    assert "no side-by-side instrument" in result.stderr
    assert "ratio" not in result.stdout and "x |" not in result.stdout


def test_vs_original_tabulates_the_instruments_line(tmp_path):
    # A stand-in instrument: echoes its arguments' model and one result line.
    line = ('echo "$1: original 2.000 s/step (runs 2.000 2.100) 10.00 GB, project 1.000 s/step '
            '(runs 1.000 1.050) 6.00 GB, ratio 2.00, memory ratio 0.60"; '
            'echo "$4" > "$(dirname "$0")/flags_$1"\n')
    result = _vs_original(tmp_path, line, "--only=GRU", "--rounds=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| GRU-0002-1200 | 2.000 | 1.000 | 2.00x | 10.00 GB | 6.00 GB | 0.60 |" in result.stdout
    flags = (tmp_path / "flags_GRU-0002-1200").read_text()
    assert "--gru_cells=1200" in flags and "--train_dir" not in flags


def test_vs_original_reports_a_failed_run(tmp_path):
    result = _vs_original(tmp_path, "echo 'reference not set up'; exit 1\n", "--only=lstm")
    assert result.returncode == 0
    assert "the instrument failed (1): reference not set up" in result.stdout


def test_every_frame_level_model_has_a_row_with_all():
    # bench_paper_models.py's run in this suite: its smallest row, with
    # the columns of every row (step, rate, memory, floor and ratio).
    result = forked.run(
        [sys.executable, str(REPO / "bench" / "bench_paper_models.py"), "--all", "--steps=1",
         "--warmup=0", "--only=FrameLevelLogisticModel", "--floor_size=512",
         "--floor_megabytes=32", "--flags=--precision=bfloat16"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
        fork_nested=True)
    assert result.returncode == 0, result.stderr[-3000:]
    # 300 frames x 1152 features x 4716 classes, and the biases; the peak
    # memory with its tensors' part (the CPU allocator's statistics).
    row = re.search(r"\| FrameLevelLogisticModel \| 5\.4M \| 80 \| [\d.]+ \| [\d.]+ \| "
                    r"([\d.]+) GB \(tensors ([\d.]+) GB\) \| [\d.]+ \| [\d.]+x \|\n",
                    result.stdout)
    assert row, result.stdout[-2000:]
    assert float(row.group(2)) <= float(row.group(1))
    assert "every row with --precision=bfloat16\n" in result.stdout
    assert re.search(r"^floor: .* GFLOP/s \(bfloat16, 512\^2\)", result.stdout, re.M)


def _bench_module(name):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


def test_precision_quality_gives_the_differences_standard_error():
    quality = _bench_module("precision_quality")
    assert quality.difference_cell([0.84], [0.83]) == "-0.0100"
    # Per-seed differences -0.01 and 0: mean -0.005, standard deviation
    # 0.00707, over the square root of 2 seeds.
    assert quality.difference_cell([0.84, 0.83], [0.83, 0.83]) == "-0.0050 ± 0.0050"


def test_step_profile_sums_each_ops_time_by_kind():
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    profile = _bench_module("step_profile")
    space = xplane_pb2.XSpace()
    plane = space.planes.add()
    labels = ["hidden/MatMul:_MklNativeFusedMatMul", "RowBlockApplyAdam:RowBlockApplyAdam",
              "vlad/NormalizedVlad:NormalizedVlad", "transpose_9:_MklTranspose",
              "add:AddV2", "ExecutorState::Process", profile.XLA_EVENT]
    for index, label in enumerate(labels, 1):
        plane.event_metadata[index].name = label

    def line(name, events):
        """A thread's events: (metadata id, start ms, duration ms)."""
        added = plane.lines.add(name=name)
        for metadata_id, start, milliseconds in events:
            added.events.add(metadata_id=metadata_id, offset_ps=int(start * 1e9),
                             duration_ps=int(milliseconds * 1e9))

    # The executor's own event (6) wraps the ops and is left out; an event
    # inside a counted one (the XLA execution inside "add" on the third
    # thread) is not counted again; a thread not the executor's is left out.
    line("tf_Compute/1", [(6, 0, 110), (1, 0, 40), (2, 40, 20), (3, 60, 10), (1, 70, 30),
                          (7, 100, 5)])
    line("tf_Compute/2", [(4, 0, 4), (5, 4, 1)])
    line("tf_Compute/3", [(5, 0, 2), (7, 0.5, 1)])
    line("tf_data_private_threadpool", [(5, 0, 50)])
    ops = profile.op_times(space)
    assert [(op.name, op.calls) for op in ops] == [
        ("hidden/MatMul", 2), ("RowBlockApplyAdam", 1), ("vlad/NormalizedVlad", 1),
        ("XLA", 1), ("transpose_9", 1), ("add", 2)]
    assert ops[0].seconds == pytest.approx(0.070)
    project_ops = profile.project_op_types()
    assert {"NormalizedVlad", "NormalizedVladGrad", "RowBlockApplyAdam", "FrameStreams",
            "DequantizeFrames"} <= project_ops
    totals = profile.by_kind(ops, project_ops)
    assert totals == pytest.approx({"matmuls": 0.070, "Adam and norms": 0.020,
                                    "the project's kernels": 0.010, "XLA": 0.005,
                                    "copies": 0.004, "the rest": 0.003})
    assert profile.kind_of("_MklBatchMatMulV2", project_ops) == "matmuls"
    assert profile.kind_of("ResourceApplyAdam", project_ops) == "Adam and norms"
    assert profile.kind_of("ConcatV2", project_ops) == "copies"


def test_step_profile_rows_without_a_flop_count():
    from types import SimpleNamespace

    profile = _bench_module("step_profile")
    floor = SimpleNamespace(rate=100.0, bandwidth=10.0)
    totals = dict.fromkeys(profile.KINDS, 0.0)
    totals.update({"matmuls": 0.6, "Adam and norms": 0.28, "the rest": 0.12})
    rows = profile.kind_rows(totals, 2, None, 1_000_000, floor)
    # Two steps: 300 ms of matmuls a step, whose floor is unknown without
    # the count; Adam's 28 MB at 10 GB/s is 2.8 ms, moved in 140 ms.
    assert rows[2] == "| matmuls | 300.0 | 60.0% | n/a |  |"
    assert rows[3] == "| Adam and norms | 140.0 | 28.0% | 2.8 | 0.2 GB/s (floor 10.0) |"
    assert rows[5] == "| XLA | 0.0 | 0.0% | 0.0 |  |"
    assert rows[-1] == "| all ops | 500.0 | 100.0% | n/a | |"


def test_step_profile_names_one_recipe_row():
    profile = _bench_module("step_profile")
    with pytest.raises(SystemExit, match="names 0 of the recipe's rows"):
        profile.model_flag_args(profile.parse_args(["--row=no such row"]))
    name, flags = profile.model_flag_args(profile.parse_args(["--row=gatednetvladLF"]))
    assert name.startswith("gatednetvladLF") and "--model=NetVLADModelLF" in flags


def test_nextvlad_rows_are_the_authors_recipes():
    lines = _bench_module("bench_paper_models").nextvlad_recipe_lines()
    single, mixture = lines["NeXtVLADModel"], lines["MixNeXtVladModel"]
    for flag in ("--nextvlad_cluster_size=128", "--gating_reduction=8", "--groups=8",
                 "--expansion=2", "--nextvlad_hidden_size=2048", "--batch_size=80",
                 "--num_classes=3862", "--video_level_classifier_model=LogisticModel"):
        assert flag in single, flag
    for flag in ("--nextvlad_cluster_size=112", "--mix_number=3", "--cl_temperature=3",
                 "--cl_lambda=9", "--gating_reduction=16"):
        assert flag in mixture, flag


def test_vs_fork_without_the_fork_measures_nothing(tmp_path):
    result = _run_bench("bench_vs_fork.py", f"--reference_dir={tmp_path}",
                        unset=("REFERENCE_DIR",))
    assert result.returncode == 1
    assert "no NeXtVLAD fork set up" in result.stderr and "|" not in result.stdout


def test_inference_vs_original_without_willow_measures_nothing(tmp_path):
    result = _run_bench("bench_inference_vs_original.py", f"--reference_dir={tmp_path}",
                        unset=("REFERENCE_DIR",))
    assert result.returncode == 1
    assert "no WILLOW set up" in result.stderr and "|" not in result.stdout


def test_inference_vs_original_refuses_counts_that_are_not_whole_shards(tmp_path):
    (tmp_path / "willow").mkdir()
    (tmp_path / "willow" / "inference.py").write_text("")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    result = _run_bench("bench_inference_vs_original.py", f"--reference_dir={tmp_path}",
                        "--videos=400,1000")
    assert result.returncode == 2
    assert "--videos=400,1000: each count must be a positive multiple of 400" in result.stderr
    result = _run_bench("bench_inference_vs_original.py", f"--reference_dir={tmp_path}",
                        "--rounds=0")
    assert result.returncode == 2
    assert "--rounds=0: at least 1" in result.stderr


def test_inference_vs_original_times_from_the_start_to_the_first_batch():
    bench = _bench_module("bench_inference_vs_original")
    log = ("I1205 23:59:58.000000 1 inference.py:120] loading meta-graph\n"
           "I1205 00:00:03.250000 1 inference.py:162] num examples processed: 400 elapsed\n"
           "I1205 00:00:09.000000 1 inference.py:162] num examples processed: 800 elapsed\n")
    started = 23 * 3600 + 59 * 60 + 57.5  # across midnight: 5.75 s later
    assert bench.first_batch_seconds(log, started) == pytest.approx(5.75)
    assert bench.first_batch_seconds("no batch", started) != bench.first_batch_seconds(
        "no batch", started)  # NaN
    netvlad = bench.models()["Gated NetVLAD (paper)"]
    assert netvlad[0] == "frame" and "--netvlad_cluster_size=256" in netvlad[1]
    assert bench.model_flags(netvlad[1]) == [
        "--model=NetVLADModelLF", "--netvlad_cluster_size=256", "--netvlad_hidden_size=1024",
        "--moe_l2=1e-6", "--iterations=300", "--netvlad_relu=False", "--gating=True",
        "--moe_prob_gating=True"]
    runs = {"original": [{"seconds": 10.0, "first": 4.0, "rss": 2.0},
                         {"seconds": 8.0, "first": 4.5, "rss": 2.5}],
            "port": [{"seconds": 5.0, "first": 3.0, "rss": 1.0},
                     {"seconds": 6.0, "first": 2.5, "rss": 1.2}]}
    assert bench.run_order(1) == ["original", "port"]
    assert bench.run_order(3) == ["original", "port", "port", "original", "original", "port"]
    # The port's floor 4 s: 5 s is 1.25 times it; the original's 8 s, 2x.
    assert bench.row("M", 400, runs, 4.0) == ("| M | 400 | 50 | 80 | 1.60x | 4.0 s | 1.25 | "
                                              "2.00x | 4.0 s | 2.5 s | 2.00 GB | 1.00 GB | "
                                              "0.50 |")
    # Per video: MoE 2 * 1152 * 4716 * (2 * 2 + 1); Gated NetVLAD's frames
    # (assignment and residual sums, 4 * 300 * (1024 * 256 + 128 * 128)),
    # hidden layer, its gating, MoE and the classes' gating.
    assert bench.forward_flops_per_video("moe") == 2 * 1152 * 4716 * 5
    assert bench.forward_flops_per_video("netvlad") == (
        4 * 300 * 278528 + 2 * 278528 * 1024 + 2 * 1024 * 1024 + 2 * 1024 * 4716 * 5
        + 2 * 4716 * 4716)
    assert [model[3] for model in bench.models().values()] == ["netvlad", "moe"]


def test_side_by_side_benches_time_the_logged_steps():
    log = "\n".join(f"I1205 10:00:{seconds:09.6f} 1 train.py:1] training step {step} | Loss: 1"
                    for step, seconds in [(1, 0.0), (2, 5.0), (3, 6.0), (4, 8.0), (5, 9.5)])
    seconds_per_step = _bench_module("_common").seconds_per_step
    assert seconds_per_step(log, 3, 5) == pytest.approx(1.5)  # gaps 1, 2, 1.5
    assert seconds_per_step(log, 2, 2) == pytest.approx(5.0)
    assert seconds_per_step("no steps", 2, 5) != seconds_per_step("no steps", 2, 5)  # NaN


def test_machine_reports_features_rates_bandwidth_and_floors():
    result = forked.run(
        [sys.executable, str(REPO / "bench" / "machine.py"), "--quick"], cwd=REPO,
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
        fork_nested=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    common = _bench_module("_common")
    flags = common.cpu_flags()
    for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"):
        assert f"{name} {'present' if name in flags else 'absent'}" in out, name
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert ("no native bfloat16" in out) is not native
    assert re.search(r"^oneDNN ISA: \S", out, re.M), out
    rows = re.findall(r"^\| (.+\]) \| ([\d,.]+) \| ([\d,.]+) \|$", out, re.M)
    assert len(rows) == 5 and "| float32 GFLOP/s | bfloat16 GFLOP/s |" in out, out
    assert all(float(rate.replace(",", "")) > 0 for _, *rates in rows for rate in rates)
    assert float(re.search(r"^memory bandwidth: ([\d.]+) GB/s", out, re.M).group(1)) > 0
    for model in ("Gated NetVLAD paper config", "video-level MoE, 3862 classes",
                  "video-level MoE, 4716 classes"):
        floor = re.search(rf"^{model} \(batch 8, .*GFLOP/step.* floor (\S+) s/step float32, "
                          rf"(\S+) s/step bfloat16$", out, re.M)
        assert floor and float(floor.group(1)) > 0 and float(floor.group(2)) > 0, out


ONEDNN_VERBOSE = """\
onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support
onednn_verbose,v1,info,gpu,runtime:none
onednn_verbose,v1,primitive,exec,cpu,gemm_api,,undef,src_f32::blocked:ab:f0 wei_f32::blocked:ab:f0 dst_f32::blocked:ab:f0,,,64x64:64x64,32.3
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16::blocked:ab::f0 wei:bf16::blocked:ab::f0 dst:bf16::blocked:ab::f0,attr-scratchpad:user,,64x64:64x64,0.03
onednn_verbose,v1,primitive,exec,cpu,matmul,gemm:jit,undef,src:bf16::blocked:ab::f0,,,8x8:8x8,0.01
"""


def test_machine_parses_onednn_verbose():
    machine = _bench_module("machine")
    assert machine.parse_isa(ONEDNN_VERBOSE) == (
        "Intel AVX-512 with Intel DL Boost and bfloat16 support")
    assert machine.parse_isa("onednn_verbose,info,cpu,isa:Intel AVX2\n") == "Intel AVX2"
    assert machine.parse_isa("oneDNN off: no verbose lines\n") == "unknown"
    assert machine.parse_matmul_kernels(ONEDNN_VERBOSE) == {
        "f32": "gemm_api", "bf16": "brg_matmul:avx512_core_bf16"}


def test_machine_reads_the_cpu_flags():
    common = _bench_module("_common")
    cpuinfo = ("processor\t: 0\nmodel name\t: AMD EPYC 9B45\n"
               "flags\t\t: fpu avx2 avx512f avx512_bf16\nprocessor\t: 1\n"
               "flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert common.cpu_model(cpuinfo) == "AMD EPYC 9B45"
    assert common.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    lines = _bench_module("machine").feature_lines(common.cpu_flags(cpuinfo))
    assert lines == ["flags: avx2 present, avx512f present, avx512_bf16 present, "
                     "amx_bf16 absent, amx_tile absent", "bfloat16: native (avx512_bf16)"]
    assert "no native bfloat16" in _bench_module("machine").feature_lines({"avx2"})[1]


def test_an_instrument_runs_its_original_in_the_environment_the_bench_started_in(
        monkeypatch):
    """The benches measure the project as its scripts run (their allocator);
    an original driven by an instrument keeps TensorFlow's defaults, or what
    the user set, and the bench says which."""
    common = _bench_module("_common")
    monkeypatch.setattr(common, "STARTED_ENV", {"PATH": "/bin"})
    assert common.instrument_env(SBS_ROUNDS="2") == {"PATH": "/bin", "SBS_ROUNDS": "2"}
    monkeypatch.setattr(common, "STARTED_ENV", {"TF_ENABLE_ONEDNN_OPTS": "0"})
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", "true")
    assert common.instrument_setting() == (
        "TensorFlow: this project oneDNN off, caching (BFC) allocator (its scripts' setting), "
        "the other side oneDNN off, default allocator (the bench's environment)")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert common.tensorflow_setting() == "oneDNN on"


def test_machine_floor_arithmetic():
    machine = _bench_module("machine")
    # Adam reads parameter, gradient, m, v and writes parameter, m, v: 7 float32.
    assert machine.adam_bytes(333_000_000) == 28 * 333_000_000
    # 240 GFLOP at 120 GFLOP/s and 9.3 GB at 31 GB/s.
    assert machine.floor_seconds(240e9, 120.0, 9.3e9, 31.0) == pytest.approx(2.0 + 0.3)


def test_machine_counts_the_live_matmuls_of_a_graph():
    import tensorflow as tf

    machine = _bench_module("machine")
    weight = tf.Variable(tf.ones([4, 5]))

    @tf.function
    def step(x, y):
        unused = tf.matmul(x, weight, transpose_a=True)  # x^T w: pruned, not counted
        del unused
        weight.assign(tf.matmul(x[:4], weight))  # 2*4*4*5, kept by the update
        return tf.matmul(y, y, adjoint_a=True)  # [2, 6, 3]: 2 x 2*3*6*3

    graph = step.get_concrete_function(tf.ones([4, 4]), tf.ones([2, 6, 3])).graph
    assert machine.matmul_flops(graph) == 2 * 4 * 4 * 5 + 2 * 2 * 3 * 6 * 3


def test_a_floor_is_only_counted_where_the_graph_gives_it():
    import tensorflow as tf

    step_flops = _bench_module("bench_paper_models").step_flops
    weights = tf.Variable(tf.ones([4, 3]))

    def traced(function, *specs):
        return tf.function(function).get_concrete_function(*specs).graph

    plain = traced(lambda x: tf.matmul(x, weights), tf.TensorSpec([2, 4]))
    assert step_flops(plain) == 2 * 2 * 4 * 3
    looped = traced(lambda x: tf.while_loop(lambda i, y: i < 2, lambda i, y: (
        i + 1, tf.matmul(y, tf.ones([4, 4]))), (0, x))[1], tf.TensorSpec([2, 4]))
    assert step_flops(looped) is None
    unknown_rows = traced(lambda x: tf.matmul(x, weights), tf.TensorSpec([None, 4]))
    assert step_flops(unknown_rows) is None
    # A called function (a compiled one, as the MoE's mixture): counted when
    # it holds no matmul, refused when one is hidden in it (even a call deep).
    elementwise = tf.function(lambda y: tf.nn.softmax(y) * 2.0, jit_compile=True)
    called = traced(lambda x: elementwise(tf.matmul(x, weights)), tf.TensorSpec([2, 4]))
    assert step_flops(called) == 2 * 2 * 4 * 3
    inner = tf.function(lambda y: tf.matmul(y, tf.ones([3, 3])))
    outer = tf.function(lambda y: inner(y) + 1.0)
    hidden = traced(lambda x: outer(tf.matmul(x, weights)), tf.TensorSpec([2, 4]))
    assert step_flops(hidden) is None


def _vs_model_garden(tmp_path, instrument: str | None, *args):
    if instrument is not None:
        script = tmp_path / "compare.sh"
        script.write_text(instrument)
        (tmp_path / "mg" / "venv" / "bin").mkdir(parents=True)
        (tmp_path / "mg" / "venv" / "bin" / "python").touch()
        args = (f"--instrument={script}", f"--model_garden={tmp_path / 'mg'}", *args)
    return _run_bench("bench_vs_modelgarden.py", *args,
                      unset=("MODEL_GARDEN", "MODEL_GARDEN_COMPARE"))


def test_vs_model_garden_without_it_measures_this_project_alone(tmp_path):
    result = _vs_model_garden(tmp_path, None, "--batch_sizes=4", "--steps=5", "--first=3",
                              "--cluster=8", "--hidden=8", "--frames=4", "--mixtures=2",
                              "--floor_size=512", "--floor_megabytes=32")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no Model Garden instrument" in result.stderr
    assert re.search(r"^\| 4 \| [\d.]+ \| [\d.]+ \| [\d.]+ GB \| [\d.]+ \| [\d.]+x \|$",
                     result.stdout, re.M), result.stdout
    assert re.search(r"^floor: the traced step's matmul FLOPs at \d+ GFLOP/s \(float32, 512\^2\)",
                     result.stdout, re.M), result.stdout
    assert "ratio" not in result.stdout and "Model Garden s/step" not in result.stdout


def test_vs_model_garden_tabulates_each_sides_better_run(tmp_path):
    # A stand-in compare.sh: two runs a side, and the flags each side got.
    lines = ('echo "A1  median_s_per_step=0.3000  examples_per_s=106.7  maxrss_GB=3.70"\n'
             'echo "B1  median_s_per_step=0.2600  examples_per_s=123.1  maxrss_GB=3.20"\n'
             'echo "B2  median_s_per_step=0.2500  examples_per_s=128.0  maxrss_GB=3.10"\n'
             'echo "A2  median_s_per_step=0.2800  examples_per_s=114.3  maxrss_GB=3.80"\n'
             'echo "$MGEXTRA | $PEXTRA | $5" > "$(dirname "$0")/flags_$5"\n')
    result = _vs_model_garden(tmp_path, lines, "--batch_sizes=64", "--precision=bfloat16",
                              "--no_floor")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 64 | 0.280 | 0.250 | 1.12x | 3.70 GB | 3.10 GB | 0.84 |" in result.stdout
    flags = (tmp_path / "flags_64").read_text()
    assert "--pooling_method=max" in flags and "activation=relu6" in flags
    assert flags.count("--precision=bfloat16") == 2 and flags.strip().endswith("| 64")


def test_vs_model_garden_floor_cells():
    floor_cells = _bench_module("bench_vs_modelgarden").floor_cells
    assert floor_cells(0.5, 1.0, 0.75) == " 0.500 | 2.00x | 1.50x |"
    assert floor_cells(float("nan"), 1.0) == " n/a | n/a |"
    assert floor_cells(None, 1.0) == ""


def test_vs_model_garden_reports_a_failed_run(tmp_path):
    result = _vs_model_garden(tmp_path, "echo 'A1  median_s_per_step=nan'; exit 3\n",
                              "--batch_sizes=32", "--no_floor")
    assert result.returncode == 0
    assert "| 32 | failed: the instrument failed (3):" in result.stdout


@pytest.mark.parametrize("model, kernels", [("LstmModel", [(4, 16)]),
                                            ("GruModel", [(4, 8), (4, 4)])])
def test_recurrent_floor_counts_each_frames_matmuls_three_times(model, kernels):
    """bench_paper_models' FLOPs of a recurrent step: the graph's own matmuls
    (projections, head, their gradients) plus, for each of the two layers'
    loops, every frame's state @ kernel forward, for the state's gradient and
    for the kernel's: 3 x 2 x frames x batch x rows x columns per kernel."""
    import tensorflow as tf

    from youtube8m_willow.config import ModelConfig
    from youtube8m_willow.training.trainer import TrainConfig, Trainer

    bench, machine = _bench_module("bench_paper_models"), _bench_module("machine")
    frames, batch = 6, 3
    config = ModelConfig(model=model, num_classes=5, feature_names=("rgb",), feature_sizes=(7,),
                         frame_features=True, max_frames=frames, lstm_cells=4, lstm_layers=2,
                         gru_cells=4, gru_layers=2)
    trainer = Trainer(TrainConfig(train_dir="/unused", train_data_pattern="",
                                  batch_size=batch), config)
    graph = trainer.traced_step({"video_matrix": tf.zeros([batch, frames, 7]),
                                 "num_frames": tf.constant([6, 2, 0]),
                                 "labels": tf.zeros([batch, 5])}).graph
    loops = 2 * sum(3 * 2 * frames * batch * rows * columns for rows, columns in kernels)
    assert bench.step_flops(graph) == machine.matmul_flops(graph) + loops
