"""Every optimizer the original could build, with TF1's semantics and slots.

Each optimizer must (1) name and initialize its slots as TF1 does, (2) take
the same steps as TF1's own ``tf.compat.v1.train`` optimizer, and (3) resume
from its checkpoint exactly: N steps, save, restart, M more equals N + M in
one run, with the slots stored under their TF1 names.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import ReaderConfig, make_dataset
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.training.optimizer_state import optimizer_slots
from youtube8m_willow.training.optimizers import create_optimizer, optimizer_names
from youtube8m_willow.training.tf1_optimizers import RULES, Slot, TF1Optimizer
from youtube8m_willow.training.trainer import TrainConfig, Trainer

# The original built these with the learning rate alone; Momentum needs one.
TF1_ARGUMENTS = {"MomentumOptimizer": {"momentum": 0.9}}


def _tf1_optimizer(name: str, learning_rate: float):
    return getattr(tf.compat.v1.train, name)(learning_rate, **TF1_ARGUMENTS.get(name, {}))


def test_every_original_optimizer_is_offered():
    assert optimizer_names() == sorted(["AdamOptimizer", *RULES])


def _tf1_run(name, start, gradients, rates):
    """TF1's optimizer on ``start``: final weights and ``[(slot name,
    initial value, final value)]``."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        weight = tf.compat.v1.get_variable("w", initializer=start, use_resource=True)
        rate = tf.compat.v1.placeholder(tf.float32, [])
        gradient = tf.compat.v1.placeholder(tf.float32, start.shape)
        tf1 = _tf1_optimizer(name, rate)
        train_op = tf1.apply_gradients([(gradient, weight)])
        session.run(tf.compat.v1.global_variables_initializer())
        slots = [tf1.get_slot(weight, slot) for slot in tf1.get_slot_names()]
        initial = session.run(slots)
        for step, lr in enumerate(rates):
            session.run(train_op, {rate: lr, gradient: gradients[step]})
        final = session.run(slots)
        return session.run(weight), [(s.op.name, i, f) for s, i, f in zip(slots, initial, final)]


@pytest.mark.parametrize("name", sorted(RULES))
def test_slots_and_steps_are_tf1s(name):
    """Slot names, slot initial values, and five steps with a decaying
    learning rate and changing gradients: weights and slots as
    tf.compat.v1.train's optimizer leaves them."""
    rng = np.random.default_rng(3)
    start = rng.normal(size=[4, 3]).astype(np.float32)
    gradients = rng.normal(size=[5, 4, 3]).astype(np.float32)
    rates = [0.1, 0.1, 0.05, 0.05, 0.025]
    weight = tf.Variable(start)
    optimizer = create_optimizer(name, rates[0])
    assert isinstance(optimizer, TF1Optimizer)
    optimizer.build([weight])
    initial = {suffix: slot.numpy() for suffix, slot in optimizer.slots_of(weight).items()}
    for step, lr in enumerate(rates):
        optimizer.learning_rate = lr
        optimizer.apply_in_place([tf.constant(gradients[step])], [weight])
    assert int(optimizer.iterations.numpy()) == len(rates)

    tf1_weight, tf1_slots = _tf1_run(name, start, gradients, rates)
    np.testing.assert_allclose(weight.numpy(), tf1_weight, rtol=1e-6, atol=1e-7)
    ours = optimizer.slots_of(weight)
    assert sorted(f"w/{suffix}" for suffix in ours) == sorted(n for n, _, _ in tf1_slots)
    for slot_name, tf1_initial, tf1_final in tf1_slots:
        suffix = slot_name.split("/", 1)[1]
        np.testing.assert_array_equal(initial[suffix], tf1_initial)
        np.testing.assert_allclose(ours[suffix].numpy(), tf1_final, rtol=1e-6, atol=1e-7)


def test_keras_apply_runs_the_same_kernel():
    """``optimizer.apply`` (Keras' path, with clipnorm) equals the in-place step."""
    a, b = tf.Variable([1.0, 2.0]), tf.Variable([1.0, 2.0])
    keras_path, in_place = (create_optimizer("RMSPropOptimizer", 0.1) for _ in range(2))
    keras_path.apply([tf.constant([0.3, -0.4])], [a])
    in_place.build([b])
    in_place.apply_in_place([tf.constant([0.3, -0.4])], [b])
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    # TF1: rms 1 -> 0.9 + 0.1 g^2; var -= lr g / sqrt(rms + 1e-10)
    expected = 1.0 - 0.1 * 0.3 / np.sqrt(0.9 + 0.1 * 0.09 + 1e-10)
    assert a.numpy()[0] == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def video_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("optimizer_data")
    return write_synthetic_dataset(str(root), num_videos=48, num_classes=6, num_shards=1,
                                   video_level=True, feature_sizes=(8, 4), seed=4)["video"]


MODEL = ModelConfig(model="MoeModel", num_classes=6, feature_names=("mean_rgb", "mean_audio"),
                    feature_sizes=(8, 4), moe_num_mixtures=2)


def _trainer(train_dir, data, optimizer) -> Trainer:
    config = TrainConfig(train_dir=str(train_dir), train_data_pattern=data, batch_size=16,
                         optimizer=optimizer, base_learning_rate=0.1, learning_rate_decay=0.5,
                         learning_rate_decay_examples=40, clip_gradient_norm=0.5, seed=1,
                         shuffle=False)
    return Trainer(config, MODEL)


def _batches(data, count):
    batches = make_dataset(data, ReaderConfig.for_model(MODEL), 16, training=False,
                           num_epochs=None, num_readers=1)
    return [batch for batch, _ in zip(batches, range(count))]


@pytest.mark.parametrize("name", optimizer_names())
def test_resume_continues_exactly(name, video_data, tmp_path):
    n, m = 3, 2
    batches = _batches(video_data, n + m)
    straight = _trainer(tmp_path / "straight", video_data, name)
    start = {k: v.numpy() for k, v in straight.model.tf1_weights().items()}
    for batch in batches:
        straight.step(batch)

    first = _trainer(tmp_path / "resumed", video_data, name)
    for variable_name, variable in first.model.tf1_weights().items():
        variable.assign(start[variable_name])  # the same initial weights
    for batch in batches[:n]:
        first.step(batch)
    path = first.save()
    stored = checkpoint.read_checkpoint(path)
    slots = RULES[name].slots if name in RULES else (Slot("Adam"), Slot("Adam_1"))
    for slot in slots:  # under TF1 names, moved off their initial value
        for variable_name in ("gates/weights", "experts/weights", "experts/biases"):
            assert np.any(stored[f"{variable_name}/{slot.suffix}"] != slot.initial)
    assert len(stored) == 1 + 3 * (1 + len(slots)) + (2 if name == "AdamOptimizer" else 0)

    resumed = _trainer(tmp_path / "resumed", video_data, name)
    assert resumed.restore_latest() == path and resumed.global_step == n
    for batch in batches[n:]:
        resumed.step(batch)
    assert int(resumed.optimizer.iterations.numpy()) == int(straight.optimizer.iterations.numpy())
    for variable_name, variable in straight.model.tf1_weights().items():
        np.testing.assert_allclose(resumed.model.tf1_weights()[variable_name].numpy(),
                                   variable.numpy(), rtol=0, atol=1e-6, err_msg=variable_name)
    slots = optimizer_slots(straight.optimizer, straight.model)
    for slot_name, slot in optimizer_slots(resumed.optimizer, resumed.model).items():
        np.testing.assert_allclose(slot.numpy(), slots[slot_name].numpy(), rtol=0, atol=1e-6)
