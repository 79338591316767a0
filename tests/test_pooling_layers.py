"""Pooling layers against NumPy re-implementations of their formulas
(SPEC section 4) on tiny shapes, plus serialization and TF1 names."""

import numpy as np
import pytest
import tensorflow as tf
import keras
from conftest import peak_tensor_bytes, relative_error

from youtube8m_willow.layers.core import BatchNorm, PendingAffine
from youtube8m_willow.layers.dbof import DBoF, GatedDBoF, SoftDBoF, StarterDBoF
from youtube8m_willow.layers.fisher import NetFV
from youtube8m_willow.layers.statistics import FrameStatistics
from youtube8m_willow.layers.vlad import ClusterAssignment, NetRVLAD, NetVLAD, NetVLAGD

B, N, D, K = 3, 5, 4, 3
BN_NAMES = ("beta", "gamma", "moving_mean", "moving_variance")


# ---------------------------------------------------------------- references

def np_l2(x, axis):
    """TF1 l2_normalize: x / sqrt(max(sum x^2, 1e-12))."""
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))


def np_bn(x, w, scope, batch_stats=False):
    if batch_stats:
        mean, var = x.mean(0), x.var(0)
    else:
        mean, var = w[f"{scope}/moving_mean"], w[f"{scope}/moving_variance"]
    return (x - mean) / np.sqrt(var + 1e-3) * w[f"{scope}/gamma"] + w[f"{scope}/beta"]


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


ACTIVATIONS = {"softmax": np_softmax, "linear": lambda x: x,
               "relu6": lambda x: np.clip(x, 0, 6), "sigmoid": lambda x: 1 / (1 + np.exp(-x))}


def np_assign(x, w, activation="softmax", batch_stats=False):
    """[B, N, D] -> [B, N, K]: activation(BN(x W)) on the [B*N, D] rows."""
    flat = x.reshape(-1, x.shape[-1]) @ w["cluster_weights"]
    if "cluster_bn/gamma" in w:
        flat = np_bn(flat, w, "cluster_bn", batch_stats)
    else:
        flat = flat + w["cluster_biases"]
    return ACTIVATIONS[activation](flat).reshape(x.shape[0], x.shape[1], -1)


def np_descriptor(v):
    """[B, D, K]: intra L2 over d, flatten (d, k), L2."""
    return np_l2(np_l2(v, 1).reshape(v.shape[0], -1), 1)


def np_netvlad(x, w, batch_stats=False):
    a = np_assign(x, w, batch_stats=batch_stats)
    v = np.einsum("bnk,bnd->bdk", a, x) - a.sum(1)[:, None, :] * w["cluster_weights2"][0]
    return np_descriptor(v)


def np_netrvlad(x, w):
    return np_descriptor(np.einsum("bnk,bnd->bdk", np_assign(x, w), x))


def np_netvlagd(x, w):
    # The original never adds NetVLAGD's cluster_biases (it only creates them).
    a = np_assign(x, {**w, "cluster_biases": 0.0})
    gate = 1 / (1 + np.exp(-w["gate_weights"][0]))  # [K, D]
    return np_descriptor(np.einsum("bnk,bnd->bdk", a, x) * gate.T)


def np_netfv(x, w, coupling_factor=None):
    a = np_assign(x, w)
    c = (coupling_factor * w["cluster_weights"] if coupling_factor is not None
         else w["cluster_weights2"][0])
    sigma = w["covar_weights"] ** 2 + 1e-6
    s = a.sum(1)[:, None, :]
    first = np.einsum("bnk,bnd->bdk", a, x)
    second = np.einsum("bnk,bnd->bdk", a, x * x)
    fv1 = np_descriptor((first - s * c) / sigma)
    fv2 = (s * c * c + second - 2 * c * first) / sigma ** 2 - s
    fv2 = np_l2(np_l2(fv2.reshape(len(x), -1), 1), 1)
    return np.concatenate([fv1, fv2], 1)


def np_softdbof(x, w, max_pool=False):
    a = np_assign(x, w)
    out = [np_l2(a.sum(1), 1)] + ([np_l2(a.max(1), 1)] if max_pool else [])
    return np.concatenate(out, 1)


def np_gateddbof(x, w):
    a = np_assign(x, w)
    gates = np_l2(a.max(1), 1) @ w["dim_red"] @ w["cluster_weights_2"]
    if "cluster_bn_2/gamma" in w:
        gates = np_bn(gates, w, "cluster_bn_2")
    else:
        gates = gates + w["cluster_biases_2"]
    return np_l2(ACTIVATIONS["sigmoid"](gates) * a.sum(1), 1)


