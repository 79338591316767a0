"""TF1 BasicLSTMCell / GRUCell / dynamic_rnn semantics, LstmModel and GruModel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers import kernels
from youtube8m_willow.layers import recurrent as recurrent_layers
from youtube8m_willow.layers import recurrent_gradient
from youtube8m_willow.layers.recurrent import BasicLSTMCell, GRUCell, StackedRNN
from youtube8m_willow.models import recurrent  # noqa: F401  (registers the models)
from youtube8m_willow.models.recurrent import GruModel, LstmModel
from youtube8m_willow.models.registry import create_model

ATOL = 1e-5


# --- NumPy reference: TF1 rnn_cell_impl math, written from its definition ---

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ref_lstm_cell(weights, forget_bias=1.0):
    kernel, bias = weights["kernel"], weights["bias"]

    def cell(x, state):
        c, h = np.split(state, 2, axis=1)
        i, j, f, o = np.split(np.concatenate([x, h], 1) @ kernel + bias, 4, axis=1)
        new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
        new_h = np.tanh(new_c) * sigmoid(o)
        return new_h, np.concatenate([new_c, new_h], 1)
    return cell, 2 * kernel.shape[1] // 4


def ref_gru_cell(weights):
    def cell(x, h):
        gates = sigmoid(np.concatenate([x, h], 1) @ weights["gates/kernel"]
                        + weights["gates/bias"])
        r, z = np.split(gates, 2, axis=1)
        c = np.tanh(np.concatenate([x, r * h], 1) @ weights["candidate/kernel"]
                    + weights["candidate/bias"])
        new_h = z * h + (1 - z) * c
        return new_h, new_h
    return cell, weights["candidate/bias"].shape[0]


def ref_dynamic_rnn(cells, x, lengths):
    """TF1 dynamic_rnn over MultiRNNCell(state_is_tuple=False): frame by frame
    through the stack, states copied through once t >= length."""
    batch, steps = x.shape[:2]
    states = [np.zeros([batch, size]) for _, size in cells]
    for t in range(steps):
        inputs, new_states = x[:, t], []
        for (cell, _), state in zip(cells, states):
            inputs, new_state = cell(inputs, state)
            new_states.append(new_state)
        valid = (t < np.asarray(lengths))[:, None]
        states = [np.where(valid, new, old) for new, old in zip(new_states, states)]
    return np.concatenate(states, axis=1)


def ref_cells(layer, forget_bias=1.0):
    """Reference cells holding the layer's TF1 weights."""
    weights = {k: v.numpy().astype(np.float64) for k, v in layer.tf1_weights().items()}
    cells = []
    for i in range(layer.num_layers):
        scope = f"cell_{i}/{layer.cells[i].tf1_scope}/"
        own = {k[len(scope):]: v for k, v in weights.items() if k.startswith(scope)}
        cells.append(ref_lstm_cell(own, forget_bias) if layer.cell_type == "lstm"
                     else ref_gru_cell(own))
    return cells


def randomize(tf1_weights, seed=0):
    """Non-trivial values for every weight (biases included)."""
    rng = np.random.default_rng(seed)
    for var in tf1_weights.values():
        var.assign(rng.normal(0.0, 0.5, var.shape).astype(np.float32))


def built_stack(cell_type, units=4, layers=2, depth=3, **kwargs):
    layer = StackedRNN(cell_type, units, layers, **kwargs)
    layer.build((None, None, depth))
    randomize(layer.tf1_weights())
    return layer


def frames(batch=4, steps=5, depth=3, seed=1):
    return np.random.default_rng(seed).normal(size=[batch, steps, depth]).astype(np.float32)


# --- cells and the stacked layer ---

