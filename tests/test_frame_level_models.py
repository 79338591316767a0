"""Frame-level models: parity with an original TF1 checkpoint, TF1 names
(SPEC sections 4 and 5), the shared front against NumPy, serialization, and
a few training steps."""

import dataclasses
import json
import math
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import forked
from conftest import REPO, SHARED, shared_path
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers.statistics import FrameStatistics
from youtube8m_willow.layers.vlad import ClusterPooling
from youtube8m_willow.models.frame_level import (HiddenLayer, TwoStreamPoolingModel,
                                                 parameter_count, stream_sizes)
from youtube8m_willow.models.registry import create_model, is_frame_level, model_names

FIXTURE = SHARED / "fixtures" / "netvlad_gated"
BN = ("beta", "gamma", "moving_mean", "moving_variance")

CLASSES, MIXTURES, HIDDEN = 6, 2, 5
RGB, AUDIO = 8, 4
FEATURES = RGB + AUDIO
FRAME_MODELS = ["NetVLADModelLF", "NetFVModelLF", "GatedDbofModelLF", "SoftDbofModelLF",
                "DbofModelLF", "DbofModel", "FrameLevelLogisticModel", "FrameStatisticsModel",
                "NeXtVLADModel", "MixNeXtVladModel"]


def small(model, **flags):
    """A tiny rgb(8)+audio(4) config with deterministic sampling (the
    NeXtVLAD models: L2-normalized input, their eigenvalue scaling needs the
    1024 rgb features; MixNeXtVladModel: its LogisticModel heads)."""
    values = dict(model=model, num_classes=CLASSES, feature_names=("rgb", "audio"),
                  feature_sizes=(RGB, AUDIO), frame_features=True, max_frames=10,
                  frame_sampling="uniform", iterations=5,
                  netvlad_cluster_size=4, netvlad_hidden_size=HIDDEN,
                  fv_cluster_size=4, fv_hidden_size=HIDDEN,
                  dbof_cluster_size=16, dbof_hidden_size=HIDDEN, stats_top_k=2,
                  nextvlad_cluster_size=4, nextvlad_hidden_size=8, groups=2,
                  gating_reduction=2, mix_number=2)
    if model in ("NeXtVLADModel", "MixNeXtVladModel"):
        values["input_scaling"] = "l2"
    if model == "MixNeXtVladModel":
        values["video_level_classifier_model"] = "LogisticModel"
    values.update(flags)
    return ModelConfig(**values)


def bn(scope, size):
    return {f"{scope}/{name}": (size,) for name in BN}


def moe(inputs, classes=CLASSES, mixtures=MIXTURES):
    return {"gates/weights": (inputs, classes * (mixtures + 1)),
            "experts/weights": (inputs, classes * mixtures),
            "experts/biases": (classes * mixtures,)}


def hidden(inputs, batch_norm=True):
    names = {"hidden1_weights": (inputs, HIDDEN)}
    names.update(bn("hidden1_bn", HIDDEN) if batch_norm else {"hidden1_biases": (HIDDEN,)})
    return names


def assignment(scope, size, clusters, batch_norm=True):
    names = {f"{scope}/cluster_weights": (size, clusters)}
    names.update(bn(f"{scope}/cluster_bn", clusters) if batch_norm
                 else {f"{scope}/cluster_biases": (clusters,)})
    return names


def tf1_shapes(model):
    return {name: tuple(var.shape) for name, var in model.tf1_weights().items()}


def dequantize(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, np.uint8).astype(np.float32) * (4 / 255) + (4 / 512 - 2)


# ---------------------------------------------------------------- TF1 names

