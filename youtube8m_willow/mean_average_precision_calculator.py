"""The starter code's ``mean_average_precision_calculator`` module name.

See :mod:`youtube8m_willow.metrics.mean_average_precision_calculator`.
"""

from youtube8m_willow.metrics.mean_average_precision_calculator import (  # noqa: F401
    MeanAveragePrecisionCalculator)

__all__ = ["MeanAveragePrecisionCalculator"]
