"""The NeXtVLAD fork's layers and models (SPEC section 16) against NumPy
forms of its math: NeXtVLAD, the SE gating, the unfused batch norm, the
eigenvalue input scaling, the mixture and its distillation loss, the fork's
flag defaults and heads. The fork's checkpoints themselves:
``tests/test_nextvlad_fixtures.py``."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers import BatchNorm, NeXtVLAD, SEGating
from youtube8m_willow.losses import create_loss
from youtube8m_willow.models import create_model
from youtube8m_willow.models.input_scaling import EIGENVALUES_FILE, scale_features
from youtube8m_willow.models.nextvlad import distillation_loss, dropout
from youtube8m_willow.train_dir_flags import GivenFlags, model_config_from_given
from youtube8m_willow.training.train_config import TrainConfig
from youtube8m_willow.validation import validate_model_config

RNG = np.random.default_rng(3)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def batch_norm(x, weights, scope):
    """Eval-mode batch norm with the layer's stored statistics."""
    get = lambda name: weights[f"{scope}/{name}"]  # noqa: E731
    return (x - get("moving_mean")) / np.sqrt(get("moving_variance") + 1e-3) * get(
        "gamma") + get("beta")


def randomize(layer):
    """Random weights, batch-norm statistics positive; returns them by TF1 name."""
    values = {}
    for name, variable in layer.tf1_weights().items():
        shape = tuple(variable.shape)
        low = name.endswith(("gamma", "moving_variance"))
        value = RNG.uniform(0.5, 1.5, shape) if low else 0.3 * RNG.standard_normal(shape)
        variable.assign(value.astype("float32"))
        values[name] = value.astype("float32")
    return values


def nextvlad_numpy(frames, num_frames, w, clusters, groups):
    """The fork's NeXtVLAD in eval mode, step by step."""
    batch, max_frames, _ = frames.shape
    expanded = frames @ w["fully_connected/weights"] + w["fully_connected/biases"]
    attention = sigmoid(expanded @ w["fully_connected_1/weights"] + w["fully_connected_1/biases"])
    attention *= (np.arange(max_frames)[None, :] < num_frames[:, None])[:, :, None]
    attention = attention.reshape(batch, max_frames * groups, 1)
    activation = expanded.reshape(-1, expanded.shape[-1]) @ w["cluster_weights"]
    activation = batch_norm(activation, w, "cluster_bn")
    activation = softmax(activation.reshape(batch, max_frames * groups, clusters)) * attention
    group_size = expanded.shape[-1] // groups
    grouped = expanded.reshape(batch, max_frames * groups, group_size)
    vlad = np.einsum("bnk,bnd->bdk", activation, grouped)
    vlad -= activation.sum(1, keepdims=True) * w["cluster_weights2"]
    vlad /= np.sqrt(np.maximum((vlad ** 2).sum(1, keepdims=True), 1e-12))
    return batch_norm(vlad.reshape(batch, group_size * clusters), w, "vlad_bn")


@pytest.mark.parametrize("clusters,groups,expansion", [(4, 2, 2), (3, 4, 1)])
def test_nextvlad_is_the_forks_math(clusters, groups, expansion):
    frames = RNG.standard_normal((3, 5, 8)).astype("float32")
    num_frames = np.array([5, 2, 0], "int32")
    layer = NeXtVLAD(clusters, groups=groups, expansion=expansion)
    layer(frames, num_frames)
    weights = randomize(layer)
    expected = nextvlad_numpy(frames, num_frames, weights, clusters, groups)
    got = layer(frames, num_frames).numpy()
    assert got.shape == (3, clusters * expansion * 8 // groups)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert set(weights) == {
        "fully_connected/weights", "fully_connected/biases", "fully_connected_1/weights",
        "fully_connected_1/biases", "cluster_weights", "cluster_weights2",
        *(f"{bn}/{k}" for bn in ("cluster_bn", "vlad_bn")
          for k in ("beta", "gamma", "moving_mean", "moving_variance"))}