EXPECTED_NAMES = {
    "netvlad_default": (small("NetVLADModelLF"), {
        **bn("input_bn", FEATURES),
        **assignment("video_VLAD", RGB, 4), "video_VLAD/cluster_weights2": (1, RGB, 4),
        **assignment("audio_VLAD", AUDIO, 2), "audio_VLAD/cluster_weights2": (1, AUDIO, 2),
        **hidden(RGB * 4 + AUDIO * 2), **moe(HIDDEN)}),
    "netrvlad_gated_norelu": (small("NetVLADModelLF", lightvlad=True, gating=True,
                                    netvlad_relu=False), {
        **bn("input_bn", FEATURES), **assignment("video_VLAD", RGB, 4),
        **assignment("audio_VLAD", AUDIO, 2), **hidden(RGB * 4 + AUDIO * 2, batch_norm=False),
        "gating_weights_2": (HIDDEN, HIDDEN), **bn("gating_bn", HIDDEN), **moe(HIDDEN)}),
    "netvlagd_no_batch_norm": (small("NetVLADModelLF", vlagd=True, gating=True,
                                     netvlad_add_batch_norm=False, netvlad_cluster_size=5), {
        **assignment("video_VLAD", RGB, 5, False), "video_VLAD/gate_weights": (1, 5, RGB),
        **assignment("audio_VLAD", AUDIO, 2, False), "audio_VLAD/gate_weights": (1, 2, AUDIO),
        **hidden(RGB * 5 + AUDIO * 2, batch_norm=False),
        "gating_weights_2": (HIDDEN, HIDDEN), "gating_biases": (HIDDEN,), **moe(HIDDEN)}),
    "netfv_coupled": (small("NetFVModelLF"), {
        **bn("input_bn", FEATURES),
        **assignment("video_FV", RGB, 4), "video_FV/covar_weights": (RGB, 4),
        **assignment("audio_FV", AUDIO, 2), "audio_FV/covar_weights": (AUDIO, 2),
        **hidden(2 * (RGB * 4 + AUDIO * 2)), **moe(HIDDEN)}),
    "netfv_uncoupled_gated": (small("NetFVModelLF", fv_couple_weights=False, gating=True,
                                    fv_relu=False, moe_prob_gating=True), {
        **bn("input_bn", FEATURES),
        **assignment("video_FV", RGB, 4), "video_FV/covar_weights": (RGB, 4),
        "video_FV/cluster_weights2": (1, RGB, 4),
        **assignment("audio_FV", AUDIO, 2), "audio_FV/covar_weights": (AUDIO, 2),
        "audio_FV/cluster_weights2": (1, AUDIO, 2),
        **hidden(2 * (RGB * 4 + AUDIO * 2), batch_norm=False),
        "gating_weights_2": (HIDDEN, HIDDEN), **bn("gating_bn", HIDDEN), **moe(HIDDEN),
        "gating_prob_weights": (CLASSES, CLASSES), **bn("gating_prob_bn", CLASSES)}),
    "gateddbof": (small("GatedDbofModelLF"), {
        **bn("input_bn", FEATURES), **assignment("video_DBOF", RGB, 16),
        "video_DBOF/dim_red": (16, RGB), "video_DBOF/cluster_weights_2": (RGB, 16),
        **bn("video_DBOF/cluster_bn_2", 16), **assignment("audio_DBOF", AUDIO, 2),
        **hidden(16 + 2), **moe(HIDDEN)}),
    "gateddbof_no_batch_norm_maxpool": (small("GatedDbofModelLF", dbof_add_batch_norm=False,
                                              softdbof_maxpool=True, dbof_cluster_size=12), {
        **assignment("video_DBOF", RGB, 12, False),
        "video_DBOF/dim_red": (12, RGB), "video_DBOF/cluster_weights_2": (RGB, 12),
        "video_DBOF/cluster_biases_2": (12,), **assignment("audio_DBOF", AUDIO, 1, False),
        **hidden(12 + 2 * 1, batch_norm=False), **moe(HIDDEN)}),
    "softdbof_norelu": (small("SoftDbofModelLF", dbof_relu=False), {
        **bn("input_bn", FEATURES), **assignment("video_DBOF", RGB, 16),
        **assignment("audio_DBOF", AUDIO, 2), **hidden(16 + 2, batch_norm=False),
        **moe(HIDDEN)}),
    "softdbof_no_fc_dimred": (small("SoftDbofModelLF", fc_dimred=False, softdbof_maxpool=True), {
        **bn("input_bn", FEATURES), **assignment("video_DBOF", RGB, 16),
        **assignment("audio_DBOF", AUDIO, 2), **moe(2 * 16 + 2 * 2)}),
    "willow_dbof": (small("DbofModelLF"), {
        **bn("input_bn", FEATURES), **assignment("video_DBOF", RGB, 16),
        **assignment("audio_DBOF", AUDIO, 2), **hidden(2 * 16 + 2 * 2), **moe(HIDDEN)}),
    "willow_dbof_glu": (small("DbofModelLF", dbof_activation="glu", fc_dimred=False), {
        **bn("input_bn", FEATURES), **assignment("video_DBOF", RGB, 32),
        **assignment("audio_DBOF", AUDIO, 4), **hidden(2 * 32 + 2 * 4), **moe(HIDDEN)}),
    "starter_dbof": (small("DbofModel"), {
        **bn("input_bn", FEATURES), **assignment("", FEATURES, 16), **hidden(16),
        **moe(HIDDEN)}),
    "starter_dbof_no_batch_norm": (small("DbofModel", dbof_add_batch_norm=False,
                                         video_level_classifier_model="LogisticModel"), {
        **assignment("", FEATURES, 16, False), **hidden(16, batch_norm=False),
        "fully_connected/weights": (HIDDEN, CLASSES), "fully_connected/biases": (CLASSES,)}),
    "frame_logistic": (small("FrameLevelLogisticModel"), {
        "fully_connected/weights": (FEATURES, CLASSES), "fully_connected/biases": (CLASSES,)}),
    "frame_statistics": (small("FrameStatisticsModel"), {**moe((2 + 2) * FEATURES)}),
    "single_feature": (small("NetVLADModelLF", feature_names=("rgb",), feature_sizes=(RGB,)), {
        **bn("input_bn", RGB), **assignment("video_VLAD", RGB, 4),
        "video_VLAD/cluster_weights2": (1, RGB, 4), **hidden(RGB * 4), **moe(HIDDEN)}),
}


