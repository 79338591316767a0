"""The input state saved with each training checkpoint, so that a resumed run
reads what the uninterrupted run would have read next.

A checkpoint ``model.ckpt-N`` (TF1 format, read by the original tools) gets a
companion ``model.ckpt-N.input.json``, written before the checkpoint's index
makes it complete and removed with it on rotation: the seed of the run, what
defines the input order (``data.resumable.Plan``: a digest of the files, the
shuffle, the readers, the window) and each worker's ``InputPosition``. A few
hundred bytes, whatever the data.

A checkpoint without one (the original code's, or an earlier version's)
resumes with the input from the start, with a warning; so does one whose
input options or files changed, keeping its count of epochs.
"""

from __future__ import annotations

import dataclasses
import json

import tensorflow as tf

from youtube8m_willow.data.resumable import InputPosition, Plan
from youtube8m_willow.errors import InputStateError

SUFFIX = ".input.json"
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class InputState:
    """What a checkpoint records of its run's input.

    Attributes:
        seed: the run's seed (input order and frame sampling).
        plans: each worker's ``Plan`` digest and options, as saved.
        positions: each worker's position (the next record it reads).
    """

    seed: int
    plans: tuple[dict, ...]
    positions: tuple[InputPosition, ...]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "seed": self.seed, "plans": list(self.plans),
                           "positions": [p.as_list() for p in self.positions]}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, path: str) -> "InputState":
        try:
            values = json.loads(text)
            if values.get("format") != FORMAT:
                raise ValueError(f"format {values.get('format')!r}, expected {FORMAT}")
            positions = tuple(InputPosition.from_row(p) for p in values["positions"])
            plans = tuple(dict(p) for p in values["plans"])
            if len(plans) != len(positions):
                raise ValueError("one plan per position expected")
            return cls(int(values["seed"]), plans, positions)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputStateError(
                f"{path}: not a readable input state ({error}); delete it to resume with the "
                "input from the start") from None


def describe(plan: Plan) -> dict:
    """What is saved of a plan: enough to tell whether a resumed run's is the same."""
    return {"files": len(plan.files), "fingerprint": plan.fingerprint(), "shuffle": plan.shuffle,
            "num_readers": plan.num_readers, "window": plan.window}


def companion(checkpoint_path: str) -> str:
    return checkpoint_path + SUFFIX


def read(checkpoint_path: str) -> InputState | None:
    """The input state saved with a checkpoint, or None when it has none."""
    path = companion(checkpoint_path)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as handle:
        return InputState.from_json(handle.read(), path)


def position_for(state: InputState | None, worker: int, num_workers: int, plan: Plan,
                 checkpoint_path: str) -> tuple[InputPosition, str | None]:
    """Where worker ``worker`` resumes, and a warning when the input starts
    over (no state, other workers, other files or options)."""
    if state is None:
        return InputPosition(), (
            f"{checkpoint_path} has no saved input position (written by the original code or "
            "an earlier version): the input starts over from the first file")
    if len(state.positions) != num_workers:
        epoch = min(p.epoch for p in state.positions)
        return InputPosition(epoch=epoch), (
            f"{checkpoint_path} was written by {len(state.positions)} worker(s), this run has "
            f"{num_workers}: the input starts over at epoch {epoch}")
    saved, position = state.plans[worker], state.positions[worker]
    now = describe(plan)
    changed = [key for key in now if saved.get(key) != now[key]]
    if state.seed != plan.seed:
        changed.append("seed")
    if changed:
        return InputPosition(epoch=position.epoch), (
            f"the input differs from that of {checkpoint_path} ({', '.join(changed)} changed): "
            f"the input starts over at epoch {position.epoch}")
    return position, None
