"""Which YouTube-8M release records come from, told by their video id key
(2017: ``video_id``, 4716 classes; 2018 and later: ``id``, 3862), so that a
model of one release given the other's records is noticed."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from youtube8m_willow.data.datasets import read_records
from youtube8m_willow.data.files import file_sizes, first_sound_record
from youtube8m_willow.data.parsing import record_names
from youtube8m_willow.data.read_errors import data_error_from, raise_data_errors
from youtube8m_willow.data.reader_config import ReaderConfig
from youtube8m_willow.errors import DataError

# Classes of the YouTube-8M releases, told apart by their video id key.
CLASSES_BY_ID_KEY = {"video_id": 4716, "id": 3862}


def first_record_id_key(data_pattern: str | Sequence[str], config: ReaderConfig) -> str | None:
    """The video id key ("id" or "video_id") of the first record that
    `make_dataset` would read (eval order), or None (no record, or neither key).

    The record comes through the readers' own checks: a damaged first record
    (or, unless ``config.skip_bad_records``, an unparsable one) is a
    `DataError` naming its file; with ``skip_bad_records`` it is skipped as
    the readers skip it.

    A sound first record is read straight from its file (`first_sound_record`);
    the readers' pipeline is built only where that fails, or with
    ``skip_bad_records``, whose validation decides which record is first.
    """
    if not config.skip_bad_records:
        first = first_sound_record(file_sizes(data_pattern))
        if first is not None:
            path, record = first
            names = record_names(tf.constant([path]), tf.constant([0], tf.int64))
            return _id_key_of(tf.constant(record), names)
    records, _, _ = read_records(data_pattern, config, 1, training=False, num_readers=1)
    for path, index, record, _ in raise_data_errors(records.take(1)):
        return _id_key_of(record, record_names(path[None], index[None]))
    return None


def warn_if_classes_disagree(data_pattern: str | Sequence[str], config: ReaderConfig,
                             logger) -> None:
    """Logs one warning when the records' video id key implies a release's
    class count (`CLASSES_BY_ID_KEY`) and the model has the other release's,
    e.g. a 2017 model (4716 classes) given 2018 records (``id``, 3862): its
    class ids name other classes there, and the scores mean nothing. Other
    class counts (the user's own data) are not checked."""
    if config.num_classes not in CLASSES_BY_ID_KEY.values():
        return
    key = first_record_id_key(data_pattern, config)
    implied = CLASSES_BY_ID_KEY.get(key)
    if implied is not None and implied != config.num_classes:
        logger.warning("the records of '%s' have the video id key %r, which means %d classes, "
                       "but the model has %d classes: its class ids are not these records' "
                       "(a model of another YouTube-8M release?)", data_pattern, key, implied,
                       config.num_classes)


def _id_key_of(record: tf.Tensor, names: tf.Tensor) -> str | None:
    """The id key set in one record's context (an `Example`'s features parse
    as a `SequenceExample`'s context, so either kind of record will do)."""
    spec = {key: tf.io.FixedLenFeature([], tf.string, default_value="") for key in CLASSES_BY_ID_KEY}
    try:
        context, _, _ = tf.io.parse_sequence_example(record[None], context_features=spec,
                                                     example_names=names)
    except tf.errors.OpError as exc:
        name = names[0].numpy().decode("utf-8", "replace")
        raise (data_error_from(exc) or DataError(
            f"{name}: not a valid tf.train.Example / SequenceExample record")) from exc
    return next((key for key in CLASSES_BY_ID_KEY if context[key].numpy()[0]), None)