@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_stack_matches_tf1_dynamic_rnn(cell_type):
    layer = built_stack(cell_type)
    x, lengths = frames(), np.array([5, 3, 1, 0], np.int32)
    got = layer(x, lengths).numpy()
    want = ref_dynamic_rnn(ref_cells(layer), x.astype(np.float64), lengths)
    assert got.shape == (4, 2 * (8 if cell_type == "lstm" else 4))
    np.testing.assert_allclose(got, want, atol=ATOL)
    np.testing.assert_array_equal(got[3], 0.0)  # length 0: the zero state


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_state_frozen_after_last_valid_frame(cell_type):
    layer = built_stack(cell_type)
    x, lengths = frames(), np.array([5, 3, 1, 0], np.int32)
    noisy = x.copy()
    for b, n in enumerate(lengths):
        noisy[b, n:] = 100.0 * np.random.default_rng(b).normal(size=noisy[b, n:].shape)
    np.testing.assert_array_equal(layer(x, lengths).numpy(), layer(noisy, lengths).numpy())
    # Lengths past the time dimension run every frame; no length means all frames.
    full = layer(x).numpy()
    np.testing.assert_array_equal(layer(x, np.full([4], 9, np.int32)).numpy(), full)
    np.testing.assert_allclose(full, ref_dynamic_rnn(ref_cells(layer), x.astype(np.float64),
                                                     [5] * 4), atol=ATOL)


def test_lstm_forget_bias_and_state_layout():
    layer = built_stack("lstm", layers=1, forget_bias=0.0)
    x = frames(batch=2)
    got = layer(x).numpy()
    np.testing.assert_allclose(got, ref_dynamic_rnn(ref_cells(layer, 0.0), x, [5, 5]),
                               atol=ATOL)
    assert not np.allclose(got, ref_dynamic_rnn(ref_cells(layer, 1.0), x, [5, 5]), atol=1e-3)
    # [c, h] with h = tanh(c) * sigmoid(o): |h| <= |tanh(c)| elementwise.
    c, h = got[:, :4], got[:, 4:]
    assert np.all(np.abs(h) <= np.abs(np.tanh(c)) + 1e-7)


@pytest.mark.parametrize("cell_cls", [BasicLSTMCell, GRUCell])
def test_cell_runs_in_keras_rnn(cell_cls):
    cell = cell_cls(4, name="cell_0")
    rnn = keras.layers.RNN(cell, return_state=True)
    x = frames(batch=2)
    rnn.build(x.shape)
    randomize(cell.tf1_weights(), seed=3)
    output, state = rnn(x)
    ref_cell = (ref_lstm_cell({k: v.numpy() for k, v in cell.tf1_weights().items()})
                if cell_cls is BasicLSTMCell else
                ref_gru_cell({k: v.numpy() for k, v in cell.tf1_weights().items()}))
    want = ref_dynamic_rnn([ref_cell], x.astype(np.float64), [5, 5])
    np.testing.assert_allclose(state.numpy(), want, atol=ATOL)
    np.testing.assert_allclose(output.numpy(), want[:, -4:], atol=ATOL)


def test_initial_biases_follow_tf1():
    lstm, gru = StackedRNN("lstm", 3, 1), StackedRNN("gru", 3, 1)
    lstm.build((None, None, 2))
    gru.build((None, None, 2))
    np.testing.assert_array_equal(lstm.cells[0].bias.numpy(), np.zeros(12))
    np.testing.assert_array_equal(gru.cells[0].gates_bias.numpy(), np.ones(6))
    np.testing.assert_array_equal(gru.cells[0].candidate_bias.numpy(), np.zeros(3))
    # Glorot uniform over [D + u, G]: limit sqrt(6 / (5 + 12)).
    assert np.abs(lstm.cells[0].kernel.numpy()).max() <= np.sqrt(6 / 17)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unknown cell_type 'rnn'; valid: lstm, gru"):
        StackedRNN("rnn", 4)
    with pytest.raises(ValueError, match="num_layers must be at least 1"):
        StackedRNN("gru", 4, 0)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_stack_serialization_round_trip(cell_type):
    layer = built_stack(cell_type)
    x, lengths = frames(), np.array([5, 2, 4, 0], np.int32)
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.get_config() == layer.get_config()
    if not clone.built:
        clone.build((None, None, 3))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x, lengths).numpy(), layer(x, lengths).numpy())


