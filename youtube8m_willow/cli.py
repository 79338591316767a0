"""What the scripts share: quiet TensorFlow start-up, logging set-up and
turning known failures into one clear line on stderr with a non-zero exit.

Every script calls ``start_script`` first, before TensorFlow or Keras is
imported (importing this module changes nothing). It hides TensorFlow's
start-up notices (``youtube8m_willow.startup``: CPU instruction and oneDNN
notes, absl's "All log messages before absl::InitializeLog()", CUDA absence
notes) and the INFO lines of SavedModel export such as signature renaming
(TF's Python logger stays at WARNING). ``YT8M_VERBOSE_TF=1`` leaves all of
it as TensorFlow has it. It also gives TensorFlow a caching CPU allocator
where its default has none (``startup.use_caching_allocator``) and freezes
the garbage collector at exit (``startup.skip_final_collection``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from youtube8m_willow.startup import (  # noqa: F401  (the scripts' names for them)
    VERBOSE_ENV, import_tensorflow_quietly, prepare_environment, stderr_without,
    verbose_tensorflow)

EXIT_FAILURE = 1


def start_script() -> None:
    """What every script does first: its environment, then its logging
    (which imports TensorFlow quietly)."""
    prepare_environment()
    setup_logging()


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


def help_alias(argv: list[str]) -> list[str]:
    """``argv`` with ``-h`` spelled ``--help``: absl knows ``--help`` and
    ``-?``; ``-h`` is what a user tries first, as with every argparse tool."""
    return [argv[0], *("--help" if arg == "-h" else arg for arg in argv[1:])]


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
