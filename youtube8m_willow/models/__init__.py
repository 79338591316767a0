"""Models selectable by the original class names (see ``registry``).

Importing this package imports every model module, which fills the registry
and registers every model class for Keras serialization, so
``keras.models.load_model`` reads a saved ``.keras`` model after
``import youtube8m_willow.models``.
"""

from youtube8m_willow.models import frame_level, nextvlad, recurrent, video_level  # noqa: F401
from youtube8m_willow.models.classifiers import classifier_names, create_classifier
from youtube8m_willow.models.registry import create_model, model_names

__all__ = ["create_model", "create_classifier", "model_names", "classifier_names"]
