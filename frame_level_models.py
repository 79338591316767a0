"""The original module name: frame-level models by their original class names.

    from frame_level_models import NetVLADModelLF
"""

from youtube8m_willow.models.frame_level import (DbofModel, DbofModelLF,
                                                 FrameLevelLogisticModel,
                                                 FrameStatisticsModel, GatedDbofModelLF,
                                                 NetFVModelLF, NetVLADModelLF,
                                                 SoftDbofModelLF)
from youtube8m_willow.models.recurrent import GruModel, LstmModel

__all__ = ["NetVLADModelLF", "NetFVModelLF", "GatedDbofModelLF", "SoftDbofModelLF",
           "DbofModelLF", "DbofModel", "FrameLevelLogisticModel", "FrameStatisticsModel",
           "LstmModel", "GruModel"]
