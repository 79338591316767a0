"""One registry from the original class names to model builders.

Replaces the original's ``getattr(module, FLAGS.model)``: names resolve only
through this table, and an unknown name fails with the list of valid ones.
"""

from __future__ import annotations

from typing import Callable

import keras

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.errors import ConfigError

_MODELS: dict[str, Callable] = {}
_CLASSIFIERS: dict[str, Callable] = {}


def register_model(name: str):
    """Class decorator: makes a model selectable by ``--model=<name>``."""
    def decorate(cls):
        _MODELS[name] = cls
        return cls
    return decorate


def register_classifier(name: str):
    """Decorator: makes a builder selectable by ``--video_level_classifier_model``."""
    def decorate(builder):
        _CLASSIFIERS[name] = builder
        return builder
    return decorate


def _load_all() -> None:
    # Importing the model modules fills the tables.
    from youtube8m_willow.models import frame_level, recurrent, video_level  # noqa: F401


def model_names() -> list[str]:
    _load_all()
    return sorted(_MODELS)


def classifier_names() -> list[str]:
    _load_all()
    return sorted(_CLASSIFIERS)


def model_class(name: str):
    _load_all()
    if name not in _MODELS:
        raise ConfigError(f"unknown --model={name!r}; valid models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def create_model(config: ModelConfig):
    """Builds the model named by ``config.model`` (weights created lazily)."""
    return model_class(config.model)(config)


def is_frame_level(name: str) -> bool:
    """Whether a model reads frame-level input (``--frame_features``)."""
    return getattr(model_class(name), "frame_level", False)


def create_classifier(name: str, config: ModelConfig) -> keras.layers.Layer:
    """Builds the video-level classifier head named ``name``."""
    _load_all()
    if name not in _CLASSIFIERS:
        raise ConfigError(f"unknown --video_level_classifier_model={name!r}; valid classifiers: "
                         f"{', '.join(sorted(_CLASSIFIERS))}")
    return _CLASSIFIERS[name](config)
