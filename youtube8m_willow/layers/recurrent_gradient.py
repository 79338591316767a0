"""The recurrent scan on TensorFlow, with its gradient written out.

``recurrent._scan_states`` runs a cell over a sequence; TensorFlow's own
gradient of that loop adds each frame's recurrent-weight gradient inside the
backward loop: a ``[units, gates]`` matmul with only the batch as its inner
dimension, and a sum of that size, every frame (for WILLOW's LSTM 2x1024,
150 frames a layer, most of the step's time). Here the backward
loop carries only what must be sequential (the state's gradient, one
``d_gates @ W^T`` a frame) and returns every frame's gate gradient; each
recurrent weight's gradient is then one matmul over all frames at once,
``h_{t-1}^T @ d_gates`` (the LSTM's outputs but the last, the GRU's
starting states).

What the forward loop keeps for the backward one is chosen for memory (for
the GRU 2x1200 at batch 128, each ``[T, B, units]`` tensor is 184 MB): the
state each frame starts from (the LSTM's ``c``, the GRU's ``h``), the
outputs ``h`` and the gate activations, each its own tensor, so that no
backward step slices or shifts a copy of them. The LSTM recomputes a
frame's new ``c`` from its start and its gates. The final state is an output
of its own: its gradient starts the backward loop, instead of a ``[T, B, S]``
gradient that is zero but for the last frame. The last layer returns no
output sequence, so no zero gradient is made for it (the GRU keeps none
either; the LSTM's weight gradient reads its outputs).

The math is ``recurrent.lstm_step`` / ``gru_step`` with the frozen state of a
video past its last frame; ``tests/test_recurrent.py`` checks these
gradients against TensorFlow's own on the same loop.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.layers import kernels


def scan_states(cell_type: str, projected: tuple, lengths, recurrent_weights,
                sequence: bool = True):
    """``recurrent._scan_states`` on TensorFlow: ``(final state [B, S], the
    output h of every frame [T, B, units], or None without sequence)`` of
    the cell over time-major ``projected`` (the cell's input parts, each
    ``[T, B, G_i]``), a video's state frozen once ``t >= lengths[b]``;
    differentiable in ``projected`` and the recurrent weights."""
    cell = _CELLS[cell_type]
    steps = tf.shape(projected[0])[0]
    valid = tf.range(steps)[:, None, None] < tf.reshape(lengths, (1, -1, 1))
    parts = len(projected)

    @tf.custom_gradient
    def run(*inputs):
        projected, weights = inputs[:parts], inputs[parts:]
        final, outputs, saved = cell.forward(projected, valid, weights, sequence)

        def gradient(d_final, *d_outputs):
            d_outputs = d_outputs[0] if sequence else None
            d_projected = cell.backward(d_final, d_outputs, saved, valid, weights)
            # After the loop, not as soon as the forward pass allows.
            with tf.control_dependencies(d_projected):
                d_weights = cell.weight_gradients(saved, d_projected)
            return (*d_projected, *d_weights)

        return ((final, outputs) if sequence else final), gradient

    results = run(*projected, *recurrent_weights)
    return tuple(results) if sequence else (results, None)


def _matmul_over_frames(inputs, gradients):
    """``sum_t inputs[t]^T @ gradients[t]``: ``[T, B, K]``, ``[T, B, N]`` -> ``[K, N]``."""
    return tf.matmul(tf.reshape(inputs, (-1, tf.shape(inputs)[-1])),
                     tf.reshape(gradients, (-1, tf.shape(gradients)[-1])), transpose_a=True)


def _on_valid(valid, gradient):
    """``gradient`` on the rows of videos still running, zero on frozen ones."""
    return tf.where(valid, gradient, tf.zeros_like(gradient))


def _with_outputs(d_outputs, elements):
    """The backward loop's elements, led by the outputs' gradient if any."""
    return elements if d_outputs is None else (d_outputs, *elements)


def _split_outputs(d_outputs, frame):
    """``(the output's gradient at this frame or None, the other elements)``."""
    return (None, frame) if d_outputs is None else (frame[0], frame[1:])


class _LSTM:
    """BasicLSTMCell: state ``[c, h]``; gates ``i, j, f, o`` (TF1 order)."""

    @staticmethod
    def forward(projected, valid, weights, sequence):
        """The final state ``[c, h]``, every frame's ``h`` and what the
        backward pass reads: every frame's starting ``c``, its outputs ``h``
        (kept with or without ``sequence``) and its gate activations
        ``[T, B, 4U]``."""
        (kernel,), (projected,) = weights, projected
        batch, units = tf.shape(projected)[1], tf.shape(kernel)[0]

        def step(carry, frame):
            c, h = carry
            projected_t, valid_t = frame
            i, j, f, o = tf.split(projected_t + tf.matmul(h, kernel), 4, axis=-1)
            si, tj, sf, so = tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f), tf.sigmoid(o)
            new_c = c * sf + si * tj
            new_c, new_h = tf.where(valid_t, new_c, c), tf.where(valid_t, tf.tanh(new_c) * so, h)
            return (new_c, new_h), (c, new_h, tf.concat([si, tj, sf, so], axis=-1))

        zeros = tf.zeros((batch, units), projected.dtype)
        (c, h), (starts, outputs, activations) = kernels.scan(step, (zeros, zeros),
                                                               (projected, valid))
        return tf.concat([c, h], axis=-1), outputs, (starts, outputs, activations)

    @staticmethod
    def backward(d_final, d_outputs, saved, valid, weights):
        """The gradient of every frame's gates (before their activations), ``([T, B, 4U],)``."""
        kernel_t = tf.transpose(weights[0])  # once: a transposed operand is slower each frame
        starts, _, activations = saved

        def step(carry, frame):
            dc, dh = carry
            d_output_t, (c_before, activations_t, valid_t) = _split_outputs(d_outputs, frame)
            if d_output_t is not None:
                dh = dh + d_output_t
            si, tj, sf, so = tf.split(activations_t, 4, axis=-1)
            tanh_c = tf.tanh(c_before * sf + si * tj)  # the frame's new c, as forward made it
            dc_new = dc + dh * so * (1.0 - tanh_c * tanh_c)
            d_gates = _on_valid(valid_t, tf.concat(
                [dc_new * tj * si * (1.0 - si), dc_new * si * (1.0 - tj * tj),
                 dc_new * c_before * sf * (1.0 - sf), dh * tanh_c * so * (1.0 - so)], axis=-1))
            dc = tf.where(valid_t, dc_new * sf, dc)
            dh = tf.where(valid_t, tf.matmul(d_gates, kernel_t), dh)
            return (dc, dh), d_gates

        initial = tuple(tf.split(d_final, 2, axis=-1))
        elements = _with_outputs(d_outputs, (starts, activations, valid))
        return (kernels.scan(step, initial, elements, reverse=True)[1],)

    @staticmethod
    def weight_gradients(saved, d_projected):
        """``sum_t h_{t-1}^T d_gates_t``: every output but the last against
        every frame's gate gradient but the first (``h_{-1} = 0``), both
        slices along the first axis, which copy nothing."""
        _, outputs, _ = saved
        (d_gates,) = d_projected
        return (_matmul_over_frames(outputs[:-1], d_gates[1:]),)


