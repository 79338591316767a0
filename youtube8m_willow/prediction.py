"""Predictions of a model restored from a train_dir's checkpoint: the
engine of inference.py (and of eval.py's, which scores them).

A train_dir written by the original code or by this project loads the same
way (TF1-format checkpoints, ``youtube8m_willow.checkpoint``). Predictions
are always computed in eval mode (batch norm on moving statistics); the
original inference restored the training graph, a quirk fixed here. The
functions that read records take an ``evaluation.EvalConfig`` (what to
read, and which checkpoint).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import logging
import time
from typing import Iterator

import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.files import describe_data
from youtube8m_willow.data.parsing import with_float_frames
from youtube8m_willow.data.readers import (DataError, ReaderConfig, make_dataset, report_skipped,
                                           warn_if_classes_disagree)
from youtube8m_willow.data.segments import make_rated_segment_dataset
from youtube8m_willow.layers.core import BATCH_NORM_DECAY, weights_to_be_restored
from youtube8m_willow.models import original_train_dir
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.progress import ProgressBar
from youtube8m_willow.submission.csv_writer import SubmissionWriter
from youtube8m_willow.submission.vocabulary import describe_batch
from youtube8m_willow.training import optimizer_state

log = logging.getLogger("youtube8m_willow")

# Batch norm's moving statistics start at mean 0 and variance 1 and move by
# 1 - BATCH_NORM_DECAY per training step: after n steps the initial values
# still weigh BATCH_NORM_DECAY ** n. Above this weight (fewer than 693 steps)
# eval mode normalizes mostly with the initial values, not the data's.
INITIAL_WEIGHT_WARNING = 0.5
# Float32 rounding allowed when checking that the moving variances could
# have come from n such steps (see ``batch_norm_warning``).
_VARIANCE_TOLERANCE = 1e-3
# Frames one compiled prediction call takes at most: a larger frame-level
# batch runs through the model in chunks (``videos_per_call``). A call's
# intermediates grow with its videos and their frames: for Gated NetVLAD's
# batch of 1024 videos of 300 sampled frames, about 3 GB (1.4 GB of float
# frames, 0.5 GB of cluster assignments, 1.1 GB of 278,528-float
# descriptors), a third of its inference's peak. Chunks of 512 such videos
# keep its matmuls near their rate at 1024 rows (the hidden layer's ran at
# 96% of it at 512 rows, 88% at 256, on a 2-core AMD EPYC).
PREDICTION_FRAMES = 512 * 300


def videos_per_call(model_config: ModelConfig) -> int | None:
    """The most videos of a batch that one prediction call takes: whole
    batches of video-level features (small), ``PREDICTION_FRAMES`` worth of
    frame-level ones (at least one video), counting the more of a video's
    frames and the frames a model samples (with replacement, it may sample
    more than a video has)."""
    if not model_config.frame_features:
        return None
    return max(1, PREDICTION_FRAMES // max(model_config.max_frames, model_config.iterations))


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """The inference.py flags beyond ``EvalConfig``'s: where the model comes
    from besides --train_dir, and what is written."""

    output_file: str
    vocabulary_file: str = ""
    print_top_videos: int = 5
    segment_label_ids_file: str = ""
    segment_max_pred: int = 100000
    output_model_tgz: str = ""
    input_model_tgz: str = ""
    untar_model_dir: str = "/tmp/yt8m-model"


class Predictor:
    """A model restored from a checkpoint, predicting in eval mode.

    ``restore`` rebuilds the model when a checkpoint's names call for another
    graph of the same model name (the starter's LstmModel vs WILLOW's). The
    weights are zeros until ``restore`` (``load``): no random initialization
    to throw away, seconds for the 333M-parameter models.
    """

    def __init__(self, model_config: ModelConfig, free_model_fields: frozenset = frozenset()):
        self.flag_config = model_config
        self.free_model_fields = free_model_fields
        self._build(model_config)

    def _build(self, model_config: ModelConfig) -> None:
        self.model_config = model_config
        self.videos_per_call = videos_per_call(model_config)
        self.path = ""
        with weights_to_be_restored():  # restore() overwrites every weight
            self.model = create_model(model_config).build_for_config()
        self._predict = tf.function(self._predict_batch, reduce_retracing=True,
                                    autograph=False)

    def _predict_batch(self, inputs: dict) -> tf.Tensor:
        """The compiled prediction: frames read as their uint8 bytes
        (``quantized_frames``) are dequantized here, bitwise the floats the
        reader would give (only those the model samples), so the input
        pipeline holds a quarter of them."""
        return self.model(with_float_frames(inputs, self.model_config.feature_sizes,
                                            self.model.frame_indices), training=False)

    def restore(self, path: str) -> int:
        """Loads the checkpoint ``path``; returns its global step."""
        self.prepare(path)
        return self.load(path)

    def prepare(self, path: str) -> None:
        """Rebuilds the model where the checkpoint ``path`` calls for another
        configuration than the built one (read off its names and shapes, and
        its meta graph's: no weight is read)."""
        config = original_train_dir.resolve(self.flag_config, path, self.free_model_fields,
                                            built=self.model)
        if config != self.model_config:
            self._build(config)

    def load(self, path: str) -> int:
        """Assigns the weights of the checkpoint ``path`` (``prepare``d for
        it); returns its global step."""
        step = optimizer_state.restore(path, self.model)
        self.path = path
        warning = batch_norm_warning(self.model, step, path)
        if warning:
            log.warning("%s", warning)
        return step

    def __call__(self, batch):
        """Probabilities ``[B, classes]``; non-finite ones are an error (bad
        weights). A batch of more than ``videos_per_call`` videos is
        predicted in chunks of that many, in order (each video's prediction
        depends on its own frames alone, and on its own draws where the
        model samples frames at random)."""
        inputs = {key: batch[key] for key in ("video_matrix", "num_frames", "feature_frames")
                  if key in batch}
        size, chunk = int(inputs["video_matrix"].shape[0]), self.videos_per_call
        if chunk is None or size <= chunk:
            predictions = self._predict(inputs)
        else:
            predictions = tf.concat(
                [self._predict({key: value[start:start + chunk] for key, value in inputs.items()})
                 for start in range(0, size, chunk)], axis=0)
        finite = tf.reduce_all(tf.math.is_finite(predictions), axis=1)
        if not bool(tf.reduce_all(finite)):
            video = batch["video_ids"][int(tf.argmin(tf.cast(finite, tf.int32)))].numpy()
            raise checkpoint.CheckpointError(
                f"the model predicts NaN or Inf for video {video.decode('utf-8', 'replace')} "
                f"(its input is finite): checkpoint {self.path!r} holds non-finite weights")
        return predictions


def batch_norm_warning(model, step: int, path: str) -> str | None:
    """A one-line warning when ``model``'s batch-norm moving statistics,
    restored from the checkpoint ``path`` at global ``step``, are still near
    their initial values (eval-mode predictions then come out near random
    however well the training batches scored); None otherwise.

    Near initial: the initial values still weigh BATCH_NORM_DECAY ** step >
    INITIAL_WEIGHT_WARNING, and the stored values agree: after n steps every
    moving variance is at least BATCH_NORM_DECAY ** n (the initial 1 times
    its weight, plus a weighted sum of batch variances, none negative). A
    checkpoint whose statistics were set otherwise (any variance below that)
    gets no warning, nor does a model without batch norm."""
    initial_weight = BATCH_NORM_DECAY ** max(step, 0)
    variances = [variable.numpy() for name, variable in model.tf1_weights().items()
                 if name.endswith("moving_variance")]
    if not variances or initial_weight <= INITIAL_WEIGHT_WARNING:
        return None
    if min(float(v.min()) for v in variances) < initial_weight - _VARIANCE_TOLERANCE:
        return None
    return (f"checkpoint {path} (global step {step}): its batch-norm moving statistics are "
            f"still near their initial values (mean 0, variance 1), which weigh "
            f"{BATCH_NORM_DECAY}**{step} = {initial_weight:.3f} in the moving averages "
            f"(decay {BATCH_NORM_DECAY}, as the original); eval-mode predictions may be near "
            f"random. Train longer (the initial values weigh under one half after 693 steps), "
            f"or for short experiments train without batch norm (e.g. "
            f"--netvlad_add_batch_norm=False, --dbof_add_batch_norm=False)")


def describe_model(predictor: Predictor) -> str:
    """``NetVLADModelLF, 1,234,567 parameters, 40 classes``: the restored model."""
    config = predictor.model_config
    return (f"{config.model}, {predictor.model.count_params():,} parameters, "
            f"{config.num_classes} classes")


def eval_dataset(config, model_config: ModelConfig):
    """The eval-order dataset of ``config`` (an ``EvalConfig``); its
    ``read_stats`` counts what the tolerant modes skipped (reported by
    ``report_skipped``). A model of the other YouTube-8M release than the
    records' is warned of first. Frame-level videos come as their uint8
    bytes with ``feature_frames`` (``ReaderConfig.quantized_frames``), for a
    ``Predictor``, which dequantizes them."""
    segments = model_config.segment_labels
    read = make_rated_segment_dataset if segments else make_dataset
    reader_config = ReaderConfig.for_model(model_config, config.skip_bad_records,
                                           config.drop_out_of_range_labels,
                                           quantized_frames=not segments)
    warn_if_classes_disagree(config.data_pattern, reader_config, log)
    return read(config.data_pattern, reader_config, config.batch_size, training=False,
                num_epochs=1, num_readers=config.num_readers)


@dataclasses.dataclass
class EvalInput:
    """An eval-order dataset (``eval_dataset``'s) and the iterator over its
    batches, which may have read some already."""

    dataset: tf.data.Dataset
    batches: Iterator[dict]


def predict_top_k(predictor: Predictor, config, eval_input: EvalInput | None = None):
    """Yields ``(video_ids, class_indexes, scores)`` for every video once
    (the predictor restored: its model config is the checkpoint's), of
    ``eval_input``'s batches where given, else of ``config``'s records."""
    k = min(config.top_k, predictor.model_config.num_classes)
    if eval_input is None:
        dataset = eval_dataset(config, predictor.model_config)
        eval_input = EvalInput(dataset, iter(dataset))
    for batch in eval_input.batches:
        scores, classes = tf.math.top_k(predictor(batch), k=k)
        yield batch["video_ids"].numpy(), classes.numpy(), scores.numpy()
    report_skipped(eval_input.dataset, log)


def restored_predictor(config, model_config: ModelConfig) -> Predictor:
    """A predictor restored from the checkpoint inference.py uses (the latest,
    or ``--check_point``); its ``model_config`` and ``path`` are the checkpoint's."""
    predictor = Predictor(model_config, config.free_model_fields)
    path = checkpoint.checkpoint_path(config.train_dir, config.check_point)
    _log_restored(predictor, path, predictor.restore(path))
    return predictor


def restored_predictor_and_input(config, model_config: ModelConfig
                                 ) -> tuple[Predictor, EvalInput | None]:
    """``restored_predictor``'s predictor, and the ``EvalInput`` of
    ``config``'s records with its first batch read while the weights were
    loaded: the load runs in a thread of its own, and the checkpoint's reads
    and the first batch's run in TensorFlow's kernels, outside Python's
    lock, so the two share the cores (Gated NetVLAD's 1.3 GB of weights take
    about a second). A checkpoint's error is raised over the reader's, as
    when the weights were loaded first. A segment model's inference reads
    its records otherwise: no input then."""
    predictor = Predictor(model_config, config.free_model_fields)
    path = checkpoint.checkpoint_path(config.train_dir, config.check_point)
    predictor.prepare(path)
    if predictor.model_config.segment_labels:
        _log_restored(predictor, path, predictor.load(path))
        return predictor, None
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="restore") as pool:
        loading = pool.submit(predictor.load, path)
        try:
            dataset = eval_dataset(config, predictor.model_config)
            batches = iter(dataset)
            first = next(batches, None)
        except Exception:
            error = loading.exception()  # waits for the load
            if error is not None:
                raise error from None
            raise
        step = loading.result()
    _log_restored(predictor, path, step)
    read = [] if first is None else [first]
    return predictor, EvalInput(dataset, itertools.chain(read, batches))


