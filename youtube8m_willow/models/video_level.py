"""Video-level models: a classifier over one feature vector per video.

The same classifiers serve as the head of every frame-level model
(``--video_level_classifier_model``).
"""

from __future__ import annotations

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers.classifiers import LogisticClassifier, MixtureOfExperts
from youtube8m_willow.layers.core import register
from youtube8m_willow.models.base import VideoModel
from youtube8m_willow.models.registry import (create_classifier, register_classifier,
                                              register_model)


@register_classifier("LogisticModel")
def logistic_classifier(config: ModelConfig) -> LogisticClassifier:
    return LogisticClassifier(config.num_classes, l2=config.l2_penalty, name="logistic")


@register_classifier("MoeModel")
def moe_classifier(config: ModelConfig) -> MixtureOfExperts:
    return MixtureOfExperts(
        config.num_classes, num_mixtures=config.moe_num_mixtures, l2=config.moe_l2,
        low_rank_gating=config.moe_low_rank_gating, prob_gating=config.moe_prob_gating,
        prob_gating_input=config.moe_prob_gating_input,
        remove_diag=config.gating_remove_diag, name="moe")


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


@register
@register_model("LogisticModel")
class LogisticModel(_VideoLevelModel):
    """Logistic regression over video-level features (the starter's default)."""

    classifier_name = "LogisticModel"


@register
@register_model("MoeModel")
class MoeModel(_VideoLevelModel):
    """WILLOW's mixture of experts over video-level features."""

    classifier_name = "MoeModel"
