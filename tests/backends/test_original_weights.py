"""The original checkpoints' predictions through the layer API on this
backend: each fixture's TF1 checkpoint, converted to a portable weights file
by the converter command, loaded with ``portable.load_model`` (NumPy only),
predicts the original code's numbers to 1e-5. On JAX the model runs under
``jax.jit``. (That this needs no TensorFlow is checked in a fresh process by
``tests/test_backends.py``: Keras' own serialization imports it when present.)"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from youtube8m_willow import portable

FIXTURES = ["moe_video", "netvlad_gated", "starter_moe_video"]


def _predict(model, video_matrix, num_frames):
    batch = {"video_matrix": video_matrix, "num_frames": num_frames}
    if keras.backend.backend() != "jax":
        return keras.ops.convert_to_numpy(model(batch, training=False))
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    forward = jax.jit(lambda batch: model.stateless_call(trainable, non_trainable, batch,
                                                         training=False)[0])
    return np.asarray(forward(batch))


@pytest.mark.parametrize("name", FIXTURES)
def test_original_weights_give_the_original_predictions(name, reference_dir):
    weights = portable.read_weights(str(reference_dir / "weights" / f"{name}.npz"))
    assert weights.about["global_step"] > 0
    model = portable.load_model(weights, frame_sampling="uniform")
    with np.load(reference_dir / "weights" / f"{name}.inputs.npz") as stored:
        predictions = _predict(model, stored["video_matrix"], stored["num_frames"])
        expected = stored["expected_predictions"]
    assert predictions.shape == expected.shape
    np.testing.assert_allclose(predictions, expected, atol=1e-5, rtol=0)


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
