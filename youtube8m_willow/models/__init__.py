"""Models selectable by the original class names (see ``registry``)."""

from youtube8m_willow.models.registry import (classifier_names, create_classifier,
                                              create_model, model_names)

__all__ = ["create_model", "create_classifier", "model_names", "classifier_names"]
