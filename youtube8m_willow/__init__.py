"""youtube8m_willow: YouTube-8M starter code and WILLOW models on TensorFlow 2 / Keras 3."""

import sys as _sys

from youtube8m_willow import compat as _compat

__version__ = "0.1.0"

_compat.register(_sys.modules[__name__])  # youtube8m_willow.eval_util and the other original names