def _strip(names):
    """``assignment("", ...)`` yields ``/cluster_weights``: top-level names."""
    return {name.lstrip("/"): shape for name, shape in names.items()}


@pytest.mark.parametrize("case", sorted(EXPECTED_NAMES))
def test_tf1_names_and_shapes(case):
    config, expected = EXPECTED_NAMES[case]
    model = create_model(config).build_for_config()
    assert tf1_shapes(model) == _strip(expected)
    # Every Keras weight has a TF1 name, so an original checkpoint fills them all.
    assert {id(v) for v in model.weights} == {id(v) for v in model.tf1_weights().values()}


def test_registry_lists_frame_level_models():
    assert set(FRAME_MODELS) <= set(model_names())
    assert all(is_frame_level(name) for name in FRAME_MODELS)


def test_models_sample_with_the_configured_sampler():
    for sampling, flags in [("uniform", {}), ("random", {"frame_sampling": None}),
                            ("sequence", {"frame_sampling": None,
                                          "sample_random_frames": False})]:
        model = create_model(small("NetFVModelLF", iterations=7, **flags))
        assert (model.sampler.num_samples, model.sampler.method) == (7, sampling)


def test_starter_dbof_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown --dbof_activation='glu' for DbofModel"):
        create_model(small("DbofModel", dbof_activation="glu"))


# ---------------------------------------------------------------- original checkpoint

def _fixture_config(meta):
    fields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    values = {}
    for flag in meta["model_flags"]:
        name, value = flag[2:].split("=", 1)
        default = fields[name]
        if isinstance(default, bool):
            value = value == "True"
        elif isinstance(default, (int, float)):
            value = type(default)(value)
        elif isinstance(default, tuple):
            value = tuple(int(v) if name == "feature_sizes" else v for v in value.split(","))
        values[name] = value
    return ModelConfig(num_classes=meta["num_classes"], frame_sampling="uniform", **values)


def _fixture_inputs(path, id_key, max_frames=300):
    ids, videos, counts = [], [], []
    for raw in tf.data.TFRecordDataset(str(path)):
        example = tf.train.SequenceExample.FromString(raw.numpy())
        ids.append(example.context.feature[id_key].bytes_list.value[0].decode())
        lists = example.feature_lists.feature_list
        video = np.concatenate(
            [np.stack([dequantize(f.bytes_list.value[0]) for f in lists[name].feature])
             for name in ("rgb", "audio")], axis=1)[:max_frames]
        counts.append(len(video))
        videos.append(np.pad(video, [(0, max_frames - len(video)), (0, 0)]))
    return ids, np.stack(videos), np.array(counts, np.int32)


def test_netvlad_gated_matches_original_checkpoint():
    shared_path("fixtures", "netvlad_gated")  # fails when absent
    meta = json.loads((FIXTURE / "meta.json").read_text())
    config = _fixture_config(meta)
    ids, videos, num_frames = _fixture_inputs(FIXTURE / "data.tfrecord", meta["id_key"])
    assert ids == meta["video_ids"] and num_frames.tolist() == meta["num_frames"]

    model = create_model(config).build_for_config()
    reader = tf.train.load_checkpoint(str(FIXTURE / "train_dir" / "model.ckpt-123"))
    names = model.tf1_weights()
    expected_names = {k: v for k, v in meta["variables"].items() if k != "global_step"}
    assert {k: list(v.shape) for k, v in names.items()} == expected_names
    for name, var in names.items():
        var.assign(reader.get_tensor(name))

    predictions = model({"video_matrix": videos, "num_frames": num_frames}, training=False)
    expected = np.load(FIXTURE / "expected_predictions.npy")
    np.testing.assert_allclose(predictions.numpy(), expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the shared front

def np_l2(x, axis=-1):
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))


