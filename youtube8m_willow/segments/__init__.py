"""Segment-level (YouTube-8M 2019) output and scoring: the ``Class,Segments``
submission writer and the mAP@N of segment_eval_inference.py."""

from youtube8m_willow.segments.submission import (
    SegmentSubmissionWriter, read_segment_label_ids, round_g)

__all__ = ["SegmentSubmissionWriter", "read_segment_label_ids", "round_g"]
