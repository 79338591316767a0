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


def run_guarded(main: Callable[[], object]) -> object:
    """Runs ``main``; known user-facing errors exit 1 with a one-line message."""
    import tensorflow as tf
    from absl import flags

    from youtube8m_willow.checkpoint import CheckpointError
    from youtube8m_willow.data.readers import DataError, data_error_from
    from youtube8m_willow.training.trainer import NonFiniteLossError

    try:
        return main()
    except (DataError, CheckpointError, NonFiniteLossError, flags.ValidationError,
            ValueError, FileNotFoundError) as error:
        _fail(error)
    except tf.errors.OpError as error:
        _fail(data_error_from(error) or error)


def _fail(error: BaseException) -> None:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    line = " ".join(text.strip().split("\n")[0].split())
    print(f"ERROR: {line}", file=sys.stderr)
    sys.exit(EXIT_FAILURE)
