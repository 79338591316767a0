"""The original starter code's module names (google/youtube-8m), for code
written against it.

Its ``eval_util``, ``average_precision_calculator`` and
``mean_average_precision_calculator`` live in ``youtube8m_willow.metrics``;
`register` (run by the package's ``__init__``) enters each module under its
original name too, so that ``import youtube8m_willow.eval_util`` and
``from youtube8m_willow import eval_util`` give the metrics module itself.
(The other original names, ``frame_level_models`` and ``video_level_models``,
are modules at the repository root, beside the scripts.)
"""

from __future__ import annotations

import importlib
import sys
import types

# Original name (under the package) -> the module that holds it now.
ORIGINAL_MODULES = {
    "eval_util": "youtube8m_willow.metrics.eval_util",
    "average_precision_calculator": "youtube8m_willow.metrics.average_precision_calculator",
    "mean_average_precision_calculator":
        "youtube8m_willow.metrics.mean_average_precision_calculator",
}


def register(package: types.ModuleType) -> None:
    """Makes each of `ORIGINAL_MODULES` importable as ``<package>.<original name>``."""
    for name, target in ORIGINAL_MODULES.items():
        module = importlib.import_module(target)
        sys.modules[f"{package.__name__}.{name}"] = module
        setattr(package, name, module)
