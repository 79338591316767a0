"""Distributed training with tf.distribute: which strategy, who is chief,
how the global batch is split and how the input is sharded.

Strategy (``select_strategy``), in order:
- ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names a cluster of more
  than one training task (``chief`` and ``worker`` tasks; the original
  starter code also read its cluster from ``TF_CONFIG``, with ``master`` for
  the chief and parameter servers, which this port does not use). Every task
  runs train.py with the same flags; each trains on its own share of the
  input.
- ``MirroredStrategy`` over the local GPUs when there are several.
- The default strategy otherwise (one device, no collective ops).

Batches: ``--batch_size`` is the GLOBAL batch (the learning-rate schedule is
defined on it); each replica gets ``batch_size / num_replicas`` examples, so
the batch size must be divisible by the number of replicas.

Input sharding (``shard_files``, used by ``Trainer.make_dataset``): with
several workers, each worker reads its own files
(``files[worker::num_workers]``) when there are at least as many files as
workers; otherwise every worker reads all the files and keeps every
``num_workers``-th per-replica batch (with a seed shared by all workers, so
the shuffled order is the same on each). Within a worker, the per-replica
batches go to the local replicas in turn: with one worker, a global step
consumes ``batch_size`` consecutive examples of the input stream, as a
single process does. At the end of the data, replicas left without a batch
take part in the step with no examples.

The chief (task ``chief``, or ``worker`` 0 when there is none, or the only
process) alone writes checkpoints, exports, model_flags.json and summaries.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from typing import Sequence

import tensorflow as tf

from youtube8m_willow.errors import ConfigError

log = logging.getLogger("youtube8m_willow")

TF_CONFIG = "TF_CONFIG"
_TRAINING_TASKS = ("chief", "worker")


def tf_config(environ=None) -> dict:
    """The parsed ``TF_CONFIG`` environment variable ({} when unset)."""
    text = (os.environ if environ is None else environ).get(TF_CONFIG, "")
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return config


def num_training_tasks(config: dict) -> int:
    """How many training tasks (chief and workers) a ``TF_CONFIG`` cluster lists."""
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(task, [])) for task in _TRAINING_TASKS)


def is_multi_worker(config: dict | None = None) -> bool:
    """Whether ``TF_CONFIG`` asks for multi-worker training."""
    config = tf_config() if config is None else config
    unsupported = sorted(set(config.get("cluster", {})) - set(_TRAINING_TASKS) - {"evaluator"})
    if unsupported:
        raise ConfigError(
            f"TF_CONFIG cluster has task types {unsupported}: training runs with "
            "MultiWorkerMirroredStrategy, whose cluster holds 'chief' and 'worker' tasks "
            "(the original's 'master' is the 'chief'; parameter servers are not used)")
    return num_training_tasks(config) > 1


def is_chief(config: dict | None = None) -> bool:
    """Whether this process is the chief: the ``chief`` task, ``worker`` 0 of a
    cluster without chief, or a process outside any multi-task cluster."""
    config = tf_config() if config is None else config
    if num_training_tasks(config) <= 1:
        return True
    task = config.get("task", {})
    task_type, index = task.get("type"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and "chief" not in config.get("cluster", {})


def select_strategy(config: dict | None = None) -> tf.distribute.Strategy:
    """The strategy for this process (see the module docstring).

    Create it before any other TensorFlow work: a multi-worker strategy
    configures the collective ops of the process.
    """
    config = tf_config() if config is None else config
    if is_multi_worker(config):
        task = config.get("task", {})
        if task.get("type") not in _TRAINING_TASKS:
            raise ConfigError(f"TF_CONFIG task {task!r} is not a 'chief' or 'worker' task")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    return tf.distribute.get_strategy()


def is_default_strategy(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` is TensorFlow's default one: one device, no replica
    functions, no collective ops (call it outside any strategy scope)."""
    return not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy()


