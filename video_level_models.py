"""The original module name: video-level models by their original class names.

    from video_level_models import MoeModel
"""

from youtube8m_willow.models.video_level import LogisticModel, MoeModel

__all__ = ["LogisticModel", "MoeModel"]
