"""What every entry point does first: a quiet TensorFlow start-up with a
caching CPU allocator and a quick exit, and the help format of the
``python -m`` tools.

The scripts (``cli.start_script``) and the package's ``python -m`` tools
(``start_tool``) call it before TensorFlow or Keras is imported (importing
this module changes nothing). It hides TensorFlow's start-up notices (CPU
instruction and oneDNN notes, absl's "All log messages before
absl::InitializeLog()", CUDA absence notes): TF's C++ log level goes to 2
(warnings and info hidden, errors shown) unless TF_CPP_MIN_LOG_LEVEL is
already set, and TensorFlow is imported with its absl start-up notices held
back (``import_tensorflow_quietly``: on CPUs where oneDNN is on by default,
TF logs those through absl, which no log level reaches).
``YT8M_VERBOSE_TF=1`` leaves all of it as TensorFlow has it. Where TF's
default CPU allocator maps every large tensor afresh (oneDNN off), it turns
on TF's caching allocator (``use_caching_allocator``). On Linux with glibc
it fixes malloc's mmap threshold at 4 MB, so that malloc's large blocks are
unmapped when freed rather than left scattered in its heaps (an explicit
threshold wins: ``bound_malloc_mmap_threshold``). The garbage collector
walks none of what TensorFlow loads: not during the import, nor
after it (``loaded_out_of_collection``), nor in Python's finalization at
exit (``skip_final_collection``).

It imports nothing of the package, so a tool in any room may use it.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import os
import platform
import re
import sys
import threading
from typing import Iterator

VERBOSE_ENV = "YT8M_VERBOSE_TF"


def verbose_tensorflow() -> bool:
    """Whether the user asked for TensorFlow's own start-up messages."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def quiet_tensorflow_startup() -> None:
    """Raises TF's C++ log level (an explicit TF_CPP_MIN_LOG_LEVEL wins).
    Takes effect only before TensorFlow is imported."""
    if not verbose_tensorflow():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def use_tensorflow_keras() -> None:
    """The scripts are TensorFlow pipelines (tf.data, TF1 checkpoints,
    SavedModel): a KERAS_BACKEND chosen for the layers elsewhere (jax,
    torch) must not reach them. Takes effect only before Keras is imported."""
    os.environ["KERAS_BACKEND"] = "tensorflow"


ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"
BFC_LIMIT_ENV = "TF_CPU_BFC_MEM_LIMIT_IN_MB"
# TensorFlow's own policy on Linux x86: oneDNN on where the CPU has one of
# these, off elsewhere (an explicit TF_ENABLE_ONEDNN_OPTS wins). Elsewhere
# (aarch64, Windows) its policy differs and start-up leaves TF's choice.
ONEDNN_CPU_FEATURES = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
                       "amx_bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (the first ``flags`` line of ``/proc/cpuinfo``)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as file:
                cpuinfo = file.read()
        except OSError:
            cpuinfo = ""
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    return set(flags.group(1).split()) if flags else set()


def linux_x86() -> bool:
    """Whether this is Linux on x86-64, where ``onednn_on`` knows TF's policy."""
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def tf_env_bool(name: str, env=None) -> bool | None:
    """A switch as TensorFlow reads it from ``env`` (this process's
    environment by default): "1"/"true" or "0"/"false" in any case, nothing
    stripped; None where it is unset or not such a value (TF's default)."""
    value = (os.environ if env is None else env).get(name, "").lower()
    return value in ("1", "true") if value in ("0", "1", "false", "true") else None


def onednn_on(env=None, cpuinfo: str | None = None) -> bool:
    """Whether TensorFlow on Linux x86 started with ``env`` (this process's
    environment by default) runs its oneDNN kernels: the user's switch, else
    TF's policy for the CPU."""
    explicit = tf_env_bool(ONEDNN_ENV, env)
    if explicit is not None:
        return explicit
    return bool(cpu_flags(cpuinfo) & set(ONEDNN_CPU_FEATURES))


