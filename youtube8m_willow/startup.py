"""What every entry point does first: a quiet TensorFlow start-up, and the
help format of the ``python -m`` tools.

The scripts (``cli.start_script``) and the package's ``python -m`` tools
(``start_tool``) call it before TensorFlow or Keras is imported (importing
this module changes nothing). It hides TensorFlow's start-up notices (CPU
instruction and oneDNN notes, absl's "All log messages before
absl::InitializeLog()", CUDA absence notes): TF's C++ log level goes to 2
(warnings and info hidden, errors shown) unless TF_CPP_MIN_LOG_LEVEL is
already set, and TensorFlow is imported with its absl start-up notices held
back (``import_tensorflow_quietly``: on CPUs where oneDNN is on by default,
TF logs those through absl, which no log level reaches).
``YT8M_VERBOSE_TF=1`` leaves all of it as TensorFlow has it.

It imports nothing of the package, so a tool in any room may use it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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


def use_onednn() -> None:
    """TensorFlow's oneDNN kernels on every x86 CPU (an explicit
    TF_ENABLE_ONEDNN_OPTS wins). On Linux TF turns them on by itself only
    where the CPU has AVX-512 VNNI or BF16, AVX-VNNI or AMX; elsewhere, as on
    an AVX2-only EPYC, it runs Eigen's matmuls and allocates every tensor
    with ``posix_memalign``, whose large blocks are mapped and zeroed afresh
    each time. With oneDNN on, the matmuls are oneDNN's and large tensors
    come from its caching allocator: on a 2-core AVX2 EPYC a 4096^2 float32
    matmul runs at about 100 GFLOP/s instead of 58, and an 89 MB
    element-wise product takes 9.5 ms instead of 45. Takes effect only
    before TensorFlow is imported."""
    os.environ.setdefault(ONEDNN_ENV, "1")


def prepare_environment() -> None:
    """The process environment of a script (quiet TensorFlow, oneDNN on,
    Keras on TensorFlow); call it before TensorFlow or Keras is imported."""
    quiet_tensorflow_startup()
    use_onednn()
    use_tensorflow_keras()


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


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and Keras, unless TensorFlow already is: without
    the optional imports in ``UNUSED_AT_IMPORT``, and without TensorFlow's
    absl start-up notices on stderr unless YT8M_VERBOSE_TF is set."""
    if "tensorflow" in sys.modules:
        return
    quiet = contextlib.nullcontext() if verbose_tensorflow() else stderr_without(
        ABSL_STARTUP_NOTICES)
    unused = tuple(name for name in UNUSED_AT_IMPORT if name != os.environ.get("KERAS_BACKEND"))
    with modules_hidden(unused), quiet:
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
