"""The optimizer's part of a resumable TF1 checkpoint.

Beside the model's weights, a checkpoint the original's ``Saver`` wrote holds
the optimizer's slots under TF1 names (``<var>/Adam``, ``<var>/Adam_1``,
``<var>/RMSProp``, ...; ``tf1_optimizers`` knows each optimizer's),
Adam's step powers (``model/beta1_power``: TF1 keeps ``beta1 ** (step + 1)``
there) and ``global_step``. This module tells those names from model weights
(``is_optimizer_name``), gathers everything a resumable checkpoint holds
(``training_state``) and puts it back (``restore``). ``checkpoint`` reads and
writes the files and knows no optimizer: it takes ``is_optimizer_name`` from
its callers.
"""

from __future__ import annotations

import logging
import math

import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.checkpoint import GLOBAL_STEP
from youtube8m_willow.legacy import PORT_NAMING, Naming
from youtube8m_willow.training.tf1_optimizers import SLOT_SUFFIXES, slots_of

log = logging.getLogger("youtube8m_willow")

# Port names (WILLOW's) of Adam's step powers; legacy.Naming maps the others.
BETA1_POWER = "model/beta1_power"
BETA2_POWER = "model/beta2_power"


def is_optimizer_name(name: str) -> bool:
    """An optimizer's slot or step power, or the global step: not a model weight."""
    return (name.endswith("beta1_power") or name.endswith("beta2_power")
            or name.rsplit("/", 1)[-1] in SLOT_SUFFIXES or name == GLOBAL_STEP)


def optimizer_slots(optimizer, model) -> dict:
    """``{"<var>/<TF1 slot>": slot variable}`` (``<var>/Adam``,
    ``<var>/RMSProp_1``, ...) of a built optimizer, in port names."""
    if not optimizer.built:
        return {}
    return {f"{name}/{suffix}": slot
            for name, var in model.tf1_weights().items() if var.trainable
            for suffix, slot in slots_of(optimizer, var).items()}


def training_state(model, optimizer, global_step: int,
                   naming: Naming = PORT_NAMING) -> dict[str, tf.Tensor]:
    """Every tensor a resumable checkpoint holds, named as ``naming`` stores
    them (the port's names by default; a continued original run keeps its
    origin's)."""
    tensors = {name: var.value for name, var in model.tf1_weights().items()}
    tensors[GLOBAL_STEP] = tf.constant(global_step, tf.int64)
    if optimizer is not None:
        tensors.update({name: var.value for name, var in optimizer_slots(optimizer, model).items()})
        if hasattr(optimizer, "beta_1"):
            adam_step = int(optimizer.iterations.numpy()) + 1
            tensors[BETA1_POWER] = tf.constant(optimizer.beta_1 ** adam_step, tf.float32)
            tensors[BETA2_POWER] = tf.constant(optimizer.beta_2 ** adam_step, tf.float32)
    return {naming.to_stored(name): value for name, value in tensors.items()}


def restore(path: str, model, optimizer=None) -> int:
    """Loads model weights (and the optimizer's slots when present) from a
    checkpoint of any origin.

    Returns the global step. Adam's step count is recovered from
    ``beta1_power`` (TF1 keeps ``beta1 ** (step + 1)`` there).
    """
    tensors = checkpoint.StoredTensors(path)
    checkpoint.assign_model_weights(model.tf1_weights(), tensors, path, is_optimizer_name)
    step = checkpoint.stored_step(tensors)
    if optimizer is not None:
        _restore_optimizer(optimizer, model, tensors, step, path)
    return step


def _restore_optimizer(optimizer, model, tensors, step: int, path: str) -> None:
    optimizer.iterations.assign(step)
    slots = optimizer_slots(optimizer, model)
    beta1_name = next((name for name in tensors if name.endswith("beta1_power")), None)
    beta1_power = float(tensors[beta1_name]) if beta1_name is not None else 0.0
    if hasattr(optimizer, "beta_1") and beta1_power > 0:
        adam_step = round(math.log(beta1_power) / math.log(optimizer.beta_1)) - 1
        optimizer.iterations.assign(adam_step)
    absent = [name for name in slots if name not in tensors]
    if absent:
        log.warning("checkpoint %s has no %d of the optimizer's %d slots (e.g. %s): they "
                    "start at their initial values", path, len(absent), len(slots), absent[0])
    for name, var in slots.items():
        if name in tensors:
            var.assign(tensors[name])
