"""The NeXtVLAD fork's module name: its models by their original class names.

    from nextvlad import NeXtVLADModel, MixNeXtVladModel
"""

from youtube8m_willow.models.nextvlad import MixNeXtVladModel, NeXtVLADModel

__all__ = ["NeXtVLADModel", "MixNeXtVladModel"]