def _cluster_of(strategy: tf.distribute.Strategy) -> dict:
    """The strategy's cluster as a TF_CONFIG-like dict ({} without cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec:
        return {}
    return {"cluster": spec, "task": {"type": resolver.task_type, "index": resolver.task_id}}


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Training processes (chief and workers) taking part in the strategy."""
    spec = _cluster_of(strategy).get("cluster", {})
    return max(1, sum(len(spec.get(task, [])) for task in _TRAINING_TASKS))


def strategy_is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process is the chief of the strategy's cluster."""
    return is_chief(_cluster_of(strategy))


def per_replica_batch_size(global_batch_size: int, num_replicas: int) -> int:
    """``global_batch_size / num_replicas``; fails clearly if not an integer."""
    if global_batch_size % num_replicas:
        raise ConfigError(
            f"--batch_size={global_batch_size} is the global batch: it must be divisible by "
            f"the number of replicas ({num_replicas}); e.g. --batch_size="
            f"{max(1, round(global_batch_size / num_replicas)) * num_replicas}")
    return global_batch_size // num_replicas


def shard_files(files: Sequence[str], num_pipelines: int, pipeline_id: int) -> list[str] | None:
    """The files of one input pipeline (worker), or None when there are fewer
    files than pipelines (the caller then shards the batches instead)."""
    if num_pipelines <= 1:
        return list(files)
    if len(files) < num_pipelines:
        return None
    return list(files[pipeline_id::num_pipelines])


def broadcast_from_chief(strategy: tf.distribute.Strategy, variables: Sequence) -> None:
    """Gives every replica the chief's (replica 0's) values of ``variables``.

    Used after the chief alone restored a checkpoint. A sum of the chief's
    values and zeros from the other replicas is exact. Collective: every
    worker must call it.
    """
    variables = list(variables)
    if not variables:
        return

    def replica_fn():
        context = tf.distribute.get_replica_context()
        is_chief_replica = tf.equal(context.replica_id_in_sync_group, 0)
        by_dtype = {}  # collectives pack tensors together: one all-reduce per dtype
        for var in variables:
            by_dtype.setdefault(tf.as_dtype(var.dtype), []).append(var)
        for dtype, group in by_dtype.items():
            keep = tf.cast(is_chief_replica, dtype)
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                        [tf.convert_to_tensor(v) * keep for v in group])
            for var, value in zip(group, summed):
                var.assign(value)

    _run_on_replicas(strategy, replica_fn)


# Numbers the barriers: every worker passes the same ones, in the same order.
_barrier_numbers = itertools.count()


def leave_together(strategy: tf.distribute.Strategy, timeout_s: float = 600.0) -> None:
    """Waits until every worker is here (a barrier of the cluster's
    coordination service); a no-op with one worker. Every worker must call
    it the same number of times.

    Called after a run's last collective: no worker passes until every
    worker has finished it. Without it, the worker that finishes a
    collective first may exit while its peer still fetches that worker's
    part over gRPC, and the peer fails with "Socket closed". A barrier that
    fails (a worker died, or ``timeout_s`` passed) is logged, not raised:
    the training itself is done.
    """
    if num_workers(strategy) == 1:
        return
    from tensorflow.python.eager import context  # no public API for the barrier

    barrier_id = f"youtube8m_willow/leave_together/{next(_barrier_numbers)}"
    try:
        context.context().wait_at_barrier(barrier_id, int(timeout_s * 1000))
    except tf.errors.OpError as error:
        log.warning("the workers did not meet at the end of the run: %s",
                    (str(error).splitlines() or [type(error).__name__])[0])


def _run_on_replicas(strategy: tf.distribute.Strategy, replica_fn):
    """``replica_fn`` run once on every replica, in a traced function (the
    collectives need one; its code is plain ops, so no AutoGraph)."""
    return tf.function(lambda: strategy.run(replica_fn), autograph=False)()


def _summed_integers(strategy: tf.distribute.Strategy, replica_fn) -> list[int]:
    """The integers that ``replica_fn``'s float64 all-reduce gives (this worker's copy)."""
    result = _run_on_replicas(strategy, replica_fn)
    return [int(v) for v in strategy.experimental_local_results(result)[0].numpy()]


