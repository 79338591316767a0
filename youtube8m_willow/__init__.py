"""youtube8m_willow: YouTube-8M starter code and WILLOW models on TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
