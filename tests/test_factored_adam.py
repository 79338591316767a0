"""Adam on a large weight from its gradient's factors (training.factored_adam)
and the row-block kernel under it (native.row_block_adam): TF1's update, bit
for bit, without the whole gradient."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import keras_adam_state, peak_tensor_bytes, train_small_moe

from youtube8m_willow.native import loading, row_block_adam
from youtube8m_willow.training import factored_adam, updates

HYPER = dict(beta1_power=0.9 ** 3, beta2_power=0.999 ** 3, lr=0.01, beta1=0.9, beta2=0.999,
             epsilon=1e-8)


def _hyper():
    import tensorflow as tf

    return {name: tf.constant(value, tf.float32) for name, value in HYPER.items()}


def test_row_block_kernel_is_built_and_is_tf1_adam_on_the_rows():
    """The kernel (built by make) updates rows [start, start + R) of a weight
    and its slots as TF1's ResourceApplyAdam updates them, bit for bit, and
    leaves the other rows alone."""
    import tensorflow as tf

    assert loading.load("row_block_adam") is not None, (
        "the row-block Adam kernel is not built: python -m youtube8m_willow.native.build")
    rng = np.random.default_rng(0)
    shape, start, rows = (300, 48), 117, 70
    var, m, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    v = np.abs(v)
    grad = rng.standard_normal((rows, shape[1])).astype(np.float32)
    with tf.device("CPU:0"):  # the kernel is the CPU's
        blocked = [tf.Variable(a) for a in (var, m, v)]
    row_block_adam.apply(*(b.handle for b in blocked), tf.constant(grad), start, **_hyper())
    whole = [tf.Variable(a[start:start + rows]) for a in (var, m, v)]
    tf.raw_ops.ResourceApplyAdam(var=whole[0].handle, m=whole[1].handle, v=whole[2].handle,
                                 grad=tf.constant(grad), use_locking=False, **_hyper())
    for before, after, reference in zip((var, m, v), blocked, whole):
        after = after.numpy()
        np.testing.assert_array_equal(after[start:start + rows], reference.numpy())
        np.testing.assert_array_equal(after[:start], before[:start])
        np.testing.assert_array_equal(after[start + rows:], before[start + rows:])
        assert not np.array_equal(after[start:start + rows], before[start:start + rows])


@pytest.mark.parametrize("grad_shape, start, message", [
    ((4, 7), 0, "grad must be \\[rows, 8\\]"),
    ((4, 8), 29, "rows \\[29, 33\\) are outside the variable's 30 rows"),
    ((4, 8), -1, "outside the variable's 30 rows"),
])
def test_row_block_kernel_rejects_a_block_that_does_not_fit(grad_shape, start, message):
    import tensorflow as tf

    with tf.device("CPU:0"):
        weights = [tf.Variable(tf.zeros([30, 8])) for _ in range(3)]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        row_block_adam.apply(*(w.handle for w in weights), tf.zeros(grad_shape), start,
                             **_hyper())
    assert all(not w.numpy().any() for w in weights)


def _whole_and_factored(monkeypatch, rng, start, inputs, loss, clip_norm):
    """A weight starting at ``start`` after one Adam step per input, each
    from the gradient of ``loss(x, variable)`` through ``clip_each`` and
    ``apply_adam``: first with no gradient factored, then as ``clip_each``
    chooses. Returns both ``(w, m, v)`` and the forms ``clip_each`` gave the
    gradient."""
    import tensorflow as tf

    results, forms = [], []
    for factored in (False, True):
        variable, optimizer = keras_adam_state(rng, start.shape)
        variable.assign(start)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                value = loss(x, variable)
            clipped = updates.clip_each(tape.gradient(value, [variable.value]), clip_norm, True)
            forms.append(type(clipped[0]).__name__)
            with tf.control_dependencies(updates.tensors_of(clipped)):
                updates.apply_adam(optimizer, clipped, [variable])

        with monkeypatch.context() as patch:
            if not factored:
                patch.setattr(factored_adam, "factors", lambda gradient, minimum: None)
            for x in inputs:
                step(x)
        results.append((variable.numpy(), optimizer._momentums[0].numpy(),
                        optimizer._velocities[0].numpy()))
    return results, forms


@pytest.mark.parametrize("batch, columns, clip_norm", [
    (5, 64, 1e6), (5, 64, 0.5), (5, 64, 0.0), (80, 1024, 1e6)],
    ids=["within the norm", "clipped", "no clipping", "Gated NetVLAD's batch and width"])
def test_factored_update_is_the_whole_gradient_update(monkeypatch, batch, columns, clip_norm):
    """Three steps of ``x @ W`` (``video_matmul``, whose weight gradient is
    the matmul ``x^T g``) with rows past the last full block: the factored
    update gives TF1's whole-gradient update bit for bit, but for the
    clipping scale, whose norm may round apart."""
    import tensorflow as tf

    from youtube8m_willow.layers.kernels import video_matmul

    monkeypatch.setattr(updates, "LARGE_GRADIENT_ELEMENTS", 1)
    rng = np.random.default_rng(1)
    rows = 2 * factored_adam.BLOCK_ROWS + 100
    shape = (rows, columns)
    inputs = [tf.constant(rng.standard_normal((batch, rows)).astype(np.float32))
              for _ in range(3)]
    targets = tf.constant(rng.standard_normal((batch, columns)).astype(np.float32))
    start = rng.standard_normal(shape).astype(np.float32) * 0.1

    def loss(x, variable):
        return tf.reduce_sum(tf.square(video_matmul(x, variable) - targets))

    results, forms = _whole_and_factored(monkeypatch, rng, start, inputs, loss, clip_norm)
    assert forms == ["SymbolicTensor", "FactoredGradient"]  # traced once each
    for whole, factored in zip(*results):
        if clip_norm == 0.5:
            # Scales 2e-7 apart (float32 sums in another order), differences a
            # few 1e-7 after three steps at learning rate 0.01; each array
            # against its own size (v is about 1e-8 here).
            np.testing.assert_allclose(factored, whole, rtol=1e-5,
                                       atol=1e-5 * np.abs(whole).max())
        else:
            np.testing.assert_array_equal(factored, whole)
    assert not np.allclose(results[1][0], start)


@pytest.mark.parametrize("clip_norm", [1e6, 0.5], ids=["within the norm", "clipped"])
def test_bfloat16_factored_update_is_the_bfloat16_gradients_update(monkeypatch, clip_norm):
    """Under bfloat16 (a float32 weight cast for a bfloat16 matmul) the
    factored update makes each block's bfloat16 gradient and applies TF1's
    formula to its float32 cast: as ``bfloat16_adam``'s update from the
    whole bfloat16 gradient does, up to its compiled pass's rounding."""
    import tensorflow as tf

    from youtube8m_willow.layers.kernels import video_matmul

    monkeypatch.setattr(updates, "LARGE_GRADIENT_ELEMENTS", 1)
    rng = np.random.default_rng(5)
    rows = 2 * factored_adam.BLOCK_ROWS + 100
    shape = (rows, 64)
    inputs = [tf.constant(rng.standard_normal((5, rows)), tf.bfloat16) for _ in range(3)]
    targets = tf.constant(rng.standard_normal((5, 64)), tf.bfloat16)
    start = rng.standard_normal(shape).astype(np.float32) * 0.1

    def loss(x, variable):
        output = video_matmul(x, tf.cast(variable.value, tf.bfloat16))
        return tf.reduce_sum(tf.square(tf.cast(output - targets, tf.float32)))

    results, forms = _whole_and_factored(monkeypatch, rng, start, inputs, loss, clip_norm)
    assert forms == ["Bfloat16Gradient", "FactoredGradient"]  # traced once each
    for whole, factored in zip(*results):
        # bfloat16_adam's norm is that of the gradient rounded to bfloat16,
        # the factors' that of the product itself (about 2^-9 apart); each
        # array against its own size (a scale off by 2 moves m and v by 2).
        tolerance = 5e-3 if clip_norm == 0.5 else 1e-5
        np.testing.assert_allclose(factored, whole, rtol=tolerance,
                                   atol=tolerance * np.abs(whole).max())
    assert not np.allclose(results[1][0], start)