def np_bn(x, w, scope):
    return ((x - w[f"{scope}/moving_mean"]) / np.sqrt(w[f"{scope}/moving_variance"] + 1e-3)
            * w[f"{scope}/gamma"] + w[f"{scope}/beta"])


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def randomize(model, seed=0):
    """Non-trivial values for every weight, moving statistics included."""
    rng = np.random.RandomState(seed)
    for var in model.weights:
        value = (rng.uniform(0.5, 1.5, var.shape) if var.name == "moving_variance"
                 else rng.randn(*var.shape) * 0.5)
        var.assign(value.astype(np.float32))
    return {k: v.numpy().astype(np.float64) for k, v in model.tf1_weights().items()}


def inputs(seed=1, batch=3, max_frames=10):
    rng = np.random.RandomState(seed)
    num_frames = np.array([max_frames, 4, 1][:batch], np.int32)
    video = rng.randn(batch, max_frames, FEATURES).astype(np.float32)
    video *= (np.arange(max_frames)[None, :] < num_frames[:, None])[..., None]
    return video, num_frames


def sampled(video, num_frames, iterations):
    """Uniform sampling: floor(i * num_frames / iterations)."""
    index = np.arange(iterations)[None, :] * num_frames[:, None] // iterations
    return np.take_along_axis(video, index[:, :, None], axis=1)


def np_front(model, w, video, num_frames):
    """The LF front in NumPy; the stream poolings (checked against their own
    formulas in test_pooling_layers) and the classifier run as layers."""
    config, settings = model.config, model.settings
    frames = sampled(np_l2(video.astype(np.float64)), num_frames, config.iterations)
    flat = frames.reshape(-1, FEATURES)
    if settings.add_batch_norm:
        flat = np_bn(flat, w, "input_bn")
    flat = flat.reshape(len(video), config.iterations, FEATURES).astype(np.float32)
    pooled = np.concatenate(
        [model.video_pooling(flat[..., :RGB]).numpy(),
         model.audio_pooling(flat[..., RGB:]).numpy()], 1).astype(np.float64)
    if not settings.fc_dimred:
        return pooled
    x = pooled @ w["hidden1_weights"]
    x = np_bn(x, w, "hidden1_bn") if "hidden1_bn/gamma" in w else x + w["hidden1_biases"]
    if settings.relu:
        x = np.clip(x, 0, 6)
    if settings.gating:
        gate_w = w["gating_weights_2"]
        gates = x @ gate_w
        if settings.remove_diag:
            gates -= np.diag(gate_w) * x
        if "gating_bn/gamma" in w:
            gates = np_bn(gates, w, "gating_bn")
        else:
            gates = gates + w["gating_biases"]
        x = x * np_sigmoid(gates)
    return x


FRONT_CASES = {
    "netvlad_relu_bn": small("NetVLADModelLF"),
    "netvlad_gating_remove_diag": small("NetVLADModelLF", gating=True, gating_remove_diag=True),
    "netrvlad_no_batch_norm_gated": small("NetVLADModelLF", lightvlad=True, gating=True,
                                          netvlad_add_batch_norm=False),
    "netvlagd_norelu": small("NetVLADModelLF", vlagd=True, netvlad_relu=False),
    "netfv_gated_ignores_remove_diag": small("NetFVModelLF", gating=True,
                                             gating_remove_diag=True),
    "gateddbof_norelu": small("GatedDbofModelLF", dbof_relu=False),
    "softdbof_no_fc_dimred": small("SoftDbofModelLF", fc_dimred=False),
    "willow_dbof_no_batch_norm": small("DbofModelLF", dbof_add_batch_norm=False),
}


@pytest.mark.parametrize("case", sorted(FRONT_CASES))
def test_lf_front_matches_numpy(case):
    config = FRONT_CASES[case].replace(video_level_classifier_model="LogisticModel")
    model = create_model(config).build_for_config()
    assert isinstance(model, TwoStreamPoolingModel)
    w = randomize(model)
    video, num_frames = inputs()
    expected_features = np_front(model, w, video, num_frames)
    expected = np_sigmoid(expected_features @ w["fully_connected/weights"]
                          + w["fully_connected/biases"])
    got = model({"video_matrix": video, "num_frames": num_frames}).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


