"""The layers under each backend's compiler give the eager numbers:
``tf.function(jit_compile=True)`` (XLA), ``jax.jit``, ``torch.compile``
(its default inductor backend, which compiles C++ kernels on the CPU), each
as one whole graph: a graph break under ``torch.compile`` is an error."""

from __future__ import annotations

import keras
import numpy as np

import probe
from youtube8m_willow.layers import ContextGating, MixtureOfExperts, NetVLAD


class VladHead(keras.Model):
    def __init__(self):
        super().__init__()
        self.pool = NetVLAD(8)
        self.gating = ContextGating()
        self.classify = MixtureOfExperts(12, num_mixtures=2)

    def call(self, frames, training=False):
        pooled = self.gating(self.pool(frames, training=training), training=training)
        return self.classify(pooled, training=training)


def _compiled(model):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda frames: model(frames, training=False), jit_compile=True)
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return jax.jit(lambda frames: model.stateless_call(trainable, non_trainable, frames)[0])
    import torch

    return torch.compile(lambda frames: model(frames, training=False), fullgraph=True)


def test_compiled_forward_equals_eager(inputs):
    frames = inputs["audio"]
    model = VladHead()
    model(frames)
    probe.seed_weights(model.pool, model.gating, model.classify)
    eager = keras.ops.convert_to_numpy(model(frames, training=False))
    compiled = keras.ops.convert_to_numpy(_compiled(model)(keras.ops.convert_to_tensor(frames)))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