def test_clipping_norm_from_the_factors_is_the_gradients_norm():
    """``|x^T g|`` from the Gram matrices, against the float64 norm of the
    product: 1e-6 relative (float32 matmuls of x's column chunks; bfloat16
    factors cast to float32 first)."""
    import tensorflow as tf

    rng = np.random.default_rng(4)
    for rows, dtype in [(300, tf.float32), (64 * factored_adam.GRAM_CHUNKS * 2, tf.float32),
                        (300, tf.bfloat16)]:  # one chunk; GRAM_CHUNKS chunks; bfloat16 factors
        x = tf.cast(rng.standard_normal((6, rows)), dtype)
        g = tf.cast(rng.standard_normal((6, 9)), dtype)
        exact = np.sqrt(((tf.cast(x, tf.float64).numpy().T @ tf.cast(g, tf.float64).numpy())
                         ** 2).sum())
        scale = factored_adam.clipped(x, g, exact / 3).scale
        np.testing.assert_allclose(float(scale), 1 / 3, rtol=1e-6)
        within = factored_adam.clipped(x, g, exact * 3).scale
        assert float(within) == 1.0  # exactly: the gradient is then TF1's bit for bit


def test_only_large_graph_matmul_gradients_are_factored(monkeypatch):
    import tensorflow as tf

    found = {}

    @tf.function
    def trace(x, g):
        product = tf.matmul(x, g, transpose_a=True)  # [6, 4]: 24 elements
        found["batch too large"] = factored_adam.factors(product, 1)  # 3 x (6 + 4) > 24 / 8
        monkeypatch.setattr(factored_adam, "MAX_BATCH_SHARE", 2.0)
        found["large"] = factored_adam.factors(product, 24)
        found["small"] = factored_adam.factors(product, 25)
        found["not transposed"] = factored_adam.factors(tf.matmul(tf.transpose(x), g), 1)
        found["a sum"] = factored_adam.factors(product + 1.0, 1)
        found["bfloat16 cast"] = factored_adam.factors(tf.cast(
            tf.matmul(tf.cast(x, tf.bfloat16), tf.cast(g, tf.bfloat16), transpose_a=True),
            tf.float32), 1)
        found["float16 cast"] = factored_adam.factors(tf.cast(
            tf.matmul(tf.cast(x, tf.float16), tf.cast(g, tf.float16), transpose_a=True),
            tf.float32), 1)
        found["bfloat16"] = factored_adam.factors(
            tf.matmul(tf.cast(x, tf.bfloat16), tf.cast(g, tf.bfloat16), transpose_a=True), 1)
        return product

    x, g = tf.ones([3, 6]), tf.ones([3, 4])
    trace(x, g)
    assert found["large"][0].shape == (3, 6) and found["large"][1].shape == (3, 4)
    assert found["small"] is found["not transposed"] is found["a sum"] is None
    assert found["batch too large"] is found["float16 cast"] is None
    assert [f.dtype for f in found["bfloat16 cast"]] == [tf.bfloat16, tf.bfloat16]
    assert found["bfloat16"] is None
    assert factored_adam.factors(tf.matmul(x, g, transpose_a=True), 1) is None  # eager


