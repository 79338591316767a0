"""Input planning of a training run: each worker's planned input order
(``data.resumable``), the position a resumed run continues from, and the
datasets built from them.

`InputPlanning` is a part of ``training.run.Trainer``: it uses the
Trainer's ``config``, ``model_config``, ``strategy``, ``distributed``,
``num_workers``, ``replica_batch_size`` and ``seed``, and keeps the input
state (``input_positions``, the plans, the restored input state).
"""

from __future__ import annotations

import logging

import tensorflow as tf

from youtube8m_willow.data.datasets import make_planned_dataset, report_skipped
from youtube8m_willow.data.files import file_sizes
from youtube8m_willow.data.reader_config import ReaderConfig, ReadStats, stats_for
from youtube8m_willow.data.resumable import InputPosition, Plan
from youtube8m_willow.data.segments import make_rated_segment_dataset
from youtube8m_willow.training import distribute, resume

log = logging.getLogger("youtube8m_willow")


class InputPlanning:
    """The input half of a Trainer: ``input_plans``, ``resolve_input_positions``,
    ``epochs_done``, ``make_dataset`` and ``report_skipped``."""

    def _init_input_state(self, resumable: bool) -> None:
        """No input planned yet, every worker at the start (``resumable``:
        whether the input is planned, hence resumable)."""
        self.resumable_input = resumable
        self.input_positions = [InputPosition()] * self.num_workers
        self._plans: list[Plan] | None = None
        # The restored checkpoint and its input state, until the positions are resolved.
        self._saved_input: tuple[str, resume.InputState | None] | None = None
        self._positions_resolved = False

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
            window = 5 * (self.replica_batch_size if self.distributed
                          else self.config.examples_per_step)
            self._plans = [Plan(tuple(distribute.shard_files(files, self.num_workers, worker)
                                      or files), self.config.shuffle, self.seed,
                                self.config.num_readers, window)
                           for worker in range(self.num_workers)]
        return self._plans

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
            return make_planned_dataset(plans[0], reader, config.examples_per_step,
                                        num_epochs=self.num_epochs,
                                        position=self.input_positions[0])
        files_shared = len(plans) > 1 and plans[0].files == plans[1].files
        stats = stats_for(reader)  # shared by this worker's pipelines, made outside the scope

        def dataset_fn(context: tf.distribute.InputContext):
            batch_size = context.get_per_replica_batch_size(config.examples_per_step)
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
                                              config.examples_per_step, **options)
        files = [path for path, _ in file_sizes(config.train_data_pattern)]
        stats = stats_for(reader)  # shared by this worker's pipelines, made outside the scope

        def dataset_fn(context: tf.distribute.InputContext):
            batch_size = context.get_per_replica_batch_size(config.examples_per_step)
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
