"""The training loop: the original train.py's behavior on Keras 3 / TF2.

One step = forward in training mode (batch norm on batch statistics, moving
statistics updated), label loss + regularization_penalty * slim L2 losses,
per-tensor clipped gradients, one optimizer update with the original's TF1
kernel (``training.updates``, ``training.tf1_optimizers``). Checkpoints (TF1
format, see ``youtube8m_willow.checkpoint``) are written every
``save_checkpoint_secs``, at every export, on SIGTERM/SIGINT and when
training ends however it ends (the original lost its final model when it
stopped on num_epochs). A run continued from an original's train_dir keeps
writing that original's variable names (the starter's ``tower/``, old RNN
spellings), so the original's own tools can still read it.

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
seed (``replica_sampling_seed``). A signal stops every worker at the same
step; only the chief writes checkpoints, exports and summaries.

Speed: ``--xla`` compiles the forward and backward pass; ``--precision``
bfloat16 or float16 runs the model under a Keras mixed-precision policy
(float32 weights, float32 loss, float32 exports; float16 with dynamic loss
scaling).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import signal
import time

import keras
import tensorflow as tf

from youtube8m_willow import checkpoint, summaries
from youtube8m_willow.config import ModelConfig, save_model_config, save_train_flags
from youtube8m_willow.data.readers import (CLASSES_BY_ID_KEY, DataError, ReaderConfig,
                                            ReadStats, dequantize_frames, file_sizes,
                                            first_record_id_key, make_planned_dataset,
                                            report_skipped)
from youtube8m_willow.data.resumable import InputPosition, Plan
from youtube8m_willow.data.segments import make_rated_segment_dataset
from youtube8m_willow.errors import ConfigError, NonFiniteLossError
from youtube8m_willow.legacy import PORT_NAMING
from youtube8m_willow.losses import create_loss
from youtube8m_willow.models import original_train_dir
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.training import distribute, optimizer_state, resume, updates
from youtube8m_willow.training.batch_metrics import batch_metrics
from youtube8m_willow.training.export import export_model
from youtube8m_willow.training.optimizers import StaircaseExampleDecay, create_optimizer

log = logging.getLogger("youtube8m_willow")

# --precision: the Keras dtype policy of the model (variables stay float32).
PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
TOP_K = 20  # predictions per video ranked by the batch GAP


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The train.py flags that are not model flags.

    ``shuffle=False`` reads the files in order, every epoch the same
    (deterministic batches); ``xla`` compiles the step with XLA (numerics may
    differ slightly); ``precision`` is float32, bfloat16 or float16 (mixed
    precision: float32 variables and probabilities, float16 with loss scaling).
    """

    train_dir: str
    train_data_pattern: str
    batch_size: int = 1024
    label_loss: str = "CrossEntropyLoss"
    alpha: float = 0.5
    regularization_penalty: float = 1.0
    base_learning_rate: float = 0.001
    learning_rate_decay: float = 0.9
    learning_rate_decay_examples: float = 4000000
    num_epochs: int | None = 15
    max_steps: int | None = None
    export_model_steps: int = 10000
    num_readers: int = 8
    optimizer: str = "AdamOptimizer"
    clip_gradient_norm: float = 1.0
    start_new_model: bool = False
    save_checkpoint_secs: float = 600
    keep_checkpoints: int = 5
    skip_bad_records: bool = False
    drop_out_of_range_labels: bool = False
    seed: int | None = None
    shuffle: bool = True
    xla: bool = False
    precision: str = "float32"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown --precision={self.precision!r}; valid: "
                             f"{', '.join(PRECISIONS)}")


@dataclasses.dataclass
class TrainResult:
    global_step: int
    last_loss: float
    checkpoint_path: str  # "" on a worker that is not the chief
    stopped_by: str  # "max_steps" | "end_of_data" | "signal" | "nan"


