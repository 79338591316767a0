"""Training semantics: losses, learning-rate staircase, slim L2, optimizer
constants, TF1-format checkpoints (round trip, atomicity, mismatch errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers.core import SlimL2
from youtube8m_willow.losses import create_loss
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.training.batch_metrics import batch_metrics
from youtube8m_willow.training import optimizer_state
from youtube8m_willow.training.optimizers import StaircaseExampleDecay, create_optimizer

P = np.array([[0.9, 0.2, 0.1], [0.3, 0.6, 0.05]], np.float32)
Y = np.array([[1, 0, 0], [0, 1, 1]], np.float32)


def test_cross_entropy_hand_computed():
    eps = 1e-5
    # Row 0: -2*(.5*log(.9+e) + .5*log(.8+e) + .5*log(.9+e)); row 1 likewise.
    row0 = -(math.log(0.9 + eps) + math.log(0.8 + eps) + math.log(0.9 + eps))
    row1 = -(math.log(0.7 + eps) + math.log(0.6 + eps) + math.log(0.05 + eps))
    assert float(create_loss("CrossEntropyLoss")(P, Y)) == pytest.approx((row0 + row1) / 2, 1e-6)
    # alpha=1 keeps only the positives, doubled.
    pos = -2 * (math.log(0.9 + eps) + math.log(0.6 + eps) + math.log(0.05 + eps)) / 2
    assert float(create_loss("CrossEntropyLoss", alpha=1.0)(P, Y)) == pytest.approx(pos, 1e-6)


def test_cross_entropy_of_saturated_predictions_in_a_tf_function():
    """The NeXtVLAD fork's epsilon, 1e-8, is below float32's resolution at 1:
    a prediction of exactly 1 (a sigmoid of a logit above about 17) costs
    log(1e-8) for a negative label and nothing for a positive one, in a
    tf.function (the training step) as eagerly, with finite gradients."""
    loss_fn = create_loss("CrossEntropyLoss", model="NeXtVLADModel")
    logits = tf.Variable([[30.0, 0.0], [30.0, 0.0]])
    labels = tf.constant([[1.0, 0.0], [0.0, 0.0]])

    @tf.function
    def loss_and_gradient():
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.sigmoid(logits), labels)
        return loss, tape.gradient(loss, logits)

    loss, gradient = loss_and_gradient()
    half = -math.log(0.5 + 1e-8)  # each 0.5 prediction of a negative label
    assert float(loss) == pytest.approx((2 * half - math.log(1e-8)) / 2, 1e-6)
    assert float(loss_fn(tf.sigmoid(logits), labels)) == pytest.approx(float(loss), 1e-6)
    assert np.isfinite(gradient.numpy()).all()


def test_hinge_and_softmax_hand_computed():
    # hinge: row0 max(0,1-.9)+max(0,1+.2)+max(0,1+.1) = .1+1.2+1.1; row1 1.3+.4+.95
    assert float(create_loss("HingeLoss")(P, Y)) == pytest.approx((2.4 + 2.65) / 2, 1e-6)
    logsm = P - np.log(np.exp(P).sum(1, keepdims=True))
    expected = (-logsm[0, 0] - (logsm[1, 1] + logsm[1, 2]) / 2) / 2
    assert float(create_loss("SoftmaxLoss")(P, Y)) == pytest.approx(expected, 1e-6)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="valid losses: CrossEntropyLoss, HingeLoss, SoftmaxLoss"):
        create_loss("L1Loss")
    with pytest.raises(ValueError, match="AdamOptimizer"):
        create_optimizer("Adamax", 0.1)
    with pytest.raises(ValueError, match="valid models: .*MoeModel"):
        create_model(ModelConfig(model="NoSuchModel"))


def test_staircase_decays_by_examples():
    schedule = StaircaseExampleDecay(0.01, 0.5, 50, batch_size=24)
    # floor(step * 24 / 50): steps 0-2 -> 0, 3-4 -> 1, 5-6 -> 2.
    rates = [float(schedule(step)) for step in range(7)]
    assert rates == pytest.approx([0.01] * 3 + [0.005] * 2 + [0.0025] * 2)


def test_slim_l2_is_half_sum_of_squares():
    assert float(SlimL2(0.5)(tf.constant([1.0, 2.0, 3.0]))) == pytest.approx(0.5 * 14 / 2)


def test_adam_has_tf1_constants_and_per_tensor_clipping():
    optimizer = create_optimizer("AdamOptimizer", 0.1, clip_gradient_norm=1.0)
    assert optimizer.epsilon == 1e-8 and optimizer.beta_1 == 0.9 and optimizer.beta_2 == 0.999
    a, b = tf.Variable([0.0, 0.0]), tf.Variable([0.0])
    sgd = create_optimizer("GradientDescentOptimizer", 1.0, clip_gradient_norm=1.0)
    sgd.apply([tf.constant([3.0, 4.0]), tf.constant([0.5])], [a, b])
    # Each tensor clipped on its own: [3,4] -> [.6,.8]; [.5] untouched.
    np.testing.assert_allclose(a.numpy(), [-0.6, -0.8], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [-0.5], rtol=1e-6)


@pytest.mark.parametrize("classes,label_share", [(30, 0.1), (30, 0.9), (12, 0.3)])
def test_batch_metrics_match_eval_util(classes, label_share):
    """Against eval_util, with tied scores (the lower class ranks first in
    both), a video without labels, videos with more labels than the GAP's
    top 20 (PERR reads past them) and fewer classes than 20."""
    from youtube8m_willow.metrics import eval_util

    rng = np.random.default_rng(0)
    predictions = rng.random((64, classes)).astype(np.float32)
    predictions[5] = 0.5
    predictions[6, ::2] = predictions[6, 1]
    labels = (rng.random((64, classes)) < label_share).astype(np.float32)
    labels[3] = 0  # a video without labels
    labels[5, 1] = 1.0
    ours = {k: float(v) for k, v in batch_metrics(predictions, labels, top_k=20).items()}
    assert ours["hit_at_one"] == pytest.approx(eval_util.calculate_hit_at_one(predictions, labels))
    assert ours["perr"] == pytest.approx(
        eval_util.calculate_precision_at_equal_recall_rate(predictions, labels))
    assert ours["gap"] == pytest.approx(eval_util.calculate_gap(predictions, labels, top_k=20),
                                        rel=1e-5)


def _moe(**changes):
    config = ModelConfig(model="MoeModel", num_classes=7, feature_names=("a",),
                         feature_sizes=(5,), **changes)
    return create_model(config).build_for_config()


def test_checkpoint_round_trip_with_adam_state(tmp_path):
    model = _moe()
    optimizer = create_optimizer("AdamOptimizer", 0.01)
    optimizer.build(model.trainable_variables)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model({"video_matrix": tf.ones([2, 5]),
                                        "num_frames": tf.ones([2], tf.int32)}))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    path = checkpoint.save(str(tmp_path), optimizer_state.training_state(model, optimizer, 3), 3)
    stored = checkpoint.read_checkpoint(path)
    assert stored["model/beta1_power"] == pytest.approx(0.9 ** 4)  # TF1: beta1^(t+1)
    assert set(stored) >= {"gates/weights", "gates/weights/Adam", "experts/biases/Adam_1",
                           "global_step", "model/beta2_power"}

    restored, fresh_optimizer = _moe(), create_optimizer("AdamOptimizer", 0.01)
    fresh_optimizer.build(restored.trainable_variables)
    assert optimizer_state.restore(checkpoint.latest_checkpoint(str(tmp_path)), restored,
                                   fresh_optimizer) == 3
    assert int(fresh_optimizer.iterations.numpy()) == 3
    for name, var in model.tf1_weights().items():
        np.testing.assert_array_equal(restored.tf1_weights()[name].numpy(), var.numpy())
    slots = optimizer_state.optimizer_slots(optimizer, model)
    for name, var in optimizer_state.optimizer_slots(fresh_optimizer, restored).items():
        np.testing.assert_array_equal(var.numpy(), slots[name].numpy())


def test_checkpoint_mismatch_lists_missing_and_unexpected(tmp_path):
    model = _moe(moe_prob_gating=True)
    path = checkpoint.save(str(tmp_path), optimizer_state.training_state(model, None, 1), 1)
    with pytest.raises(checkpoint.CheckpointError) as error:
        optimizer_state.restore(path, _moe(moe_low_rank_gating=3))
    message = str(error.value)
    assert "missing variables: gates1/weights, gates2/weights" in message
    assert "unexpected variables: gates/weights, gating_prob_bn/beta" in message
    assert "\n" not in message


def test_latest_checkpoint_ignores_partial_writes_and_prunes(tmp_path):
    model = _moe()
    checkpoint.save(str(tmp_path), optimizer_state.training_state(model, None, 0), 0)  # not this run's
    writer = checkpoint.CheckpointWriter(
        str(tmp_path), keep=3, not_model=optimizer_state.is_optimizer_name)
    for step in range(1, 8):
        writer.save(optimizer_state.training_state(model, None, step), step)
    assert checkpoint.checkpoint_steps(str(tmp_path)) == [0, 5, 6, 7]
    # A write killed half-way leaves only a temporary prefix: never the latest.
    (tmp_path / "model.ckpt-8.tmp999.index").write_bytes(b"partial")
    assert checkpoint.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-7")
    assert checkpoint.checkpoint_steps(str(tmp_path)) == [0, 5, 6, 7]
    state = (tmp_path / "checkpoint").read_text().splitlines()
    assert state == ['model_checkpoint_path: "model.ckpt-7"'] + [
        f'all_model_checkpoint_paths: "model.ckpt-{step}"' for step in (0, 5, 6, 7)]


def test_keep_zero_keeps_every_checkpoint(tmp_path):
    model = _moe()
    writer = checkpoint.CheckpointWriter(
        str(tmp_path), keep=0, not_model=optimizer_state.is_optimizer_name)
    for step in range(1, 8):
        writer.save(optimizer_state.training_state(model, None, step), step)
    assert checkpoint.checkpoint_steps(str(tmp_path)) == list(range(1, 8))


def test_missing_train_dir_and_checkpoint_errors(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.checkpoint_path(str(tmp_path / "nope"))
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint found"):
        checkpoint.checkpoint_path(str(tmp_path))
    with pytest.raises(checkpoint.CheckpointError, match="--check_point=5"):
        checkpoint.checkpoint_path(str(tmp_path), 5)


def test_largest_gradients_are_computed_last_with_the_same_values():
    from youtube8m_willow.training import updates

    big = tf.Variable(tf.random.stateless_normal([40, 30], seed=[1, 2]))
    small = tf.Variable(tf.random.stateless_normal([30, 2], seed=[3, 4]))
    x = tf.random.stateless_normal([5, 40], seed=[5, 6])

    def gradients(defer: bool):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.tanh(tf.matmul(tf.matmul(x, big), small)))
        grads = tape.gradient(loss, [big, small])
        if defer:
            grads = updates.computed_last(grads, min_elements=1000)
            waits_for = {op.name for op in grads[0].op.control_inputs}
            assert grads[1].op.name in waits_for and not grads[1].op.control_inputs
        return grads

    deferred = tf.function(lambda: gradients(True))()
    plain = gradients(False)
    for a, b in zip(deferred, plain):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_large_gradient_with_an_l2_term_computes_each_of_its_parts_last():
    """A weight with an L2 term has ``matmul gradient + lambda * w`` as its
    gradient: the matmul's gradient, its float32 cast and ``lambda * w`` wait
    for the other gradients too, not only their sum (each is as large as the
    weight, and held until the sum otherwise). The values are the same."""
    from youtube8m_willow.training import updates

    big = tf.Variable(tf.random.stateless_normal([40, 30], seed=[1, 2]))
    small = tf.Variable(tf.random.stateless_normal([30, 2], seed=[3, 4]))
    x = tf.random.stateless_normal([5, 40], seed=[5, 6])

    def gradients(defer: bool):
        with tf.GradientTape() as tape:
            low = tf.cast(big, tf.bfloat16)  # mixed precision: the matmul in bfloat16
            hidden = tf.cast(tf.matmul(tf.cast(x, tf.bfloat16), low), tf.float32)
            loss = (tf.reduce_sum(tf.tanh(tf.matmul(hidden, small)))
                    + 1e-3 * tf.nn.l2_loss(big))
        grads = tape.gradient(loss, [big, small])
        if defer:
            grads = updates.computed_last(grads, min_elements=1000)
            parts = [t.op for t in grads[0].op.inputs]  # the cast's and the L2 term's
            parts.append(next(p for p in parts if p.type == "Cast").inputs[0].op)  # the matmul
            assert {"Cast", "Mul", "MatMul"} <= {op.type for op in parts}, parts
            for op in [grads[0].op] + parts:
                assert grads[1].op in op.control_inputs, op.name
            assert not grads[1].op.control_inputs
        return grads

    deferred = tf.function(lambda: gradients(True))()
    plain = tf.function(lambda: gradients(False))()
    for a, b in zip(deferred, plain):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_large_tensor_that_another_gradient_needs_does_not_wait():
    """A large activation that the small weight's gradient also depends on
    is left alone (waiting for that gradient would be a cycle): only the
    large gradient's own ops wait, and the step runs."""
    from youtube8m_willow.training import updates

    small = tf.Variable(tf.random.stateless_normal([30, 25], seed=[1, 2]))
    big = tf.Variable(tf.random.stateless_normal([25, 60], seed=[3, 4]))
    x = tf.random.stateless_normal([50, 30], seed=[5, 6])

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            hidden = tf.tanh(tf.matmul(x, small))  # [50, 25]: large, and the small gradient needs it
            loss = tf.reduce_sum(tf.sin(tf.matmul(hidden, big)))
        grads = updates.computed_last(tape.gradient(loss, [small, big]), min_elements=1000)
        assert grads[0].op in grads[1].op.control_inputs
        assert not hidden.op.control_inputs and not hidden.op.inputs[0].op.control_inputs
        return grads

    grads = gradients()
    assert all(np.isfinite(g.numpy()).all() for g in grads)