def test_without_the_kernel_the_gradient_stays_whole(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(row_block_adam, "available", lambda: False)
    found = {}

    @tf.function
    def trace(x, g):
        found["factors"] = factored_adam.factors(tf.matmul(x, g, transpose_a=True), 1)
        return x

    trace(tf.ones([3, 6]), tf.ones([3, 4]))
    assert found["factors"] is None


def test_factored_update_never_holds_the_whole_gradient(monkeypatch):
    """A 64 MB weight's update: TF1's path holds its gradient (and, clipped,
    a scaled copy); the factored one a few row blocks (measured: under a
    tenth of the gradient's size; the test asks for a quarter)."""
    import tensorflow as tf

    from youtube8m_willow.layers.kernels import video_matmul

    monkeypatch.setattr(updates, "LARGE_GRADIENT_ELEMENTS", 1)
    rng = np.random.default_rng(2)
    shape = (65536, 256)
    gradient_bytes = shape[0] * shape[1] * 4
    x = tf.constant(rng.standard_normal((8, shape[0])).astype(np.float32))
    peaks = {}
    for adam_update in (False, True):
        variable, optimizer = keras_adam_state(rng, shape)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(video_matmul(x, variable)))
            clipped = updates.clip_each(tape.gradient(loss, [variable.value]), 1.0, adam_update)
            with tf.control_dependencies(updates.tensors_of(clipped)):
                updates.apply_adam(optimizer, clipped, [variable])
            return loss

        peaks[adam_update] = peak_tensor_bytes(step, x) / gradient_bytes
    assert peaks[False] >= 1.0 and peaks[True] < 0.25, peaks


@pytest.mark.parametrize("precision, tolerance", [("float32", 1e-5), ("bfloat16", 5e-3)])
def test_training_step_updates_large_matmul_weights_from_their_factors(monkeypatch, precision,
                                                                       tolerance):
    """A step of a model whose MoE weights are large (the threshold lowered)
    updates them from their factors, and trains as the step without them
    does: TF1's update from the whole gradient (its float32 cast under
    bfloat16), 1e-5 apart after three steps in float32 (the clipping scale),
    5e-3 under bfloat16 (the whole gradient's norm is that of the product
    rounded to bfloat16)."""
    applied = []
    original_apply = factored_adam.FactoredGradient.apply
    monkeypatch.setattr(factored_adam.FactoredGradient, "apply",
                        lambda gradient, *a, **k: applied.append(
                            (tuple(gradient.inputs.shape), tuple(gradient.upstream.shape)))
                        or original_apply(gradient, *a, **k))
    # The experts' and gates' [40, 20], [40, 30] are large (and the batch of
    # 16 small enough against them); then nothing is.
    monkeypatch.setattr(factored_adam, "MAX_BATCH_SHARE", 2.0)
    weights = [train_small_moe(monkeypatch, large, precision=precision)
               for large in (400, 1 << 40)]
    assert sorted(applied) == [((16, 40), (16, 20)), ((16, 40), (16, 30))]  # traced once
    for factored, whole in zip(*weights):
        np.testing.assert_allclose(factored, whole, rtol=tolerance,
                                   atol=tolerance * np.abs(whole).max())
