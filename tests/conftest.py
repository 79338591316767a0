"""Shared test helpers: where the reference material is, and running the scripts."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import forked
from youtube8m_willow.startup import BFC_ENV, BFC_LIMIT_ENV, use_caching_allocator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
use_caching_allocator()  # the scripts' TensorFlow, in the workers and all they start
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `-n N` the workers already share the cores: one thread inside
    # each op (in a worker and in the scripts it starts) instead of N, which
    # the machine would only time-slice (about 10% faster). The inter-op pool
    # keeps its size: collective ops block in it.
    for _pool in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_pool, "1")

REPO = Path(__file__).resolve().parents[1]


def _settle_the_heap() -> None:
    """TensorFlow and Keras imported once, their objects moved out of the
    garbage collector's sight (``import_tensorflow_quietly`` freezes them),
    and full collections made rarer: a worker's traced graphs otherwise cost
    it a half-second full collection every few tests, and
    ``keras.backend.clear_session`` (after every in-process script run)
    another one each time."""
    import gc

    from youtube8m_willow.startup import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras  # noqa: F401  (where TensorFlow was imported before, unfrozen)
    gc.freeze()
    gc.set_threshold(10000, 50, 50)


def pytest_configure(config):
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        _settle_the_heap()  # in each process that runs tests, not in -n's controller

# tests/backends runs in its own processes, one per Keras backend
# (tests/test_backends.py), never in this TensorFlow one.
collect_ignore = ["backends"]
SHARED = REPO.parent / "shared"


# The unit tier (make test-fast): modules of quick checks of the library
# itself. Their few tests that run a script or train are marked slow where
# they are; every test of the other modules (training runs, the scripts and
# the original's fixtures end to end, other backends, the demo) is slow.
UNIT_MODULES = {"test_checkpoints", "test_ensemble", "test_segment_map", "test_vocabulary",
                "test_portable_weights", "test_frame_level_models", "test_readers",
                "test_metrics", "test_pooling_layers", "test_recurrent", "test_resumable_input",
                "test_synthetic", "test_tf1_optimizers", "test_training",
                "test_segment_submission", "test_import_graph", "test_flags", "test_flag_help",
                "test_progress", "test_nextvlad", "test_bfloat16_adam", "test_l2_gradient",
                "test_softmax_pool", "test_penalized_adam", "test_vlad_descriptor",
                "test_frame_streams", "test_dequantize_frames", "test_moe_mixture"}


# The modules of the longest tests, longest first. They are collected first
# so that, with -n 2 --dist worksteal, no long test starts last while the
# other worker has nothing left to do.
LONGEST_FIRST = ["test_real_data", "test_demo", "test_backends", "test_willow_recipe",
                 "test_distributed", "test_preemption", "test_bench_scripts",
                 "test_quiet_startup", "test_scripts_robustness"]


def _schedule_rank(item) -> int:
    stem = item.path.stem
    return LONGEST_FIRST.index(stem) if stem in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    for item in items:  # the doctests of the package are unit checks
        if item.path.parent.name == "tests" and item.path.stem not in UNIT_MODULES:
            item.add_marker(pytest.mark.slow)
    items.sort(key=_schedule_rank)  # stable: each module keeps its order


# Set to 1 to skip (not fail) the tests whose reference material under
# ../shared is absent, e.g. in a checkout without it. CI leaves it unset.
ALLOW_MISSING_SHARED = os.environ.get("YT8M_ALLOW_MISSING_SHARED", "") not in ("", "0")


def shared_path(*parts: str) -> Path:
    """A path under ../shared; a missing one fails the test (the fixtures are
    part of CI), unless YT8M_ALLOW_MISSING_SHARED=1."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"reference material not present: {path}"
        if ALLOW_MISSING_SHARED:
            pytest.skip(message)
        pytest.fail(message + " (set YT8M_ALLOW_MISSING_SHARED=1 to skip instead)")
    return path


