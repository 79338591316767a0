"""The recurrent scan on TensorFlow, with its gradient written out.

``recurrent._scan_states`` runs a cell over a sequence; TensorFlow's own
gradient of that loop adds each frame's recurrent-weight gradient inside the
backward loop: a ``[units, gates]`` matmul with only the batch as its inner
dimension, and a sum of that size, every frame (for WILLOW's LSTM 2x1024,
150 frames a layer, most of the step's time). Here the backward
loop carries only what must be sequential (the state's gradient, one
``d_gates @ W^T`` a frame) and returns every frame's gate gradient; each
recurrent weight's gradient is then one matmul over all frames at once,
``states_before^T @ d_gates``. The forward loop keeps what the backward one
reads: the gate activations of every frame (and the GRU's candidate), which
is why ``recurrent`` runs it in training only.

The math is ``recurrent.lstm_step`` / ``gru_step`` with the frozen state of a
video past its last frame; ``tests/test_recurrent.py`` checks these
gradients against TensorFlow's own on the same loop.
"""

from __future__ import annotations

import tensorflow as tf

from youtube8m_willow.layers import kernels


def scan_states(cell_type: str, projected, lengths, recurrent_weights):
    """``recurrent._scan_states`` on TensorFlow: the state after every frame
    ``[T, B, S]`` of time-major ``projected`` ``[T, B, G]``, a video's state
    frozen once ``t >= lengths[b]``; differentiable in ``projected`` and the
    recurrent weights."""
    cell = _CELLS[cell_type]
    valid = tf.range(tf.shape(projected)[0])[:, None, None] < tf.reshape(lengths, (1, -1, 1))

    @tf.custom_gradient
    def run(projected, *weights):
        states, saved = cell.forward(projected, valid, weights)

        def gradient(d_states):
            before = _states_before(states)
            d_projected = cell.backward(d_states, before, states, saved, valid, weights)
            return (d_projected, *cell.weight_gradients(before, saved, d_projected, weights))

        return states, gradient

    return run(projected, *recurrent_weights)


def _states_before(states):
    """The state each frame starts from: zeros, then every state but the last."""
    return tf.concat([tf.zeros_like(states[:1]), states[:-1]], axis=0)


def _matmul_over_frames(inputs, gradients):
    """``sum_t inputs[t]^T @ gradients[t]``: ``[T, B, K]``, ``[T, B, N]`` -> ``[K, N]``."""
    return tf.matmul(tf.reshape(inputs, (-1, tf.shape(inputs)[-1])),
                     tf.reshape(gradients, (-1, tf.shape(gradients)[-1])), transpose_a=True)


def _on_valid(valid, gradient):
    """``gradient`` on the rows of videos still running, zero on frozen ones."""
    return tf.where(valid, gradient, tf.zeros_like(gradient))


class _LSTM:
    """BasicLSTMCell: state ``[c, h]``; gates ``i, j, f, o`` (TF1 order)."""

    @staticmethod
    def forward(projected, valid, weights):
        """States ``[T, B, 2U]`` and the gate activations ``[T, B, 4U]``."""
        (kernel,) = weights
        batch, units = tf.shape(projected)[1], tf.shape(kernel)[0]

        def step(carry, frame):
            state, _ = carry
            projected_t, valid_t = frame
            c, h = tf.split(state, 2, axis=-1)
            i, j, f, o = tf.split(projected_t + tf.matmul(h, kernel), 4, axis=-1)
            si, tj, sf, so = tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f), tf.sigmoid(o)
            new_c = c * sf + si * tj
            new_state = tf.concat([new_c, tf.tanh(new_c) * so], axis=-1)
            return tf.where(valid_t, new_state, state), tf.concat([si, tj, sf, so], axis=-1)

        zeros = tf.zeros((batch, 2 * units), projected.dtype)
        initial = (zeros, tf.zeros((batch, 4 * units), projected.dtype))
        return kernels.scan(step, initial, (projected, valid))

    @staticmethod
    def backward(d_states, before, states, activations, valid, weights):
        """The gradient of every frame's gates (before their activations), ``[T, B, 4U]``."""
        kernel_t = tf.transpose(weights[0])  # once: a transposed operand is slower each frame

        def step(carry, frame):
            d_carry, _ = carry
            d_state_t, state_before, state_t, activations_t, valid_t = frame
            dc, dh = tf.split(d_carry + d_state_t, 2, axis=-1)
            c_before, _ = tf.split(state_before, 2, axis=-1)
            c_t, _ = tf.split(state_t, 2, axis=-1)
            si, tj, sf, so = tf.split(activations_t, 4, axis=-1)
            tanh_c = tf.tanh(c_t)
            dc = dc + dh * so * (1.0 - tanh_c * tanh_c)
            d_gates = tf.concat([dc * tj * si * (1.0 - si), dc * si * (1.0 - tj * tj),
                                 dc * c_before * sf * (1.0 - sf),
                                 dh * tanh_c * so * (1.0 - so)], axis=-1)
            d_gates = _on_valid(valid_t, d_gates)
            d_before = tf.concat([dc * sf, tf.matmul(d_gates, kernel_t)], axis=-1)
            return tf.where(valid_t, d_before, d_carry + d_state_t), d_gates

        initial = (tf.zeros_like(d_states[0]), tf.zeros_like(activations[0]))
        return kernels.scan(step, initial, (d_states, before, states, activations, valid),
                            reverse=True)[1]

    @staticmethod
    def weight_gradients(before, activations, d_gates, weights):
        _, h_before = tf.split(before, 2, axis=-1)
        return (_matmul_over_frames(h_before, d_gates),)


