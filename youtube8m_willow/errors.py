"""Every error a user can fix, under one base: ``UserError``.

The scripts (``youtube8m_willow.cli.run_guarded``) turn a ``UserError``
into one line on stderr and exit 1; anything else that goes wrong is a bug
and keeps its traceback. The modules that raise these errors re-export the
ones they own (``data.readers.DataError``, ``checkpoint.CheckpointError``,
...), so either import works.

This module imports nothing of the project: every room may use it.
"""


class UserError(Exception):
    """Bad flags, settings or files that the user can fix (one-line message)."""


class ConfigError(UserError, ValueError):
    """A flag, a combination of flags or a settings file is invalid."""


class DataError(UserError):
    """Bad input data: a one-line message naming the file, the record and the problem."""


class CheckpointError(UserError):
    """A checkpoint is missing or does not fit the model (one-line message)."""


class InputStateError(UserError):
    """A checkpoint's companion input-state file that cannot be read."""


class MetaGraphError(UserError, ValueError):
    """A checkpoint's ``.meta`` graph file that cannot be parsed."""


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


class WeightsFileError(UserError):
    """A weights file that cannot be read, or does not fit the model."""


class SubmissionFormatError(UserError, ValueError):
    """A submission CSV that cannot be read; the message names file and line."""


class VocabularyError(UserError, ValueError):
    """A file that is neither vocabulary format; the message names the file."""
