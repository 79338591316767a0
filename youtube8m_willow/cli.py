"""What the scripts share: quiet TensorFlow start-up, logging set-up and
turning known failures into one clear line on stderr with a non-zero exit.

TensorFlow's start-up notices (CPU instruction and oneDNN notes, absl's
"All log messages before absl::InitializeLog()", CUDA absence notes, and the
INFO lines of SavedModel export such as signature renaming) are hidden by
default: importing this module, before TensorFlow is imported, raises TF's
C++ log level to 2 (warnings and info hidden, errors shown) unless
TF_CPP_MIN_LOG_LEVEL is already set, and ``setup_logging`` keeps TF's
Python logger at WARNING. ``YT8M_VERBOSE_TF=1`` leaves both as TensorFlow
has them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

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


quiet_tensorflow_startup()

# The scripts are TensorFlow pipelines (tf.data, TF1 checkpoints, SavedModel):
# a KERAS_BACKEND chosen for the layers elsewhere (jax, torch) must not reach
# them. Set before Keras is imported.
os.environ["KERAS_BACKEND"] = "tensorflow"


def setup_logging() -> None:
    """INFO for this project's log lines (DEBUG with absl's ``--verbosity=1``,
    e.g. the video ids of every training batch). TensorFlow logs from Python
    through both absl's logger and its own; unless YT8M_VERBOSE_TF is set,
    both stay at WARNING (their INFO lines are export and checkpoint
    internals)."""
    from absl import logging as absl_logging

    debug = absl_logging.get_verbosity() >= absl_logging.DEBUG
    verbose = verbose_tensorflow()
    absl_logging.set_verbosity(absl_logging.INFO if verbose or debug else absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("youtube8m_willow").setLevel(logging.DEBUG if debug else logging.INFO)


TRACEBACK_ENV = "YT8M_TRACEBACK"  # set to 1: known user errors keep their traceback too


def run_guarded(main: Callable[[], object]) -> object:
    """Runs ``main``; known user errors (bad flags, files, data, checkpoints)
    exit 1 with a one-line message. Any other exception is a bug and keeps
    its traceback; with ``YT8M_TRACEBACK=1`` every error does."""
    import tensorflow as tf
    from absl import flags

    from youtube8m_willow.checkpoint import CheckpointError
    from youtube8m_willow.data.readers import DataError, data_error_from
    from youtube8m_willow.errors import UserError
    from youtube8m_willow.training.trainer import NonFiniteLossError

    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        return main()
    try:
        return main()
    except (UserError, DataError, CheckpointError, NonFiniteLossError, flags.ValidationError,
            FileNotFoundError) as error:
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
