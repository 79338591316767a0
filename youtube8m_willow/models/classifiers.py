"""The video-level classifier heads, by their original class names.

``--video_level_classifier_model`` picks one for every frame-level model, and
the video-level models are these heads alone. The models import this module
directly: a head never depends on which model modules happen to be loaded.
"""

from __future__ import annotations

from typing import Callable

import keras

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.errors import ConfigError
from youtube8m_willow.layers.classifiers import LogisticClassifier, MixtureOfExperts


def logistic_classifier(config: ModelConfig) -> LogisticClassifier:
    return LogisticClassifier(config.num_classes, l2=config.l2_penalty, name="logistic")


def moe_classifier(config: ModelConfig) -> MixtureOfExperts:
    return MixtureOfExperts(
        config.num_classes, num_mixtures=config.moe_num_mixtures, l2=config.moe_l2,
        low_rank_gating=config.moe_low_rank_gating, prob_gating=config.moe_prob_gating,
        prob_gating_input=config.moe_prob_gating_input,
        remove_diag=config.gating_remove_diag, name="moe")


CLASSIFIERS: dict[str, Callable[[ModelConfig], keras.layers.Layer]] = {
    "LogisticModel": logistic_classifier,
    "MoeModel": moe_classifier,
}


def fork_classifier(classifier: str, config: ModelConfig,
                    layer_name: str | None = None) -> keras.layers.Layer:
    """The NeXtVLAD fork's head named ``classifier``: its LogisticModel (L2
    on the biases too, variance-scaling weights, logits for
    MixNeXtVladModel) or the starter's MoeModel reading --l2_penalty
    (WILLOW's reads --moe_l2)."""
    if classifier == "LogisticModel":
        return LogisticClassifier(config.num_classes, l2=config.l2_penalty, fork=True,
                                  name=layer_name or "logistic")
    if classifier == "MoeModel":
        return MixtureOfExperts(config.num_classes, num_mixtures=config.moe_num_mixtures,
                                l2=config.l2_penalty, name=layer_name or "moe")
    return create_classifier(classifier, config)  # an unknown name: the one-line error


def classifier_names() -> list[str]:
    return sorted(CLASSIFIERS)


def create_classifier(name: str, config: ModelConfig) -> keras.layers.Layer:
    """Builds the video-level classifier head named ``name``."""
    if name not in CLASSIFIERS:
        raise ConfigError(f"unknown --video_level_classifier_model={name!r}; valid classifiers: "
                         f"{', '.join(sorted(CLASSIFIERS))}")
    return CLASSIFIERS[name](config)
