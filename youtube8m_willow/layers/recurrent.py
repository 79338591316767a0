"""Recurrent layers with TF1 cell semantics (SPEC section 4, LstmModel/GruModel).

``BasicLSTMCell`` and ``GRUCell`` reproduce ``tf.contrib.rnn.BasicLSTMCell``
(``state_is_tuple=False``) and ``tf.contrib.rnn.GRUCell``: same math, same
kernel layout (rows ``[inputs; state]``, gate columns in TF1 order), same bias
initializers, so a TF1 checkpoint loads onto them name by name.
``StackedRNN`` is ``tf.nn.dynamic_rnn`` over a ``MultiRNNCell(state_is_tuple=
False)`` of such cells, returning the final state only.

How it runs: each layer projects all its inputs at once (one large matmul for
the whole sequence), then a scan applies the recurrent part frame by frame
(compiled on TensorFlow; in training there, the loop of ``recurrent_gradient``,
whose gradient is written out). Layers run one after another over the whole
sequence, which equals TF1's frame-by-frame walk through the stack. A state
stops changing after its video's last valid frame, as with dynamic_rnn's
``sequence_length``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import glorot_uniform, register

CELL_TYPES = ("lstm", "gru")


def lstm_step(projected, state, recurrent_kernel):
    """One BasicLSTMCell step given the input part ``(x W_x + b (+ forget_bias),)``.

    ``state`` is ``[c, h]`` concatenated; gates are split in TF1's order
    ``i, j, f, o`` (the forget bias is already in ``f``).
    """
    c, h = ops.split(state, 2, axis=-1)
    gates = projected[0] + ops.matmul(h, recurrent_kernel)
    i, j, f, o = ops.split(gates, 4, axis=-1)
    new_c = c * ops.sigmoid(f) + ops.sigmoid(i) * ops.tanh(j)
    new_h = ops.tanh(new_c) * ops.sigmoid(o)
    return ops.concatenate([new_c, new_h], axis=-1)


def gru_step(projected, state, gates_kernel, candidate_kernel):
    """One GRUCell step given the input parts ``(x W_gates + b_gates,
    x W_cand + b_cand)``.

    The reset gate scales the state before the candidate matmul (Keras'
    ``reset_after=False``); ``h' = z * h + (1 - z) * c``.
    """
    gates_input, candidate_input = projected
    gates = ops.sigmoid(gates_input + ops.matmul(state, gates_kernel))
    reset, update = ops.split(gates, 2, axis=-1)
    candidate = ops.tanh(candidate_input + ops.matmul(reset * state, candidate_kernel))
    return update * state + (1.0 - update) * candidate


_STEPS = {"lstm": lstm_step, "gru": gru_step}


def _scan_states(cell_type: str, projected: tuple, lengths, recurrent_weights,
                 sequence: bool = True):
    """Runs one layer over time-major ``projected`` (the cell's input parts,
    each ``[T, B, G_i]``).

    Returns ``(the final state [B, S], the output h after every frame
    [T, B, units], or None without sequence)``; a video's state is frozen
    once ``t >= lengths[b]`` (zero if its length is 0).
    """
    step = _STEPS[cell_type]
    # Dynamic where unknown: a retraced (shape-relaxed) function may not know the size.
    units = ops.shape(recurrent_weights[0])[0]
    state_size = 2 * units if cell_type == "lstm" else units
    initial = ops.zeros((ops.shape(projected[0])[1], state_size), projected[0].dtype)
    lengths = ops.reshape(lengths, (-1, 1))

    def advance(state, frame):
        *projected_t, t = frame
        state = ops.where(t < lengths, step(projected_t, state, *recurrent_weights), state)
        return state, ((state[:, state_size - units:],) if sequence else ())

    times = ops.arange(ops.shape(projected[0])[0], dtype="int32")
    final, outputs = kernels.scan(advance, initial, (*projected, times))
    return final, (outputs[0] if sequence else None)


# Compiled on TensorFlow, so an eager call does not dispatch ops frame by frame.
scan_states = kernels.compiled(_scan_states, reduce_retracing=True, autograph=False)
if kernels.ON_TENSORFLOW:
    # In training, the same loop with its gradient written out: it also keeps
    # every frame's gate activations, which inference has no use for.
    from youtube8m_willow.layers import recurrent_gradient

    training_scan_states = kernels.compiled(recurrent_gradient.scan_states,
                                            reduce_retracing=True, autograph=False)
else:
    training_scan_states = scan_states


class _TF1Cell(keras.layers.Layer):
    """Shared cell API: usable alone in ``keras.layers.RNN`` or in ``StackedRNN``.

    A cell stores its TF1 kernels and splits them into the input rows (used
    by ``project_inputs``, once per sequence) and the state rows (used by the
    recurrent step).
    """

    cell_type = ""
    tf1_scope = ""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.input_size = None

    @property
    def output_size(self) -> int:
        return self.units

    def split_kernels(self) -> tuple[tuple, tuple]:
        """The kernels' input rows and state rows (the latter as the step
        function takes them). One split of each kernel: its gradient is one
        concatenation, where two slices would each add a zero-filled
        gradient of the whole kernel."""
        raise NotImplementedError

    def project_inputs(self, inputs, input_rows: tuple) -> tuple:
        """The input parts of the gates, ``[..., D] -> ([..., G_i], ...)``
        (one for the LSTM's four gates; the GRU's gates and candidate)."""
        raise NotImplementedError

    def output(self, states):
        """The cell's output ``h`` from its state(s) ``[..., S]``."""
        return states[..., -self.units:]

    def call(self, inputs, states, training=None):
        state = states[0] if isinstance(states, (list, tuple)) else states
        input_rows, state_rows = self.split_kernels()
        new_state = _STEPS[self.cell_type](
            self.project_inputs(inputs, input_rows), state, *state_rows)
        return self.output(new_state), [new_state]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.state_size), self.compute_dtype)]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@register
