"""One training step, on one replica or on every replica of a strategy.

One step = forward in training mode (batch norm on batch statistics, moving
statistics updated), label loss + regularization_penalty * slim L2 losses,
per-tensor clipped gradients, one optimizer update with the original's TF1
kernel (``training.updates``, ``training.tf1_optimizers``).

Distribution (``training.distribute``): under a multi-replica strategy each
replica runs the step on ``batch_size / num_replicas`` examples with the loss
``label_loss * local_size / global_size + regularization / R`` (R: replicas
that got examples), so the gradients summed over the replicas are those of
the global batch; the sum is clipped tensor by tensor and applied on every
replica, as one process does. Batch norm normalizes with each replica's own
batch statistics (exact with one replica); the moving statistics are
averaged over the replicas after every step, so all copies stay equal. A
replica left without examples at the end of the data takes part in the
collectives with zero gradients. Each replica samples frames with its own
seed (`replica_sampling_seed`).

`ReplicaStep` is a part of ``training.run.Trainer``: it uses the Trainer's
``model``, ``optimizer``, ``loss_fn``, ``loss_scale``, ``in_place``,
``config``, ``model_config``, ``strategy`` (``distributed``,
``num_replicas``, ``replica_batch_size``, ``num_workers``), ``seed`` and
``global_step``, and advances ``global_step`` and ``input_positions``.
"""

from __future__ import annotations

import math

import tensorflow as tf

from youtube8m_willow.data.parsing import with_float_frames
from youtube8m_willow.data.resumable import InputPosition
from youtube8m_willow.errors import NonFiniteLossError
from youtube8m_willow.training import distribute, l2_gradient, updates
from youtube8m_willow.training.batch_metrics import batch_metrics

TOP_K = 20  # predictions per video ranked by the batch GAP


