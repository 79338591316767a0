"""A checkpoint's naming: its origin plus its RNN spelling, both ways."""

from __future__ import annotations

import dataclasses
from types import ModuleType

from youtube8m_willow.legacy import rnn_spellings, starter2017, willow

# Most specific first: an origin is chosen by ``wrote(names)``; WILLOW's
# layout (the port's) accepts anything.
ORIGINS: tuple[ModuleType, ...] = (starter2017, willow)


@dataclasses.dataclass(frozen=True)
class Naming:
    """Translates between a checkpoint's stored names and the port's names.

    ``origin`` is one of the origin modules (``willow``, ``starter2017``),
    ``spelling`` the RNN spelling of the TF release that wrote it.
    """

    origin: ModuleType
    spelling: rnn_spellings.Spelling = rnn_spellings.CURRENT

    @property
    def description(self) -> str:
        """e.g. ``starter2017`` or ``willow (tf1.0 RNN names)``."""
        if self.spelling is rnn_spellings.CURRENT:
            return self.origin.NAME
        return f"{self.origin.NAME} ({self.spelling.name} RNN names)"

    def to_port(self, name: str) -> str:
        return self.spelling.to_current(self.origin.to_port(name))

    def to_stored(self, name: str) -> str:
        return self.origin.to_stored(self.spelling.to_old(name))


PORT_NAMING = Naming(willow)


def detect_naming(names) -> Naming:
    """The naming of a checkpoint holding ``names`` (stored names)."""
    names = list(names)
    origin = next(module for module in ORIGINS if module.wrote(names))
    return Naming(origin, rnn_spellings.detect_spelling(names))
