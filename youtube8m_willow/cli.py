"""What the three scripts share: logging set-up and turning known failures
into one clear line on stderr with a non-zero exit."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_FAILURE = 1


def setup_logging() -> None:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("youtube8m_willow").setLevel(logging.INFO)


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
