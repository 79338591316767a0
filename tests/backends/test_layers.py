"""Every layer on this backend against the TensorFlow backend's results:
forward passes to 1e-5, gradients to 1e-4 (float32), the batch-norm
statistics a training call leaves, and a get_config round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cases
import probe
from youtube8m_willow.layers import sampling

FORWARD_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-4


def _compare(results, reference, case_name, keys, tolerance):
    """Asserts ``|actual - expected| <= tolerance * (1 + |expected|)`` for
    every key; returns the worst ``|actual - expected| / (1 + |expected|)``
    (absolute for small values, relative for large ones, as the check)."""
    worst = 0.0
    for key in keys:
        expected = reference[f"{case_name}/{key}"]
        actual = results[key]
        assert actual.shape == expected.shape, key
        np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance, err_msg=key)
        scaled = np.abs(actual - expected) / (1.0 + np.abs(expected))
        worst = max(worst, float(np.max(scaled, initial=0.0)))
    return worst


@pytest.mark.parametrize("case", cases.CASES, ids=[case.name for case in cases.CASES])
def test_layer_agrees_with_tensorflow(case, inputs, reference, agreement):
    results = probe.measure(case, inputs)
    expected_keys = {key.split("/", 1)[1] for key in reference if key.startswith(case.name + "/")}
    assert set(results) == expected_keys
    forward = [key for key in results if not key.startswith("grad/")]
    gradients = [key for key in results if key.startswith("grad/")]
    assert "eval" in forward and gradients
    agreement[case.name] = {
        "forward": _compare(results, reference, case.name, forward, FORWARD_TOLERANCE),
        "gradients": _compare(results, reference, case.name, gradients, GRADIENT_TOLERANCE)}


@pytest.mark.parametrize("case", cases.CASES, ids=[case.name for case in cases.CASES])
def test_get_config_round_trip(case, inputs):
    layer = probe.build(case, inputs)
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    args, kwargs = probe.call_inputs(case, inputs)
    clone(*args, **kwargs)
    probe.set_weights(clone, cases.weight_values(layer))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(*args, **kwargs)),
                                  keras.ops.convert_to_numpy(layer(*args, **kwargs)))


def test_random_frame_indices_follow_the_draws():
    """The random samplers' index arithmetic, given the same U[0, 1) draws
    (each backend's generator draws differently)."""
    num_frames = np.array([10, 7, 1, 0], "int32")
    draws = np.array([[0.0, 0.5, 0.99], [0.3, 0.72, 0.999], [0.2, 0.9, 0.5], [0.1, 0.2, 0.3]],
                     "float32")
    indices = sampling.random_indices(
        num_frames, 3, lambda shape: keras.ops.convert_to_tensor(draws[:, :shape[1]]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(indices),
                                  [[0, 5, 9], [2, 5, 6], [0, 0, 0], [0, 0, 0]])
    starts = np.array([0.5, 0.99, 0.3, 0.0], "float32")
    window = sampling.sequence_indices(num_frames, 3,
                                       lambda shape: keras.ops.convert_to_tensor(starts))
    # start = floor(u * (max(n - 3, 0) + 1)), clipped to the last valid frame
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(window),
                                  [[4, 5, 6], [4, 5, 6], [0, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("method", ["random", "sequence"])
def test_seeded_sampling_is_a_function_of_the_seed(method, inputs):
    sampler = sampling.FrameSampler(5, method)
    frames, num_frames = inputs["frames"], inputs["num_frames"]
    seed = np.array([7, 3], "int32")
    first = keras.ops.convert_to_numpy(sampler(frames, num_frames, sampling_seed=seed))
    again = keras.ops.convert_to_numpy(sampler(frames, num_frames, sampling_seed=seed))
    other = keras.ops.convert_to_numpy(sampler(frames, num_frames,
                                               sampling_seed=np.array([8, 3], "int32")))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    for video, count in enumerate(num_frames):  # every sampled frame is a valid one
        valid = frames[video, :count]
        for row in first[video]:
            assert np.any(np.all(valid == row, axis=1))