def _log_restored(predictor: Predictor, path: str, step: int) -> None:
    log.info("predicting with %s (global step %d): %s", path, step, describe_model(predictor))


def write_submission(predictor: Predictor, config, output_file: str,
                     vocabulary: dict | None = None, print_top_videos: int = 5,
                     eval_input: EvalInput | None = None) -> int:
    """inference.py: writes the submission CSV with a restored ``predictor``
    (of ``eval_input``'s batches where given, else of ``config``'s records);
    returns the number of videos. With a ``vocabulary``, logs the first
    ``print_top_videos`` videos' top predictions with class names."""
    start = time.monotonic()
    data, records = describe_data(config.data_pattern)
    log.info("input: %s, batch %d; output: %s", data, config.batch_size, output_file)
    with SubmissionWriter(output_file) as writer, ProgressBar("predict", total=records,
                                                              unit="videos") as bar:
        for video_ids, classes, scores in predict_top_k(predictor, config, eval_input):
            if vocabulary is not None and writer.rows < print_top_videos:
                for line in describe_batch(video_ids, classes, scores, vocabulary,
                                           print_top_videos - writer.rows):
                    log.info("%s", line)
            writer.write(video_ids, classes, scores)
            if bar.active:
                bar.update(len(video_ids))
            else:
                log.info("num examples processed: %d elapsed seconds: %.2f", writer.rows,
                         time.monotonic() - start)
        if writer.rows == 0:  # raised inside: the CSV is not written
            raise DataError(f"no records to predict in --input_data_pattern "
                            f"'{config.data_pattern}' (empty files?)")
    log.info("wrote %d videos to %s", writer.rows, output_file)
    return writer.rows
