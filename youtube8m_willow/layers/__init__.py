"""Keras 3 layers of the LOUPE toolbox and the YouTube-8M models, usable on
their own: ``from youtube8m_willow.layers import NetVLAD``.

- ``vlad``: NetVLAD, NetRVLAD, NetVLAGD (and the shared soft assignment)
- ``fisher``: NetFV
- ``dbof``: SoftDBoF, GatedDBoF, DBoF (WILLOW) and StarterDBoF
- ``gating``: ContextGating
- ``nextvlad``: NeXtVLAD and SEGating (the NeXtVLAD fork's, 2018)
- ``classifiers``: MixtureOfExperts, LogisticClassifier
- ``sampling``: FrameSampler
- ``statistics``: FrameStatistics ([mean; std; top-k])
- ``recurrent``: TF1-exact LSTM / GRU cells and stacks
- ``core``: TF1 batch norm, dense, slim L2
"""

from youtube8m_willow.layers.classifiers import LogisticClassifier, MixtureOfExperts
from youtube8m_willow.layers.core import BatchNorm, Dense, SlimL2
from youtube8m_willow.layers.dbof import DBoF, GatedDBoF, SoftDBoF, StarterDBoF
from youtube8m_willow.layers.fisher import NetFV
from youtube8m_willow.layers.gating import ContextGating
from youtube8m_willow.layers.nextvlad import NeXtVLAD, SEGating
from youtube8m_willow.layers.recurrent import BasicLSTMCell, GRUCell, StackedRNN
from youtube8m_willow.layers.sampling import FrameSampler
from youtube8m_willow.layers.statistics import FrameStatistics
from youtube8m_willow.layers.vlad import ClusterAssignment, NetRVLAD, NetVLAD, NetVLAGD

__all__ = [
    "BatchNorm", "Dense", "SlimL2", "ContextGating", "MixtureOfExperts", "LogisticClassifier",
    "NetVLAD", "NetRVLAD", "NetVLAGD", "ClusterAssignment", "NetFV", "SoftDBoF", "GatedDBoF",
    "DBoF", "StarterDBoF", "FrameSampler", "FrameStatistics", "BasicLSTMCell", "GRUCell",
    "StackedRNN", "NeXtVLAD", "SEGating",
]