def _scan_gradients(scan, cell_type, projected, lengths, weights, cotangents, sequence):
    """The final state and outputs of ``scan`` and the gradients of
    ``sum(final * cotangents[0]) (+ sum(outputs * cotangents[1]))`` with
    respect to each part of ``projected`` and each recurrent weight."""
    with tf.GradientTape() as tape:
        tape.watch([*projected, *weights])
        final, outputs = scan(cell_type, projected, lengths, weights, sequence)
        loss = tf.reduce_sum(final * cotangents[0])
        if sequence:
            loss += tf.reduce_sum(outputs * cotangents[1])
    return [final, outputs, *tape.gradient(loss, [*projected, *weights])]


def _scan_inputs(cell_type, units, steps, batch, seed):
    """Random ``projected`` parts and recurrent weights of a cell."""
    rng = np.random.default_rng(seed)
    parts, shapes = (([4 * units], [(units, 4 * units)]) if cell_type == "lstm"
                     else ([2 * units, units], [(units, 2 * units), (units, units)]))
    projected = tuple(tf.constant(rng.normal(size=(steps, batch, size)), tf.float32)
                      for size in parts)
    weights = [tf.constant(rng.normal(0.0, 0.5, shape), tf.float32) for shape in shapes]
    return projected, weights


@pytest.mark.parametrize("steps", [6, 1])
@pytest.mark.parametrize("sequence", [True, False])
@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_written_out_gradient_is_tensorflows(cell_type, sequence, steps):
    """The scan's gradient written out (recurrent_gradient) against
    TensorFlow's own gradient of the plain loop (recurrent._scan_states), with videos
    that run every frame, some, one and none; through the final state and
    the outputs, and through the final state alone (a stack's last layer);
    over six frames and over one (where the recurrent weights, which only
    ever multiply the zero initial state, get a zero gradient)."""
    units = 4
    projected, weights = _scan_inputs(cell_type, units, steps, batch=5, seed=3)
    lengths = tf.constant([6, 3, 0, 1, 5])
    state = 2 * units if cell_type == "lstm" else units
    rng = np.random.default_rng(4)
    cotangents = (tf.constant(rng.normal(size=(5, state)), tf.float32),
                  tf.constant(rng.normal(size=(steps, 5, units)), tf.float32))
    theirs = _scan_gradients(recurrent_layers._scan_states, cell_type, projected, lengths,
                             weights, cotangents, sequence)
    ours = _scan_gradients(recurrent_gradient.scan_states, cell_type, projected, lengths,
                           weights, cotangents, sequence)
    np.testing.assert_array_equal(ours[0].numpy(), theirs[0].numpy())  # the same loop
    if sequence:
        np.testing.assert_array_equal(ours[1].numpy(), theirs[1].numpy())
    else:
        assert ours[1] is None and theirs[1] is None
    for index, (mine, reference) in enumerate(zip(ours[2:], theirs[2:])):
        if steps > 1 or index < len(projected):
            assert np.abs(reference.numpy()).max() > 0.1
        else:
            np.testing.assert_array_equal(mine.numpy(), 0.0)
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
    # A video without frames gets no gradient; its state stays zero.
    for gradient in ours[2:2 + len(projected)]:
        np.testing.assert_array_equal(gradient.numpy()[:, 2], 0.0)
    np.testing.assert_array_equal(ours[0].numpy()[2], 0.0)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_the_scans_read_frames_without_copying_their_inputs(cell_type):
    """The recurrent loops on TensorFlow (inference's, and training's with
    its written-out gradient) read each frame as a slice of its stacked
    input: their traced graphs hold no ``TensorListFromTensor``
    (``tf.scan``'s copy of each input, frame by frame), and ``kernels.scan``
    gives ``tf.scan``'s results, forward and reversed, traced (with unknown
    lengths and batch too)."""
    units = 4
    projected, weights = _scan_inputs(cell_type, units, steps=6, batch=5, seed=4)
    lengths = tf.constant([6, 3, 0, 1, 5])

    def loss_and_gradients(projected):
        with tf.GradientTape() as tape:
            tape.watch(projected)
            final, outputs = recurrent_gradient.scan_states(cell_type, projected, lengths,
                                                            weights)
            loss = tf.reduce_sum(tf.sin(final)) + tf.reduce_sum(tf.sin(outputs))
        return loss, tape.gradient(loss, projected)

    def inference(projected):
        return recurrent_layers._scan_states(cell_type, projected, lengths, weights)

    for traced in (loss_and_gradients, inference):
        graph = tf.function(traced).get_concrete_function(projected).graph
        # The graph and the functions it calls (the loops' bodies among them).
        functions = [graph] + [f.graph for f in graph._functions.values() if hasattr(f, "graph")]
        op_types = {op.type for g in functions for op in g.get_operations()}
        assert "While" in op_types or "StatelessWhile" in op_types
        assert "TensorListFromTensor" not in op_types, traced.__name__

    def step(state, frame):
        values, keep = frame
        new_state = tf.where(keep, state * 0.5 + values, state)
        return new_state, (new_state, tf.reduce_sum(values * state, axis=-1))

    def carried(carry, frame):  # tf.scan's step: the carry is what it stacks
        return step(carry[0], frame)[1]

    values = projected[0]
    keep = tf.range(6)[:, None, None] < tf.reshape(lengths, (1, -1, 1))
    spec = (tf.TensorSpec([None, None, values.shape[-1]]),
            tf.TensorSpec([None, None, 1], tf.bool))
    for reverse in (False, True):
        def ours(values, keep):
            return kernels.scan(step, tf.zeros_like(values[0]), (values, keep), reverse=reverse)

        initial = (tf.zeros_like(values[0]), tf.zeros_like(values[0, :, 0]))
        theirs = tf.scan(carried, (values, keep), initializer=initial, reverse=reverse)
        for run in (tf.function(ours, input_signature=spec), tf.function(ours)):
            final, stacked = run(values, keep)
            for mine, reference in zip(stacked, theirs):
                np.testing.assert_array_equal(mine.numpy(), reference.numpy())
            last = 0 if reverse else -1  # the carry after the last element read
            np.testing.assert_array_equal(final.numpy(), theirs[0][last].numpy())


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_the_stack_trains_through_the_written_out_gradient(cell_type):
    """In training, StackedRNN's scan on TensorFlow is the one with the
    written-out gradient, and the kernels get their gradient through it: the
    same as TensorFlow's own, kernel by kernel, for a stack of two layers
    (the lower one returning its outputs, the upper one its final state
    only). Inference runs the plain loop (no gate activations kept), to the
    same states."""
    assert (recurrent_layers.training_scan_states.python_function
            is recurrent_gradient.scan_states)
    assert recurrent_layers.scan_states.python_function is recurrent_layers._scan_states
    layer = built_stack(cell_type, units=4, layers=2)
    x, lengths = tf.constant(frames()), tf.constant([5, 0, 2, 4])

    def kernel_gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(layer(x, lengths, training=True)))
        return tape.gradient(loss, layer.trainable_variables)

    ours = kernel_gradients()
    original = recurrent_layers.training_scan_states
    recurrent_layers.training_scan_states = recurrent_layers.scan_states
    try:
        theirs = kernel_gradients()
    finally:
        recurrent_layers.training_scan_states = original
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer(x, lengths, training=True).numpy(),
                                  layer(x, lengths).numpy())


