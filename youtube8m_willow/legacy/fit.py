"""Whether stored TF1-named tensors fit a model: the one check that every way
of loading original weights (a TF1 checkpoint, a portable weights file) runs
before it assigns anything."""

from __future__ import annotations

from typing import Callable, Mapping


def fit_problems(model_weights: Mapping[str, object], stored_shapes: Mapping[str, tuple],
                 shown: Callable[[str], str] = str) -> list[str]:
    """What keeps ``stored_shapes`` (port name -> shape) from filling
    ``model_weights`` (port name -> variable): the missing, unexpected and
    mis-shaped names, each list one phrase, named by ``shown`` (how the
    source spells them). Empty when they fit."""
    missing = sorted(map(shown, set(model_weights) - set(stored_shapes)))
    unexpected = sorted(map(shown, set(stored_shapes) - set(model_weights)))
    wrong_shape = sorted(
        f"{shown(name)} {list(stored_shapes[name])} vs model {list(var.shape)}"
        for name, var in model_weights.items()
        if name in stored_shapes and tuple(stored_shapes[name]) != tuple(var.shape))
    problems = []
    if missing:
        problems.append(f"missing variables: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected variables: {', '.join(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatches: {', '.join(wrong_shape)}")
    return problems
