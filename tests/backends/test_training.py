"""A small NetVLAD + mixture-of-experts model trains on this backend with the
backend's own optimizer and gradients: ``keras.optimizers.Adam`` on
TensorFlow, ``jax.example_libraries.optimizers.adam`` under ``jax.jit``,
``torch.optim.Adam`` with ``torch.autograd``."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

import probe
from youtube8m_willow.layers import MixtureOfExperts, NetVLAD

STEPS = 25
LEARNING_RATE = 0.01


class PooledClassifier(keras.Model):
    def __init__(self):
        super().__init__()
        self.pool = NetVLAD(8)
        self.classify = MixtureOfExperts(12, num_mixtures=2)

    def call(self, frames, training=False):
        return self.classify(self.pool(frames, training=training), training=training)


def cross_entropy(probabilities, labels):
    """The starter's CrossEntropyLoss (epsilon 1e-5), mean over the batch."""
    epsilon = 1e-5
    loss = labels * ops.log(probabilities + epsilon) + (1 - labels) * ops.log(
        1 - probabilities + epsilon)
    return -ops.mean(ops.sum(loss, axis=1))


def _train_tensorflow(model, frames, labels):
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    losses = []
    for _ in range(STEPS):
        with tf.GradientTape() as tape:
            loss = cross_entropy(model(frames, training=True), labels)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))
        losses.append(float(loss))
    return losses


def _train_jax(model, frames, labels):
    import jax
    from jax.example_libraries import optimizers

    init, update, parameters = optimizers.adam(LEARNING_RATE)
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_of(trainable, non_trainable):
        probabilities, state = model.stateless_call(trainable, non_trainable, frames,
                                                    training=True)
        return cross_entropy(probabilities, labels), state

    @jax.jit
    def step(i, opt_state, non_trainable):
        (loss, state), grads = jax.value_and_grad(loss_of, has_aux=True)(
            parameters(opt_state), non_trainable)
        return loss, update(i, grads, opt_state), state

    opt_state = init([v.value for v in model.trainable_variables])
    losses = []
    for i in range(STEPS):
        loss, opt_state, non_trainable = step(i, opt_state, non_trainable)
        losses.append(float(loss))
    return losses


def _train_torch(model, frames, labels):
    import torch

    trainable = [v.value for v in model.trainable_variables]
    optimizer = torch.optim.Adam(trainable, lr=LEARNING_RATE)
    frames, labels = torch.tensor(frames), torch.tensor(labels)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = cross_entropy(model(frames, training=True), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


TRAINERS = {"tensorflow": _train_tensorflow, "jax": _train_jax, "torch": _train_torch}


def test_netvlad_moe_training_lowers_the_loss(inputs):
    frames = inputs["audio"]
    labels = (np.random.default_rng(2).random((len(frames), 12)) < 0.3).astype("float32")
    model = PooledClassifier()
    model(frames)
    probe.seed_weights(model.pool, model.classify)
    losses = TRAINERS[keras.backend.backend()](model, frames, labels)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
