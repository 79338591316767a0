"""Data errors of the readers: the in-graph checks' messages and their
translation into one-line `DataError`s.

Bad data fails with a message that names the file and the record index
(0-based, in file order). Problems found by the parse ops and by the in-graph
checks (`assert_no`) surface as `tf.errors.OpError` while iterating (tf.data
cannot raise Python exceptions); `data_error_from` turns such an error into a
one-line `DataError`, and `raise_data_errors` wraps an iterable so it raises
`DataError` directly. Errors raised outside iteration (no matching files) are
`DataError`s already.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from typing import Any

import tensorflow as tf
from google.protobuf.message import DecodeError

from youtube8m_willow.errors import DataError

# Marks the messages of the readers' own checks, so they are told from other failures.
_ASSERT_PREFIX = "DataError: "

# --------------------------------------------------------------------------- in-graph checks

def error_message(*parts) -> tf.Tensor:
    """A check's message: strings and tensors (numbers formatted) joined into
    one scalar string tensor, marked so that `data_error_from` recognizes it."""
    pieces = [p if isinstance(p, str) or p.dtype == tf.string else tf.strings.as_string(p)
              for p in parts]
    return tf.strings.join([_ASSERT_PREFIX] + pieces)


def assert_no(bad: tf.Tensor, message_fn) -> tf.Operation:
    """Asserts that no element of `bad` is true; ``message_fn`` (returning an
    `error_message`) is run only on failure."""
    any_bad = tf.reduce_any(bad)
    message = tf.cond(any_bad, message_fn, lambda: tf.constant(""))
    return tf.debugging.Assert(tf.logical_not(any_bad), [message])


def first_where(values: tf.Tensor, bad: tf.Tensor) -> tf.Tensor:
    """The element of `values` at the first true position of `bad` (which has one)."""
    return tf.gather(values, tf.argmax(tf.cast(bad, tf.int32)))


# --------------------------------------------------------------------------- translation

_NAME = r"Name: (?P<name>.*?\(record \d+\)), "
_MESSAGE_END = r"(?=\s*(?:\n|\[\[|\[Op:|$))"
_PATTERNS = (
    # A check that failed in a graph (a dataset or tf.function): C-escaped text.
    ("assert", re.compile(r"assertion failed: \[" + re.escape(_ASSERT_PREFIX) + r"(?P<text>.*?)\]"
                          + _MESSAGE_END)),
    # A check that failed eagerly: the message as a Python bytes literal.
    ("eager_assert", re.compile(rf"Summarized data: (?P<literal>b'{_ASSERT_PREFIX}(?:[^'\\]|\\.)*'"
                                rf"|b\"{_ASSERT_PREFIX}(?:[^\"\\]|\\.)*\")")),
    ("missing", re.compile(_NAME + r"Feature: (?P<key>\S+) \(data type: \w+\) is required "
                           r"but could not be found")),
    ("missing_list", re.compile(_NAME + r"Feature list '(?P<key>[^']+)' is required but could not be found")),
    ("size", re.compile(_NAME + r"Key: (?P<key>\S+), Index: \d+\.\s+Number of \w+ values != expected\."
                        r"\s+Values size: (?P<got>\d+) but output shape: \[(?P<want>[^\]]*)\]")),
    ("invalid", re.compile(r"Invalid protocol message input, example id: (?P<name>.*?\(record \d+\))")),
    ("other", re.compile(_NAME + r"(?P<text>.*?)" + _MESSAGE_END)),
)


def _describe(kind: str, match: re.Match) -> str:
    fields = match.groupdict()
    name, key = fields.get("name"), fields.get("key")
    if kind == "assert":  # Assert escapes quotes and backslashes in its message
        return re.sub(r"\\(['\"\\])", r"\1", fields["text"])
    if kind == "eager_assert":
        text = ast.literal_eval(fields["literal"]).decode("utf-8", "replace")
        return text.removeprefix(_ASSERT_PREFIX)
    if kind == "missing":
        return f"{name}: missing feature '{key}'; " + _missing_cause(name, frame_level=False)
    if kind == "missing_list":
        return (f"{name}: missing frame feature list '{key}'; "
                + _missing_cause(name, frame_level=True))
    if kind == "size":
        return (f"{name}: feature '{key}' has {fields['got']} values, expected {fields['want']} "
                "(check --feature_names / --feature_sizes)")
    if kind == "invalid":
        return f"{name}: not a valid tf.train.Example / SequenceExample record"
    return f"{name}: {fields['text']}"


_RECORD_NAME = re.compile(r"(?P<path>.*) \(record (?P<index>\d+)\)")


def _missing_cause(name: str, frame_level: bool) -> str:
    """Why a record read as frame-level (or video-level) lacks a feature,
    from the record ``name`` points to: a record of the other kind
    (--frame_features), or one whose features have other names
    (--feature_names, with the names it has)."""
    record = _read_record(name)
    if record is None:
        return "check --feature_names and --frame_features"
    lists = sorted(record.feature_lists.feature_list)
    if lists and not frame_level:
        return (f"the record is a frame-level SequenceExample (feature lists "
                f"{', '.join(lists)}) read as a video-level Example: check --frame_features")
    if not lists and frame_level:
        return (f"the record is a video-level Example (features "
                f"{', '.join(sorted(record.context.feature))}) read as a frame-level "
                "SequenceExample: check --frame_features")
    names = lists if frame_level else sorted(record.context.feature)
    return (f"the record's {'feature lists' if frame_level else 'features'} are "
            f"{', '.join(names)}: check --feature_names")


def _read_record(name: str) -> tf.train.SequenceExample | None:
    """The record a name such as "<file> (record <i>)" points to, parsed as
    a SequenceExample (an Example's features land in its context); None
    when it cannot be read."""
    match = _RECORD_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        records = tf.data.TFRecordDataset(match["path"]).skip(int(match["index"])).take(1)
        serialized = [record.numpy() for record in records]
        return tf.train.SequenceExample.FromString(serialized[0]) if serialized else None
    except (tf.errors.OpError, DecodeError):
        return None


def data_error_from(exc: BaseException) -> DataError | None:
    """The DataError for an error raised while iterating a reader dataset, or None.

    Recognizes the reader's own checks and TensorFlow's parse errors (both name
    the file and record); returns None for errors that are not about the data.
    """
    if isinstance(exc, DataError):
        return exc
    if not isinstance(exc, tf.errors.OpError):
        return None
    for kind, pattern in _PATTERNS:
        match = pattern.search(exc.message)
        if match:
            return DataError(_describe(kind, match))
    return None


def raise_data_errors(iterable: Iterable[Any]) -> Iterator[Any]:
    """Yields from `iterable`, turning data errors raised by TensorFlow into DataError."""
    try:
        yield from iterable
    except tf.errors.OpError as exc:
        error = data_error_from(exc)
        if error is None:
            raise
        raise error from exc
