"""One registry from the original class names to model classes.

Replaces the original's ``getattr(module, FLAGS.model)``: names resolve only
through this table, and an unknown name fails with the list of valid ones.

A leaf of the import graph: it imports no model. The model modules fill it
with ``register_model`` as they are imported, and ``youtube8m_willow.models``
imports them all, so importing this module (which imports its package first)
finds the table full.
"""

from __future__ import annotations

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.errors import ConfigError
from youtube8m_willow.layers.core import register

_MODELS: dict[str, type] = {}


def register_model(cls: type) -> type:
    """Class decorator: makes a model selectable by ``--model=<its class
    name>`` (the original's name) and serializable by Keras (under this
    package), so that no model is registered for one and forgotten by the
    other."""
    _MODELS[cls.__name__] = register(cls)
    return cls


def model_names() -> list[str]:
    return sorted(_MODELS)


def model_class(name: str) -> type:
    if name not in _MODELS:
        raise ConfigError(f"unknown --model={name!r}; valid models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def create_model(config: ModelConfig):
    """Builds the model named by ``config.model`` (weights created lazily)."""
    return model_class(config.model)(config)


def is_frame_level(name: str) -> bool:
    """Whether a model reads frame-level input (``--frame_features``)."""
    return getattr(model_class(name), "frame_level", False)
