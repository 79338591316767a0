"""Evaluation metrics: Hit@1, PERR, GAP and (mean) average precision."""

from youtube8m_willow.metrics.average_precision_calculator import AveragePrecisionCalculator
from youtube8m_willow.metrics.eval_util import (
    EvaluationMetrics, calculate_gap, calculate_hit_at_one,
    calculate_precision_at_equal_recall_rate, flatten, top_k_by_class, top_k_triplets)
from youtube8m_willow.metrics.mean_average_precision_calculator import (
    MeanAveragePrecisionCalculator)

__all__ = [
    "AveragePrecisionCalculator",
    "EvaluationMetrics",
    "MeanAveragePrecisionCalculator",
    "calculate_gap",
    "calculate_hit_at_one",
    "calculate_precision_at_equal_recall_rate",
    "flatten",
    "top_k_by_class",
    "top_k_triplets",
]
