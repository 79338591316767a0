"""Input data: tf.data readers for YouTube-8M records and a synthetic data generator."""

from youtube8m_willow.data.readers import (
    DataError,
    ReaderConfig,
    ReadStats,
    count_records,
    data_error_from,
    dequantize,
    list_files,
    make_dataset,
    parse_serialized,
    raise_data_errors,
)
from youtube8m_willow.data.synthetic import write_synthetic_dataset

__all__ = [
    "DataError",
    "ReaderConfig",
    "ReadStats",
    "count_records",
    "data_error_from",
    "dequantize",
    "list_files",
    "make_dataset",
    "parse_serialized",
    "raise_data_errors",
    "write_synthetic_dataset",
]