def np_dbof(x, w):
    a = np_assign(x, w, activation="linear")
    return np.concatenate([np_l2(a.mean(1), 1), np_l2(a.max(1), 1)], 1)


def np_starter_dbof(x, w, activation, method):
    a = np_assign(x, w, activation=activation)
    return a.max(1) if method == "max" else a.mean(1)


# ---------------------------------------------------------------- helpers

def frames(seed=0, shape=(B, N, D)):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def build_random(layer, shape=(B, N, D), seed=1):
    """Builds ``layer`` and gives every weight (moving statistics included)
    non-trivial values; returns its TF1 weights as float64 arrays."""
    layer.build(shape)
    rng = np.random.RandomState(seed)
    for var in layer.weights:
        if var.name == "moving_variance":
            value = rng.uniform(0.5, 1.5, var.shape)
        else:
            value = rng.randn(*var.shape) * 0.5
        var.assign(value.astype(np.float32))
    return {name: var.numpy().astype(np.float64) for name, var in layer.tf1_weights().items()}


def run(layer, x, training=False):
    return layer(tf.constant(x), training=training).numpy()


def bn_names(scope, size):
    return {f"{scope}/{name}": (size,) for name in BN_NAMES}


def tf1_shapes(layer):
    return {name: tuple(var.shape) for name, var in layer.tf1_weights().items()}


# ---------------------------------------------------------------- assignment

@pytest.mark.parametrize("activation", ["softmax", "linear", "relu6", "sigmoid"])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_cluster_assignment_matches_formula(activation, batch_norm):
    layer = ClusterAssignment(K, add_batch_norm=batch_norm, activation=activation)
    w = build_random(layer, (None, D))
    x = frames().reshape(-1, D)
    expected = np_assign(x[None], w, activation)[0]
    np.testing.assert_allclose(run(layer, x), expected, atol=1e-5)


def test_cluster_assignment_names_and_shapes():
    with_bn = ClusterAssignment(K)
    with_bn.build((None, D))
    assert tf1_shapes(with_bn) == {"cluster_weights": (D, K), **bn_names("cluster_bn", K)}
    without = ClusterAssignment(K, add_batch_norm=False)
    without.build((None, D))
    assert tf1_shapes(without) == {"cluster_weights": (D, K), "cluster_biases": (K,)}


def test_batch_norm_standardize_leaves_its_map_unapplied():
    """``standardize`` gives the rows ``call`` normalizes in training before
    its gamma and beta, the map that applies them, and the same moving
    statistics; an unbuilt layer builds itself."""
    x = frames(2).reshape(-1, D) * 3 + 1
    called, standardizing = BatchNorm(), BatchNorm()
    w = build_random(called, (None, D))
    standardizing.build((None, D))
    standardizing.set_weights(called.get_weights())
    expected = called(tf.constant(x), training=True).numpy()
    [(standardized, affine)] = standardizing.standardize(tf.constant(x))
    np.testing.assert_allclose(standardized, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3),
                               atol=1e-5)
    np.testing.assert_array_equal(affine.scale, w["gamma"].astype(np.float32))
    np.testing.assert_array_equal(affine.offset, w["beta"].astype(np.float32))
    np.testing.assert_allclose(affine.apply(standardized), expected, atol=1e-5)
    for moved, want in zip(standardizing.get_weights()[2:], called.get_weights()[2:]):
        np.testing.assert_array_equal(moved, want)
    fresh = BatchNorm()
    np.testing.assert_allclose(fresh.standardize(tf.constant(x))[0][0], standardized, atol=1e-6)


def _affine(seed=3, size=D):
    rng = np.random.RandomState(seed)
    return PendingAffine(tf.constant(rng.uniform(0.5, 2, size).astype(np.float32)),
                         tf.constant(rng.randn(size).astype(np.float32)))