class BasicLSTMCell(_TF1Cell):
    """TF1 ``BasicLSTMCell(units, forget_bias, state_is_tuple=False)``.

    ``[i, j, f, o] = [x, h] W + b``; ``c' = c * sigmoid(f + forget_bias) +
    sigmoid(i) * tanh(j)``; ``h' = tanh(c') * sigmoid(o)``. The state is
    ``[c, h]`` concatenated (``2 * units``).

    Args:
        units: LSTM size.
        forget_bias: added to the forget gate inside the cell (TF1's 1.0).

    TF1 names (scope ``basic_lstm_cell``): ``kernel`` ``[D + units, 4 units]``
    (glorot uniform), ``bias`` ``[4 units]`` (zeros).

    Example:
        >>> rnn = keras.layers.RNN(BasicLSTMCell(8), return_state=True)
        >>> [tuple(t.shape) for t in rnn(np.ones([2, 5, 3], "float32"))]  # h, state [c, h]
        [(2, 8), (2, 16)]
    """

    cell_type = "lstm"
    tf1_scope = "basic_lstm_cell"

    def __init__(self, units: int, forget_bias: float = 1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.forget_bias = float(forget_bias)

    @property
    def state_size(self) -> int:
        return 2 * self.units

    def build(self, input_shape):
        self.input_size = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(self.input_size + self.units, 4 * self.units),
            initializer=glorot_uniform())
        self.bias = self.add_weight(name="bias", shape=(4 * self.units,), initializer="zeros")

    def split_kernels(self):
        input_rows, state_rows = ops.split(self.kernel, [self.input_size], axis=0)
        return (input_rows,), (state_rows,)

    def project_inputs(self, inputs, input_rows):
        offset = np.repeat([0.0, 0.0, self.forget_bias, 0.0], self.units)  # i, j, f, o
        bias = self.bias + ops.convert_to_tensor(offset, self.bias.dtype)
        return (_matmul_last(inputs, input_rows[0]) + bias,)

    def tf1_weights(self):
        return {"kernel": self.kernel, "bias": self.bias}

    def get_config(self):
        return {**super().get_config(), "forget_bias": self.forget_bias}


@register
class GRUCell(_TF1Cell):
    """TF1 ``GRUCell(units)``.

    ``[r, z] = sigmoid([x, h] W_g + b_g)``; ``c = tanh([x, r * h] W_c + b_c)``;
    ``h' = z * h + (1 - z) * c``. The state is ``h`` (``units``).

    TF1 names (scope ``gru_cell``): ``gates/kernel`` ``[D + units, 2 units]``,
    ``gates/bias`` (ones), ``candidate/kernel`` ``[D + units, units]``,
    ``candidate/bias`` (zeros); kernels glorot uniform.

    Example:
        >>> rnn = keras.layers.RNN(GRUCell(8), return_state=True)
        >>> [tuple(t.shape) for t in rnn(np.ones([2, 5, 3], "float32"))]
        [(2, 8), (2, 8)]
    """

    cell_type = "gru"
    tf1_scope = "gru_cell"

    @property
    def state_size(self) -> int:
        return self.units

    def build(self, input_shape):
        self.input_size = int(input_shape[-1])
        rows = self.input_size + self.units
        self.gates_kernel = self.add_weight(
            name="gates_kernel", shape=(rows, 2 * self.units), initializer=glorot_uniform())
        self.gates_bias = self.add_weight(
            name="gates_bias", shape=(2 * self.units,), initializer="ones")
        self.candidate_kernel = self.add_weight(
            name="candidate_kernel", shape=(rows, self.units), initializer=glorot_uniform())
        self.candidate_bias = self.add_weight(
            name="candidate_bias", shape=(self.units,), initializer="zeros")

    def split_kernels(self):
        gates_inputs, gates_state = ops.split(self.gates_kernel, [self.input_size], axis=0)
        candidate_inputs, candidate_state = ops.split(self.candidate_kernel, [self.input_size],
                                                      axis=0)
        return (gates_inputs, candidate_inputs), (gates_state, candidate_state)

    def project_inputs(self, inputs, input_rows):
        # Two matmuls, not one of the concatenated kernels: the loop reads
        # each part whole, and its gradient comes in the same two parts.
        gates_rows, candidate_rows = input_rows
        return (_matmul_last(inputs, gates_rows) + self.gates_bias,
                _matmul_last(inputs, candidate_rows) + self.candidate_bias)

    def tf1_weights(self):
        return {"gates/kernel": self.gates_kernel, "gates/bias": self.gates_bias,
                "candidate/kernel": self.candidate_kernel,
                "candidate/bias": self.candidate_bias}


