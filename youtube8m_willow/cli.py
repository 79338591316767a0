"""What the scripts share: quiet TensorFlow start-up, logging set-up and
turning known failures into one clear line on stderr with a non-zero exit.

Every script calls ``start_script`` first, before TensorFlow or Keras is
imported (importing this module changes nothing). It hides TensorFlow's
start-up notices (CPU instruction and oneDNN notes, absl's "All log
messages before absl::InitializeLog()", CUDA absence notes, and the INFO
lines of SavedModel export such as signature renaming): TF's C++ log level
goes to 2 (warnings and info hidden, errors shown) unless
TF_CPP_MIN_LOG_LEVEL is already set, TF's Python logger stays at WARNING,
and TensorFlow is imported with its absl start-up notices held back
(``import_tensorflow_quietly``: on CPUs where oneDNN is on by default, TF
logs those through absl, which no log level reaches).
``YT8M_VERBOSE_TF=1`` leaves all of it as TensorFlow has it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Callable, Iterator

VERBOSE_ENV = "YT8M_VERBOSE_TF"
EXIT_FAILURE = 1


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


def prepare_environment() -> None:
    """The process environment of a script (quiet TensorFlow, Keras on
    TensorFlow); call it before TensorFlow or Keras is imported."""
    quiet_tensorflow_startup()
    use_tensorflow_keras()


def start_script() -> None:
    """What every script does first: its environment, then its logging
    (which imports TensorFlow quietly)."""
    prepare_environment()
    setup_logging()


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


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow without its absl start-up notices on stderr (unless
    YT8M_VERBOSE_TF is set or TensorFlow is already imported)."""
    if verbose_tensorflow() or "tensorflow" in sys.modules:
        return
    with stderr_without(ABSL_STARTUP_NOTICES):
        import tensorflow  # noqa: F401


def setup_logging() -> None:
    """INFO for this project's log lines (DEBUG with absl's ``--verbosity=1``,
    e.g. the video ids of every training batch). TensorFlow logs from Python
    through both absl's logger and its own; unless YT8M_VERBOSE_TF is set,
    both stay at WARNING (their INFO lines are export and checkpoint
    internals). Then imports TensorFlow quietly, before the scripts do."""
    from absl import logging as absl_logging

    debug = absl_logging.get_verbosity() >= absl_logging.DEBUG
    verbose = verbose_tensorflow()
    absl_logging.set_verbosity(absl_logging.INFO if verbose or debug else absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("youtube8m_willow").setLevel(logging.DEBUG if debug else logging.INFO)
    import_tensorflow_quietly()


TRACEBACK_ENV = "YT8M_TRACEBACK"  # set to 1: known user errors keep their traceback too


def run_guarded(main: Callable[[], object]) -> object:
    """Runs ``main``; user errors (``errors.UserError``: bad flags, files,
    data, checkpoints) exit 1 with a one-line message. Any other exception
    is a bug and keeps its traceback; with ``YT8M_TRACEBACK=1`` every error
    does."""
    import tensorflow as tf
    from absl import flags

    from youtube8m_willow.data.readers import data_error_from
    from youtube8m_willow.errors import UserError

    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        return main()
    try:
        return main()
    except (UserError, flags.ValidationError, FileNotFoundError) as error:
        _fail(error)
    except (tf.errors.NotFoundError, tf.errors.PermissionDeniedError) as error:
        _fail(error)  # a path that does not exist or cannot be written
    except tf.errors.OpError as error:
        known = data_error_from(error)
        if known is None:
            raise
        _fail(known)


def _fail(error: BaseException) -> None:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    line = " ".join(text.strip().split("\n")[0].split())
    print(f"ERROR: {line}", file=sys.stderr)
    sys.exit(EXIT_FAILURE)
