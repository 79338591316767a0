"""The portable weights file: what it holds, how it fails, and that the
converter command writes one that loads (the cross-backend predictions are in
tests/test_backends.py)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import forked
from conftest import REPO, shared_path
from youtube8m_willow import portable
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers import ContextGating

CONFIG = ModelConfig(model="MoeModel", num_classes=4, feature_names=("mean_rgb",),
                     feature_sizes=(8,), moe_num_mixtures=1)


def _arrays():
    rng = np.random.default_rng(0)
    return {"gates/weights": rng.standard_normal((8, 8)).astype("float32"),
            "experts/weights": rng.standard_normal((8, 4)).astype("float32"),
            "experts/biases": rng.standard_normal(4).astype("float32")}


def test_round_trip_keeps_arrays_config_and_origin(tmp_path):
    path = str(tmp_path / "moe.npz")
    portable.write_weights(path, _arrays(), CONFIG, {"global_step": 7})
    weights = portable.read_weights(path)
    assert weights.config == CONFIG
    assert weights.about["global_step"] == 7 and weights.about["version"] == 1
    assert set(weights.arrays) == set(_arrays())
    for name, value in _arrays().items():
        np.testing.assert_array_equal(weights.arrays[name], value)
    assert list(tmp_path.iterdir()) == [tmp_path / "moe.npz"]  # no temporary left


def test_load_model_predicts_with_the_file_weights(tmp_path):
    path = str(tmp_path / "moe.npz")
    portable.write_weights(path, _arrays(), CONFIG)
    model = portable.load_model(path)
    for name, variable in model.tf1_weights().items():
        np.testing.assert_array_equal(variable.numpy(), _arrays()[name])
    features = np.random.default_rng(1).random((3, 8)).astype("float32")
    batch = {"video_matrix": features, "num_frames": np.ones(3, "int32")}
    probabilities = model(batch).numpy()
    normalized = features / np.linalg.norm(features, axis=1, keepdims=True)
    gates = normalized @ _arrays()["gates/weights"]  # 1 mixture: softmax over 2 per class
    experts = 1 / (1 + np.exp(-(normalized @ _arrays()["experts/weights"]
                                + _arrays()["experts/biases"])))
    gate = np.exp(gates[:, 0::2]) / (np.exp(gates[:, 0::2]) + np.exp(gates[:, 1::2]))
    np.testing.assert_allclose(probabilities, gate * experts, rtol=1e-5, atol=1e-6)


def test_a_layer_file_has_no_model(tmp_path):
    gating = ContextGating()
    gating.build((None, 4))
    path = str(tmp_path / "gating.npz")
    values = {name: np.full(v.shape, 0.5, "float32") for name, v in gating.tf1_weights().items()}
    portable.write_weights(path, values)
    with pytest.raises(portable.WeightsFileError, match="holds a layer's weights"):
        portable.load_model(path)
    other = ContextGating()
    other.build((None, 4))
    portable.load_weights(other, path)
    np.testing.assert_array_equal(other.gating_weights.numpy(), np.full((4, 4), 0.5))


def test_missing_and_unexpected_names_assign_nothing(tmp_path):
    path = str(tmp_path / "moe.npz")
    arrays = _arrays()
    arrays["extra/weights"] = arrays.pop("experts/biases")
    portable.write_weights(path, arrays, CONFIG)
    with pytest.raises(portable.WeightsFileError,
                       match=r"missing variables: experts/biases; "
                             r"unexpected variables: extra/weights"):
        portable.load_model(path)


@pytest.mark.parametrize("content,message", [
    (b"not a zip at all", "not a zip archive"),
    (None, "no __about__ entry"),
])
def test_files_that_are_not_weights_files(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, weights=np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(portable.WeightsFileError, match=message):
        portable.read_weights(str(path))


def test_a_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "future.npz"
    portable.write_weights(str(path), _arrays(), CONFIG)
    with np.load(path) as stored:
        entries = {name: stored[name] for name in stored.files}
    entries["__about__"] = np.array(json.dumps({"format": "youtube8m_willow.tf1_weights",
                                                "version": 99}))
    np.savez(path, **entries)
    with pytest.raises(portable.WeightsFileError, match="version 99"):
        portable.read_weights(str(path))


def _convert(*flags):
    return forked.run([sys.executable, "-m", "youtube8m_willow.portable.convert", *flags],
                      cwd=REPO, capture_output=True, text=True, timeout=600,
                      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.slow
def test_converter_needs_an_output_file(tmp_path):
    result = _convert(f"--train_dir={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ERROR: --output_file is required (e.g. model.npz)")


@pytest.mark.slow
def test_converter_refuses_model_flags_the_checkpoint_does_not_fit(tmp_path):
    fixture = shared_path("fixtures", "moe_video")
    output = tmp_path / "moe.npz"
    result = _convert(f"--train_dir={fixture / 'train_dir'}", f"--output_file={output}",
                      "--num_classes=120", "--model=MoeModel", "--moe_num_mixtures=3",
                      "--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ERROR: checkpoint ") and "shape mismatches: experts/biases" in last
    assert not output.exists()