_CELLS = {"lstm": BasicLSTMCell, "gru": GRUCell}


def _matmul_last(inputs, kernel):
    """``inputs @ kernel`` over the last axis, for inputs of any rank."""
    if len(inputs.shape) == 2:
        return ops.matmul(inputs, kernel)
    # The kernel's rows give the size: a shape-relaxed trace may not know it.
    outputs = ops.matmul(ops.reshape(inputs, (-1, kernel.shape[0])), kernel)
    return ops.reshape(outputs, (*ops.shape(inputs)[:-1], kernel.shape[-1]))


@register
class StackedRNN(keras.layers.Layer):
    """TF1 ``dynamic_rnn`` over ``MultiRNNCell([...], state_is_tuple=False)``:
    the final state of every layer, concatenated.

    Each video runs for ``min(sequence_length, T)`` frames (TF1's loop never
    went past the time dimension); its state then stays frozen, and a length
    of 0 gives the zero state. No output sequence is returned.

    Args:
        cell_type: ``"lstm"`` (BasicLSTMCell) or ``"gru"`` (GRUCell).
        units: size of every cell.
        num_layers: number of stacked cells.
        forget_bias: LSTM forget-gate bias (ignored for GRU).

    Input: ``inputs`` ``[B, T, D]`` and optional ``sequence_length`` ``[B]``
    (int, default ``T``).
    Output: ``[B, num_layers * S]``: LSTM ``[c1, h1, c2, h2, ...]``
    (``S = 2 units``), GRU ``[h1, h2, ...]`` (``S = units``).
    TF1 names, relative to ``.../multi_rnn_cell``:
    ``cell_<i>/basic_lstm_cell/{kernel,bias}`` or
    ``cell_<i>/gru_cell/{gates,candidate}/{kernel,bias}``.

    Example:
        >>> tuple(StackedRNN("lstm", 8, 2)(np.ones([3, 5, 4], "float32"),
        ...                                np.array([5, 2, 0])).shape)  # [c1, h1, c2, h2]
        (3, 32)
    """

    def __init__(self, cell_type: str, units: int, num_layers: int = 1,
                 forget_bias: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if cell_type not in CELL_TYPES:
            raise ValueError(f"unknown cell_type {cell_type!r}; valid: {', '.join(CELL_TYPES)}")
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.cell_type = cell_type
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.forget_bias = float(forget_bias)
        options = {"forget_bias": self.forget_bias} if cell_type == "lstm" else {}
        self.cells = [_CELLS[cell_type](self.units, name=f"cell_{i}", **options)
                      for i in range(self.num_layers)]

    def build(self, inputs_shape, sequence_length_shape=None):
        size = int(inputs_shape[-1])
        for cell in self.cells:
            cell.build((None, size))
            size = cell.output_size

    def call(self, inputs, sequence_length=None, training=None):
        sequence = ops.transpose(inputs, (1, 0, 2))  # time-major [T, B, D]
        steps, batch = ops.shape(sequence)[0], ops.shape(sequence)[1]
        if sequence_length is None:
            lengths = ops.full((batch,), steps, dtype="int32")
        else:
            lengths = ops.clip(ops.cast(sequence_length, "int32"), 0, steps)
        finals = []
        scan = training_scan_states if training else scan_states
        for number, cell in enumerate(self.cells, start=1):
            input_rows, state_rows = cell.split_kernels()
            # The last layer's outputs feed nothing: the scan returns none.
            final, sequence = scan(self.cell_type, cell.project_inputs(sequence, input_rows),
                                   lengths, state_rows, number < self.num_layers)
            # A shape-relaxed trace of the scan forgets the sizes; restore them,
            # since the layers after this one build from them.
            finals.append(ops.reshape(final, (batch, cell.state_size)))
            if sequence is not None:
                sequence = ops.reshape(sequence, (steps, batch, cell.units))
        return ops.concatenate(finals, axis=-1)

    def compute_output_shape(self, inputs_shape, sequence_length_shape=None):
        return (inputs_shape[0], self.num_layers * self.cells[0].state_size)

    def tf1_weights(self):
        return {f"cell_{i}/{cell.tf1_scope}/{name}": var
                for i, cell in enumerate(self.cells)
                for name, var in cell.tf1_weights().items()}

    def get_config(self):
        return {**super().get_config(), "cell_type": self.cell_type, "units": self.units,
                "num_layers": self.num_layers, "forget_bias": self.forget_bias}