def broadcast_values(strategy: tf.distribute.Strategy, values: Sequence[int]) -> list[int]:
    """The chief's ``values`` (integers below 2**53) on every worker (collective)."""

    def replica_fn():
        context = tf.distribute.get_replica_context()
        keep = tf.cast(tf.equal(context.replica_id_in_sync_group, 0), tf.float64)
        return context.all_reduce(tf.distribute.ReduceOp.SUM,
                                  tf.constant([float(v) for v in values], tf.float64) * keep)

    return _summed_integers(strategy, replica_fn)



def sum_over_workers(strategy: tf.distribute.Strategy, values: Sequence[int]) -> list[int]:
    """Each of ``values`` (integers below 2**53) summed over the workers, on
    every worker (collective: every worker must call it)."""
    local_replicas = strategy.num_replicas_in_sync // num_workers(strategy)

    def replica_fn():
        context = tf.distribute.get_replica_context()
        # Replica ids run worker by worker: the first of each worker's replicas counts.
        first = tf.equal(context.replica_id_in_sync_group % local_replicas, 0)
        return context.all_reduce(tf.distribute.ReduceOp.SUM,
                                  tf.constant([float(v) for v in values], tf.float64)
                                  * tf.cast(first, tf.float64))

    return _summed_integers(strategy, replica_fn)

# ------------------------------------------- batch metrics over the replicas

def metric_parts(predictions: tf.Tensor, labels: tf.Tensor, rows: int,
                 top_k: int = 20) -> dict[str, tf.Tensor]:
    """One replica's share of the batch metrics (``training.batch_metrics``).

    Hit@1 and PERR are means over videos, so each replica contributes sums;
    GAP ranks the top-k predictions of the whole batch, so each replica
    contributes its top-k scores and their labels, padded to ``rows`` rows
    with scores of -1 (below every probability) and no labels.
    """
    from youtube8m_willow.training import batch_metrics

    ranked = batch_metrics.rank(predictions, labels, top_k)
    size = tf.cast(tf.shape(predictions)[0], tf.float32)
    values, kept = batch_metrics.top_of(ranked, top_k, predictions.shape[1])
    padding = [[0, rows - tf.shape(values)[0]], [0, 0]]
    return {"hit_at_one": batch_metrics.hit_at_one(ranked) * size,
            "perr": batch_metrics.precision_at_equal_recall_rate(ranked) * size,
            "positives": ranked.positives,
            "top_values": tf.pad(values, padding, constant_values=-1.0),
            "top_labels": tf.pad(kept, padding)}


def empty_metric_parts(rows: int, top_k: int) -> dict[str, tf.Tensor]:
    """The share of a replica that got no examples."""
    zero = tf.constant(0.0)
    return {"hit_at_one": zero, "perr": zero, "positives": zero,
            "top_values": tf.fill([rows, top_k], -1.0), "top_labels": tf.zeros([rows, top_k])}


def reduce_metric_parts(context: tf.distribute.ReplicaContext, parts: dict,
                        global_size: tf.Tensor) -> dict[str, tf.Tensor]:
    """Hit@1, PERR and GAP of the global batch from every replica's parts
    (collective). GAP ties rank in batch order, as in one process."""
    sums = context.all_reduce(tf.distribute.ReduceOp.SUM,
                              [parts["hit_at_one"], parts["perr"], parts["positives"]])
    values, labels = context.all_gather([parts["top_values"], parts["top_labels"]], axis=0)
    order = tf.argsort(tf.reshape(values, [-1]), direction="DESCENDING", stable=True)
    ranked = tf.gather(tf.reshape(labels, [-1]), order)
    precision = tf.cumsum(ranked) / tf.cast(tf.range(1, tf.size(ranked) + 1), tf.float32)
    return {"hit_at_one": sums[0] / global_size, "perr": sums[1] / global_size,
            "gap": tf.math.divide_no_nan(tf.reduce_sum(precision * ranked), sums[2])}
