"""The gradient of slim's L2 penalties added by the training step
(training.l2_gradient): the tape's gradient of the whole objective, in
float32 and under bfloat16, through the compiled pass and without it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_moe_batch, small_moe_config

from youtube8m_willow.training import l2_gradient


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("fused", [True, False], ids=["compiled pass", "TensorFlow ops"])
def test_l2_terms_plus_the_rest_are_the_tapes_gradient(monkeypatch, policy, fused):
    """A penalized and an unpenalized weight: the tape's gradient of the
    label term plus ``plus_l2_terms`` is its gradient of the whole objective;
    the compiled pass reads the bfloat16 gradient, not its float32 cast."""
    import keras
    import tensorflow as tf

    from youtube8m_willow.layers.core import Dense

    monkeypatch.setattr(l2_gradient, "FUSED_MIN_ELEMENTS", 1 if fused else 1 << 40)
    compiled_inputs = []
    original = l2_gradient._compiled_plus_scaled_weight
    monkeypatch.setattr(l2_gradient, "_compiled_plus_scaled_weight",
                        lambda gradient, *rest: compiled_inputs.append(gradient.dtype)
                        or original(gradient, *rest))
    rng = np.random.default_rng(0)
    penalized = Dense(12, l2=0.3, dtype=keras.DTypePolicy(policy))
    plain = Dense(5, dtype=keras.DTypePolicy(policy))
    inputs = tf.constant(rng.standard_normal((6, 16)), tf.float32)
    upstream = tf.constant(rng.standard_normal((6, 5)), tf.float32)
    plain(penalized(inputs))
    variables = penalized.trainable_variables + plain.trainable_variables
    coefficient = tf.constant(0.7)

    def label_term():
        return tf.reduce_sum(tf.cast(plain(penalized(inputs)), tf.float32) * upstream)

    @tf.function
    def both():
        with tf.GradientTape() as tape:
            whole = label_term() + coefficient * sum(penalized.losses)
        reference = tape.gradient(whole, variables)
        with tf.GradientTape() as tape:
            label = label_term()
        scales = l2_gradient.slim_l2_scales(variables, len(penalized.losses))
        mine = l2_gradient.plus_l2_terms(tape.gradient(label, variables), variables, scales,
                                         coefficient)
        return reference, mine

    reference, mine = both()
    for value, expected in zip(mine, reference):
        np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)
    assert np.abs(mine[0].numpy()).max() > 0 and mine[0].dtype == tf.float32
    expected_inputs = {"float32": [tf.float32], "mixed_bfloat16": [tf.bfloat16]}[policy]
    assert compiled_inputs == (expected_inputs if fused else [])  # the penalized kernel only


def test_other_losses_leave_the_penalty_to_the_tape():
    """Scales only where the model's losses are exactly slim's penalties: a
    regularizer of another kind, or a loss of no weight's, gives None."""
    import keras

    from youtube8m_willow.layers.core import SlimL2

    variables = [keras.Variable(np.ones((2, 2), np.float32)) for _ in range(3)]
    variables[0].regularizer = SlimL2(0.5)
    assert l2_gradient.slim_l2_scales(variables, 1) == [0.5, 0.0, 0.0]
    assert l2_gradient.slim_l2_scales(variables, 2) is None  # an added loss
    variables[2].regularizer = keras.regularizers.L2(0.1)
    assert l2_gradient.slim_l2_scales(variables, 2) is None


def test_large_l2_gradients_still_wait_for_the_others(monkeypatch):
    """Under bfloat16 the compiled pass and the weight's bfloat16 matmul
    gradient it reads are computed after the other gradients
    (``updates.computed_last``), as the tape's cast and sum were."""
    import keras
    import tensorflow as tf

    from youtube8m_willow.layers.core import Dense
    from youtube8m_willow.training import updates

    monkeypatch.setattr(l2_gradient, "FUSED_MIN_ELEMENTS", 1)
    policy = keras.DTypePolicy("mixed_bfloat16")
    large, small = Dense(64, l2=0.1, dtype=policy), Dense(3, dtype=policy)
    inputs = tf.ones([4, 32])
    small(large(inputs))
    variables = large.trainable_variables + small.trainable_variables
    found = {}

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(small(large(inputs)), tf.float32))
        gradients = l2_gradient.plus_l2_terms(tape.gradient(loss, variables), variables,
                                              l2_gradient.slim_l2_scales(variables, 1), 1.0)
        found["gradients"] = updates.computed_last(gradients, min_elements=32 * 64)
        return found["gradients"]

    step()
    kernel_gradient, small_kernel_gradient = found["gradients"][0], found["gradients"][2]
    call = kernel_gradient.op
    matmul = call.inputs[0].op
    assert call.inputs[0].dtype == tf.bfloat16 and matmul.type == "MatMul"
    for op in (call, matmul):
        assert small_kernel_gradient.op in op.control_inputs, op.name


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_training_step_gradients_are_the_whole_objectives(monkeypatch, precision):
    """The step's gradients of a MoE with an L2 penalty (its experts' and
    gates' weights through the compiled pass) are the tape's gradients of
    ``label_loss + regularization_penalty * l2_sum``, weighted as a replica
    of a distributed step weighs them, and times the loss scale under
    float16."""
    import tensorflow as tf

    from youtube8m_willow.training.run import Trainer
    from youtube8m_willow.training.train_config import TrainConfig

    monkeypatch.setattr(l2_gradient, "FUSED_MIN_ELEMENTS", 400)
    inputs = small_moe_batch()
    model_config = small_moe_config(moe_l2=0.05)
    trainer = Trainer(TrainConfig(train_dir="unused", train_data_pattern="", seed=5,
                                  precision=precision, regularization_penalty=3.0),
                      model_config)
    model = trainer.model
    scale = 1.0 if trainer.loss_scale is None else float(trainer.loss_scale.scale.numpy())
    for label_weight, regularization_weight in [(None, None), (0.5, 0.25)]:
        _, _, l2_sum, gradients = tf.function(trainer._forward_backward)(
            inputs, label_weight, regularization_weight)
        with tf.GradientTape() as tape:
            _, label_loss, _ = model.training_objective(inputs, inputs["labels"],
                                                        trainer.loss_fn)
            whole = ((label_weight or 1.0) * label_loss
                     + (regularization_weight or 1.0) * 3.0 * model.regularization_loss())
            whole = whole * scale
        reference = tape.gradient(whole, model.trainable_variables)
        assert float(l2_sum) > 0
        for value, expected in zip(gradients, reference):
            np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-5,
                                       atol=1e-6 * scale)
