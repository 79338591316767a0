"""TensorFlow's start-up and export chatter is hidden from the scripts'
stderr by default; YT8M_VERBOSE_TF=1 brings it back. The scripts' TensorFlow
allocates from a caching CPU allocator whatever the CPU. At exit their
garbage collector is frozen, after every other exit handler, and what they
wrote is whole. glibc's mmap threshold stays where start-up fixes it."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO, chatter, user_env
from test_tensorboard import read_scalars
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.startup import (BFC_ENV, BFC_LIMIT_ENV, GLIBC_TUNABLES_ENV,
                                      MMAP_THRESHOLD_BYTES, MMAP_THRESHOLD_ENV,
                                      MMAP_THRESHOLD_TUNABLE, ONEDNN_ENV,
                                      bound_malloc_mmap_threshold, loaded_out_of_collection,
                                      modules_hidden, onednn_on, runs_on_glibc,
                                      use_caching_allocator)

MODEL = ["--model=LogisticModel", "--feature_names=mean_rgb,mean_audio", "--feature_sizes=16,8",
         "--num_classes=6"]


UNUSED = ("jax", "pandas")  # what TensorFlow and Keras import if installed
# Runs the script as `python script args` does, then says on its last lines of
# stderr whether its CPU allocator is a caching one (those keep statistics),
# which of UNUSED it imported and, after the script's own exit handlers,
# whether its garbage collector is on and holds frozen objects.
LOADED_PROBE = f"""
import atexit, gc, runpy, sys
atexit.register(lambda: print("collector on:", gc.isenabled(), "frozen:",
                              gc.get_freeze_count() > 0, file=sys.stderr))  # runs last
atexit.register(lambda: print("imported:", *sorted({set(UNUSED)} & set(sys.modules)),
                              file=sys.stderr))
def allocator():
    import tensorflow as tf
    # A large tensor: oneDNN's allocator passes small ones to malloc and
    # counts only those it caches (a tiny model's run leaves its peak at 0).
    tf.zeros([1 << 22]).numpy()
    try:
        caching = tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0
    except ValueError:  # "Allocator stats not available": posix_memalign per tensor
        caching = False
    print("caching allocator:", caching, file=sys.stderr)
atexit.register(allocator)  # runs first
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run(script: str, *args: str, probe: bool = False, **env: str) -> str:
    """Runs a script in a user's environment; returns its stderr (with
    ``probe``, through ``LOADED_PROBE``)."""
    command = [sys.executable, *(["-c", LOADED_PROBE] if probe else []), str(REPO / script)]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600,
                            env=user_env(**env), cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
    root = tmp_path_factory.mktemp("quiet")
    return write_synthetic_dataset(str(root), num_videos=32, num_classes=6, num_shards=1,
                                   frame_level=False, feature_sizes=(16, 8), max_frames=4,
                                   min_frames=1)["video"]


def train(train_dir, pattern, probe=False, **env) -> str:
    # The final SavedModel export is where TF logs its signature renaming.
    return run("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
               "--batch_size=16", "--max_steps=2", *MODEL, probe=probe, **env)


