"""The original checkpoints' predictions through the layer API on this
backend: each fixture's TF1 checkpoint, converted to a portable weights file
by the converter command, loaded with ``portable.load_model`` (NumPy only),
predicts the original code's numbers to 1e-5, given the readers' dict or the
``(video_matrix, num_frames)`` pair. On JAX the model runs under
``jax.jit``. (That this needs no TensorFlow is checked in a fresh process by
``tests/test_backends.py``: Keras' own serialization imports it when present.)"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from youtube8m_willow import portable

FIXTURES = ["moe_video", "netvlad_gated", "starter_moe_video", "nextvlad_small"]
README = Path(__file__).resolve().parents[2] / "README.md"


def _predict(model, inputs):
    """The model on ``inputs`` (any form it takes), under ``jax.jit`` on JAX."""
    if keras.backend.backend() != "jax":
        return keras.ops.convert_to_numpy(model(inputs, training=False))
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    forward = jax.jit(lambda inputs: model.stateless_call(trainable, non_trainable, inputs,
                                                          training=False)[0])
    return np.asarray(forward(inputs))


def _fixture(reference_dir, name):
    """A fixture's weights and stored inputs: (weights, video_matrix, num_frames, expected)."""
    weights = portable.read_weights(str(reference_dir / "weights" / f"{name}.npz"))
    with np.load(reference_dir / "weights" / f"{name}.inputs.npz") as stored:
        return (weights, stored["video_matrix"], stored["num_frames"],
                stored["expected_predictions"])


@pytest.mark.parametrize("name", FIXTURES)
def test_original_weights_give_the_original_predictions(name, reference_dir):
    weights, video_matrix, num_frames, expected = _fixture(reference_dir, name)
    assert weights.about["global_step"] > 0
    model = portable.load_model(weights, frame_sampling="uniform")
    predictions = _predict(model, {"video_matrix": video_matrix, "num_frames": num_frames})
    assert predictions.shape == expected.shape
    np.testing.assert_allclose(predictions, expected, atol=1e-5, rtol=0)
    # The same numbers from the (video_matrix, num_frames) pair.
    np.testing.assert_allclose(_predict(model, (video_matrix, num_frames)), expected,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["moe_video", "netvlad_gated"])
def test_a_model_takes_the_features_alone(name, reference_dir):
    """``model(frames)``: every frame valid (a video-level model needs no
    frame count), the numbers of the dict with num_frames = T."""
    weights, video_matrix, _, _ = _fixture(reference_dir, name)
    model = portable.load_model(weights, frame_sampling="uniform")
    frames = video_matrix.shape[1] if video_matrix.ndim == 3 else 1
    every_frame = np.full(video_matrix.shape[0], frames, dtype="int32")
    np.testing.assert_allclose(
        _predict(model, video_matrix),
        _predict(model, {"video_matrix": video_matrix, "num_frames": every_frame}),
        atol=1e-6, rtol=0)


def _readme_load_model_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    found = [block for block in blocks if "portable.load_model(" in block]
    assert len(found) == 1, "the README shows one portable.load_model example"
    return found[0]


def test_the_readme_example_of_load_model_runs(reference_dir):
    """The README's example, with the netvlad_gated fixture's weights file
    in place of its willow.npz."""
    example = _readme_load_model_example()
    assert '"willow.npz"' in example
    path = str(reference_dir / "weights" / "netvlad_gated.npz")
    namespace: dict = {}
    exec(compile(example.replace('"willow.npz"', repr(path)), "README example", "exec"),
         namespace)
    probabilities = keras.ops.convert_to_numpy(namespace["probabilities"])
    same = keras.ops.convert_to_numpy(namespace["same"])
    num_classes = portable.read_weights(path).config.num_classes
    assert probabilities.shape == (len(namespace["num_frames"]), num_classes)
    assert np.all((probabilities > 0) & (probabilities < 1))
    np.testing.assert_allclose(probabilities, same, atol=1e-6, rtol=0)


def test_one_layer_takes_its_weights_out_of_a_model_file(reference_dir):
    from youtube8m_willow.layers import NetVLAD

    weights = portable.read_weights(str(reference_dir / "weights" / "netvlad_gated.npz"))
    vlad = NetVLAD(16)
    vlad.build((None, 10, 1024))
    portable.load_weights(vlad, weights, scope="video_VLAD")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(vlad.cluster_weights2),
                                  weights.arrays["video_VLAD/cluster_weights2"])


def test_a_file_that_does_not_fit_names_what_differs(reference_dir):
    from youtube8m_willow.layers import NetVLAD

    vlad = NetVLAD(8)  # the file's video_VLAD has 16 clusters
    vlad.build((None, 10, 1024))
    before = keras.ops.convert_to_numpy(vlad.cluster_weights2)
    with pytest.raises(portable.WeightsFileError,
                       match=r"does not fit NetVLAD; shape mismatches: .*"
                             r"video_VLAD/cluster_weights \[1024, 16\] vs model \[1024, 8\]"):
        portable.load_weights(vlad, str(reference_dir / "weights" / "netvlad_gated.npz"),
                              scope="video_VLAD")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(vlad.cluster_weights2), before)
