"""Adam from a weight's bfloat16 gradient (training.bfloat16_adam): the
update TF1's kernel makes from the float32 cast, clipped alike, and the
training step that takes it under --precision=bfloat16."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import keras_adam_state, train_small_moe

from youtube8m_willow.training import bfloat16_adam, factored_adam, updates


def _state(variable, optimizer):
    return (variable.numpy(), optimizer._momentums[0].numpy(), optimizer._velocities[0].numpy(),
            int(optimizer.iterations.numpy()))


@pytest.mark.parametrize("scale", [0.01, 10.0], ids=["within the norm", "clipped"])
def test_update_from_bfloat16_is_tf1_adam_on_the_float32_cast(scale):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    shape = (64, 48)  # 64 rows: eight blocks for the norm
    gradients = [tf.cast(rng.standard_normal(shape) * scale, tf.bfloat16) for _ in range(3)]
    start = rng.standard_normal(shape).astype(np.float32)
    results = []
    for from_bfloat16 in (False, True):
        variable, optimizer = keras_adam_state(rng, shape)
        variable.assign(start)

        @tf.function
        def step(gradient):
            as_float = tf.cast(gradient, tf.float32)
            if from_bfloat16:
                source = bfloat16_adam.bfloat16_source(as_float, min_elements=1)
                assert source is gradient  # the float32 cast is traced back to its source
                clipped = [bfloat16_adam.clipped(source, 1.0)]
            else:
                clipped = updates.clip_each([as_float], 1.0)
            updates.apply_adam(optimizer, clipped, [variable])

        for gradient in gradients:
            step(gradient)
        results.append(_state(variable, optimizer))
    for reference, value in zip(*results):
        np.testing.assert_allclose(value, reference, rtol=2e-6, atol=1e-7)
    assert results[1][3] == 3 and not np.allclose(results[1][0], start)


def test_only_large_graph_casts_of_bfloat16_are_traced_back():
    import tensorflow as tf

    value = tf.ones([8, 4], tf.bfloat16)
    assert bfloat16_adam.bfloat16_source(tf.cast(value, tf.float32), 1) is None  # eager
    found = {}

    @tf.function
    def trace(value, half):
        as_float = tf.cast(value, tf.float32)
        found["large"] = bfloat16_adam.bfloat16_source(as_float, 32)
        found["small"] = bfloat16_adam.bfloat16_source(as_float, 33)
        found["float16"] = bfloat16_adam.bfloat16_source(tf.cast(half, tf.float32), 1)
        found["not a cast"] = bfloat16_adam.bfloat16_source(as_float * 2.0, 1)
        return as_float

    trace(value, tf.ones([8, 4], tf.float16))
    assert found["large"] is not None and found["large"].dtype == tf.bfloat16
    assert found["small"] is found["float16"] is found["not a cast"] is None


def test_bfloat16_training_updates_large_weights_from_their_bfloat16_gradient(monkeypatch):
    """A --precision=bfloat16 step applies a large weight's update from its
    bfloat16 gradient (where factored_adam does not take it), and trains as
    the step through the float32 cast does."""
    monkeypatch.setattr(factored_adam, "factors", lambda gradient, minimum: None)
    applied = []
    original_apply = bfloat16_adam.Bfloat16Gradient.apply
    monkeypatch.setattr(bfloat16_adam.Bfloat16Gradient, "apply",
                        lambda gradient, *a, **k: applied.append(tuple(gradient.value.shape))
                        or original_apply(gradient, *a, **k))
    # The experts' and gates' [40, 20], [40, 30] are large; then nothing is.
    weights = [train_small_moe(monkeypatch, large, precision="bfloat16")
               for large in (400, 1 << 40)]
    assert sorted(applied) == [(40, 20), (40, 30)]  # traced once
    for via_bfloat16, via_float32 in zip(*weights):
        np.testing.assert_allclose(via_bfloat16, via_float32, rtol=1e-5, atol=1e-6)