@pytest.mark.parametrize("batch_norm", [True, False])
def test_cluster_assignment_folds_an_input_affine_into_its_weights(batch_norm):
    """Given rows and a map unapplied, the assignment is that of the mapped
    rows, with the same gradients for the map and the weights, and its
    gradient forms no input gradient (no ``[M, D]`` matmul) when the rows
    are data."""
    layer = ClusterAssignment(K, add_batch_norm=batch_norm, activation="sigmoid")
    build_random(layer, (None, D))
    x = tf.constant(frames(4, (B * N, D)))
    affine = _affine()

    @tf.function
    def assign_and_differentiate(fold):
        with tf.GradientTape() as tape:
            tape.watch([affine.scale, affine.offset])
            out = (layer(x, training=True, input_affine=affine) if fold
                   else layer(affine.apply(x), training=True))
            loss = tf.reduce_sum(out * tf.range(K, dtype=tf.float32))
        return out, tape.gradient(loss, [affine.scale, affine.offset, *layer.trainable_weights])

    folded, folded_grads = assign_and_differentiate(True)
    applied, applied_grads = assign_and_differentiate(False)
    np.testing.assert_allclose(folded, applied, atol=1e-5)
    for index, (got, want) in enumerate(zip(folded_grads, applied_grads)):
        # With the cluster batch norm, which cancels any shift, the offset's
        # gradient (index 1) is zero but for rounding on both paths: held to
        # the scale's gradient's size.
        size = np.abs(applied_grads[0 if batch_norm and index == 1 else index]).max()
        np.testing.assert_allclose(got, want, atol=1e-5 * size)

    def input_gradient_matmuls(fold):
        graph = assign_and_differentiate.get_concrete_function(fold).graph
        return [op for op in graph.get_operations() if op.type == "MatMul"
                and op.outputs[0].shape.as_list() == [B * N, D]]
    assert input_gradient_matmuls(False) and not input_gradient_matmuls(True)


def test_pending_affine_splits_by_columns():
    affine = _affine(size=5)
    left, right = affine.split([2, affine.scale.shape[0] - 2])
    np.testing.assert_array_equal(np.concatenate([left.scale, right.scale]), affine.scale)
    np.testing.assert_array_equal(np.concatenate([left.offset, right.offset]), affine.offset)
    assert left.scale.shape == (2,) and right.offset.shape == (3,)


def test_cluster_assignment_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown cluster activation 'tanh'"):
        ClusterAssignment(K, activation="tanh")


# ---------------------------------------------------------------- VLAD family