class _GRU:
    """GRUCell: state ``h``; gates ``r, u``, then the candidate from ``r * h``."""

    @staticmethod
    def forward(projected, valid, weights, sequence):
        """The final state ``h``, every frame's ``h`` (None without
        ``sequence``) and what the backward pass reads: every frame's
        starting ``h``, ``r``, ``u`` and candidate."""
        gates_kernel, candidate_kernel = weights
        gates_projected, candidate_projected = projected
        batch, units = tf.shape(gates_projected)[1], tf.shape(candidate_kernel)[0]

        def step(state, frame):
            gates_t, candidate_t, valid_t = frame
            reset, update = tf.split(tf.sigmoid(gates_t + tf.matmul(state, gates_kernel)), 2,
                                     axis=-1)
            candidate = tf.tanh(candidate_t + tf.matmul(reset * state, candidate_kernel))
            new_state = tf.where(valid_t, update * state + (1.0 - update) * candidate, state)
            kept = (state, reset, update, candidate)
            return new_state, ((new_state,) if sequence else ()) + kept

        final, (*outputs, starts, reset, update, candidate) = kernels.scan(
            step, tf.zeros((batch, units), gates_projected.dtype),
            (gates_projected, candidate_projected, valid))
        return final, (outputs[0] if sequence else None), (starts, reset, update, candidate)

    @staticmethod
    def backward(d_final, d_outputs, saved, valid, weights):
        """The gradient of every frame's ``projected`` (gates and candidate
        before their activations), ``([T, B, 2U], [T, B, U])``."""
        gates_kernel_t, candidate_kernel_t = (tf.transpose(w) for w in weights)

        def step(d_carry, frame):
            d_output_t, (h_before, reset, update, candidate, valid_t) = _split_outputs(
                d_outputs, frame)
            dh = d_carry if d_output_t is None else d_carry + d_output_t
            d_candidate = _on_valid(valid_t, dh * (1.0 - update) * (1.0 - candidate * candidate))
            d_reset_state = tf.matmul(d_candidate, candidate_kernel_t)
            d_gates = _on_valid(valid_t, tf.concat(
                [d_reset_state * h_before * reset * (1.0 - reset),
                 dh * (h_before - candidate) * update * (1.0 - update)], axis=-1))
            d_before = (dh * update + d_reset_state * reset
                        + tf.matmul(d_gates, gates_kernel_t))
            return tf.where(valid_t, d_before, dh), (d_gates, d_candidate)

        elements = _with_outputs(d_outputs, (*saved, valid))
        return kernels.scan(step, d_final, elements, reverse=True)[1]

    @staticmethod
    def weight_gradients(saved, d_projected):
        starts, reset, _, _ = saved
        d_gates, d_candidate = d_projected
        return (_matmul_over_frames(starts, d_gates),
                _matmul_over_frames(reset * starts, d_candidate))


_CELLS = {"lstm": _LSTM, "gru": _GRU}