def use_caching_allocator(cpuinfo: str | None = None) -> None:
    """Tensors from an allocator that keeps the memory it has mapped.

    With oneDNN on, TensorFlow's oneDNN allocator is one. Without it (TF's
    default on CPUs without AVX-512 VNNI or BF16, AVX-VNNI or AMX, such as
    an AVX2-only EPYC), TF allocates each tensor with ``posix_memalign``,
    whose large blocks are mapped and zeroed afresh every time: on a 2-core
    AVX2 EPYC an 89 MB element-wise product took 45 ms instead of 9.5, and
    Gated NetVLAD's copies and kernels lost 0.5 s a step. There (Linux x86
    only, where TF's policy is known) this turns on TF's own caching (BFC)
    allocator, its limit the machine's memory where that exceeds TF's
    default of 64 GB. (oneDNN itself is left as TF chooses: on that CPU its
    matmuls were slower for the batch-80 shapes.) An explicit
    TF_CPU_ALLOCATOR_USE_BFC or TF_CPU_BFC_MEM_LIMIT_IN_MB wins. Takes effect
    only before TensorFlow builds its CPU allocator (its first op)."""
    if not linux_x86() or onednn_on(cpuinfo=cpuinfo) or BFC_ENV in os.environ:
        return
    os.environ[BFC_ENV] = "true"
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        memory = 0
    os.environ.setdefault(BFC_LIMIT_ENV, str(max(memory >> 20, 1 << 16)))


_FREEZE_REGISTERED = False


def freeze_garbage_collector() -> None:
    """Turns the cyclic garbage collector off and moves every object alive
    to its permanent generation, which no collection walks."""
    gc.disable()
    gc.freeze()


def skip_final_collection() -> None:
    """Has the process freeze its garbage collector at exit (once, however
    often called). Python's finalization would otherwise spend its
    collections walking every object the run made and, where TensorFlow was
    not imported out of the collector's walks, every object it loaded (most
    of a second), when the work is done. Registered before TensorFlow and
    the script register theirs, the freeze runs after their exit handlers
    (last registered, first); only those registered earlier
    (``logging.shutdown``, which flushes the log handlers) run after it.
    Finalization then clears the modules' namespaces, but what sits in a
    reference cycle is never freed nor finalized: a writer left open would
    lose its buffer. What the scripts write they close before they exit, as
    their tests check in processes that skip finalization altogether
    (``tests/forked.py``)."""
    global _FREEZE_REGISTERED
    if not _FREEZE_REGISTERED:
        atexit.register(freeze_garbage_collector)
        _FREEZE_REGISTERED = True


# glibc's mallopt parameter and its environment spellings (the user's wins).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
GLIBC_TUNABLES_ENV = "GLIBC_TUNABLES"
MMAP_THRESHOLD_TUNABLE = "glibc.malloc.mmap_threshold"
# Host blocks from this size are mapped for themselves and unmapped when freed.
MMAP_THRESHOLD_BYTES = 4 << 20
MAX_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's bound on 64-bit


def runs_on_glibc() -> bool:
    """Whether this process's C library is glibc (asked of the library itself,
    not read off the interpreter's executable as ``platform.libc_ver`` does)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr, or no such name (musl, macOS)
        return False


def bound_malloc_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fixes glibc's mmap threshold at ``threshold`` bytes; returns whether it did.

    glibc raises that threshold each time a mapped block is freed, up to
    32 MB, after which blocks up to that size come from its heaps, where
    freed memory stays with the process, scattered. oneDNN's matmuls take
    their packing buffers (5 to 8 MB for the video-level MoE's) from malloc
    on every call, in each thread's heap: the MoE's training (batch 256,
    4716 classes) peaked at 1.38 to 1.47 GB, and at 1.21 to 1.26 GB with the
    threshold fixed at 4 MB, at the same step time (at 8 MB: 1.32 to 1.39
    GB). Linux with glibc only; a threshold the user set
    (MALLOC_MMAP_THRESHOLD_, or glibc.malloc.mmap_threshold in
    GLIBC_TUNABLES) wins. A threshold outside (0, 32 MB] raises ValueError
    (glibc refuses larger ones; 0 would map every block)."""
    if not 0 < threshold <= MAX_MMAP_THRESHOLD_BYTES:
        raise ValueError(f"mmap threshold {threshold} not in (0, {MAX_MMAP_THRESHOLD_BYTES}]")
    if not sys.platform.startswith("linux") or not runs_on_glibc():
        return False
    if (MMAP_THRESHOLD_ENV in os.environ
            or MMAP_THRESHOLD_TUNABLE in os.environ.get(GLIBC_TUNABLES_ENV, "")):
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(ctypes.c_int(M_MMAP_THRESHOLD),
                                              ctypes.c_int(threshold)))
    except (OSError, AttributeError):
        return False


