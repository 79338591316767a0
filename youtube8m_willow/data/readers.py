"""tf.data readers for YouTube-8M TFRecords (frame-level and video-level):
the public names of the reading modules, in one place.

Where each part lives:
- ``data.reader_config``: `ReaderConfig` (what to read), `ReadStats` (what
  the tolerant modes ``skip_bad_records`` / ``drop_out_of_range_labels``
  skipped);
- ``data.files``: listing a data pattern's files, their sizes, TFRecord
  framing and damage detection, record counts;
- ``data.parsing``: serialized records -> the readers' tensors (record
  formats, dequantization);
- ``data.datasets``: the tf.data pipelines (`make_dataset`,
  `make_planned_dataset`);
- ``data.read_errors``: the in-graph checks' messages and their translation
  into one-line `DataError`s naming the file and record;
- ``data.release``: the YouTube-8M release (class count) that records'
  video id key implies.
"""

from youtube8m_willow.data.datasets import (make_dataset, make_planned_dataset, read_records,
                                            report_skipped)
from youtube8m_willow.data.files import count_records, file_records, file_sizes, list_files
from youtube8m_willow.data.parsing import (dequantize, dequantize_frames, parse_frame_records,
                                           parse_serialized)
from youtube8m_willow.data.read_errors import data_error_from, raise_data_errors
from youtube8m_willow.data.reader_config import ReaderConfig, ReadStats
from youtube8m_willow.data.release import (CLASSES_BY_ID_KEY, first_record_id_key,
                                           warn_if_classes_disagree)
from youtube8m_willow.errors import DataError

__all__ = [
    "CLASSES_BY_ID_KEY",
    "DataError",
    "ReaderConfig",
    "ReadStats",
    "count_records",
    "data_error_from",
    "dequantize",
    "dequantize_frames",
    "file_records",
    "file_sizes",
    "first_record_id_key",
    "list_files",
    "make_dataset",
    "make_planned_dataset",
    "parse_frame_records",
    "parse_serialized",
    "raise_data_errors",
    "read_records",
    "report_skipped",
    "warn_if_classes_disagree",
]