class ReplicaStep:
    """The step half of a Trainer: ``step`` and the compiled functions behind it."""

    def _compile_step(self) -> None:
        """The step functions: the forward and backward pass (under XLA with
        --xla) inside one ``tf.function`` step, single or distributed."""
        self._moving_statistics = [v for v in self.model.tf1_weights().values()
                                   if not v.trainable]
        self._forward_backward_fn = (tf.function(self._forward_backward, jit_compile=True,
                                                 autograph=False)
                                     if self.config.xla else self._forward_backward)
        step = self._distributed_step if self.distributed else self._single_step
        self._step_fn = tf.function(step, reduce_retracing=True, autograph=False)

    def step(self, batch, stop: bool = False) -> dict:
        """One training step on a batch (per-replica batches when distributed).

        ``stop`` tells the other workers that this one wants to stop. Returns
        the metrics of the global batch as floats: loss (the label loss),
        reg_loss (the unweighted sum of the L2 losses), total_loss, hit_at_one,
        perr, gap, examples, and (distributed) stop, whether a worker asked to
        stop.
        """
        batch = self._seeded(batch)
        if self.distributed:
            metrics = self._step_fn(batch, tf.constant(stop))
            if "input_positions" in metrics:
                self._advance_input(metrics.pop("input_positions").numpy())
        else:
            metrics = self._step_fn(batch)
            rows = batch.get("input_position")
            if rows is not None and rows.shape[0]:
                self.input_positions = [InputPosition.from_row(rows[-1].numpy())]
        metrics = {k: float(v) for k, v in metrics.items()}
        if not math.isfinite(metrics["total_loss"]):
            raise NonFiniteLossError(
                f"loss is {metrics['total_loss']} at global step {self.global_step + 1}; "
                "training stopped, the last good checkpoint is kept")
        self.global_step += 1
        return metrics

    def traced_step(self, batch):
        """The step's concrete function for ``batch``, traced but not run (the
        graph in which bench/machine.py counts a step's matmul FLOPs)."""
        batch = self._seeded(batch)
        args = (batch, tf.constant(False)) if self.distributed else (batch,)
        return self._step_fn.get_concrete_function(*args)

    def _seeded(self, batch) -> dict:
        # Random frame sampling is a function of the run's seed and the step
        # (and, with several replicas, of the replica: replica_sampling_seed).
        return {**batch,
                "sampling_seed": tf.constant([self.seed, self.global_step + 1], tf.int64)}

    def _advance_input(self, table) -> None:
        """Each worker's position after a distributed step, from the last
        record of its last replica that had one (``table``: a row per
        replica, worker by worker; -1 rows for replicas without records)."""
        per_worker = len(table) // self.num_workers
        for worker in range(self.num_workers):
            rows = [row for row in table[worker * per_worker:(worker + 1) * per_worker]
                    if row[0] >= 0]
            if rows:
                self.input_positions[worker] = InputPosition.from_row(rows[-1])

    def _forward_backward(self, batch, label_weight=None, regularization_weight=None):
        """Predictions, label loss, the unweighted sum of the L2 losses (and of
        the model's own regularization term: MixNeXtVladModel's distillation)
        and the gradients of ``label_weight * label_loss +
        regularization_weight * regularization_penalty * l2_sum`` (weights
        None: 1), times the loss scale under float16. The model's
        ``training_objective`` gives the predictions and both losses; the
        gradient of slim's L2 penalties is added after the tape's
        (``training.l2_gradient``)."""
        variables = self.model.trainable_variables
        scales = l2_gradient.slim_l2_scales(variables, len(self.model.losses))
        with tf.GradientTape() as tape:
            predictions, label_loss, model_regularization = self.model.training_objective(
                batch, batch["labels"], self.loss_fn)
            weight_l2 = self.model.regularization_loss()
            # With scales, the penalties' gradient is added after the tape's.
            differentiated = (model_regularization if scales is not None
                              else weight_l2 + model_regularization)
            objective = (_weighted(label_loss, label_weight)
                         + _weighted(self.config.regularization_penalty * differentiated,
                                     regularization_weight))
            if self.loss_scale is not None:
                objective = self.loss_scale.scaled(objective)
        gradients = tape.gradient(objective, variables)
        if scales is not None:
            coefficient = _weighted(tf.constant(self.config.regularization_penalty),
                                    regularization_weight)
            if self.loss_scale is not None:
                coefficient = self.loss_scale.scaled(coefficient)
            gradients = l2_gradient.plus_l2_terms(gradients, variables, scales, coefficient)
        return predictions, label_loss, weight_l2 + model_regularization, updates.computed_last(
            gradients)

    def _apply(self, gradients) -> None:
        """Unscales (float16), clips each tensor and updates the weights."""
        variables = self.model.trainable_variables
        if self.loss_scale is None:
            adam_update = self.in_place and updates.supports_fused_adam(self.optimizer)
            self._update(updates.clip_each(gradients, self.config.clip_gradient_norm,
                                           adam_update), variables)
            return
        gradients, finite = self.loss_scale.unscaled(gradients)
        clipped = updates.clip_each(gradients, self.config.clip_gradient_norm)

        def update():
            self._update(clipped, variables)
            return tf.constant(True)

        tf.cond(finite, update, lambda: tf.constant(False))  # an overflow skips the step
        self.loss_scale.update(finite)

    def _update(self, gradients, variables) -> None:
        with tf.control_dependencies(updates.tensors_of(gradients)):
            # Every read of the weights is consumed before the first in-place
            # update: an update of a weight whose value is still held would copy
            # it first (1.1 GB for Gated NetVLAD's hidden weights).
            if self.in_place:
                updates.apply_in_place(self.optimizer, gradients, variables)
            elif self.distributed:
                # Keras sums the gradients over the replicas again: give it shares.
                share = 1.0 / self.num_replicas
                self.optimizer.apply([g * share for g in gradients], variables)
            else:
                self.optimizer.apply(gradients, variables)

    def _single_step(self, batch):
        predictions, label_loss, l2_sum, gradients = self._forward_backward_fn(
            _model_inputs(batch, self.model))
        self._apply(gradients)
        metrics = batch_metrics(predictions, batch["labels"], TOP_K)
        metrics["loss"] = label_loss
        metrics["reg_loss"] = l2_sum
        metrics["total_loss"] = label_loss + self.config.regularization_penalty * l2_sum
        metrics["examples"] = tf.shape(batch["labels"])[0]
        return metrics

    def _distributed_step(self, batch, stop):
        metrics = self.strategy.run(self._replica_step, args=(batch, stop))
        return {name: self.strategy.experimental_local_results(value)[0]
                for name, value in metrics.items()}

    def _replica_step(self, batch, stop):
        context = tf.distribute.get_replica_context()
        if self.num_replicas > 1:
            batch = {**batch, "sampling_seed": replica_sampling_seed(
                batch["sampling_seed"], context.replica_id_in_sync_group)}
        sum_ = tf.distribute.ReduceOp.SUM
        local_size = tf.shape(batch["labels"])[0]
        has_data = local_size > 0
        global_size, replicas_with_data, stops = context.all_reduce(sum_, [
            tf.cast(local_size, tf.float32), tf.cast(has_data, tf.float32),
            tf.cast(stop, tf.float32)])
        weight = tf.cast(local_size, tf.float32) / global_size
        top_k = min(TOP_K, self.model_config.num_classes)
        rows = self.replica_batch_size

        def compute():
            predictions, label_loss, l2_sum, gradients = self._forward_backward_fn(
                _model_inputs(batch, self.model), weight,
                1.0 / replicas_with_data)
            parts = distribute.metric_parts(predictions, batch["labels"], rows, top_k)
            return gradients, label_loss * weight, l2_sum, parts

        def skip():
            gradients = [tf.zeros(v.shape, tf.float32) for v in self.model.trainable_variables]
            return (gradients, tf.constant(0.0), self.model.regularization_loss(),
                    distribute.empty_metric_parts(rows, top_k))

        gradients, loss, l2_sum, parts = tf.cond(has_data, compute, skip)
        gradients = context.all_reduce(sum_, gradients)
        self._average_moving_statistics(context, has_data)
        self._apply(gradients)
        metrics = distribute.reduce_metric_parts(context, parts, global_size)
        metrics["loss"] = context.all_reduce(sum_, loss)
        metrics["reg_loss"] = l2_sum
        metrics["total_loss"] = metrics["loss"] + self.config.regularization_penalty * l2_sum
        metrics["examples"] = global_size
        metrics["stop"] = stops > 0
        if "input_position" in batch:
            metrics["input_positions"] = _replica_positions(context, batch["input_position"],
                                                            has_data)
        return metrics

    def _average_moving_statistics(self, context, has_data) -> None:
        """Sets every replica's batch-norm moving statistics to their mean over
        the replicas that had examples."""
        if not self._moving_statistics:
            return
        weight = tf.cast(has_data, tf.float32)
        totals = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                    [v.value * weight for v in self._moving_statistics] + [weight])
        for variable, total in zip(self._moving_statistics, totals[:-1]):
            variable.assign(total / totals[-1])


