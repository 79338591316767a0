"""WILLOW's checkpoints (antoine77340/Youtube-8M-WILLOW, 2017): the port's own
names.

Model variables sit at the top level (``gates/weights``, ``hidden1_weights``,
``RNN/rnn/multi_rnn_cell/...``); the Adam step powers are
``model/beta1_power`` and ``model/beta2_power`` (train.py builds the optimizer
under a ``model`` name scope); ``global_step`` is top level.
"""

from __future__ import annotations

NAME = "willow"


def to_port(name: str) -> str:
    """A stored name as the port names it (WILLOW's are the port's)."""
    return name


def to_stored(name: str) -> str:
    """A port name as WILLOW stores it."""
    return name


def wrote(names) -> bool:
    """Whether WILLOW's layout could have written these names (the default)."""
    return True