def test_scripts_start_quietly_and_leave_out_unused_imports(pattern, tmp_path):
    """No start-up chatter; and JAX and pandas, installed here (the test
    suite's requirements), are not imported: TensorFlow and Keras would
    import them for features the scripts never use (a second of start-up)."""
    assert all(importlib.util.find_spec(name) for name in UNUSED)
    stderr = train(tmp_path, pattern, probe=True)
    assert "training step 2 " in stderr and "training stopped" in stderr
    # Large tensors from a caching allocator on every CPU, also where TF's
    # default is posix_memalign per tensor (startup.use_caching_allocator);
    # at exit, the collector frozen (startup.skip_final_collection).
    assert chatter(stderr) == [] and stderr.splitlines()[-3:] == [
        "caching allocator: True", "imported:", FROZEN]
    stderr = run("eval.py", f"--train_dir={tmp_path}", f"--eval_data_pattern={pattern}",
                 "--run_once=True", probe=True)
    assert "epoch/eval number 2 " in stderr and chatter(stderr) == []
    assert stderr.splitlines()[-3:] == ["caching allocator: True", "imported:", FROZEN]
    stderr = run("inference.py", f"--train_dir={tmp_path}", f"--input_data_pattern={pattern}",
                 f"--output_file={tmp_path / 'out.csv'}", probe=True)
    assert "wrote 32 videos" in stderr and chatter(stderr) == []
    assert stderr.splitlines()[-3:] == ["caching allocator: True", "imported:", FROZEN]
    # What these processes wrote is whole after an exit without the final
    # collections: the event files' last records, the checkpoint eval.py
    # read, every video in the CSV.
    scalars = read_scalars(tmp_path)  # eval.py writes into the train_dir, as the original
    assert sorted(step for step, _ in scalars["model/total_loss"]) == [1, 2]
    assert [step for step, _ in scalars["Epoch/Eval_Avg_Hit@1"]] == [2]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 32


FROZEN = "collector on: False frozen: True"


# Exit handlers around startup.skip_final_collection, each saying whether the
# collector is on when it runs: "first" registered before it (runs after
# it), "later" after it, and the function called again after "later".
EXIT_ORDER_PROBE = """
import atexit, gc, sys
from youtube8m_willow import startup
say = lambda name: lambda: print(name, gc.isenabled(), file=sys.stderr)
atexit.register(say("first"))
startup.skip_final_collection()
atexit.register(say("later"))
startup.skip_final_collection()
print("running", gc.isenabled(), file=sys.stderr)
"""