def prepare_environment() -> None:
    """The process environment of a script (quiet TensorFlow, a caching
    allocator, glibc's mmap threshold fixed, Keras on TensorFlow, a quick
    exit); call it before TensorFlow or Keras is imported."""
    quiet_tensorflow_startup()
    use_caching_allocator()
    bound_malloc_mmap_threshold()
    use_tensorflow_keras()
    skip_final_collection()


# What TensorFlow's libraries print through absl while they load, whatever
# TF_CPP_MIN_LOG_LEVEL says: one preamble and the oneDNN note per library.
ABSL_STARTUP_NOTICES = (b"All log messages before absl::InitializeLog() is called",
                        b"oneDNN custom operations are on")


@contextlib.contextmanager
def stderr_without(notices: tuple[bytes, ...]) -> Iterator[None]:
    """Within the block, drops the lines of file descriptor 2 (C++ code's
    stderr too) that contain one of ``notices``; every other line passes on
    as it comes, so nothing else printed meanwhile is lost or held back."""
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not any(notice in line for notice in notices):
                    os.write(original, line)

    forwarder = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the forwarder ends
        forwarder.join()
        os.close(original)


# Optional modules that importing TensorFlow and Keras pulls in, when they
# are installed, for features no entry point of this project uses: TF
# Lite's JAX converter (``from jax import jit``) and Keras' pandas
# DataFrames in ``fit``. Together about 1 s of every start-up. (A Keras
# backend named by KERAS_BACKEND is never hidden.)
UNUSED_AT_IMPORT = ("jax", "pandas")


@contextlib.contextmanager
def modules_hidden(names: tuple[str, ...]) -> Iterator[None]:
    """Within the block, ``import name`` raises ImportError for each of
    ``names`` not yet imported (so an optional import is skipped); after it,
    they import as usual."""
    hidden = [name for name in names if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


@contextlib.contextmanager
def loaded_out_of_collection() -> Iterator[None]:
    """Runs the block with the cyclic garbage collector off; if it succeeds,
    moves every object alive to the permanent generation (``gc.freeze``),
    which no collection walks. Then turns the collector back on (if it was).

    For the import of TensorFlow and Keras: walking their half million
    objects (769 collections) cost 0.45 to 0.6 s of the import on a 2-core
    AMD EPYC, and each full collection after it 0.16 s. The import makes
    about 1,400 objects of cyclic garbage, which stay (a few MB)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if enabled:
            gc.enable()


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and Keras, unless TensorFlow already is: without
    the optional imports in ``UNUSED_AT_IMPORT``, without TensorFlow's absl
    start-up notices on stderr unless YT8M_VERBOSE_TF is set, and out of
    the garbage collector's walks (``loaded_out_of_collection``)."""
    if "tensorflow" in sys.modules:
        return
    quiet = contextlib.nullcontext() if verbose_tensorflow() else stderr_without(
        ABSL_STARTUP_NOTICES)
    unused = tuple(name for name in UNUSED_AT_IMPORT if name != os.environ.get("KERAS_BACKEND"))
    with loaded_out_of_collection(), modules_hidden(unused), quiet:
        import tensorflow  # noqa: F401
        import keras  # noqa: F401


def start_tool() -> None:
    """What a ``python -m youtube8m_willow...`` tool does first, before
    TensorFlow is imported: the scripts' environment, then TensorFlow
    imported quietly."""
    prepare_environment()
    import_tensorflow_quietly()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """The tools' ``-h``: each option's default after its help, except for
    options without one (None) and switches (off unless given)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action, argparse._StoreTrueAction):
            return action.help
        return super()._get_help_string(action)
