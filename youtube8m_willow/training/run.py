"""A training run's model, optimizer and state: `Trainer` builds them
from the configs (under the strategy and the --precision policy), restores
train_dir's latest checkpoint, saves checkpoints (TF1 format, see
``youtube8m_willow.checkpoint``) with the input state, and exports
SavedModels. A run continued from an original's train_dir keeps writing
that original's variable names (the starter's ``tower/``, old RNN
spellings), so the original's own tools can still read it.

Speed: ``--xla`` compiles the forward and backward pass; ``--precision``
bfloat16 or float16 runs the model under a Keras mixed-precision policy
(float32 weights, float32 loss, float32 exports; float16 with dynamic loss
scaling).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random

import keras
import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig, save_model_config, save_train_flags
from youtube8m_willow.errors import ConfigError
from youtube8m_willow.legacy import PORT_NAMING
from youtube8m_willow.losses import create_loss
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.training import distribute, optimizer_state, resume, updates
from youtube8m_willow.training.export import export_model
from youtube8m_willow.training.input_planning import InputPlanning
from youtube8m_willow.training.optimizers import StaircaseExampleDecay, create_optimizer
from youtube8m_willow.training.replica_step import ReplicaStep
from youtube8m_willow.training.train_config import PRECISIONS, TrainConfig
from youtube8m_willow.training.train_dir import (model_config_for_checkpoint_names,
                                                 resumable_checkpoint)

log = logging.getLogger("youtube8m_willow")


@contextlib.contextmanager
def _dtype_policy(name: str | None):
    """Builds layers under a Keras dtype policy (None: leave it unchanged)."""
    if name is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def _computing_in_float32(model):
    """Every layer of ``model`` computes in float32 inside (its weights are
    float32 under every policy: the same variables, no copy), its dtype
    policy put back after."""
    layers = list(model._flatten_layers(include_self=True))  # pylint: disable=protected-access
    policies = [layer.dtype_policy for layer in layers]
    for layer in layers:
        layer.dtype_policy = "float32"
    try:
        yield
    finally:
        for layer, policy in zip(layers, policies):
            layer.dtype_policy = policy


class Trainer(InputPlanning, ReplicaStep):
    """Holds the model, optimizer and compiled step of one training run:
    ``restore_latest``, ``make_dataset``, ``step`` (one step on a batch),
    ``save`` (a checkpoint) and ``export`` (a SavedModel). The input
    (``training.input_planning``) and the step (``training.replica_step``)
    are its parts.

    Args:
        config: the training flags.
        model_config: the model flags.
        strategy: a ``tf.distribute`` strategy; default: ``distribute.select_strategy()``.
    """

    def __init__(self, config: TrainConfig, model_config: ModelConfig,
                 strategy: tf.distribute.Strategy | None = None):
        self.config = config
        self.model_config = model_config = model_config_for_checkpoint_names(
            config.train_dir, model_config)
        self.naming = PORT_NAMING  # a restored checkpoint's naming is kept on saves
        self.strategy = strategy or distribute.select_strategy()
        self.distributed = not distribute.is_default_strategy(self.strategy)
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.replica_batch_size = distribute.per_replica_batch_size(config.examples_per_step,
                                                                    self.num_replicas)
        self.num_workers = distribute.num_workers(self.strategy)
        self.is_chief = distribute.strategy_is_chief(self.strategy)
        if config.seed is not None:
            tf.keras.utils.set_random_seed(config.seed)
        # The run's seed: the input order and the frame sampling of each step
        # (kept in the input state, so a resumed run goes on with it).
        self.seed = config.seed if config.seed is not None else random.randrange(2 ** 31)
        # Segment windows are shuffled after cutting: that input is not planned.
        self._init_input_state(resumable=not model_config.segment_labels)
        with self.strategy.scope():
            with _dtype_policy(PRECISIONS[config.precision]):
                self.model = create_model(model_config).build_for_config()
            schedule = StaircaseExampleDecay(config.base_learning_rate, config.learning_rate_decay,
                                             config.learning_rate_decay_examples,
                                             config.examples_per_step)
            # Clipping is done by the step, on the gradient summed over replicas.
            self.optimizer = create_optimizer(config.optimizer, schedule, 0.0)
            self.optimizer.build(self.model.trainable_variables)
            self.loss_scale = (updates.DynamicLossScale() if config.precision == "float16"
                               else None)
        self.in_place = updates.supports_in_place(self.optimizer)
        if self.distributed and self.loss_scale is not None and not self.in_place:
            raise ConfigError(f"--precision=float16 with several replicas cannot use "
                              f"--optimizer={config.optimizer}")
        self.loss_fn = create_loss(config.label_loss, config.alpha, model_config.model)
        self.global_step = 0
        self._checkpoints = checkpoint.CheckpointWriter(
            config.train_dir, config.keep_checkpoints,
            not_model=optimizer_state.is_optimizer_name)
        self.last_checkpoint = ""
        self._compile_step()

    def restore_latest(self) -> str | None:
        """Restores the latest checkpoint of train_dir (the chief reads it;
        with several workers, the others receive its state)."""
        path = resumable_checkpoint(self.config.train_dir) if self.is_chief else None
        if path is not None:
            self.global_step = optimizer_state.restore(path, self.model, self.optimizer)
            self.naming = checkpoint.naming_of(path)
            log.info("restored %s (%s names) at global step %d", path,
                     self.naming.description, self.global_step)
            if self.resumable_input:
                state = resume.read(path)
                if state is not None and self.config.seed is None:
                    self.seed = state.seed
                self._saved_input = (path, state)  # positions: resolve_input_positions
        if self.num_workers > 1:
            state = self.model.weights + self.optimizer.variables
            distribute.broadcast_from_chief(self.strategy, state)
            self.global_step, self.seed = distribute.broadcast_values(
                self.strategy, [self.global_step, self.seed])
        return path

    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate.numpy()) if hasattr(
            self.optimizer.learning_rate, "numpy") else float(self.optimizer.learning_rate)

    def save(self) -> str:
        """Writes a checkpoint (the chief only; returns "" elsewhere)."""
        if not self.is_chief:
            return ""
        if not self._checkpoints.written:
            # The flags are known to fit the train_dir's checkpoint (restored, or none).
            save_model_config(self.config.train_dir, self.model_config)
            save_train_flags(self.config.train_dir, dataclasses.asdict(self.config))
        tensors = optimizer_state.training_state(self.model, self.optimizer, self.global_step,
                                                 self.naming)
        companions = {}
        if self.resumable_input and self._plans is not None:  # an input was planned
            state = resume.InputState(self.seed, tuple(map(resume.describe, self.input_plans())),
                                      tuple(self.input_positions))
            companions[resume.SUFFIX] = state.to_json()
        self.last_checkpoint = self._checkpoints.save(tensors, self.global_step, companions)
        log.info("wrote checkpoint %s", self.last_checkpoint)
        return self.last_checkpoint

    def export(self) -> str:
        """Writes a SavedModel of the current weights (the chief only; returns
        "" elsewhere). Under mixed precision the export computes in float32,
        like eval.py's model, from the training weights themselves (a float32
        copy of the model would add its weights to the run's peak memory:
        1.3 GB for Gated NetVLAD)."""
        if not self.is_chief:
            return ""
        with _computing_in_float32(self.model):
            path = export_model(self.model, self.model_config, self.config.train_dir,
                                self.global_step)
        log.info("exported the model at global step %d to %s", self.global_step, path)
        return path


def precision_and_xla(trainer: Trainer) -> str:
    """How the training step computes, for the log: the dtype policy read
    off the built model (so the line confirms that --precision took) and
    whether --xla compiles the step, e.g. ``precision: mixed_bfloat16
    (bfloat16 compute, float32 weights), XLA: on``."""
    policy = trainer.model.dtype_policy
    precision = policy.name
    if policy.compute_dtype != policy.variable_dtype:
        scaling = ", dynamic loss scaling" if trainer.loss_scale is not None else ""
        precision += (f" ({policy.compute_dtype} compute, {policy.variable_dtype} weights"
                      f"{scaling})")
    return f"precision: {precision}, XLA: {'on' if trainer.config.xla else 'off'}"