@pytest.mark.parametrize("batch_norm", [True, False])
def test_netvlad_matches_formula(batch_norm):
    layer = NetVLAD(K, add_batch_norm=batch_norm)
    w = build_random(layer)
    x = frames()
    out = run(layer, x)
    assert out.shape == (B, D * K)
    np.testing.assert_allclose(out, np_netvlad(x, w), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_netvlad_training_normalizes_over_all_batch_frames():
    """Training-mode batch norm uses the moments of all B*N rows."""
    layer = NetVLAD(K)
    w = build_random(layer)
    x = frames(3)
    np.testing.assert_allclose(run(layer, x, training=True),
                               np_netvlad(x, w, batch_stats=True), atol=1e-5)
    rows = x.reshape(-1, D) @ w["cluster_weights"]
    expected_mean = 0.999 * w["cluster_bn/moving_mean"] + 0.001 * rows.mean(0)
    np.testing.assert_allclose(layer.tf1_weights()["cluster_bn/moving_mean"].numpy(),
                               expected_mean, atol=1e-6)


def test_netrvlad_matches_formula_and_has_no_centers():
    layer = NetRVLAD(K, add_batch_norm=False)
    w = build_random(layer)
    x = frames()
    np.testing.assert_allclose(run(layer, x), np_netrvlad(x, w), atol=1e-5)
    assert tf1_shapes(layer) == {"cluster_weights": (D, K), "cluster_biases": (K,)}


@pytest.mark.parametrize("batch_norm", [True, False])
def test_netvlagd_matches_formula(batch_norm):
    layer = NetVLAGD(K, add_batch_norm=batch_norm)
    w = build_random(layer)
    x = frames()
    np.testing.assert_allclose(run(layer, x), np_netvlagd(x, w), atol=1e-5)
    assert tf1_shapes(layer)["gate_weights"] == (1, K, D)
    if not batch_norm:
        # Kept for checkpoints, but unused: no gradient, so not trainable.
        assert np.any(w["cluster_biases"] != 0)
        assert all(v is not layer.assignment.cluster_biases for v in layer.trainable_weights)


def test_netvlad_names_and_shapes():
    layer = NetVLAD(K)
    layer.build((None, N, D))
    assert tf1_shapes(layer) == {"cluster_weights": (D, K), **bn_names("cluster_bn", K),
                                 "cluster_weights2": (1, D, K)}


def test_softmax_over_one_entry_is_one_with_zero_gradient_and_no_warning():
    """One cluster: the softmax's ones and zero gradient, NaN kept, and no
    Keras warning (nor a warnings context that would break torch.compile's
    graph: tests/backends/test_compiled.py)."""
    import warnings

    from youtube8m_willow.layers import kernels

    x = tf.constant([[3.0], [-2.0], [float("nan")]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = kernels.softmax(x)
        gradient = tape.gradient(y, x)
    np.testing.assert_array_equal(y.numpy()[:2], [[1.0], [1.0]])
    assert np.isnan(y.numpy()[2, 0])
    np.testing.assert_array_equal(gradient.numpy()[:2], [[0.0], [0.0]])
    wide = tf.constant([[1.0, 2.0, 4.0]])
    np.testing.assert_allclose(kernels.softmax(wide), tf.nn.softmax(wide), rtol=1e-6)


def _assert_matches_reference(mine, references, tolerance, equal_nan=False):
    """Each of ``mine`` equals its reference (TensorFlow's own op and
    gradient) in float32 to ``tolerance`` of the reference's largest
    magnitude."""
    for value, reference in zip(mine, references):
        reference = tf.cast(reference, tf.float32).numpy()
        np.testing.assert_allclose(tf.cast(value, tf.float32), reference, equal_nan=equal_nan,
                                   atol=tolerance * np.nanmax(np.abs(reference)))


def test_video_matmul_gradients_are_a_plain_matmuls():
    """The per-video matmul's values and gradients are those of a plain
    matmul in float32 and bfloat16 (its input gradient is computed as
    ``(W dy^T)^T``, ``kernels._input_gradient``); in float32 that gradient
    multiplies the weight by a written-out ``dy^T`` (a ``Snapshot``, so
    grappler cannot fold the transpose back into the matmul), in bfloat16 by
    the transpose that grappler folds."""
    from youtube8m_willow.layers import kernels

    rng = np.random.default_rng(0)
    for dtype, tolerance in [(tf.float32, 1e-5), (tf.bfloat16, 2e-2)]:
        inputs = tf.cast(rng.normal(size=(5, 48)), dtype)
        kernel = tf.cast(rng.normal(size=(48, 24)), dtype)
        upstream = tf.cast(rng.normal(size=(5, 24)), dtype)
        results = []
        for matmul in (kernels.video_matmul, tf.matmul):
            with tf.GradientTape() as tape:
                tape.watch([inputs, kernel])
                y = matmul(inputs, kernel)
            results += [y, *tape.gradient(y, [inputs, kernel], output_gradients=upstream)]
        _assert_matches_reference(results[:3], results[3:], tolerance)

    @tf.function
    def input_gradient(inputs, kernel):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = kernels.video_matmul(inputs, kernel)
        return tape.gradient(y, inputs)

    for dtype, written_out in [(tf.float32, "Snapshot"), (tf.bfloat16, "Transpose")]:
        graph = input_gradient.get_concrete_function(
            tf.TensorSpec([5, 48], dtype), tf.TensorSpec([48, 24], dtype)).graph
        matmuls = [op for op in graph.get_operations()
                   if op.type == "MatMul" and op.inputs[0].shape == (48, 24)]
        assert [(op.inputs[1].op.type, op.get_attr("transpose_b")) for op in matmuls] == [
            (written_out, False)], dtype


def test_wide_softmax_gradient_is_tensorflows_and_holds_one_tensor_fewer():
    """Over LEAN_SOFTMAX_MIN_ENTRIES or more entries (Soft-DBoF's clusters),
    the layers' softmax is TensorFlow's in value and gradient (2-D and 3-D,
    float32 and bfloat16), and the gradient of its sum over frames (how
    Soft-DBoF pools it) holds one tensor of the input's size fewer at its
    peak than TensorFlow's own gradient (2.0 against 3.0 and 2.5 against 3.8
    input sizes in two processes: the peaks move with the schedule, so the
    test asks for half a tensor less)."""
    from youtube8m_willow.layers import kernels

    rng = np.random.default_rng(0)
    size = kernels.LEAN_SOFTMAX_MIN_ENTRIES
    for shape in [(6, size), (2, 3, size)]:
        for dtype, tolerance in [(tf.float32, 1e-6), (tf.bfloat16, 1e-2)]:
            x = tf.cast(rng.normal(size=shape), dtype)
            upstream = tf.cast(rng.normal(size=shape), dtype)
            results = []
            for softmax in (kernels.softmax, tf.nn.softmax):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = softmax(x)
                results += [y, tape.gradient(y, x, output_gradients=upstream)]
            _assert_matches_reference(results[:2], results[2:], tolerance)
    frames = tf.constant(rng.normal(size=(16, 50, size)), tf.float32)
    weights = tf.constant(rng.normal(size=(16, size)), tf.float32)

    def pooled_gradient(softmax):
        @tf.function
        def run(frames):
            with tf.GradientTape() as tape:
                tape.watch(frames)
                loss = tf.reduce_sum(tf.reduce_sum(softmax(frames), axis=1) * weights)
            return tf.reduce_sum(tape.gradient(loss, frames))
        return peak_tensor_bytes(run, frames) / frames.numpy().nbytes

    lean, own = pooled_gradient(kernels.softmax), pooled_gradient(tf.nn.softmax)
    assert own - lean >= 0.5, (lean, own)


def test_sum_and_max_over_frames_gradient_is_tensorflows_in_one_tensor():
    """``kernels.sum_and_max_over_frames`` (Gated DBoF's pooling) is
    ``(sum, max)`` over frames with TensorFlow's gradient, ties sharing the
    maximum's equally, NaN where the maximum is NaN (float32 and bfloat16),
    and its gradient holds one float ``[B, N, K]`` tensor (and a boolean
    one) at its peak, where TensorFlow's own holds two or more (1.3 against
    2.0 to 2.5 input sizes, measured; the test asks for half a tensor
    less)."""
    from youtube8m_willow.layers import kernels

    rng = np.random.default_rng(1)
    for dtype, tolerance in [(tf.float32, 1e-6), (tf.bfloat16, 1e-2)]:
        x = rng.normal(size=(3, 5, 4))
        x[0, 1:3, 0] = x[0, :, 0].max() + 1.0  # a tie of two frames at the maximum
        x[1, :, 1] = 0.5  # every frame at the maximum
        x[2, 3, 2] = np.nan  # a NaN maximum: NaN gradients in that column, as TensorFlow's
        x = tf.cast(x, dtype)
        weights = [tf.cast(rng.normal(size=(3, 4)), dtype) for _ in range(2)]
        results = []
        for pool in (kernels.sum_and_max_over_frames,
                     lambda v: (tf.reduce_sum(v, 1), tf.reduce_max(v, 1))):
            with tf.GradientTape() as tape:
                tape.watch(x)
                summed, maximum = pool(x)
                loss = tf.reduce_sum(summed * weights[0]) + tf.reduce_sum(maximum * weights[1])
            results += [summed, maximum, tape.gradient(loss, x)]
        _assert_matches_reference(results[:3], results[3:], tolerance, equal_nan=True)
        assert np.isnan(results[2][2, :, 2]).all() and np.isfinite(results[2][:2]).all()
        np.testing.assert_allclose(tf.cast(results[2][0, 1:3, 0], tf.float32),
                                   tf.cast(weights[0][0, 0] + weights[1][0, 0] / 2, tf.float32),
                                   rtol=tolerance)
    frames = tf.constant(rng.normal(size=(16, 50, 1024)), tf.float32)
    weights = tf.constant(rng.normal(size=(2, 16, 1024)), tf.float32)

    def pooled_gradient(pool):
        @tf.function
        def run(frames):
            with tf.GradientTape() as tape:
                tape.watch(frames)
                summed, maximum = pool(frames)
                loss = tf.reduce_sum(summed * weights[0]) + tf.reduce_sum(maximum * weights[1])
            return tf.reduce_sum(tape.gradient(loss, frames))
        return peak_tensor_bytes(run, frames) / frames.numpy().nbytes

    lean = pooled_gradient(kernels.sum_and_max_over_frames)
    own = pooled_gradient(lambda v: (tf.reduce_sum(v, 1), tf.reduce_max(v, 1)))
    assert own - lean >= 0.5, (lean, own)


def test_netvlad_vector_order_is_feature_major():
    """With one cluster and no centers in play, the output is the normalized
    sum of the frames, so the (d, k) flattening is visible."""
    layer = NetRVLAD(1, add_batch_norm=False)
    layer.build((None, 2, 3))
    x = np.array([[[1.0, 0.0, 2.0], [1.0, 0.0, 0.0]]], np.float32)  # sum (2, 0, 2)
    np.testing.assert_allclose(run(layer, x), [[2 ** -0.5, 0.0, 2 ** -0.5]], atol=1e-6)


def test_pooling_rejects_unbatched_frames():
    with pytest.raises(ValueError, match=r"expects \[batch, frames, features\]"):
        NetVLAD(K).build((N, D))


# ---------------------------------------------------------------- NetFV

@pytest.mark.parametrize("couple", [True, False])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_netfv_matches_formula(couple, batch_norm):
    layer = NetFV(K, add_batch_norm=batch_norm, couple_weights=couple, coupling_factor=0.3)
    w = build_random(layer)
    x = frames()
    out = run(layer, x)
    assert out.shape == (B, 2 * D * K)
    np.testing.assert_allclose(out, np_netfv(x, w, 0.3 if couple else None), atol=2e-5)


def test_netfv_names_coupled_and_uncoupled():
    coupled = NetFV(K, add_batch_norm=False)
    coupled.build((None, N, D))
    assert tf1_shapes(coupled) == {"cluster_weights": (D, K), "cluster_biases": (K,),
                                   "covar_weights": (D, K)}
    uncoupled = NetFV(K, couple_weights=False)
    uncoupled.build((None, N, D))
    assert tf1_shapes(uncoupled) == {"cluster_weights": (D, K), **bn_names("cluster_bn", K),
                                     "covar_weights": (D, K), "cluster_weights2": (1, D, K)}


def test_netfv_covariance_initializer_is_centered_on_one():
    layer = NetFV(64)
    layer.build((None, N, 256))
    values = layer.covar_weights.numpy()
    assert abs(values.mean() - 1.0) < 0.01
    assert abs(values.std() - 1 / 16) < 0.005


# ---------------------------------------------------------------- DBoF family

@pytest.mark.parametrize("max_pool", [False, True])
def test_softdbof_matches_formula(max_pool):
    layer = SoftDBoF(K, max_pool=max_pool)
    w = build_random(layer)
    x = frames()
    out = run(layer, x)
    assert out.shape == (B, K * (2 if max_pool else 1))
    np.testing.assert_allclose(out, np_softdbof(x, w, max_pool), atol=1e-5)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_gateddbof_matches_formula(batch_norm):
    layer = GatedDBoF(K, add_batch_norm=batch_norm)
    w = build_random(layer)
    x = frames()
    np.testing.assert_allclose(run(layer, x), np_gateddbof(x, w), atol=1e-5)
    shapes = tf1_shapes(layer)
    assert shapes["dim_red"] == (K, D) and shapes["cluster_weights_2"] == (D, K)
    second = bn_names("cluster_bn_2", K) if batch_norm else {"cluster_biases_2": (K,)}
    assert second.items() <= shapes.items()


@pytest.mark.parametrize("batch_norm", [True, False])
def test_willow_dbof_is_linear_mean_and_max(batch_norm):
    layer = DBoF(K, add_batch_norm=batch_norm)
    w = build_random(layer)
    x = frames()
    out = run(layer, x)
    assert out.shape == (B, 2 * K)
    np.testing.assert_allclose(out, np_dbof(x, w), atol=1e-5)
    # Linear: negative projections survive (no relu, no softmax).
    assert (out < 0).any()


@pytest.mark.parametrize("activation,method", [("relu6", "max"), ("sigmoid", "average")])
def test_starter_dbof_matches_formula(activation, method):
    layer = StarterDBoF(K, add_batch_norm=False, activation=activation, pooling_method=method)
    w = build_random(layer)
    x = frames()
    np.testing.assert_allclose(run(layer, x), np_starter_dbof(x, w, activation, method),
                               atol=1e-5)


def test_starter_dbof_rejects_unknown_options():
    with pytest.raises(ValueError, match="unknown DBoF activation 'glu'"):
        StarterDBoF(K, activation="glu")
    with pytest.raises(ValueError, match="unknown dbof_pooling_method 'median'"):
        StarterDBoF(K, pooling_method="median")


# ---------------------------------------------------------------- statistics

def test_frame_statistics_hand_checked():
    x = np.zeros((3, 4, 2), np.float32)
    x[0, :3] = [[1, 4], [3, 2], [2, 6]]
    x[0, 3] = [9, 9]            # padding with garbage: must be ignored
    x[1, 0] = [5, -1]
    x[1, 1:] = 7.0
    x[2] = 3.0                  # no valid frame at all
    out = FrameStatistics(top_k=2)(tf.constant(x), tf.constant([3, 1, 0])).numpy()
    expected = np.array([
        [2, 4, np.sqrt(2 / 3), np.sqrt(8 / 3), 3, 2, 6, 4],
        [5, -1, 0, 0, 5, 5, -1, -1],
        [0] * 8], np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_frame_statistics_short_sequence_and_finite_gradients():
    x = tf.constant(frames(5, (2, 2, 3)))
    num_frames = tf.constant([2, 1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = FrameStatistics(top_k=3)(x, num_frames)
        total = tf.reduce_sum(out)
    assert out.shape == (2, 5 * 3)
    grads = tape.gradient(total, x).numpy()
    assert np.isfinite(grads).all()
    top = out.numpy()[0, 6:].reshape(3, 3)  # dimension-major
    sorted_desc = -np.sort(-x.numpy()[0], axis=0)  # [2 frames, 3 dims]
    np.testing.assert_allclose(top, np.stack([sorted_desc[0], sorted_desc[1], sorted_desc[1]], 1))


def test_frame_statistics_matches_numpy_on_random_videos():
    x = frames(6, (4, 7, 3))
    n = np.array([7, 3, 5, 2])
    out = FrameStatistics(top_k=4)(tf.constant(x), tf.constant(n)).numpy()
    for b in range(4):
        valid = x[b, :n[b]]
        top = -np.sort(-valid, axis=0)
        top = np.concatenate([top, np.repeat(top[-1:], max(0, 4 - n[b]), 0)])[:4]
        expected = np.concatenate([valid.mean(0), valid.std(0), top.T.reshape(-1)])
        np.testing.assert_allclose(out[b], expected, atol=1e-5)


def test_frame_statistics_rejects_nonpositive_k():
    with pytest.raises(ValueError, match="top_k must be positive"):
        FrameStatistics(top_k=0)


# ---------------------------------------------------------------- serialization

LAYERS = {
    "assignment": lambda: ClusterAssignment(K, add_batch_norm=False, activation="relu6"),
    "netvlad": lambda: NetVLAD(K),
    "netrvlad": lambda: NetRVLAD(K, add_batch_norm=False),
    "netvlagd": lambda: NetVLAGD(K),
    "netfv_coupled": lambda: NetFV(K, coupling_factor=0.2),
    "netfv_uncoupled": lambda: NetFV(K, add_batch_norm=False, couple_weights=False),
    "softdbof": lambda: SoftDBoF(K, max_pool=True),
    "gateddbof": lambda: GatedDBoF(K, add_batch_norm=False),
    "dbof": lambda: DBoF(K),
    "starterdbof": lambda: StarterDBoF(K, activation="sigmoid", pooling_method="average"),
}


def _outputs(layer, x):
    if isinstance(layer, ClusterAssignment):
        return run(layer, x.reshape(-1, D))
    return run(layer, x)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_serialization_round_trip(name):
    layer = LAYERS[name]()
    shape = (None, D) if name == "assignment" else (B, N, D)
    build_random(layer, shape)
    x = frames(7)
    clones = [type(layer).from_config(layer.get_config()),
              keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))]
    for clone in clones:
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
        if not clone.built:  # keras deserialization rebuilds from the build config
            clone.build(shape)
        clone.set_weights(layer.get_weights())
        assert tf1_shapes(clone) == tf1_shapes(layer)
        np.testing.assert_array_equal(_outputs(clone, x), _outputs(layer, x))


def test_frame_statistics_serialization_round_trip():
    layer = FrameStatistics(top_k=3)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, FrameStatistics) and clone.top_k == 3
    x, n = tf.constant(frames(8, (2, 4, 3))), tf.constant([4, 2])
    np.testing.assert_array_equal(clone(x, n).numpy(), layer(x, n).numpy())


@pytest.mark.parametrize("name", sorted(set(LAYERS) - {"assignment"}))
def test_compute_output_shape_matches_call(name):
    layer = LAYERS[name]()
    out = layer(tf.constant(frames()))
    assert tuple(layer.compute_output_shape((B, N, D))) == tuple(out.shape)


@pytest.mark.parametrize("channels", [24, 32])
def test_half_precision_batch_norm_is_the_float32_one_rounded(channels):
    """bfloat16 rows are normalized by the fused kernel in bfloat16 when
    their channels are a multiple of 16, in float32 otherwise (oneDNN has no
    fast half-precision path there); either way, float32's result rounded."""
    from youtube8m_willow.layers import kernels

    rng = np.random.default_rng(4)
    rows = rng.standard_normal((50, channels)).astype(np.float32) * 3 + 1
    gamma = tf.constant(rng.random(channels).astype(np.float32) + 0.5)
    beta = tf.constant(rng.standard_normal(channels).astype(np.float32))
    normalize = tf.function(lambda x: kernels.normalize_batch(x, gamma, beta, 1e-3))
    half = tf.cast(rows, tf.bfloat16)
    graph = normalize.get_concrete_function(half).graph
    kernel_dtypes = {op.get_attr("T") for op in graph.get_operations()
                     if op.type == "FusedBatchNormV3"}
    assert kernel_dtypes == {tf.float32 if channels % 16 else tf.bfloat16}
    outputs, mean, variance = normalize(half)
    expected, expected_mean, expected_variance = normalize(tf.cast(half, tf.float32))
    assert outputs.dtype == tf.bfloat16 and mean.dtype == tf.float32
    np.testing.assert_allclose(tf.cast(outputs, tf.float32), expected, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(variance, expected_variance, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("kernel", [True, False])
@pytest.mark.parametrize("mixtures", [1, 2])
def test_mixture_probabilities_are_the_gated_sigmoids(mixtures, kernel, monkeypatch):
    """MixtureOfExperts' per-class mixture on TensorFlow (the project's
    kernel where built, else one XLA-compiled function):
    the NumPy formula, and the gradients of the same ops run as separate
    kernels (``_mixture``, as inside ``uncompiled_mixture`` without the
    kernel); bfloat16 logits are mixed in float32."""
    from youtube8m_willow.layers import kernels

    if kernel:  # the kernel where it runs: on a CPU it must be built
        on_cpu = not tf.config.list_logical_devices("GPU")
        assert kernels.fuses_mixture(tf.float32, tf.float32) == on_cpu
    else:
        monkeypatch.setattr(kernels, "fuses_mixture", lambda *dtypes: False)
    rng = np.random.default_rng(5)
    classes = 7
    gates = rng.standard_normal((4, classes * (mixtures + 1))).astype(np.float32) * 3
    experts = rng.standard_normal((4, classes * mixtures)).astype(np.float32) * 3
    weights = np_softmax(gates.reshape(-1, mixtures + 1))[:, :mixtures]
    expected = np.sum(weights / (1 + np.exp(-experts.reshape(-1, mixtures))), axis=1)
    upstream = tf.constant(rng.standard_normal((4, classes)).astype(np.float32))

    def value_and_gradients(mixture, *logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            probabilities = mixture(*logits, mixtures)
            loss = tf.reduce_sum(probabilities * upstream)
        return probabilities, tape.gradient(loss, logits)

    logits = (tf.constant(gates), tf.constant(experts))
    probabilities, gradients = value_and_gradients(kernels.mixture_probabilities, *logits)
    np.testing.assert_allclose(probabilities, expected.reshape(4, classes), rtol=1e-6, atol=1e-7)
    plain, separate = value_and_gradients(kernels._mixture, *logits)
    np.testing.assert_allclose(plain, expected.reshape(4, classes), rtol=1e-6, atol=1e-7)
    for fused, plain_gradient in zip(gradients, separate):
        assert relative_error(plain_gradient, fused) < 1e-6
    half = kernels.mixture_probabilities(tf.cast(gates, tf.bfloat16), tf.cast(experts, tf.bfloat16),
                                         mixtures)
    assert half.dtype == tf.float32
    np.testing.assert_allclose(half, expected.reshape(4, classes), atol=3e-2)


def test_a_model_build_compiles_no_mixture(monkeypatch):
    """Without the project's kernel, a model's build on zeros runs the MoE
    mixture as separate kernels (``uncompiled_mixture``: XLA would compile
    it for that one shape); its calls, eager and in a graph, run the
    compiled mixture, and predict alike."""
    from youtube8m_willow.config import ModelConfig
    from youtube8m_willow.layers import kernels
    from youtube8m_willow.models.registry import create_model

    calls = []
    compiled = kernels._xla_mixture
    monkeypatch.setattr(kernels, "fuses_mixture", lambda *dtypes: False)
    monkeypatch.setattr(kernels, "_xla_mixture",
                        lambda *args: calls.append(args) or compiled(*args))
    config = ModelConfig(model="MoeModel", frame_features=False, feature_names=("mean_rgb",),
                         feature_sizes=(8,), num_classes=5, moe_num_mixtures=2)
    model = create_model(config).build_for_config()
    assert not calls
    batch = {"video_matrix": tf.constant(np.random.default_rng(0).normal(size=[3, 8]),
                                         tf.float32), "num_frames": tf.ones([3], tf.int32)}
    eager = model(batch).numpy()
    assert len(calls) == 1
    traced = tf.function(lambda inputs: model(inputs))(batch).numpy()
    assert len(calls) == 2
    np.testing.assert_array_equal(eager, traced)
