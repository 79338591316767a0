"""The starter code's ``average_precision_calculator`` module name.

See :mod:`youtube8m_willow.metrics.average_precision_calculator`.
"""

from youtube8m_willow.metrics.average_precision_calculator import (  # noqa: F401
    AveragePrecisionCalculator)

__all__ = ["AveragePrecisionCalculator"]
