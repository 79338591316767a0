"""The starter code's ``eval_util`` module name; see :mod:`youtube8m_willow.metrics.eval_util`."""

from youtube8m_willow.metrics.eval_util import (  # noqa: F401
    EvaluationMetrics, calculate_gap, calculate_hit_at_one,
    calculate_precision_at_equal_recall_rate, flatten, top_k_by_class, top_k_triplets)

__all__ = [
    "EvaluationMetrics",
    "calculate_gap",
    "calculate_hit_at_one",
    "calculate_precision_at_equal_recall_rate",
    "flatten",
    "top_k_by_class",
    "top_k_triplets",
]