FOLDING_CASES = {
    "softdbof_max_pool": small("SoftDbofModelLF", softdbof_maxpool=True),
    "gateddbof": small("GatedDbofModelLF"),
    "willow_dbof": small("DbofModelLF"),
    "starter_dbof_sigmoid_average": small("DbofModel", dbof_activation="sigmoid",
                                          dbof_pooling_method="average"),
    "starter_dbof_rgb_only": small("DbofModel", feature_names=("rgb",), feature_sizes=(RGB,)),
    "netvlad_gated": small("NetVLADModelLF", gating=True),
    "netrvlad": small("NetVLADModelLF", lightvlad=True),
    "netvlagd_rgb_only": small("NetVLADModelLF", vlagd=True, feature_names=("rgb",),
                               feature_sizes=(RGB,)),
    "netfv_coupled_gated": small("NetFVModelLF", gating=True),
    "netfv_uncoupled": small("NetFVModelLF", fv_couple_weights=False),
}


def _training_step(config, monkeypatch, fold: bool):
    """One training-mode forward and gradient of a randomized model: loss,
    gradients and moving statistics by weight path, and the widths of the
    gradient's ``[B*N, width]`` matmuls (input gradients)."""
    monkeypatch.setattr(ClusterPooling, "folds_input_affine", fold)
    model = create_model(config).build_for_config()
    randomize(model)
    video, num_frames = inputs()
    video = video[..., :config.feature_size]
    labels = (np.random.RandomState(3).rand(len(video), CLASSES) < 0.3).astype(np.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            predictions = model({"video_matrix": video, "num_frames": num_frames},
                                training=True)
            loss = cross_entropy(labels, tf.cast(predictions, tf.float32))
        return loss, tape.gradient(loss, model.trainable_weights)

    loss, grads = step()
    rows = len(video) * config.iterations
    widths = [op.outputs[0].shape[1] for op in step.get_concrete_function().graph.get_operations()
              if op.type == "MatMul" and op.name.startswith("gradient_tape/")
              and op.outputs[0].shape[0] == rows]
    return (float(loss), {v.path: g.numpy() for v, g in zip(model.trainable_weights, grads)},
            {v.path: v.numpy() for v in model.non_trainable_weights}, widths)


@pytest.mark.parametrize("case", sorted(FOLDING_CASES))
def test_models_fold_input_batch_norm_into_their_poolings(case, monkeypatch):
    """In training the LF models and the starter's DbofModel hand their
    poolings the frames standardized, with input_bn's gamma and beta folded
    into the cluster weights and the sums over frames: the loss, gradients
    and moving statistics are those of the normalized frames, and the
    gradient has no ``[B*N, D]`` input gradient."""
    config = FOLDING_CASES[case]
    loss, grads, moving, widths = _training_step(config, monkeypatch, fold=True)
    want_loss, want_grads, want_moving, want_widths = _training_step(config, monkeypatch,
                                                                     fold=False)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    largest = max(np.abs(g).max() for g in want_grads.values())
    # Where the frames enter only through the projections (the DBoF
    # models), the cluster batch norm cancels any shift: input_bn's beta has
    # a zero gradient but for rounding on both paths, held to the largest.
    shift_cancelled = "Dbof" in config.model
    for path, want in want_grads.items():
        # To 1e-4 of each gradient's size: the two roundings of the
        # projections differ in their last bits, which the cluster batch
        # norm's gradient amplifies.
        size = (largest if shift_cancelled and path.endswith("input_bn/beta")
                else np.abs(want).max())
        np.testing.assert_allclose(grads[path], want, atol=1e-4 * size, err_msg=path)
    for path, want in want_moving.items():
        np.testing.assert_allclose(moving[path], want, atol=1e-6, err_msg=path)
    # The starter's DbofModel pools all the columns as one stream.
    input_widths = ({config.feature_size} if config.model == "DbofModel"
                    else set(stream_sizes(config)) - {0})
    assert input_widths <= set(want_widths)
    assert not input_widths & set(widths)


def _inference_predictions(config, monkeypatch, fold: bool, far: bool):
    """A randomized model's inference-mode predictions; ``far``: frames
    near 1 + 0.1 noise, with input_bn's moving statistics their columns'
    moments (each column's mean about ten times its deviation)."""
    monkeypatch.setattr(ClusterPooling, "folds_input_affine", fold)
    model = create_model(config).build_for_config()
    randomize(model)
    video, num_frames = inputs()
    video = video[..., :config.feature_size]
    if far:
        real = (np.arange(video.shape[1])[None, :] < num_frames[:, None])[..., None]
        video = ((1.0 + 0.1 * video) * real).astype(np.float32)
        features, _ = model.scaled_inputs({"video_matrix": video, "num_frames": num_frames})
        rows = features.numpy()[np.broadcast_to(real, video.shape)[..., 0]]
        model.input_bn.moving_mean.assign(rows.mean(0))
        model.input_bn.moving_variance.assign(rows.var(0))
    return model({"video_matrix": video, "num_frames": num_frames}, training=False).numpy()


@pytest.mark.parametrize("far", [False, True])
@pytest.mark.parametrize("case", sorted(FOLDING_CASES))
def test_models_fold_input_batch_norm_in_inference_too(case, far, monkeypatch):
    """In inference the same models hand their poolings the frames and
    input_bn's moving map unapplied (``BatchNorm.inference_parts``): the
    predictions of the map applied to the frames, to 1e-6; where each
    column's mean is about ten times its deviation (the map's offset then
    cancels against the scaled frames' sums), to 1e-5."""
    config = FOLDING_CASES[case]
    folded = _inference_predictions(config, monkeypatch, fold=True, far=far)
    applied = _inference_predictions(config, monkeypatch, fold=False, far=far)
    np.testing.assert_allclose(folded, applied, atol=1e-5 if far else 1e-6)


def test_netfv_gating_has_no_remove_diag_option():
    model = create_model(small("NetFVModelLF", gating=True, gating_remove_diag=True))
    assert model.gating.remove_diag is False
    model = create_model(small("NetVLADModelLF", gating=True, gating_remove_diag=True))
    assert model.gating.remove_diag is True


@pytest.mark.parametrize("activation,method,batch_norm", [
    ("relu", "max", True), ("sigmoid", "average", False)])
def test_starter_dbof_matches_numpy(activation, method, batch_norm):
    config = small("DbofModel", dbof_activation=activation, dbof_pooling_method=method,
                   dbof_add_batch_norm=batch_norm, video_level_classifier_model="LogisticModel")
    model = create_model(config).build_for_config()
    w = randomize(model)
    video, num_frames = inputs(2)
    act = (lambda x: np.clip(x, 0, 6)) if activation == "relu" else np_sigmoid
    x = sampled(np_l2(video.astype(np.float64)), num_frames, config.iterations)
    x = x.reshape(-1, FEATURES)
    if batch_norm:
        x = np_bn(x, w, "input_bn")
    x = x @ w["cluster_weights"]
    x = np_bn(x, w, "cluster_bn") if batch_norm else x + w["cluster_biases"]
    x = act(x).reshape(len(video), config.iterations, -1)
    x = x.max(1) if method == "max" else x.mean(1)
    x = x @ w["hidden1_weights"]
    x = act(np_bn(x, w, "hidden1_bn") if batch_norm else x + w["hidden1_biases"])
    expected = np_sigmoid(x @ w["fully_connected/weights"] + w["fully_connected/biases"])
    got = model({"video_matrix": video, "num_frames": num_frames}).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_frame_level_logistic_averages_valid_frames_only():
    model = create_model(small("FrameLevelLogisticModel")).build_for_config()
    w = randomize(model)
    video, num_frames = inputs(3)
    garbage = video.copy()
    garbage[1, 4:] = 5.0  # beyond num_frames: must not count
    normalized = np_l2(video.astype(np.float64))
    mean = np.stack([normalized[b, :n].mean(0) for b, n in enumerate(num_frames)])
    expected = np_sigmoid(mean @ w["fully_connected/weights"] + w["fully_connected/biases"])
    got = model({"video_matrix": garbage, "num_frames": num_frames}).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert model.losses and np.isclose(float(model.losses[0]), 0.5e-8 * np.sum(
        w["fully_connected/weights"] ** 2), rtol=1e-4)


def test_frame_statistics_model_pools_then_classifies():
    config = small("FrameStatisticsModel", stats_top_k=3)
    model = create_model(config).build_for_config()
    randomize(model)
    video, num_frames = inputs(4)
    normalized = tf.math.l2_normalize(video, -1, epsilon=1e-12)
    pooled = FrameStatistics(3)(normalized, num_frames)
    expected = model.classifier(pooled).numpy()
    got = model({"video_matrix": video, "num_frames": num_frames}).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.isnan(model({"video_matrix": video * 0,
                               "num_frames": np.zeros(3, np.int32)}).numpy()).any()


def test_hidden_layer_serialization_round_trip():
    layer = HiddenLayer(4, stddev=0.3, batch_norm=False, activation="sigmoid")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="unknown hidden activation 'tanh'"):
        HiddenLayer(4, stddev=1.0, activation="tanh")


