"""What the benchmarks share: the machine they ran on, peak memory, running
one measurement in a fresh process (so its peak memory is its own), the CPU's
features, the machine's matmul rates (the compute floor of the models), and
for the side-by-side benches synthetic frame records, one timed training
process and its seconds per step from the log.

Importing it sets the process's TensorFlow start-up environment as the
scripts do (``startup.use_caching_allocator``), keeping the environment it
found in ``STARTED_ENV`` for the external instruments."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULT_PREFIX = "RESULT "
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # the package, also without PYTHONPATH

from youtube8m_willow import startup  # noqa: E402

# The environment this bench was started in: what an external instrument's
# original runs under (TensorFlow's defaults). The benches themselves measure
# the project as its scripts run it (``startup.use_caching_allocator``).
STARTED_ENV = dict(os.environ)
startup.use_caching_allocator()


def instrument_env(**extra: str) -> dict[str, str]:
    """An external instrument's environment: the bench's own at its start
    (so an original gets TensorFlow's defaults), with ``extra``; the project
    side it runs sets its own start-up environment, as the scripts do."""
    return {**STARTED_ENV, **extra}


def tensorflow_setting(env=None) -> str:
    """oneDNN and the CPU allocator of a TensorFlow started with ``env``
    (this process's environment by default)."""
    env = os.environ if env is None else env
    if startup.onednn_on(env):
        return "oneDNN on"
    bfc = startup.tf_env_bool(startup.BFC_ENV, env)
    return f"oneDNN off, {'caching (BFC)' if bfc else 'default'} allocator"


def instrument_setting() -> str:
    """The line an instrument bench prints: TensorFlow's setting on each side."""
    return (f"TensorFlow: this project {tensorflow_setting()} (its scripts' setting), "
            f"the other side {tensorflow_setting(STARTED_ENV)} (the bench's environment)")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# The CPU features that decide the matmul kernels: AVX2, AVX-512, native
# bfloat16 (AVX-512 BF16 on Zen 4/5 and Cooper Lake, AMX on Sapphire Rapids).
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
NATIVE_BFLOAT16 = ("avx512_bf16", "amx_bf16")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's name elsewhere)."""
    cpu = re.search(r"model name\s*:\s*(.+)", _read("/proc/cpuinfo") if cpuinfo is None
                    else cpuinfo)
    return cpu.group(1).strip() if cpu else (platform.processor() or platform.machine())


cpu_flags = startup.cpu_flags


def machine() -> str:
    """CPU model, cores, memory, TensorFlow/Keras versions, oneDNN setting."""
    import keras
    import tensorflow as tf

    memory = re.search(r"MemTotal:\s+(\d+) kB", _read("/proc/meminfo"))
    flags = cpu_flags()
    extensions = [name for name in ("avx512f", "avx512_bf16", "amx_bf16") if name in flags]
    total = f"{int(memory.group(1)) / 2**20:.0f} GiB memory" if memory else "memory unknown"
    return (f"{cpu_model()}, {os.cpu_count()} cores, {total}, "
            f"{'/'.join(extensions) or 'no AVX-512'}; "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {tensorflow_setting()}, "
            f"Python {platform.python_version()}")


# eval.py's line for an evaluated checkpoint: its step and GAP.
EVAL_LINE = re.compile(r"epoch/eval number (\d+) \| .* GAP: ([\d.]+)")


def run_script(script: str, *args: str) -> str:
    """Runs one of the project's scripts (train.py, eval.py, ...) as a user
    would, in its own process; returns its log (stderr), or raises with its
    end if it fails."""
    result = subprocess.run([sys.executable, str(REPO_ROOT / script), *args], text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stderr


def peak_memory_gb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss elsewhere)."""
    match = re.search(r"VmHWM:\s+(\d+) kB", _read("/proc/self/status"))
    if match:
        return int(match.group(1)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_tensor_memory() -> None:
    """Restarts the CPU allocator's peak (where it keeps statistics: the
    caching ones do, oneDNN's and TensorFlow's BFC)."""
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
    except ValueError:
        pass


def tensor_memory_gb() -> dict:
    """``{"tensor_peak_gb", "tensor_held_gb"}``: the most memory the timed
    steps' tensors took at once and what stays allocated between steps
    (weights, optimizer slots, the batch); empty where the allocator keeps
    none. The process's peak memory adds the runtime and the
    allocator's free space that was once in use."""
    import tensorflow as tf

    try:
        info = tf.config.experimental.get_memory_info("CPU:0")
    except ValueError:
        return {}
    if not info["peak"]:  # an allocator that counts nothing (TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1)
        return {}
    return {"tensor_peak_gb": info["peak"] / 2**30, "tensor_held_gb": info["current"] / 2**30}


def run_child(script: str, args: list[str], timeout: float = 3600) -> dict:
    """Runs ``script args`` in a new process; returns the dict it printed
    after ``RESULT_PREFIX`` (its stderr passes through)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    result = subprocess.run([sys.executable, script, *args], stdout=subprocess.PIPE, text=True,
                            timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {' '.join(args)} failed ({result.returncode})")
    line = next(l for l in result.stdout.splitlines() if l.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX):])


def print_result(result: dict) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def measure_models(script: str, model: str, models, argv: list[str], measure, report) -> None:
    """A bench's ``--model``: one model measured here (its result printed for
    a parent process, then its report line), or with ``all`` each of
    ``models`` in a process of its own (a clean peak memory each) with
    ``argv``'s other flags, one report line each."""
    if model != "all":
        result = measure()
        print_result(result)
        print(report(result))
        return
    forwarded = [a for a in argv if not a.startswith("--model")]
    for name in models:
        print(report(run_child(script, [f"--model={name}", *forwarded])), flush=True)


