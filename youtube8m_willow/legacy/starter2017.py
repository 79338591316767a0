"""The Google starter's checkpoints (google/youtube-8m, 2017).

The starter builds its model inside ``tf.variable_scope("tower")``: every
model variable and its optimizer slots are ``tower/<name>``
(``tower/gates/weights``, ``tower/gates/weights/RMSProp``), while
``global_step`` and Adam's ``beta1_power``/``beta2_power`` stay at the top
level (WILLOW's are ``model/beta1_power``).
"""

from __future__ import annotations

NAME = "starter2017"
SCOPE = "tower/"
# Top-level names of the starter -> the port's names.
_TOP_LEVEL = {"global_step": "global_step", "beta1_power": "model/beta1_power",
              "beta2_power": "model/beta2_power"}
_TOP_LEVEL_STORED = {port: stored for stored, port in _TOP_LEVEL.items()}


def to_port(name: str) -> str:
    """``tower/gates/weights`` -> ``gates/weights``; ``beta1_power`` ->
    ``model/beta1_power``."""
    if name.startswith(SCOPE):
        return name[len(SCOPE):]
    return _TOP_LEVEL.get(name, name)


def to_stored(name: str) -> str:
    """The inverse of ``to_port``: what the starter's own tools read."""
    return _TOP_LEVEL_STORED.get(name, SCOPE + name)


def wrote(names) -> bool:
    """The starter wrote a checkpoint whose variables live under ``tower/``."""
    return any(name.startswith(SCOPE) for name in names)