# ---------------------------------------------------------------- save / load

def saveable(name):
    """A tiny config of any registered model, video-level ones included."""
    return small(name, frame_features=is_frame_level(name), gating=True, moe_prob_gating=True,
                 lstm_cells=3, gru_cells=3, lstm_layers=2, gru_layers=2)


def batch_for(config):
    video, num_frames = inputs(5)
    return {"video_matrix": video if config.frame_features else video[:, 0],
            "num_frames": num_frames}


@pytest.mark.parametrize("name", model_names())
def test_saved_model_reloads_with_identical_outputs(name, tmp_path):
    model = create_model(saveable(name)).build_for_config()
    randomize(model)
    batch = batch_for(model.config)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model) and reloaded.config == model.config
    np.testing.assert_array_equal(reloaded(batch).numpy(), model(batch).numpy())
    clone = type(model).from_config(model.get_config()).build_for_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(batch).numpy(), model(batch).numpy())


@pytest.mark.slow
def test_fresh_process_loads_every_saved_model(tmp_path):
    """A new Python process that imports ``youtube8m_willow.models`` and
    nothing else reads every model's ``.keras`` file back, predictions equal."""
    expected = {}
    for name in model_names():
        model = create_model(saveable(name)).build_for_config()
        randomize(model)
        model.save(tmp_path / f"{name}.keras")
        batch = batch_for(model.config)
        np.savez(tmp_path / f"{name}_input.npz", **batch)
        expected[name] = model(batch).numpy()
    load = ("import sys, pathlib, keras, numpy as np, youtube8m_willow.models\n"
            "folder = pathlib.Path(sys.argv[1])\n"
            "for path in sorted(folder.glob('*.keras')):\n"
            "    batch = dict(np.load(folder / f'{path.stem}_input.npz'))\n"
            "    got = keras.models.load_model(path)(batch)\n"
            "    np.save(folder / f'{path.stem}_output.npy', keras.ops.convert_to_numpy(got))\n")
    result = forked.run([sys.executable, "-c", load, str(tmp_path)], capture_output=True,
                        text=True, cwd=str(REPO), timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    for name, want in expected.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}_output.npy"), want)


