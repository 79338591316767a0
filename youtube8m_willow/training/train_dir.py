"""What a training run finds in its train_dir before it builds the model:
the checkpoint it continues, and the model flags that checkpoint (or, for a
new run, the records) imply; and the train_dir's preparation."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.reader_config import ReaderConfig
from youtube8m_willow.data.release import CLASSES_BY_ID_KEY, first_record_id_key
from youtube8m_willow.models import original_train_dir
from youtube8m_willow.training.train_config import TrainConfig

log = logging.getLogger("youtube8m_willow")


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
    """Creates train_dir; with --start_new_model, deletes it first."""
    if config.start_new_model and tf.io.gfile.exists(config.train_dir):
        log.info("start_new_model: removing %s", config.train_dir)
        tf.io.gfile.rmtree(config.train_dir)
    tf.io.gfile.makedirs(config.train_dir)


@contextlib.contextmanager
def removed_if_left_empty(train_dir: str, enabled: bool = True) -> Iterator[None]:
    """Removes ``train_dir`` when the block fails and leaves it empty, if it
    did not exist before: a first run that fails leaves no folder behind."""
    existed = not enabled or tf.io.gfile.exists(train_dir)
    try:
        yield
    except BaseException:
        if not existed and tf.io.gfile.isdir(train_dir) and not tf.io.gfile.listdir(train_dir):
            tf.io.gfile.rmtree(train_dir)
        raise