def median_ms(call, repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``call`` (a compiled
    function whose result has ``.numpy()``), in ms, after one untimed call
    that traces and warms it."""
    call().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call().numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def matmul_rate_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best float32 matmul rate of this machine (GFLOP/s) on square matrices."""
    return matmul_gflops(size, size, size, repeats=repeats)


def matmul_gflops(m: int, k: int, n: int, dtype: str = "float32", repeats: int = 5) -> float:
    """Best rate (GFLOP/s) of an ``[m, k] x [k, n]`` matmul in ``dtype``,
    inside a ``tf.function``, after one untimed call."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal([m, k]), dtype)
    b = tf.cast(tf.random.normal([k, n]), dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
    matmul()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def reference_python(reference: Path) -> Path:
    """The interpreter of an original code base set up in ``reference``."""
    return reference / "venv" / "bin" / "python"


def reference_set_up(reference_dir: str, code: str) -> Path | None:
    """``reference_dir`` as a Path where an original is set up to run (its
    ``code`` file, e.g. ``willow/train.py``, and ``venv/``); None elsewhere."""
    reference = Path(reference_dir) if reference_dir else None
    if reference is None or not (reference / code).is_file() \
            or not reference_python(reference).is_file():
        return None
    return reference


# A training step's log line with its absl timestamp (the project's train.py,
# the originals' and the fork's alike).
STEP_LINE = re.compile(r"(\d\d):(\d\d):(\d\d\.\d+).*training step[ =:]*(\d+)")


def write_frame_records(folder: Path, videos: int) -> str:
    """Synthetic 2018-style frame records (key ``id``, 3862 classes, 100 to
    300 frames), written by the project's generator in this process (its
    command line, without a process start of its own); returns their glob."""
    from youtube8m_willow.data import synthetic  # imports TensorFlow: only where records are made

    with contextlib.redirect_stdout(io.StringIO()):  # the generator lists what it wrote
        synthetic.main([f"--out_dir={folder}", f"--num_videos={videos}", "--num_eval_videos=1",
                        "--num_classes=3862", "--id_key=id", "--max_frames=300",
                        "--min_frames=100", "--skip_video_level", "--prefix=train"])
    return str(folder / "frame" / "train*.tfrecord")


def seconds_per_step(log: str, first: int, last: int) -> float:
    """Median interval between the logged steps ``first..last``."""
    stamps = {}
    for line in log.splitlines():
        match = STEP_LINE.search(line)
        if match:
            hours, minutes, seconds, step = match.groups()
            stamps[int(step)] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    gaps = [stamps[s] - stamps[s - 1] for s in range(first, last + 1)
            if s in stamps and s - 1 in stamps]
    return statistics.median(gaps) if gaps else float("nan")


def run_training(command: list[str], cwd: Path, env: dict,
                 timeout: float) -> tuple[str, int, float]:
    """Runs one training process (killed after ``timeout`` seconds); returns
    its log, exit code and max RSS (GB)."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        timer = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGKILL))
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        return log.read(), process.returncode, usage.ru_maxrss / 2**20