def test_the_collector_is_frozen_once_after_the_later_exit_handlers():
    result = subprocess.run([sys.executable, "-c", EXIT_ORDER_PROBE], capture_output=True,
                            text=True, timeout=120, cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["running True", "later True", "first False"]


def test_what_is_loaded_is_out_of_the_collectors_walks():
    """Inside ``loaded_out_of_collection`` the collector is off; after it,
    what the block made is frozen (no collection walks it) and the collector
    is as it was. A block that fails freezes nothing."""
    import gc

    gc.collect()  # the garbage pending in this process is not frozen with the block's
    made = []  # all kept alive: a frozen object that is freed leaves the count
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            with loaded_out_of_collection():
                assert not gc.isenabled()
                made.append([])
            assert gc.isenabled() == enabled
            assert not any(tracked is made[-1] for tracked in gc.get_objects())
        finally:
            gc.enable()
    with pytest.raises(ImportError), loaded_out_of_collection():
        made.append([])
        raise ImportError("no such module")
    assert gc.isenabled() and any(tracked is made[-1] for tracked in gc.get_objects())


STARTED_PROBE = """
import gc, sys
from youtube8m_willow import startup
before = sum(generation["collections"] for generation in gc.get_stats())
startup.start_tool()
import tensorflow
collections = sum(generation["collections"] for generation in gc.get_stats()) - before
print(gc.isenabled(), collections, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_a_tool_starts_with_tensorflow_out_of_the_collectors_walks():
    """The start-up imports TensorFlow and Keras without a collection (there
    are hundreds with the collector on), then freezes their objects (half a
    million); the collector is on, and tracks only the few made since."""
    result = subprocess.run([sys.executable, "-c", STARTED_PROBE], capture_output=True,
                            text=True, timeout=300, cwd=str(REPO), env=user_env())
    assert result.returncode == 0, result.stderr[-3000:]
    enabled, collections, frozen, tracked = result.stdout.splitlines()[-1].split()
    assert enabled == "True" and int(collections) == 0
    assert int(frozen) > 100_000 and int(tracked) < int(frozen) // 10


def test_verbose_switch_brings_tensorflow_messages_back(pattern, tmp_path):
    stderr = train(tmp_path, pattern, YT8M_VERBOSE_TF="1")
    lines = chatter(stderr)
    assert any("Assets written" in line for line in lines), stderr[-3000:]  # TF's Python INFO
    # TF's C++ log level is no longer raised: its INFO lines (I0000 ... file.cc:N]) show.
    assert any(line.startswith("I") and ".cc:" in line for line in stderr.splitlines()), (
        stderr[-3000:])


def test_an_explicit_tf_log_level_is_respected(pattern, tmp_path):
    stderr = train(tmp_path, pattern, TF_CPP_MIN_LOG_LEVEL="0")
    assert any(line.startswith("I") and ".cc:" in line for line in stderr.splitlines())


AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"


@pytest.fixture
def scratch_env(monkeypatch):
    """os.environ as a user who set none of the variables start-up sets,
    restored after the test."""
    for name in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND", ONEDNN_ENV, BFC_ENV, BFC_LIMIT_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def memory_mib() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20


@pytest.mark.parametrize("cpuinfo, onednn", [(AVX2, None), (AVX2, "0"), (AVX512_BF16, "0"),
                                             (AVX512_BF16, "FALSE"), (AVX2, "yes")])
def test_the_caching_allocator_is_turned_on_where_oneDNN_is_off(scratch_env, cpuinfo, onednn):
    """Off by TF's policy for the CPU, by the user, or ("yes": not a bool to
    TF, which then keeps its policy) by the policy again."""
    if onednn:
        scratch_env.setenv(ONEDNN_ENV, onednn)
    use_caching_allocator(cpuinfo)
    assert os.environ[BFC_ENV] == "true"
    assert os.environ[BFC_LIMIT_ENV] == str(max(memory_mib(), 1 << 16))  # TF's own: 64 GB


@pytest.mark.parametrize("cpuinfo, onednn", [(AVX512_BF16, None), (AVX512_BF16, "yes"),
                                             (AVX2, "1"), (AVX2, "TRUE")])
def test_oneDNN_brings_its_own_caching_allocator(scratch_env, cpuinfo, onednn):
    if onednn:
        scratch_env.setenv(ONEDNN_ENV, onednn)
    assert onednn_on(cpuinfo=cpuinfo)
    use_caching_allocator(cpuinfo)
    assert BFC_ENV not in os.environ and BFC_LIMIT_ENV not in os.environ


def test_the_users_allocator_settings_win(scratch_env):
    scratch_env.setenv(BFC_ENV, "false")
    use_caching_allocator(AVX2)
    assert os.environ[BFC_ENV] == "false" and BFC_LIMIT_ENV not in os.environ
    scratch_env.delenv(BFC_ENV)
    scratch_env.setenv(BFC_LIMIT_ENV, "1024")
    use_caching_allocator(AVX2)
    assert os.environ[BFC_ENV] == "true" and os.environ[BFC_LIMIT_ENV] == "1024"


def test_off_linux_x86_start_up_leaves_the_allocator_to_tensorflow(scratch_env):
    """On aarch64 or Windows TF's oneDNN policy is another one."""
    scratch_env.setattr(platform, "machine", lambda: "aarch64")
    use_caching_allocator(AVX2)
    assert BFC_ENV not in os.environ and BFC_LIMIT_ENV not in os.environ


def test_a_script_started_with_the_default_allocator_keeps_it(pattern, tmp_path):
    stderr = train(tmp_path, pattern, probe=True, TF_ENABLE_ONEDNN_OPTS="0",
                   TF_CPU_ALLOCATOR_USE_BFC="false")
    assert "training stopped" in stderr and stderr.splitlines()[-3] == "caching allocator: False"