def test_gradients_finite_with_empty_video():
    layer = built_stack("lstm")
    x = tf.constant(frames())
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, tf.constant([5, 0, 2, 0])) ** 2)
    grads = tape.gradient(loss, layer.trainable_variables)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads)


# --- LstmModel / GruModel ---

def tiny_config(model, **changes):
    values = dict(model=model, num_classes=3, feature_names=("rgb",), feature_sizes=(3,),
                  frame_features=True, max_frames=5, lstm_cells=4, lstm_layers=2,
                  gru_cells=4, gru_layers=2, iterations=3, moe_num_mixtures=2)
    values.update(changes)
    return ModelConfig(**values)


def built_model(config):
    model = create_model(config).build_for_config()
    randomize(model.tf1_weights(), seed=5)
    return model


def l2_rows(x):
    return x / np.sqrt(np.maximum((x.astype(np.float64) ** 2).sum(-1, keepdims=True), 1e-12))


@pytest.mark.parametrize("model_name, units, state", [("LstmModel", 4, 16), ("GruModel", 4, 8)])
def test_tf1_names_and_shapes(model_name, units, state):
    model = built_model(tiny_config(model_name))
    names = {k: tuple(v.shape) for k, v in model.tf1_weights().items()}
    scope = "RNN/rnn/multi_rnn_cell"
    if model_name == "LstmModel":
        want = {f"{scope}/cell_0/basic_lstm_cell/kernel": (3 + units, 4 * units),
                f"{scope}/cell_0/basic_lstm_cell/bias": (4 * units,),
                f"{scope}/cell_1/basic_lstm_cell/kernel": (2 * units, 4 * units),
                f"{scope}/cell_1/basic_lstm_cell/bias": (4 * units,)}
    else:
        want = {}
        for i, rows in enumerate([3 + units, 2 * units]):
            cell = f"{scope}/cell_{i}/gru_cell"
            want.update({f"{cell}/gates/kernel": (rows, 2 * units),
                         f"{cell}/gates/bias": (2 * units,),
                         f"{cell}/candidate/kernel": (rows, units),
                         f"{cell}/candidate/bias": (units,)})
    assert {k: v for k, v in names.items() if k.startswith("RNN/")} == want
    # The MoE head sits at the top level and reads the concatenated states.
    assert names["gates/weights"] == (state, 3 * 3)
    assert names["experts/weights"] == (state, 3 * 2)
    assert len(model.trainable_variables) == len(names)


