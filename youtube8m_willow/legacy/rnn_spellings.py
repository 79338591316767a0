"""How TF releases before 1.2 spelled the variables of RNN cells.

The port names cells as TF 1.2 and later do
(``.../rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel``). Older
checkpoints, from the same graphs, used other names for the same tensors:

* TF 1.0 and 1.1: ``basic_lstm_cell/weights`` and ``/biases``; GRUCell
  ``gru_cell/gates/weights``, ``gru_cell/candidate/weights`` and their
  ``/biases``.
* TF 0.12: ``RNN/MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix`` and
  ``.../Linear/Bias``; GRUCell ``GRUCell/Gates/Linear/Matrix``,
  ``GRUCell/Candidate/Linear/Matrix`` and their ``Bias``.

Each spelling is a table of ``(old, current)`` name fragments, replaced
between ``/`` boundaries (``{i}`` stands for a cell index), read one way when
loading and the other way when writing back. Slot names
(``.../weights/Adam``) follow, since only the fragment changes.
"""

from __future__ import annotations

import dataclasses
import re

_INDEX = "{i}"


@dataclasses.dataclass(frozen=True)
class Spelling:
    """One release's RNN names: ``pairs`` of (old fragment, current fragment)."""

    name: str
    pairs: tuple[tuple[str, str], ...] = ()

    def to_current(self, name: str) -> str:
        """An old name as TF 1.2+ spells it."""
        return _replace(name, self.pairs)

    def to_old(self, name: str) -> str:
        """A current name as this release spelled it."""
        return _replace(name, tuple((new, old) for old, new in self.pairs))

    def used_in(self, names) -> bool:
        """Whether any of ``names`` has one of this release's fragments."""
        patterns = [_pattern(old) for old, _ in self.pairs]
        return any(p.search(name) for p in patterns for name in names)


def _pattern(fragment: str) -> re.Pattern:
    """The fragment as a regex bounded by ``/`` or the name's ends."""
    body = re.escape(fragment).replace(re.escape(_INDEX), r"(\d+)")
    return re.compile(rf"(^|/){body}(?=/|$)")


def _replace(name: str, pairs) -> str:
    for source, target in pairs:
        template = target.replace(_INDEX, r"\2")
        name = _pattern(source).sub(lambda m, t=template: m.expand(r"\1" + t), name)
    return name


CURRENT = Spelling("tf1.2")
TF1_0 = Spelling("tf1.0", (
    ("basic_lstm_cell/weights", "basic_lstm_cell/kernel"),
    ("basic_lstm_cell/biases", "basic_lstm_cell/bias"),
    ("gru_cell/gates/weights", "gru_cell/gates/kernel"),
    ("gru_cell/gates/biases", "gru_cell/gates/bias"),
    ("gru_cell/candidate/weights", "gru_cell/candidate/kernel"),
    ("gru_cell/candidate/biases", "gru_cell/candidate/bias"),
))
TF0_12 = Spelling("tf0.12", (
    ("RNN/MultiRNNCell/Cell{i}", "rnn/multi_rnn_cell/cell_{i}"),
    ("BasicLSTMCell/Linear/Matrix", "basic_lstm_cell/kernel"),
    ("BasicLSTMCell/Linear/Bias", "basic_lstm_cell/bias"),
    ("GRUCell/Gates/Linear/Matrix", "gru_cell/gates/kernel"),
    ("GRUCell/Gates/Linear/Bias", "gru_cell/gates/bias"),
    ("GRUCell/Candidate/Linear/Matrix", "gru_cell/candidate/kernel"),
    ("GRUCell/Candidate/Linear/Bias", "gru_cell/candidate/bias"),
))
OLD_SPELLINGS = (TF1_0, TF0_12)


def detect_spelling(names) -> Spelling:
    """The release whose RNN names ``names`` use (current when none is old)."""
    return next((s for s in OLD_SPELLINGS if s.used_in(names)), CURRENT)
