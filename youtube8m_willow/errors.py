"""The errors a user can fix: the scripts turn them into one line on stderr.

Anything else that goes wrong is a bug and keeps its traceback
(``youtube8m_willow.cli``). The readers' ``DataError`` and the checkpoints'
``CheckpointError`` are user errors too.
"""


class UserError(Exception):
    """Bad flags, settings or files that the user can fix (one-line message)."""


class ConfigError(UserError, ValueError):
    """A flag, a combination of flags or a settings file is invalid."""