def run_script(script: str, *args: str, check: bool = True, timeout: float = 900,
               env: dict | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """Runs a script (train.py, eval.py, inference.py, ...) as a user would: its
    ``main`` in this process (``run_in_process``: the same flags, log lines,
    one-line errors and exit codes, without a new TensorFlow start-up), or
    in a new process when ``process`` is set, an ``env`` is given or the
    script is another one (start-up output, signals, environment)."""
    if not process and env is None and script in _SCRIPT_FLAGS:
        return run_in_process(script, *args, check=check)
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = forked.run([sys.executable, str(REPO / script), *args], capture_output=True,
                        text=True, timeout=timeout, env=full_env, cwd=str(REPO))
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


# What TensorFlow prints at start-up and export unless told not to.
TF_CHATTER = ("absl::InitializeLog", "cpu_feature_guard", "rebuild TensorFlow", "oneDNN",
              "TF_ENABLE_ONEDNN_OPTS", "cuda", "CUDA", "signature_serialization",
              "will be renamed to", "Sharding callback", "Assets written", "fingerprint")


SUITE_ENV = ("TF_CPP_MIN_LOG_LEVEL", BFC_ENV, BFC_LIMIT_ENV, "YT8M_VERBOSE_TF")


def user_env(**extra: str) -> dict:
    """The environment of a user who set nothing: none of the variables this
    suite sets for itself (TF's log level and allocator) and no
    YT8M_VERBOSE_TF."""
    env = {k: v for k, v in os.environ.items() if k not in SUITE_ENV}
    return {**env, **extra}


def chatter(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are TensorFlow's start-up or export chatter."""
    return [line for line in stderr.splitlines() if any(mark in line for mark in TF_CHATTER)]


def read_submission(path) -> dict[str, list[tuple[int, float]]]:
    """Parses a submission CSV into {video_id: [(label, score), ...]}."""
    lines = Path(path).read_text().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs"
    rows = {}
    for line in lines[1:]:
        video_id, pairs = line.split(",", 1)
        values = pairs.split()
        assert video_id not in rows, f"duplicate video {video_id}"
        rows[video_id] = [(int(values[i]), float(values[i + 1])) for i in range(0, len(values), 2)]
    return rows


# train.py's line for a training step, the original's (a log file keeps one
# for every step; on a terminal only the last step's and each checkpoint's).
STEP_LINE = re.compile(r"training step (\d+) \| Loss: [\d.]+ Examples/sec: [\d.]+ \| "
                       r"Hit@1: [\d.]+ PERR: [\d.]+ GAP: [\d.]+ \| Total loss: [\d.]+")
FED_VIDEOS = re.compile(r"global step (\d+) fed videos (\S+)")  # train.py --verbosity=1


def fed_videos(logs) -> dict[int, str]:
    """Global step -> the videos of its batch (comma-separated), from the
    debug lines of train.py runs; a step done again after a restart must have
    been fed the same videos."""
    fed = {}
    for log in logs:
        for step, ids in FED_VIDEOS.findall(log):
            assert fed.setdefault(int(step), ids) == ids, f"step {step} fed other videos"
    return fed


# Each script's flag definer (it also sets that script's own defaults).
_SCRIPT_FLAGS = {"train.py": "define_train_flags", "eval.py": "define_eval_flags",
                 "inference.py": "define_inference_flags",
                 "segment_eval_inference.py": "define_segment_map_flags",
                 "file_averaging.py": "define_averaging_flags",
                 "youtube8m_willow/portable/convert.py": "define_convert_flags"}


def run_in_process(script: str, *args: str, check: bool = True
                   ) -> subprocess.CompletedProcess:
    """Runs a script's ``main`` (train.py, eval.py, inference.py,
    segment_eval_inference.py, file_averaging.py, the weights converter
    ``youtube8m_willow/portable/convert.py``) in this process, as
    ``run_script`` runs it in a new one, for the tests whose behaviour is not
    the process's own (exit codes of signals, start-up output and the
    README's command lines keep real processes). The flags are parsed from
    ``args`` and restored afterwards; the result's ``stderr`` holds every log
    line and the one-line error, its ``returncode`` what the script would
    have exited with (0, 1 for a user error, 2 for a bad flag)."""
    import contextlib
    import importlib
    import io
    import logging

    import keras
    from absl import flags
    from absl import logging as absl_logging
    from absl.testing import flagsaver

    from youtube8m_willow import flags as yt_flags

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(absl_logging.PythonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    code = 0
    try:
        with flagsaver.flagsaver(), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            flags.FLAGS.unparse_flags()
            getattr(yt_flags, _SCRIPT_FLAGS[script])()
            try:
                argv = flags.FLAGS([script, *args])  # the script and its positional arguments
            except flags.Error as error:
                print(f"FATAL Flags parsing error: {error}", file=sys.stderr)
                code = 2
            else:
                module.main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        root.removeHandler(handler)
        keras.backend.clear_session(free_memory=False)  # see _settle_the_heap
    result = subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{script} failed ({code}):\n{result.stderr[-4000:]}")
    return result


def run_recipe(*bash_args, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """Runs ``bash *bash_args`` (a recipe and its arguments, or ``-c`` and
    a README block) in the repository, with this interpreter as the
    recipes' PYTHON (``env`` adds or overrides variables: STAGES, ...)."""
    full_env = {**os.environ, "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    return subprocess.run(["bash", *map(str, bash_args)], env=full_env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


# Stands in for a recipe's interpreter: records each command line the recipe
# runs (script and arguments, one JSON list per line) instead of running it.
_RECORDER = """#!/bin/sh
exec "{python}" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "{record}"
"""


def recorded_recipe_lines(tmp_path: Path, *bash_args, **env: str) -> list[list[str]]:
    """The python command lines that ``bash *bash_args`` runs, as bash
    expands them (``[script, arg, ...]``, the script's path as the recipe
    gives it); the recipe's other commands (mkdir, cd) run for real."""
    import json

    record = tmp_path / "recorded.jsonl"
    recorder = tmp_path / "python"
    recorder.write_text(_RECORDER.format(python=sys.executable, record=record))
    recorder.chmod(0o755)
    result = run_recipe(*bash_args, PYTHON=str(recorder), **env)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in record.read_text().splitlines()]


_TERMINAL_CODE = re.compile(r"\x1b\[(\??[0-9;]*)([A-Za-z])")


def screen_lines(output: str) -> list[str]:
    """The lines a terminal shows after ``output``: colours and cursor
    hiding dropped, carriage returns, erased lines (ESC[2K) and cursor-ups
    (ESC[nA: a transient progress bar removing itself) applied."""
    lines, row, column = [""], 0, 0
    position = 0
    for match in list(_TERMINAL_CODE.finditer(output)) + [None]:
        end = match.start() if match else len(output)
        for char in output[position:end]:
            if char == "\n":
                row, column = row + 1, 0
                lines.extend([""] * (row + 1 - len(lines)))
            elif char == "\r":
                column = 0
            else:
                line = lines[row].ljust(column)
                lines[row] = line[:column] + char + line[column + 1:]
                column += 1
        if match is None:
            break
        position = match.end()
        argument, command = match.groups()
        if command == "K":
            lines[row] = ""
        elif command == "A":
            row = max(0, row - int(argument or 1))
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.rstrip() for line in lines]


def run_in_a_terminal(command: list[str], rows: int = 40, columns: int = 200,
                      timeout: float = 1200) -> tuple[int, str]:
    """Runs ``command`` with its stdout and stderr on a pseudo-terminal of
    ``rows`` x ``columns``; returns its exit code and everything it wrote.
    The terminal stays open here until the command has exited and all its
    output is read (a terminal whose last writer closes it may drop what
    was not yet read)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    from youtube8m_willow.progress import PROGRESS_ENV

    env = user_env(TERM="xterm")
    env.pop(PROGRESS_ENV, None)  # the terminal decides
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal,
                               cwd=REPO, env=env)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                chunks.append(os.read(controller, 1 << 16))
            elif process.poll() is not None:  # exited, and nothing is left to read
                break
            elif time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{command} did not finish in {timeout} s on the terminal")
    finally:
        os.close(terminal)
        os.close(controller)
    return process.wait(), b"".join(chunks).decode("utf-8", "replace")


def peak_tensor_bytes(function, *args) -> int:
    """The CPU allocator's peak above what is held before, over one call of
    ``function`` on the CPU (the allocator of TensorFlow's oneDNN build keeps
    the statistics; the project's CPU install is that build)."""
    import tensorflow as tf

    with tf.device("CPU:0"):
        function(*args)  # traced and warmed
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        function(*args)
        return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before


def relative_error(expected, actual) -> float:
    """The largest absolute difference over the largest magnitude of ``expected``."""
    import numpy as np

    expected, actual = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    return np.max(np.abs(expected - actual)) / np.max(np.abs(expected))


def traced_op_types(layer, inputs, training, jit_compile=False) -> set:
    """The op types of ``layer``'s call on ``inputs`` traced in a graph."""
    import tensorflow as tf

    function = tf.function(lambda x: layer(x, training=training), jit_compile=jit_compile)
    return {op.type for op in function.get_concrete_function(inputs).graph.get_operations()}


def train_call_through(layer, frames, kernel, entry: str, kernel_calls: int,
                       monkeypatch) -> list:
    """``[output, *weight gradients]`` of one training call of ``layer`` on
    ``frames`` (loss: the output weighted by its column index), through the
    native module ``kernel``'s ``entry``, which it must call ``kernel_calls``
    times, or with none, the module unavailable: TensorFlow's ops."""
    import tensorflow as tf

    calls = []
    with monkeypatch.context() as patch:
        if kernel_calls:
            original = getattr(kernel, entry)
            patch.setattr(kernel, entry, lambda *a, **k: calls.append(1) or original(*a, **k))
        else:
            patch.setattr(kernel, "available", lambda: False)
        with tf.GradientTape() as tape:
            out = layer(frames, training=True)
            loss = tf.reduce_sum(out * tf.range(out.shape[1], dtype=tf.float32))
        gradients = tape.gradient(loss, layer.trainable_weights)
    assert len(calls) == kernel_calls
    return [out, *gradients]


def small_moe_batch() -> dict:
    """One fixed batch for ``small_moe_config``'s model: 16 videos of 40
    features, 10 classes."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(3)
    return {"video_matrix": tf.constant(rng.random((16, 40)).astype(np.float32)),
            "num_frames": tf.ones([16], tf.int32),
            "labels": tf.constant((rng.random((16, 10)) < 0.3).astype(np.float32))}


def small_moe_config(moe_l2: float = 0.0):
    """A small video-level MoE (40 features, 10 classes, 2 mixtures: experts
    [40, 20], gates [40, 30])."""
    from youtube8m_willow.config import ModelConfig

    return ModelConfig(model="MoeModel", num_classes=10, feature_sizes=(40,),
                       feature_names=("mean_rgb",), moe_num_mixtures=2, moe_l2=moe_l2)


def train_small_moe(monkeypatch, large_gradient_elements: int, steps: int = 3,
                    moe_l2: float = 0.0, **train_config) -> list:
    """The weights of ``small_moe_config(moe_l2)``'s model (by default no L2
    term, which would add to the matmul gradients) after ``steps`` steps on
    ``small_moe_batch``, with ``updates.LARGE_GRADIENT_ELEMENTS`` set to
    ``large_gradient_elements`` (which weights take the large-gradient
    paths); seed 5, clipping at 0.05 unless ``train_config`` says otherwise."""
    from youtube8m_willow.training import updates
    from youtube8m_willow.training.run import Trainer
    from youtube8m_willow.training.train_config import TrainConfig

    batch = small_moe_batch()
    monkeypatch.setattr(updates, "LARGE_GRADIENT_ELEMENTS", large_gradient_elements)
    train_config = {"clip_gradient_norm": 0.05, **train_config}
    trainer = Trainer(TrainConfig(train_dir="unused", train_data_pattern="", seed=5,
                                  **train_config), small_moe_config(moe_l2))
    for _ in range(steps):
        trainer.step(batch)
    return [v.numpy() for v in trainer.model.trainable_variables]


def keras_adam_state(rng, shape):
    """A float32 Keras variable of standard normals and a built Keras Adam
    for it (learning rate 0.01, TF1's betas and epsilon)."""
    import keras
    import numpy as np

    variable = keras.Variable(rng.standard_normal(shape).astype(np.float32))
    optimizer = keras.optimizers.Adam(0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    optimizer.build([variable])
    return variable, optimizer