class _GRU:
    """GRUCell: state ``h``; gates ``r, u``, then the candidate from ``r * h``."""

    @staticmethod
    def forward(projected, valid, weights):
        """States ``[T, B, U]`` and ``[r, u, candidate]`` ``[T, B, 3U]``."""
        gates_kernel, candidate_kernel = weights
        batch, units = tf.shape(projected)[1], tf.shape(candidate_kernel)[0]

        def step(carry, frame):
            state, _ = carry
            projected_t, valid_t = frame
            gates_input, candidate_input = tf.split(projected_t, [2 * units, units], axis=-1)
            gates = tf.sigmoid(gates_input + tf.matmul(state, gates_kernel))
            reset, update = tf.split(gates, 2, axis=-1)
            candidate = tf.tanh(candidate_input + tf.matmul(reset * state, candidate_kernel))
            new_state = update * state + (1.0 - update) * candidate
            return tf.where(valid_t, new_state, state), tf.concat([gates, candidate], axis=-1)

        initial = (tf.zeros((batch, units), projected.dtype),
                   tf.zeros((batch, 3 * units), projected.dtype))
        return kernels.scan(step, initial, (projected, valid))

    @staticmethod
    def backward(d_states, before, states, saved, valid, weights):
        """The gradient of every frame's ``projected`` (gates and candidate
        before their activations), ``[T, B, 3U]``."""
        gates_kernel_t, candidate_kernel_t = (tf.transpose(w) for w in weights)

        def step(carry, frame):
            d_carry, _ = carry
            d_state_t, h_before, saved_t, valid_t = frame
            dh = d_carry + d_state_t
            reset, update, candidate = tf.split(saved_t, 3, axis=-1)
            d_candidate = _on_valid(valid_t, dh * (1.0 - update) * (1.0 - candidate * candidate))
            d_reset_state = tf.matmul(d_candidate, candidate_kernel_t)
            d_gates = _on_valid(valid_t, tf.concat(
                [d_reset_state * h_before * reset * (1.0 - reset),
                 dh * (h_before - candidate) * update * (1.0 - update)], axis=-1))
            d_before = (dh * update + d_reset_state * reset
                        + tf.matmul(d_gates, gates_kernel_t))
            return tf.where(valid_t, d_before, dh), tf.concat([d_gates, d_candidate], axis=-1)

        initial = (tf.zeros_like(d_states[0]), tf.zeros_like(saved[0]))
        return kernels.scan(step, initial, (d_states, before, saved, valid), reverse=True)[1]

    @staticmethod
    def weight_gradients(before, saved, d_projected, weights):
        units = tf.shape(weights[1])[0]
        d_gates, d_candidate = tf.split(d_projected, [2 * units, units], axis=-1)
        reset = saved[..., :units]  # the reset gate of every frame
        return (_matmul_over_frames(before, d_gates),
                _matmul_over_frames(reset * before, d_candidate))


_CELLS = {"lstm": _LSTM, "gru": _GRU}
