"""Input data: tf.data readers for YouTube-8M records and a synthetic data generator.

The names below are imported on first use, not with the package: running
``python -m youtube8m_willow.data.synthetic`` imports this package first,
and it must neither import the module about to run (runpy would warn that
it was imported twice) nor TensorFlow (whose start-up notices the tool
hides, and only can before TensorFlow is imported).
"""

from __future__ import annotations

import importlib

_MODULE_OF = {
    "DataError": "readers",
    "ReaderConfig": "readers",
    "ReadStats": "readers",
    "count_records": "readers",
    "data_error_from": "readers",
    "dequantize": "readers",
    "list_files": "readers",
    "make_dataset": "readers",
    "parse_serialized": "readers",
    "raise_data_errors": "readers",
    "write_synthetic_dataset": "synthetic",
    "write_synthetic_splits": "synthetic",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