class _StopRequest:
    """Turns the first SIGTERM/SIGINT into a flag checked between steps (the
    loop then checkpoints and stops); a second one stops the process at once
    (the signal's default action: checkpoints are written atomically, so the
    last complete one stays the latest)."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        for sig in self._previous:
            signal.signal(sig, signal.SIG_DFL)
        self.signal_name = signal.Signals(signum).name
        log.warning("received %s: checkpointing after this step; send it again to stop "
                    "at once", self.signal_name)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def resumable_checkpoint(train_dir: str) -> str | None:
    """The checkpoint a run in train_dir continues (``checkpoint.latest_checkpoint``),
    None for a train_dir without checkpoint files. Checkpoint files it cannot
    use (a data file without its index, an unreadable index) are an error:
    a new model is never started beside them without --start_new_model."""
    if not tf.io.gfile.isdir(train_dir):
        return None
    unusable = checkpoint.unusable_checkpoint_files(train_dir)
    if unusable:
        raise checkpoint.CheckpointError(
            f"train_dir {train_dir!r} holds no complete checkpoint to continue "
            f"({checkpoint.describe_unusable(unusable)}); restore the missing files, or pass "
            "--start_new_model to delete them and train a new model")
    path = checkpoint.latest_checkpoint(train_dir)
    if path is not None:
        try:
            checkpoint.naming_of(path)  # reads the index
        except checkpoint.CheckpointError as error:
            raise checkpoint.CheckpointError(
                f"{error}; restore it, or pass --start_new_model to delete train_dir's "
                "checkpoints and train a new model") from None
    return path


def model_config_for_checkpoint_names(train_dir: str, model_config: ModelConfig) -> ModelConfig:
    """``model_config`` with the graph variant of train_dir's latest checkpoint
    (the starter's or WILLOW's LstmModel); unchanged for a new train_dir.

    Every worker reads it, so with several workers each must see train_dir
    (or be given the same ``--lstm_variant``).
    """
    return original_train_dir.resolve(model_config, resumable_checkpoint(train_dir))


def resolved_model_config(train_dir: str, data_pattern: str, model_config: ModelConfig,
                          free: frozenset, skip_bad_records: bool = False) -> ModelConfig:
    """The model of a run whose ``free`` model flags were neither given nor
    recorded: when continuing a train_dir, its latest checkpoint's (names,
    shapes, ``.meta`` graph: ``models.original_train_dir``); for a new run,
    the class count the records' video id key implies (``video_id``: 2017,
    4716 classes; ``id``: 2018 and later, 3862), said in the log. The
    records are read as training reads them (``skip_bad_records``: a
    damaged first record is skipped, not an error)."""
    path = resumable_checkpoint(train_dir)
    if path is not None:
        return original_train_dir.resolve(model_config, path, free)
    if "num_classes" not in free:
        return model_config
    key = first_record_id_key(data_pattern, ReaderConfig.for_model(
        model_config, skip_bad_records=skip_bad_records))
    classes = CLASSES_BY_ID_KEY.get(key)
    if classes is None or classes == model_config.num_classes:
        return model_config
    log.info("num_classes=%d, from the records' video id key %r (pass --num_classes to set it)",
             classes, key)
    return model_config.replace(num_classes=classes)


def prepare_train_dir(config: TrainConfig) -> None:
    if config.start_new_model and tf.io.gfile.exists(config.train_dir):
        log.info("start_new_model: removing %s", config.train_dir)
        tf.io.gfile.rmtree(config.train_dir)
    tf.io.gfile.makedirs(config.train_dir)


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


class Trainer:
    """Holds the model, optimizer and compiled step of one training run:
    ``restore_latest``, ``make_dataset``, ``step`` (one step on a batch),
    ``save`` (a checkpoint) and ``export`` (a SavedModel).

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
        self.replica_batch_size = distribute.per_replica_batch_size(config.batch_size,
                                                                    self.num_replicas)
        self.num_workers = distribute.num_workers(self.strategy)
        self.is_chief = distribute.strategy_is_chief(self.strategy)
        if config.seed is not None:
            tf.keras.utils.set_random_seed(config.seed)
        # The run's seed: the input order and the frame sampling of each step
        # (kept in the input state, so a resumed run goes on with it).
        self.seed = config.seed if config.seed is not None else random.randrange(2 ** 31)
        # Segment windows are shuffled after cutting: that input is not planned.
        self.resumable_input = not model_config.segment_labels
        self.input_positions = [InputPosition()] * self.num_workers
        self._plans: list[Plan] | None = None
        # The restored checkpoint and its input state, until the positions are resolved.
        self._saved_input: tuple[str, resume.InputState | None] | None = None
        self._positions_resolved = False
        with self.strategy.scope():
            with _dtype_policy(PRECISIONS[config.precision]):
                self.model = create_model(model_config).build_for_config()
            schedule = StaircaseExampleDecay(config.base_learning_rate, config.learning_rate_decay,
                                             config.learning_rate_decay_examples,
                                             config.batch_size)
            # Clipping is done by the step, on the gradient summed over replicas.
            self.optimizer = create_optimizer(config.optimizer, schedule, 0.0)
            self.optimizer.build(self.model.trainable_variables)
            self.loss_scale = (updates.DynamicLossScale() if config.precision == "float16"
                               else None)
        self.in_place = updates.supports_in_place(self.optimizer)
        if self.distributed and self.loss_scale is not None and not self.in_place:
            raise ConfigError(f"--precision=float16 with several replicas cannot use "
                              f"--optimizer={config.optimizer}")
        self.loss_fn = create_loss(config.label_loss, config.alpha)
        self.global_step = 0
        self._checkpoints = checkpoint.CheckpointWriter(
            config.train_dir, config.keep_checkpoints,
            not_model=optimizer_state.is_optimizer_name)
        self.last_checkpoint = ""
        self._moving_statistics = [v for v in self.model.tf1_weights().values()
                                   if not v.trainable]
        self._forward_backward_fn = (tf.function(self._forward_backward, jit_compile=True)
                                     if config.xla else self._forward_backward)
        step = self._distributed_step if self.distributed else self._single_step
        self._step_fn = tf.function(step, reduce_retracing=True)

    # ------------------------------------------------------------ state

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

    def resolve_input_positions(self) -> None:
        """Sets each worker's input position from the restored checkpoint's
        input state (the chief decides, from every worker's plan; collective
        with several workers). Once, before the first dataset."""
        if self._positions_resolved:
            return
        if self._saved_input is not None:
            path, state = self._saved_input
            resolved = [resume.position_for(state, worker, self.num_workers, plan, path)
                        for worker, plan in enumerate(self.input_plans())]
            self.input_positions = [position for position, _ in resolved]
            warning = next((w for _, w in resolved if w), None)
            if warning:
                log.warning("%s", warning)
            else:
                log.info("the input resumes at %s", ", ".join(
                    f"epoch {p.epoch} window {p.window} (+{p.taken})"
                    for p in self.input_positions))
        if self.num_workers > 1:
            values = distribute.broadcast_values(
                self.strategy, [v for p in self.input_positions for v in p.as_list()])
            fields = len(InputPosition.FIELDS)
            self.input_positions = [InputPosition.from_row(values[i:i + fields])
                                    for i in range(0, len(values), fields)]
        self._saved_input, self._positions_resolved = None, True

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
        "" elsewhere). Under mixed precision the export is a float32 copy, so
        served probabilities are float32 like those of eval.py."""
        if not self.is_chief:
            return ""
        model = self.model
        if PRECISIONS[self.config.precision] is not None:
            model = create_model(self.model_config).build_for_config()
            for name, variable in model.tf1_weights().items():
                variable.assign(self.model.tf1_weights()[name])
        path = export_model(model, self.model_config, self.config.train_dir, self.global_step)
        log.info("exported the model at global step %d to %s", self.global_step, path)
        return path

    # ------------------------------------------------------------ input

    @property
    def num_epochs(self) -> int | None:
        epochs = self.config.num_epochs
        return epochs if epochs and epochs > 0 else None

    def input_plans(self) -> list[Plan]:
        """Each worker's input order (``data.resumable``): its share of the
        files (all of them when there are fewer files than workers), the
        run's seed, the readers and a shuffle window of five pipeline batches
        (the original's queue capacity)."""
        if self._plans is None:
            files = file_sizes(self.config.train_data_pattern)
            window = 5 * (self.replica_batch_size if self.distributed else self.config.batch_size)
            self._plans = [Plan(tuple(distribute.shard_files(files, self.num_workers, worker)
                                      or files), self.config.shuffle, self.seed,
                                self.config.num_readers, window)
                           for worker in range(self.num_workers)]
        return self._plans

    def epochs_done(self) -> bool:
        """Whether every worker's input has made its --num_epochs passes."""
        if not self.resumable_input:
            return False
        self.resolve_input_positions()
        return (self.num_epochs is not None
                and min(p.epoch for p in self.input_positions) >= self.num_epochs)

    def make_dataset(self):
        """The training batches from the input positions: a tf.data.Dataset of
        global batches, or under a multi-replica strategy a distributed dataset
        of per-replica batches (input sharding: see ``training.distribute``)."""
        config = self.config
        if not self.resumable_input:
            return self._segment_dataset()
        # Frames stay uint8 until the step (_model_inputs): a quarter of the
        # memory in the pipeline's buffers.
        reader = ReaderConfig.for_model(self.model_config, config.skip_bad_records,
                                        config.drop_out_of_range_labels, quantized_frames=True)
        self.resolve_input_positions()
        plans = self.input_plans()
        if not self.distributed:
            return make_planned_dataset(plans[0], reader, config.batch_size,
                                        num_epochs=self.num_epochs,
                                        position=self.input_positions[0])
        files_shared = len(plans) > 1 and plans[0].files == plans[1].files
        stats = _tolerant_stats(reader)

        def dataset_fn(context: tf.distribute.InputContext):
            batch_size = context.get_per_replica_batch_size(config.batch_size)
            worker = context.input_pipeline_id
            shard = (context.num_input_pipelines, worker, batch_size) if files_shared else None
            return make_planned_dataset(plans[worker], reader, batch_size,
                                        num_epochs=self.num_epochs,
                                        position=self.input_positions[worker], shard=shard,
                                        stats=stats)

        return self._distribute(dataset_fn, stats)

    def _segment_dataset(self):
        """Rated 5-frame segments (their shuffle is not planned: a resumed
        run's input starts over)."""
        config = self.config
        reader = ReaderConfig.for_model(self.model_config, config.skip_bad_records,
                                        config.drop_out_of_range_labels)
        options = dict(training=config.shuffle, num_readers=config.num_readers,
                       num_epochs=self.num_epochs, seed=self.seed)
        if not self.distributed:
            return make_rated_segment_dataset(config.train_data_pattern, reader,
                                              config.batch_size, **options)
        files = [path for path, _ in file_sizes(config.train_data_pattern)]
        stats = _tolerant_stats(reader)

        def dataset_fn(context: tf.distribute.InputContext):
            batch_size = context.get_per_replica_batch_size(config.batch_size)
            shard = distribute.shard_files(files, context.num_input_pipelines,
                                           context.input_pipeline_id)
            dataset = make_rated_segment_dataset(shard or files, reader, batch_size,
                                                 stats=stats, **options)
            if shard is None:
                dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
            return dataset

        return self._distribute(dataset_fn, stats)

    def _distribute(self, dataset_fn, stats: ReadStats | None):
        """The strategy's distributed dataset of ``dataset_fn``; its
        ``read_stats`` are this worker's counters (``report_skipped``)."""
        dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
        dataset.read_stats = stats
        return dataset

    def report_skipped(self, dataset) -> None:
        """Logs what the tolerant modes skipped or dropped from ``dataset``;
        with several workers, each logs the counts summed over the workers
        (collective: every worker calls it)."""
        stats = getattr(dataset, "read_stats", None)
        if stats is None or self.num_workers == 1:
            report_skipped(dataset, log)
            return
        counts = stats.as_dict()
        totals = distribute.sum_over_workers(self.strategy, list(counts.values()))
        log.warning("skipped or dropped input (all %d workers): %s", self.num_workers,
                    ", ".join(f"{name}={total}" for name, total in zip(counts, totals)))

    # ------------------------------------------------------------ steps

    def step(self, batch, stop: bool = False) -> dict:
        """One training step on a batch (per-replica batches when distributed).

        ``stop`` tells the other workers that this one wants to stop. Returns
        the metrics of the global batch as floats: loss (the label loss),
        reg_loss (the unweighted sum of the L2 losses), total_loss, hit_at_one,
        perr, gap, examples, and (distributed) stop, whether a worker asked to
        stop.
        """
        # Random frame sampling is a function of the run's seed and the step
        # (and, with several replicas, of the replica: replica_sampling_seed).
        batch = {**batch, "sampling_seed": tf.constant([self.seed, self.global_step + 1], tf.int64)}
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
        """Predictions, label loss, the unweighted sum of the L2 losses and the
        gradients of ``label_weight * label_loss + regularization_weight *
        regularization_penalty * l2_sum`` (weights None: 1), times the loss
        scale under float16."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            predictions = tf.cast(self.model(batch, training=True), tf.float32)
            label_loss = self.loss_fn(predictions, batch["labels"])
            l2_sum = self.model.regularization_loss()
            regularization = self.config.regularization_penalty * l2_sum
            objective = (label_loss if label_weight is None else label_loss * label_weight) + (
                regularization if regularization_weight is None
                else regularization * regularization_weight)
            if self.loss_scale is not None:
                objective = self.loss_scale.scaled(objective)
        gradients = updates.computed_last(tape.gradient(objective, variables))
        return predictions, label_loss, l2_sum, gradients

    def _apply(self, gradients) -> None:
        """Unscales (float16), clips each tensor and updates the weights."""
        variables = self.model.trainable_variables
        if self.loss_scale is None:
            self._update(updates.clip_each(gradients, self.config.clip_gradient_norm), variables)
            return
        gradients, finite = self.loss_scale.unscaled(gradients)
        clipped = updates.clip_each(gradients, self.config.clip_gradient_norm)

        def update():
            self._update(clipped, variables)
            return tf.constant(True)

        tf.cond(finite, update, lambda: tf.constant(False))  # an overflow skips the step
        self.loss_scale.update(finite)

    def _update(self, gradients, variables) -> None:
        with tf.control_dependencies(gradients):
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
            _model_inputs(batch, self.model_config.feature_sizes))
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
                _model_inputs(batch, self.model_config.feature_sizes), weight,
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


def _tolerant_stats(reader: ReaderConfig) -> ReadStats | None:
    """Counters shared by a worker's input pipelines when a tolerant mode
    is on (created outside the strategy's scope, as ``ReadStats`` needs)."""
    if reader.skip_bad_records or reader.drop_out_of_range_labels:
        return ReadStats()
    return None


def _replica_positions(context, rows, has_data):
    """Every replica's position after its last record (-1s without one): [R, 5]."""
    fields = len(InputPosition.FIELDS)
    last = tf.cond(has_data, lambda: tf.cast(rows[-1], tf.float64),
                   lambda: tf.fill([fields], tf.constant(-1.0, tf.float64)))
    return context.all_gather(last[None], axis=0)


def _model_inputs(batch: dict, feature_sizes) -> dict:
    """The tensors a step needs (not the string video ids, which XLA cannot
    take), frames dequantized if the reader kept them as bytes."""
    inputs = {name: batch[name] for name in ("video_matrix", "num_frames", "labels",
                                             "sampling_seed") if name in batch}
    if "feature_frames" in batch:
        inputs["video_matrix"] = dequantize_frames(batch["video_matrix"], batch["feature_frames"],
                                                   feature_sizes)
    return inputs


def train(config: TrainConfig, model_config: ModelConfig,
          strategy: tf.distribute.Strategy | None = None) -> TrainResult:
    """Runs training until max_steps, the end of num_epochs, a signal or NaN."""
    strategy = strategy or distribute.select_strategy()  # before any other TF work
    if distribute.strategy_is_chief(strategy):
        prepare_train_dir(config)
    trainer = Trainer(config, model_config, strategy)
    restored = trainer.restore_latest()
    if config.max_steps is not None and trainer.global_step >= config.max_steps:
        log.info("global step %d already reached --max_steps=%d", trainer.global_step,
                 config.max_steps)
        # A train_dir without a checkpoint gets the initial weights; one with
        # a checkpoint is left as it is.
        return TrainResult(trainer.global_step, float("nan"), restored or trainer.save(),
                           "max_steps")
    if trainer.epochs_done():
        log.info("the input's --num_epochs=%d passes are done (global step %d)",
                 trainer.num_epochs, trainer.global_step)
        return TrainResult(trainer.global_step, float("nan"), restored, "end_of_data")
    first_step = trainer.global_step
    resumed_mid_input = any(p != InputPosition() for p in trainer.input_positions)
    dataset = trainer.make_dataset()
    writer = (tf.summary.create_file_writer(config.train_dir) if trainer.is_chief
              else tf.summary.create_noop_writer())
    stopped_by, last_loss = "end_of_data", float("nan")
    saved_step = exported_step = None
    last_save = time.monotonic()
    with _StopRequest() as stop, writer.as_default():
        for batch in dataset:
            start = time.monotonic()
            learning_rate = trainer.learning_rate()
            try:
                metrics = trainer.step(batch, stop=bool(stop.signal_name))
            except NonFiniteLossError:
                log.error("non-finite loss at global step %d; stopping", trainer.global_step + 1)
                stopped_by = "nan"
                break
            seconds = time.monotonic() - start
            if log.isEnabledFor(logging.DEBUG):
                log.debug("global step %d fed videos %s", trainer.global_step,
                          ",".join(_video_ids(trainer, batch)))
            last_loss = metrics["loss"]
            _log_step(trainer.global_step, metrics, metrics["examples"] / seconds, learning_rate,
                      config.regularization_penalty)
            step = trainer.global_step
            if config.export_model_steps > 0 and step % config.export_model_steps == 0:
                trainer.save()
                trainer.export()
                saved_step = exported_step = step
                last_save = time.monotonic()
            elif time.monotonic() - last_save >= config.save_checkpoint_secs:
                trainer.save()
                saved_step, last_save = step, time.monotonic()
            # Workers stop together: on the stop flag all-reduced by the step.
            if metrics["stop"] if trainer.distributed else stop.signal_name:
                log.info("received %s: checkpointing at global step %d",
                         stop.signal_name or "a stop request from another worker", step)
                stopped_by = "signal"
                break
            if config.max_steps is not None and step >= config.max_steps:
                stopped_by = "max_steps"
                break
    writer.flush()
    trainer.report_skipped(dataset)
    if stopped_by == "nan":
        path = checkpoint.latest_checkpoint(config.train_dir) if trainer.is_chief else None
        raise NonFiniteLossError(
            f"loss became NaN or Inf at global step {trainer.global_step + 1}; "
            f"last good checkpoint: {path or 'none'}")
    if trainer.global_step == first_step:
        if not resumed_mid_input:
            raise DataError(f"no records to train on in --train_data_pattern "
                            f"'{config.train_data_pattern}' (empty files?)")
        # A resumed input with nothing left: its passes were done.
        log.info("the input's --num_epochs=%d passes are done (global step %d)",
                 trainer.num_epochs, first_step)
        return TrainResult(first_step, float("nan"), restored or "", "end_of_data")
    step = trainer.global_step
    path = trainer.save() if saved_step != step else trainer.last_checkpoint
    if stopped_by != "signal" and exported_step != step:
        trainer.export()
    log.info("training stopped (%s) at global step %d; checkpoint %s", stopped_by,
             step, path or "written by the chief")
    return TrainResult(step, last_loss, path, stopped_by)


def _video_ids(trainer: Trainer, batch: dict) -> list[str]:
    """The ids of a (global) batch's videos, replica after replica."""
    ids = batch["video_ids"]
    parts = trainer.strategy.experimental_local_results(ids) if trainer.distributed else [ids]
    return [i.decode("utf-8", "replace") for part in parts for i in part.numpy()]


def _log_step(step: int, metrics: dict, examples_per_sec: float, learning_rate: float,
              regularization_penalty: float) -> None:
    """Logs the step in the original's line format (plus the total loss) and
    writes its TensorBoard scalars under the original's tags
    (``youtube8m_willow.summaries``); ``model/reg_loss`` only when the
    penalty is not 0, as the original."""
    log.info("training step %d | Loss: %.2f Examples/sec: %.2f | Hit@1: %.2f PERR: %.2f "
             "GAP: %.2f | Total loss: %.4f", step, metrics["loss"], examples_per_sec,
             metrics["hit_at_one"], metrics["perr"], metrics["gap"], metrics["total_loss"])
    values = dict(metrics, examples_per_second=examples_per_sec, learning_rate=learning_rate)
    if regularization_penalty == 0:
        del values["reg_loss"]
    summaries.write_scalars(summaries.TRAIN_TAGS, values, step)