# ---------------------------------------------------------------- training

def cross_entropy(labels, predictions, eps=1e-5):
    loss = labels * tf.math.log(predictions + eps) + (1 - labels) * tf.math.log(
        1 - predictions + eps)
    return -tf.reduce_mean(tf.reduce_sum(loss, 1))


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_training_steps_reduce_loss(name):
    keras.utils.set_random_seed(0)
    config = small(name, gating=name.startswith("Net"), moe_prob_gating=True)
    model = create_model(config).build_for_config()
    rng = np.random.RandomState(6)
    num_frames = rng.randint(1, 11, size=8).astype(np.int32)
    labels = (rng.rand(8, CLASSES) < 0.3).astype(np.float32)
    # Frames carry their labels: the problem is learnable.
    signal = (labels @ rng.randn(CLASSES, FEATURES))[:, None, :]
    video = (rng.randn(8, 10, FEATURES) + 2 * signal).astype(np.float32)
    video *= (np.arange(10)[None, :] < num_frames[:, None])[..., None]
    batch = {"video_matrix": tf.constant(video), "num_frames": tf.constant(num_frames)}
    optimizer = keras.optimizers.Adam(0.01, epsilon=1e-8)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = cross_entropy(labels, model(batch, training=True))
            total = loss + model.regularization_loss()
        grads = tape.gradient(total, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        return loss

    losses = [float(step()) for _ in range(25)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0], losses


def test_parameter_count_counts_every_weight():
    config = small("NetVLADModelLF", gating=True)
    counts = parameter_count(config)
    model = create_model(config).build_for_config()
    shapes = tf1_shapes(model).values()
    assert counts["total"] == sum(math.prod(s) for s in shapes)
    moving = sum(math.prod(s) for n, s in tf1_shapes(model).items() if "/moving_" in n)
    assert counts["trainable"] == counts["total"] - moving


@pytest.mark.parametrize("model_name, flags", [
    ("NetVLADModelLF", {}), ("DbofModel", {}), ("SoftDbofModelLF", {"frame_sampling": "sequence"}),
    ("LstmModel", {"lstm_random_sequence": True, "lstm_cells": 4}),
    ("FrameLevelLogisticModel", {})])
def test_a_model_fed_only_its_sampled_bytes_predicts_as_from_every_float_frame(model_name, flags):
    """Training and prediction read frames as bytes and dequantize only those
    a model samples (its ``frame_indices``, drawn from the step's sampling
    seed): the predictions are those of the model sampling the float frames
    itself (the same frames: only the L2 sums of fewer frames may round
    apart, by an ulp); a model that reads every frame is given them all."""
    from youtube8m_willow.data.parsing import dequantize_frames, with_float_frames

    config = small(model_name, frame_sampling=flags.pop("frame_sampling", "random"), **flags)
    model = create_model(config).build_for_config()
    rng = np.random.default_rng(4)
    for weight in model.weights:
        value = rng.normal(0, 0.5, weight.shape)
        weight.assign(np.abs(value) + 0.5 if "variance" in weight.path else value)
    num_frames = tf.constant([10, 6, 1], tf.int32)
    feature_frames = tf.constant([[10, 10], [6, 3], [1, 1]], tf.int32)
    video_bytes = tf.constant(rng.integers(0, 256, (3, 10, FEATURES)), tf.uint8)
    seed = tf.constant([11, 7], tf.int32)
    from_bytes = with_float_frames(
        {"video_matrix": video_bytes, "num_frames": num_frames, "feature_frames": feature_frames,
         "sampling_seed": seed}, (RGB, AUDIO), model.frame_indices)
    samples = model_name != "FrameLevelLogisticModel"
    assert ("frame_indices" in from_bytes) is samples
    assert from_bytes["video_matrix"].shape[1] == (5 if samples else 10)
    floats = {"video_matrix": dequantize_frames(video_bytes, feature_frames, (RGB, AUDIO)),
              "num_frames": num_frames, "sampling_seed": seed}
    for training in (False, True):
        np.testing.assert_allclose(model(from_bytes, training=training).numpy(),
                                   model(floats, training=training).numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", [name for name in model_names() if is_frame_level(name)])
def test_predictor_predicts_a_large_batch_in_chunks_as_whole(name):
    """A batch of more than ``videos_per_call`` videos runs through the
    compiled prediction in chunks of that many, in order: every frame-level
    model predicts the same for each video as from the whole batch at once
    (its prediction depends on its own frames alone)."""
    from youtube8m_willow.prediction import Predictor

    predictor = Predictor(small(name, lstm_cells=4, gru_cells=4, lstm_layers=2, gru_layers=2))
    randomize(predictor.model)
    rng = np.random.RandomState(5)
    num_frames = np.array([10, 4, 1, 7, 10, 2, 9], np.int32)
    video = rng.randn(7, 10, FEATURES).astype(np.float32)
    video *= (np.arange(10)[None, :] < num_frames[:, None])[..., None]
    batch = {"video_matrix": tf.constant(video), "num_frames": tf.constant(num_frames),
             "video_ids": tf.constant([b"v%d" % i for i in range(7)])}
    predictor.videos_per_call = None
    whole = predictor(batch).numpy()
    calls = []
    compiled = predictor._predict
    predictor._predict = lambda inputs: calls.append(inputs["video_matrix"].shape[0]) or \
        compiled(inputs)
    predictor.videos_per_call = 3
    chunked = predictor(batch).numpy()
    assert calls == [3, 3, 1]
    assert whole.shape == (7, CLASSES) and np.ptp(whole) > 1e-3
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)


def test_frame_level_batches_are_predicted_at_most_prediction_frames_at_a_time():
    """``videos_per_call``: 512 videos of 300 frames, or of 300 sampled
    frames (the frames of ``PREDICTION_FRAMES``), fewer of longer videos, at
    least one; whole batches of video-level features."""
    from youtube8m_willow.prediction import PREDICTION_FRAMES, videos_per_call

    assert videos_per_call(small("NetVLADModelLF", max_frames=300, iterations=300)) == 512
    assert videos_per_call(small("NetVLADModelLF", max_frames=300, iterations=30)) == 512
    assert videos_per_call(small("LstmModel", max_frames=1000)) == PREDICTION_FRAMES // 1000
    # A segment's 5 frames, 300 of them sampled (with replacement).
    assert videos_per_call(small("NetVLADModelLF", max_frames=5, iterations=300)) == 512
    assert videos_per_call(small("DbofModel", max_frames=PREDICTION_FRAMES * 2)) == 1
    assert videos_per_call(ModelConfig(model="MoeModel")) is None
