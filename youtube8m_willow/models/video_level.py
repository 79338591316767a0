"""Video-level models: a classifier over one feature vector per video.

Each is one of the classifier heads (``models.classifiers``) that also serve
every frame-level model (``--video_level_classifier_model``).
"""

from __future__ import annotations

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.models.base import VideoModel
from youtube8m_willow.models.classifiers import create_classifier
from youtube8m_willow.models.registry import register_model


class _VideoLevelModel(VideoModel):
    """A classifier applied directly to the normalized video features."""

    classifier_name = ""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.classifier = create_classifier(self.classifier_name, config)

    def predict_probabilities(self, features, num_frames, training=False, sampling_seed=None):
        return self.classifier(features, training=training)

    def tf1_scopes(self):
        return {"": self.classifier}


@register_model
class LogisticModel(_VideoLevelModel):
    """Logistic regression over video-level features (the starter's default)."""

    classifier_name = "LogisticModel"


@register_model
class MoeModel(_VideoLevelModel):
    """WILLOW's mixture of experts over video-level features."""

    classifier_name = "MoeModel"