def test_single_layer_keeps_cell_0_scope():
    model = built_model(tiny_config("GruModel", gru_layers=1))
    rnn_names = sorted(k for k in model.tf1_weights() if k.startswith("RNN/"))
    assert rnn_names == [f"RNN/rnn/multi_rnn_cell/cell_0/gru_cell/{k}" for k in
                         ("candidate/bias", "candidate/kernel", "gates/bias", "gates/kernel")]


def reference_state(model, x, lengths):
    return ref_dynamic_rnn(ref_cells(model.rnn), l2_rows(x), lengths)


def model_inputs(seed=7):
    x = frames(batch=4, steps=5, depth=3, seed=seed)
    return x, np.array([5, 2, 4, 0], np.int32)


def predict(model, x, lengths):
    return model({"video_matrix": x, "num_frames": lengths}).numpy()


@pytest.mark.parametrize("model_name", ["LstmModel", "GruModel"])
def test_model_forward_and_backward_match_reference(model_name):
    prefix = "lstm" if model_name == "LstmModel" else "gru"
    x, lengths = model_inputs()
    forward = built_model(tiny_config(model_name))
    want = forward.classifier(reference_state(forward, x, lengths)).numpy()
    np.testing.assert_allclose(predict(forward, x, lengths), want, atol=ATOL)

    backward = built_model(tiny_config(model_name, **{f"{prefix}_backward": True}))
    flipped = x.copy()
    for b, n in enumerate(lengths):
        flipped[b, :n] = x[b, :n][::-1]
    want = backward.classifier(reference_state(backward, flipped, lengths)).numpy()
    np.testing.assert_allclose(predict(backward, x, lengths), want, atol=ATOL)
    assert not np.allclose(predict(backward, x, lengths), predict(forward, x, lengths),
                           atol=1e-4)