def replica_sampling_seed(sampling_seed, replica_id):
    """The step's frame-sampling seed of one replica: the run's seed and
    step folded with the replica id, so replicas draw different frames for
    the same row and a resumed run draws what the uninterrupted one did."""
    return tf.random.experimental.stateless_fold_in(sampling_seed, replica_id)


def _replica_positions(context, rows, has_data):
    """Every replica's position after its last record (-1s without one): [R, 5]."""
    fields = len(InputPosition.FIELDS)
    last = tf.cond(has_data, lambda: tf.cast(rows[-1], tf.float64),
                   lambda: tf.fill([fields], tf.constant(-1.0, tf.float64)))
    return context.all_gather(last[None], axis=0)


def _weighted(value, weight):
    """``value * weight``; ``value`` where ``weight`` is None."""
    return value if weight is None else value * weight


def _model_inputs(batch: dict, model) -> dict:
    """The tensors a step needs (not the string video ids, which XLA cannot
    take), frames dequantized if the reader kept them as bytes: only those
    the model samples (``with_float_frames``)."""
    inputs = {name: batch[name] for name in ("video_matrix", "num_frames", "labels",
                                             "sampling_seed", "feature_frames") if name in batch}
    return with_float_frames(inputs, model.config.feature_sizes, model.frame_indices)
