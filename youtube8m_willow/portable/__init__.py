"""Original weights on any Keras backend, read without TensorFlow.

A weights file (``.npz``) holds a model's weights under their TF1 names (the
names of ``tf1_weights()``: ``video_VLAD/cluster_weights``, ``gates/weights``
...), the model's configuration and where the weights came from. ``convert``
writes one from a train_dir (the one step that needs TensorFlow);
``load_model`` and ``load_weights`` read it with NumPy alone, with
``KERAS_BACKEND`` set to ``tensorflow``, ``jax`` or ``torch``.

    python -m youtube8m_willow.portable.convert --train_dir=willow_model \\
        --output_file=willow.npz
"""

from youtube8m_willow.portable.weights_file import (WeightsFile, WeightsFileError, load_model,
                                                    load_weights, read_weights, write_weights)

__all__ = ["WeightsFile", "WeightsFileError", "load_model", "load_weights", "read_weights",
           "write_weights"]