def test_nextvlad_hides_padded_frames_in_eval_mode_only():
    """The attention mask hides frames at or after num_frames; in training
    the cluster batch norm's statistics still see them (the fork's)."""
    frames = RNG.standard_normal((2, 6, 8)).astype("float32")
    changed = frames.copy()
    changed[0, 4:] = 9.0
    num_frames = np.array([4, 6], "int32")
    layer = NeXtVLAD(4, groups=2)
    layer(frames, num_frames)
    randomize(layer)
    np.testing.assert_allclose(layer(frames, num_frames), layer(changed, num_frames), atol=1e-6)
    trained = [layer(x, num_frames, training=True).numpy() for x in (frames, changed)]
    assert np.abs(trained[0] - trained[1]).max() > 1e-3


def _training_call(layer, frames, num_frames, **kwargs):
    """Training-mode output, the gradients of ``sum(output * cotangent)`` for
    every trainable weight (a fixed cotangent) and the batch-norm statistics
    after the call, which is then undone."""
    start = {v.path: v.numpy() for v in layer.non_trainable_variables}
    shape = layer.compute_output_shape(frames.shape)
    cotangent = np.random.default_rng(0).standard_normal(shape).astype("float32")
    with tf.GradientTape() as tape:
        output = layer(frames, num_frames, training=True, **kwargs)
        total = tf.reduce_sum(output * cotangent)
    gradients = tape.gradient(total, layer.trainable_variables)
    moved = [v.numpy() for v in layer.non_trainable_variables]
    for v in layer.non_trainable_variables:
        v.assign(start[v.path])
    return output.numpy(), [g.numpy() for g in gradients], moved


@pytest.mark.parametrize("expansion", [2, 1])
def test_nextvlad_given_the_padding_frame_skips_padded_frames_exactly(expansion):
    """Given the padded frames' value, training computes the frame matmuls
    on the valid frames only; output, gradients and the batch norms' moving
    statistics are those of the whole padded batch."""
    frames = RNG.standard_normal((3, 6, 8)).astype("float32")
    num_frames = np.array([4, 6, 1], "int32")
    padding = RNG.standard_normal(8).astype("float32")
    frames[np.arange(6)[None, :] >= num_frames[:, None]] = padding
    layer = NeXtVLAD(4, groups=2, expansion=expansion)
    layer(frames, num_frames)
    randomize(layer)
    whole = _training_call(layer, frames, num_frames)
    skipped = _training_call(layer, frames, num_frames, padding_frame=padding)
    np.testing.assert_allclose(skipped[0], whole[0], rtol=1e-4, atol=2e-5)
    for got, expected in zip(skipped[1] + skipped[2], whole[1] + whole[2]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5)
    # The padding frame is what the statistics see: another value moves them.
    other = _training_call(layer, frames, num_frames, padding_frame=padding + 1.0)
    assert np.abs(other[0] - whole[0]).max() > 1e-3


def test_nextvlad_models_tell_their_towers_the_padding_frame(monkeypatch):
    """NeXtVLADModel hands its NeXtVLADs the scaled zero frame (the fork's
    eigen scaling makes it non-zero), so training skips padded frames and
    still computes the padded batch's numbers."""
    model = create_model(config(drop_rate=0.0, groups=2)).build_for_config()
    zeros = np.zeros((1, 1152), "float32")
    expected = np.asarray(scale_features(tf.constant(zeros), "eigen"))[0]
    np.testing.assert_array_equal(model.padding_frame(tf.constant(zeros)).numpy(), expected)
    assert np.abs(expected[:1024]).min() > 0 and not expected[1024:].any()
    frames = RNG.uniform(-2, 2, (2, 6, 1152)).astype("float32")
    num_frames = np.array([3, 6], "int32")
    frames[0, 3:] = 0.0  # the readers' padding
    tower = model.tower
    features = scale_features(frames, "eigen")
    with_padding = tower(features, num_frames, training=True,
                         padding_frame=model.padding_frame(features))
    without = tower(features, num_frames, training=True)
    np.testing.assert_allclose(with_padding, without, rtol=1e-4, atol=1e-5)
    seen = []
    original_call = NeXtVLAD.call

    def recording_call(self, *args, padding_frame=None, **kwargs):
        seen.append(padding_frame)
        return original_call(self, *args, padding_frame=padding_frame, **kwargs)

    for name in ("NeXtVLADModel", "MixNeXtVladModel"):
        model = create_model(config(name, groups=2)).build_for_config()
        seen.clear()
        with monkeypatch.context() as patch:
            patch.setattr(NeXtVLAD, "call", recording_call)
            model({"video_matrix": frames, "num_frames": num_frames}, training=True)
        assert len(seen) >= 2 and all(p is not None for p in seen), name
        np.testing.assert_array_equal(np.concatenate([np.asarray(p) for p in seen[:2]]),
                                      expected)