# Frees one mapped block just over the threshold, then says whether a second
# one of the same size is mapped too (glibc's mallinfo2, or mallinfo before
# glibc 2.33: the count of mapped blocks held), after the scripts' start-up
# (argv[1] "scripts") or none.
MALLOC_PROBE = f"""
import ctypes, sys
from youtube8m_willow import startup
if sys.argv[1] == "scripts":
    startup.prepare_environment()
libc = ctypes.CDLL(None)
wide = hasattr(libc, "mallinfo2")
class Mallinfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t if wide else ctypes.c_int) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
mallinfo = libc.mallinfo2 if wide else libc.mallinfo
mallinfo.restype = Mallinfo
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = {MMAP_THRESHOLD_BYTES} + (1 << 20)
libc.free(libc.malloc(size))
before = mallinfo().hblks
block = libc.malloc(size)
print("mapped:", mallinfo().hblks - before == 1)
libc.free(block)
"""


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not runs_on_glibc(),
                           reason="glibc's malloc (the probe reads its mallinfo)")


def second_block_mapped(start: str, **env: str) -> bool:
    """The probe's answer in a fresh process whose malloc settings are ``env``'s
    alone (the runner's MALLOC_* variables, tunables and preloads left out)."""
    clean = {k: v for k, v in user_env().items()
             if not k.startswith("MALLOC_") and k not in (GLIBC_TUNABLES_ENV, "LD_PRELOAD")}
    result = subprocess.run([sys.executable, "-c", MALLOC_PROBE, start], capture_output=True,
                            text=True, cwd=REPO, env={**clean, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return {"mapped: True": True, "mapped: False": False}[result.stdout.strip()]


@glibc
def test_start_up_keeps_large_host_blocks_mapped_for_themselves():
    """glibc alone raises its threshold when a mapped block is freed, and the
    next block of that size comes from its heap; after the scripts'
    start-up it is mapped again, also where GLIBC_TUNABLES sets something
    else."""
    assert not second_block_mapped("none")
    assert second_block_mapped("scripts")
    assert second_block_mapped("scripts", **{GLIBC_TUNABLES_ENV: "glibc.malloc.perturb=0"})


@glibc
@pytest.mark.parametrize("env", [{MMAP_THRESHOLD_ENV: str(16 << 20)},
                                 {GLIBC_TUNABLES_ENV: f"{MMAP_THRESHOLD_TUNABLE}={16 << 20}"}],
                         ids=["variable", "tunable"])
def test_the_users_mmap_threshold_wins(env):
    """A threshold of 16 MB set by the user stays: the block, under it, comes
    from the heap after the scripts' start-up too."""
    assert not second_block_mapped("scripts", **env)


def test_without_glibc_start_up_leaves_malloc_alone(monkeypatch):
    for name in (MMAP_THRESHOLD_ENV, GLIBC_TUNABLES_ENV):
        monkeypatch.delenv(name, raising=False)
    def musl(name):
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(os, "confstr", musl)
    assert not runs_on_glibc()
    assert not bound_malloc_mmap_threshold()


@pytest.mark.parametrize("threshold", [0, (32 << 20) + 1])
def test_an_out_of_range_threshold_is_refused(threshold):
    """0 would map every block; glibc refuses more than 32 MB."""
    with pytest.raises(ValueError, match="mmap threshold"):
        bound_malloc_mmap_threshold(threshold)


FILTER_PROBE = """
import os, sys
from youtube8m_willow.cli import stderr_without
with stderr_without((b"notice A", b"notice B")):
    os.write(2, b"before\\nnotice A from C++\\n")
    print("python line", file=sys.stderr)
    os.write(2, b"notice B again\\nafter\\n")
os.write(2, b"notice A once the block is over\\n")
"""


def test_stderr_filter_drops_only_the_notices():
    # Writes straight to file descriptor 2, as TensorFlow's C++ code does.
    result = subprocess.run([sys.executable, "-c", FILTER_PROBE], capture_output=True,
                            text=True, timeout=120, cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["before", "python line", "after",
                                          "notice A once the block is over"]


def test_hidden_modules_fail_to_import_only_within_the_block():
    assert "wave" not in sys.modules  # a standard module nothing here imports
    with modules_hidden(("wave", "json")):  # json is imported already: not hidden
        with pytest.raises(ImportError):
            import wave  # noqa: F401
        import json  # noqa: F401
    import wave  # noqa: F401, F811

    assert sys.modules["wave"].__name__ == "wave"