@pytest.mark.parametrize("backward", [False, True])
def test_random_sequence_reads_min_of_num_frames_and_iterations(backward):
    # Uniform draws make the sampled frames deterministic: floor(i * n / 3).
    config = tiny_config("LstmModel", lstm_random_sequence=True, lstm_backward=backward,
                         frame_sampling="uniform")
    model = built_model(config)
    x, lengths = model_inputs()
    sampled = np.stack([x[b, (np.arange(3) * n) // 3] for b, n in enumerate(lengths)])
    read = np.minimum(lengths, 3)
    if backward:
        for b, n in enumerate(read):
            sampled[b, :n] = sampled[b, :n][::-1].copy()
    want = model.classifier(reference_state(model, sampled, read)).numpy()
    np.testing.assert_allclose(predict(model, x, lengths), want, atol=ATOL)


def test_random_sequence_draws_valid_frames_with_replacement():
    model = create_model(tiny_config("GruModel", gru_random_sequence=True, iterations=40,
                                     max_frames=6))
    # Frame t of video b holds the value 10 * b + t, to trace which frames were drawn.
    x = (10.0 * np.arange(3)[:, None] + np.arange(6)[None, :])[:, :, None].astype(np.float32)
    num_frames = tf.constant([6, 2, 1])
    indices = model.frame_indices(num_frames)
    drawn = tf.gather(tf.constant(x), indices, batch_dims=1)
    drawn, lengths = model.arrange_frames(drawn, num_frames)
    drawn = drawn.numpy()[..., 0]
    assert drawn.shape == (3, 40)
    np.testing.assert_array_equal(lengths.numpy(), [6, 2, 1])
    for b, n in enumerate([6, 2, 1]):
        assert set(drawn[b] - 10 * b) <= set(range(n))
    assert len(set(drawn[0])) > 1 and not np.all(np.diff(drawn[0]) >= 0)  # unsorted draws


@pytest.mark.parametrize("model_name", ["LstmModel", "GruModel"])
def test_model_serialization_round_trip(model_name):
    model = built_model(tiny_config(model_name))
    clone = type(model).from_config(model.get_config()).build_for_config()
    weights = clone.tf1_weights()
    for name, var in model.tf1_weights().items():
        weights[name].assign(var)
    x, lengths = model_inputs()
    np.testing.assert_array_equal(predict(clone, x, lengths), predict(model, x, lengths))
    assert type(clone) is {"LstmModel": LstmModel, "GruModel": GruModel}[model_name]
    assert clone.frame_level


@pytest.mark.parametrize("model_name", ["LstmModel", "GruModel"])
def test_short_training_run_lowers_loss(model_name):
    rng = np.random.default_rng(11)
    x = rng.normal(size=[16, 5, 3]).astype(np.float32)
    lengths = rng.integers(1, 6, size=16).astype(np.int32)
    valid = np.arange(5)[None, :] < lengths[:, None]
    # Class k: the valid frames' feature k sums to a positive value.
    labels = ((x * valid[..., None]).sum(1) > 0).astype(np.float32)
    model = create_model(tiny_config(model_name)).build_for_config()
    optimizer = keras.optimizers.Adam(0.05)
    inputs = {"video_matrix": tf.constant(x), "num_frames": tf.constant(lengths)}

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.binary_crossentropy(
                labels, model(inputs, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    losses = [float(train_step()) for _ in range(60)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * losses[0]


def test_stack_runs_in_a_trace_that_knows_no_input_size():
    """A shape-relaxed trace (the predictor's reduce_retracing) sees
    ``[None, None, None]`` frames: the stack takes the sizes from its kernels."""
    rnn = StackedRNN("lstm", 8, 2)
    frames = np.random.default_rng(0).random([3, 4, 3]).astype("float32")
    lengths = np.array([4, 1, 0], "int32")
    eager = rnn(frames, lengths).numpy()
    traced = tf.function(lambda x, n: rnn(x, n), input_signature=[
        tf.TensorSpec([None, None, None]), tf.TensorSpec([None], tf.int32)])
    np.testing.assert_array_equal(traced(frames, lengths).numpy(), eager)


def test_traced_output_keeps_the_state_size_after_a_relaxed_scan_trace():
    """Calls with other state sizes relax the compiled scan's trace to an
    unknown size; a traced call (e.g. Keras' automatic build of an enclosing
    model) must still see the stack's output size, or the layers after it
    cannot build."""
    frames, lengths = np.ones([2, 3, 4], "float32"), np.ones([2], "int32")
    for units in (3, 4, 5):
        StackedRNN("lstm", units)(frames, lengths)
    rnn = StackedRNN("lstm", 6, 2)
    traced = tf.function(lambda x, n: rnn(x, n)).get_concrete_function(
        tf.TensorSpec([2, 3, 4]), tf.TensorSpec([2], tf.int32))
    assert traced.structured_outputs.shape.as_list() == [2, 24]