def test_nextvlad_rejects_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="groups=3 must divide expansion \\* features = 16"):
        NeXtVLAD(4, groups=3)(np.ones([1, 2, 8], "float32"))


def test_nextvlad_round_trips_its_config():
    layer = NeXtVLAD(6, groups=4, expansion=3, name="video_VLAD")
    clone = NeXtVLAD.from_config(layer.get_config())
    assert (clone.cluster_size, clone.groups, clone.expansion) == (6, 4, 3)
    assert clone.name == "video_VLAD"


def test_se_gating_is_the_forks_math():
    hidden = RNG.standard_normal((4, 16)).astype("float32")
    layer = SEGating(4)
    layer(hidden)
    w = randomize(layer)
    gates = np.maximum(batch_norm(hidden @ w["gating_weights_1"], w, "gating_bn"), 0)
    expected = hidden * sigmoid(gates @ w["gating_weights_2"])
    np.testing.assert_allclose(layer(hidden).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert tuple(w["gating_weights_1"].shape) == (16, 4)
    assert SEGating.from_config(layer.get_config()).reduction == 4


@pytest.mark.parametrize("fused,divisor", [(True, 5), (False, 6)])
def test_batch_norm_moving_variance_fused_or_not(fused, divisor):
    """TF1's fused kernel moves the moving variance with the unbiased batch
    variance (n / (n - 1)), the unfused graph with the biased one; both
    normalize with the biased one."""
    x = RNG.standard_normal((6, 3)).astype("float32")
    layer = BatchNorm(decay=0.5, bessel_correction=fused)
    out = layer(x, training=True).numpy()
    centered = x - x.mean(0)
    np.testing.assert_allclose(out, centered / np.sqrt(x.var(0) + 1e-3), rtol=1e-4, atol=1e-5)
    expected = 0.5 * 1.0 + 0.5 * (centered ** 2).sum(0) / divisor
    np.testing.assert_allclose(layer.moving_variance.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5 * x.mean(0), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- input scaling

def test_eigen_scaling_is_the_forks():
    eigenvalues = np.load(EIGENVALUES_FILE)
    assert eigenvalues.shape == (2048, 1) and eigenvalues.dtype == np.float32
    frames = RNG.uniform(-2, 2, (2, 3, 1152)).astype("float32")
    frames[1, 2] = 0.0  # a padded frame
    got = scale_features(tf.constant(frames), "eigen").numpy()
    scale = np.sqrt(eigenvalues[:1024, 0]) + np.float32(1e-4)
    np.testing.assert_allclose(got[..., :1024], (frames[..., :1024] - 4 / 512) * scale,
                               rtol=1e-6)
    np.testing.assert_array_equal(got[..., 1024:], frames[..., 1024:])  # audio unchanged
    np.testing.assert_allclose(got[1, 2, :1024], -4 / 512 * scale, rtol=1e-6)  # not zero
    with pytest.raises(ValueError, match="needs the 1024 rgb features first, got 12"):
        scale_features(tf.zeros([1, 12]), "eigen")


def test_l2_scaling_normalizes_each_frame():
    frames = RNG.standard_normal((2, 3, 7)).astype("float32")
    frames[0, 1] = 0.0
    got = scale_features(tf.constant(frames), "l2").numpy()
    norms = np.linalg.norm(frames, axis=-1, keepdims=True)
    np.testing.assert_allclose(got, frames / np.maximum(norms, 1e-6), rtol=1e-5)


def config(model="NeXtVLADModel", **flags_):
    values = dict(model=model, num_classes=5, feature_names=("rgb", "audio"),
                  feature_sizes=(1024, 128), frame_features=True, max_frames=6,
                  nextvlad_cluster_size=4, nextvlad_hidden_size=8, groups=4, expansion=1,
                  gating_reduction=2, mix_number=2, video_level_classifier_model="LogisticModel",
                  netvlad_cluster_size=2, netvlad_hidden_size=4, frame_sampling="uniform",
                  iterations=3)
    values.update(flags_)
    return ModelConfig(**values)


def frames_batch(batch=3):
    video = RNG.integers(0, 256, (batch, 6, 1152)).astype("float32") * (4 / 255) + (4 / 512 - 2)
    num_frames = np.array([6, 3, 1][:batch], "int32")
    video *= (np.arange(6)[None, :] < num_frames[:, None])[..., None]
    return {"video_matrix": tf.constant(video), "num_frames": tf.constant(num_frames)}


@pytest.mark.parametrize("model,scaling,expected", [
    ("NeXtVLADModel", "auto", "eigen"), ("MixNeXtVladModel", "auto", "eigen"),
    ("NeXtVLADModel", "l2", "l2"), ("NetVLADModelLF", "auto", "l2"),
    ("NetVLADModelLF", "eigen", "eigen")])
def test_every_model_scales_its_input_as_the_flag_says(model, scaling, expected):
    built = create_model(config(model, input_scaling=scaling)).build_for_config()
    assert built.input_scaling == expected
    batch = frames_batch()
    features = scale_features(batch["video_matrix"], expected)
    direct = built.predict_probabilities(features, batch["num_frames"])
    np.testing.assert_allclose(built(batch).numpy(), direct.numpy(), rtol=1e-6)


def test_input_scaling_flag_is_checked():
    with pytest.raises(flags.ValidationError, match="unknown --input_scaling='pca'"):
        validate_model_config(config(input_scaling="pca"))
    with pytest.raises(flags.ValidationError,
                       match="--input_scaling=eigen .*--feature_sizes must start with 1024, "
                             "got 512,128"):
        validate_model_config(config(feature_sizes=(512, 128)))
    validate_model_config(config(feature_sizes=(512, 128), input_scaling="l2"))


# ---------------------------------------------------------------- models

def tf1_shapes(model):
    return {name: tuple(v.shape) for name, v in model.tf1_weights().items()}


def test_nextvlad_model_names_and_shapes():
    shapes = tf1_shapes(create_model(config()).build_for_config())
    # rgb: 1024 -> 1024 (expansion 1), 4 groups of 256, 4 clusters; audio: 2 groups of 64, 2.
    assert shapes["video_VLAD/fully_connected/weights"] == (1024, 1024)
    assert shapes["video_VLAD/fully_connected_1/weights"] == (1024, 4)
    assert shapes["video_VLAD/cluster_weights"] == (1024, 16)
    assert shapes["video_VLAD/cluster_weights2"] == (1, 256, 4)
    assert shapes["audio_VLAD/cluster_weights"] == (128, 4)
    assert shapes["audio_VLAD/cluster_weights2"] == (1, 64, 2)
    assert shapes["hidden1_weights"] == (1024 + 128, 8)
    assert shapes["gating_weights_1"] == (8, 4) and shapes["gating_weights_2"] == (4, 8)
    assert shapes["fully_connected/weights"] == (8, 5) and shapes["fully_connected/biases"] == (5,)
    assert "hidden1_biases" not in shapes and shapes["gating_bn/gamma"] == (4,)
    assert len(shapes) == 2 * 14 + 5 + 4 + 2 + 2


def test_nextvlad_model_with_moe_takes_the_forks_l2_and_mixtures():
    model = create_model(config(video_level_classifier_model="MoeModel", moe_num_mixtures=4,
                                l2_penalty=1e-3, moe_l2=0.5)).build_for_config()
    shapes = tf1_shapes(model)
    assert shapes["gates/weights"] == (8, 5 * 5) and shapes["experts/weights"] == (8, 5 * 4)
    assert model.classifier.l2 == 1e-3  # --l2_penalty, not --moe_l2


def test_forks_logistic_head_regularizes_its_biases():
    model = create_model(config(l2_penalty=0.5)).build_for_config()
    for variable in model.tf1_weights().values():
        variable.assign(tf.ones_like(variable))
    # slim's l2_regularizer: 0.5 * sum(w ** 2) / 2 for weights [8, 5] and biases [5]
    assert float(model.regularization_loss()) == pytest.approx(0.5 * (40 + 5) / 2)


def test_mixture_names_and_shapes():
    shapes = tf1_shapes(create_model(config("MixNeXtVladModel")).build_for_config())
    assert shapes["mix_weights_bn/moving_variance"] == (1152,)
    assert shapes["mix_weights/weights"] == (1152, 2) and shapes["mix_weights/biases"] == (2,)
    for branch in ("branch_0", "branch_1"):
        assert shapes[f"{branch}/video_vlad/cluster_weights2"] == (1, 256, 4)
        assert shapes[f"{branch}/audio_vlad/fully_connected/weights"] == (128, 128)
        assert shapes[f"{branch}/fully_connected/weights"] == (8, 5)
    assert not any("VLAD" in name for name in shapes)
    assert len(shapes) == 6 + 2 * 41


def test_mixture_predicts_the_sigmoid_of_the_gated_logits():
    model = create_model(config("MixNeXtVladModel")).build_for_config()
    randomize(model)
    batch = frames_batch()
    features, num_frames = model.scaled_inputs(batch)
    logits = np.stack([head.logits(branch(features, num_frames)).numpy()
                       for branch, head in zip(model.branches, model.heads)], 1)
    w = {name: v.numpy() for name, v in model.tf1_weights().items()}
    mean = features.numpy().mean(1)  # padded frames counted, as the fork's
    gates = softmax(batch_norm(mean, w, "mix_weights_bn") @ w["mix_weights/weights"]
                    + w["mix_weights/biases"])
    expected = sigmoid((gates[:, :, None] * logits).sum(1))
    np.testing.assert_allclose(model(batch).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_distillation_loss_is_the_forks_kl():
    mixture = RNG.standard_normal((3, 5)).astype("float32")
    branches = RNG.standard_normal((3, 2, 5)).astype("float32")
    teacher = softmax(mixture / 3)[:, None, :]
    students = softmax(branches / 3)
    kl = (teacher * (np.log(teacher + 1e-8) - np.log(students + 1e-8))).sum(-1)
    got = float(distillation_loss(tf.constant(mixture), tf.constant(branches), 3.0))
    assert got == pytest.approx(kl.sum(-1).mean(), rel=1e-5)


def test_mixture_training_objective():
    """Label loss: the mixture's cross entropy plus each branch's (logged as
    Loss); the model's regularization: cl_lambda x the distillation, whose
    gradient reaches the mixture's gate (no stop-gradient on the teacher)."""
    model = create_model(config("MixNeXtVladModel", drop_rate=0.0, cl_lambda=3.0,
                                cl_temperature=2.0)).build_for_config()
    randomize(model)
    batch = frames_batch()
    labels = tf.constant(RNG.random((3, 5)) < 0.4)
    loss_fn = create_loss("CrossEntropyLoss", model="MixNeXtVladModel")
    assert loss_fn.epsilon == 1e-8  # the fork's
    with tf.GradientTape() as tape:
        predictions, loss, distillation = model.training_objective(batch, labels, loss_fn)
    gate_gradient = tape.gradient(distillation, model.mix_weights.kernel)
    features, num_frames = model.scaled_inputs(batch)
    mixture, logits = model.mixture_logits(features, num_frames, training=True)
    expected = float(loss_fn(tf.sigmoid(mixture), labels)) + sum(
        float(loss_fn(tf.sigmoid(logits[:, n]), labels)) for n in range(2))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(distillation) == pytest.approx(
        3.0 * float(distillation_loss(mixture, logits, 2.0)), rel=1e-5)
    np.testing.assert_allclose(predictions.numpy(), tf.sigmoid(mixture).numpy(), rtol=1e-6)
    # The gate moves only the teacher: a stop-gradient there would leave it
    # no gradient (None). Its size depends on the random draws, which depend
    # on the tests run before this one: only its presence is asserted.
    assert gate_gradient is not None and np.abs(gate_gradient.numpy()).max() > 0


def test_plain_models_have_no_term_of_their_own():
    model = create_model(config()).build_for_config()
    labels = tf.constant(RNG.random((3, 5)) < 0.4)
    loss_fn = create_loss("CrossEntropyLoss")
    predictions, loss, extra = model.training_objective(frames_batch(), labels, loss_fn)
    assert float(extra) == 0.0 and loss_fn.epsilon == 1e-5
    assert float(loss) == pytest.approx(float(loss_fn(predictions, labels)), rel=1e-6)


def test_dropout_is_tf1s_and_a_function_of_its_seed():
    x = tf.ones([4, 1000])
    seed = tf.constant([7, 3], tf.int64)
    first, again = dropout(x, 0.25, seed), dropout(x, 0.25, seed)
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert set(np.unique(first.numpy())) == {0.0, np.float32(1 / 0.75)}
    assert abs(float(tf.reduce_mean(tf.cast(first > 0, tf.float32))) - 0.75) < 0.02
    assert not np.array_equal(first.numpy(), dropout(x, 0.25, seed + 1).numpy())


def test_branches_draw_their_own_dropout_masks():
    model = create_model(config("MixNeXtVladModel", drop_rate=0.5)).build_for_config()
    features, num_frames = model.scaled_inputs(frames_batch())
    seed = tf.constant([5, 1], tf.int64)
    outputs = []
    for n, branch in enumerate(model.branches[:1] * 2):  # one branch, two branch seeds
        from youtube8m_willow.models.nextvlad import _branch_seed
        outputs.append(branch(features, num_frames, training=True,
                              dropout_seed=_branch_seed(seed, n)).numpy())
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-4


def test_mixture_refuses_a_head_without_logits():
    with pytest.raises(flags.ValidationError, match="LogisticModel heads: "
                       "--video_level_classifier_model=MoeModel has none"):
        validate_model_config(config("MixNeXtVladModel", video_level_classifier_model="MoeModel"))


# ---------------------------------------------------------------- flag defaults

def given(**values):
    """A command line giving ``values`` (the other model flags at their defaults)."""
    defaults = {field.name: field.default for field in dataclasses.fields(ModelConfig)}
    defaults.update(feature_names="rgb,audio", feature_sizes="1024,128", frame_features=True)
    return GivenFlags(values={**defaults, **values}, present=frozenset(values))


def test_the_forks_defaults_apply_to_its_models_only():
    assert model_config_from_given(given(model="NeXtVLADModel")).moe_num_mixtures == 4
    assert model_config_from_given(
        given(model="NeXtVLADModel", moe_num_mixtures=2)).moe_num_mixtures == 2
    assert model_config_from_given(given(model="NetVLADModelLF")).moe_num_mixtures == 2
    mixture = model_config_from_given(given(model="MixNeXtVladModel"))
    assert mixture.video_level_classifier_model == "LogisticModel"
    assert model_config_from_given(
        given(model="NeXtVLADModel")).video_level_classifier_model == "MoeModel"


def test_num_gpu_multiplies_the_batch_per_step():
    config_ = TrainConfig(train_dir="x", train_data_pattern="y", batch_size=80, num_gpu=2)
    assert config_.examples_per_step == 160
    assert TrainConfig(train_dir="x", train_data_pattern="y").examples_per_step == 1024


def test_layers_run_on_keras_inputs():
    frames = keras.Input((5, 8))
    pooled = NeXtVLAD(4, groups=2)(frames)
    assert tuple(pooled.shape) == (None, 32)
    assert tuple(SEGating(4)(keras.Input((8,))).shape) == (None, 8)


def test_the_forks_module_name_gives_its_models():
    import nextvlad
    from youtube8m_willow.models.registry import model_class

    assert nextvlad.NeXtVLADModel is model_class("NeXtVLADModel")
    assert nextvlad.MixNeXtVladModel is model_class("MixNeXtVladModel")
