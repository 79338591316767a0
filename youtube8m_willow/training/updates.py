"""The parameter update of one training step: per-tensor clipping, the
original's kernels (fused Adam; the other TF1 optimizers in
``training.tf1_optimizers``), and dynamic loss scaling for float16.

Clipping happens here rather than in the Keras optimizer (``clipnorm``)
because under tf.distribute Keras clips each replica's gradient before
summing them; the original clipped the gradient of the whole batch.

Adam runs TF1's ``ApplyAdam`` kernel (``tf.raw_ops.ResourceApplyAdam``), the
update the original trained with, on the Keras optimizer's own slots
(``_momentums``/``_velocities``) and step counter, so checkpoints keep their
layout. One kernel per variable reads the gradient once and updates the
weight and both slots in place: Keras' update creates several temporaries
the size of each weight (333M parameters for Gated NetVLAD). The other TF1
optimizers run their TF1 kernels the same way (``apply_in_place``).
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from youtube8m_willow.training import bfloat16_adam, factored_adam, penalized_adam
from youtube8m_willow.training.gradient_forms import GradientForm
from youtube8m_willow.training.tf1_optimizers import TF1Optimizer, handle


# Gradients at least this large are computed last (see computed_last),
# multiplied by their clipping scale only when it is below 1 (clip_by_norm),
# applied from their two factors where they are one matmul (clip_each,
# factored_adam) and else, under bfloat16, from their bfloat16 tensor
# (bfloat16_adam).
LARGE_GRADIENT_ELEMENTS = 1 << 24


def clip_by_norm(gradient: tf.Tensor, clip_norm: float,
                 large: int = LARGE_GRADIENT_ELEMENTS) -> tf.Tensor:
    """``tf.clip_by_norm(gradient, clip_norm)`` without its squared copy.

    The norm comes from ``l2_loss`` (one reduction kernel): ``g * c / max(|g|, c)``.
    In a graph, a gradient of at least ``large`` elements that is within the
    norm is passed on as it is (its scale is exactly 1): one pass over it
    fewer (Gated NetVLAD's hidden layer: 1.1 GB).
    """
    norm = tf.sqrt(2.0 * tf.nn.l2_loss(gradient))
    scale = clip_norm / tf.maximum(norm, clip_norm)
    if tf.executing_eagerly() or (gradient.shape.num_elements() or 0) < large:
        return gradient * scale
    return tf.cond(norm > clip_norm, lambda: gradient * scale, lambda: tf.identity(gradient))


def clip_each(gradients: Sequence[tf.Tensor], clip_norm: float,
              adam_update: bool = False) -> list:
    """Each gradient tensor clipped to ``clip_norm`` on its own (0: none).

    With ``adam_update`` (the gradients go to ``apply_adam``), a large
    gradient comes back in a form its update reads instead of a clipped
    float32 copy, with its clipping scale: an L2-penalized weight's as the
    parts of ``g + c * w`` (``penalized_adam.PenalizedGradient``, from 1M
    elements); a matmul gradient ``x^T g`` (or its float32 cast under
    bfloat16) as its factors (``factored_adam.FactoredGradient``); another
    float32 cast of a bfloat16 gradient as that bfloat16 tensor
    (``bfloat16_adam.Bfloat16Gradient``).
    """
    def clip(gradient):
        if adam_update:
            penalized_parts = penalized_adam.parts(gradient)
            if penalized_parts is not None:
                return penalized_adam.clipped(*penalized_parts, clip_norm)
            matmul_factors = factored_adam.factors(gradient, LARGE_GRADIENT_ELEMENTS)
            if matmul_factors is not None:
                return factored_adam.clipped(*matmul_factors, clip_norm)
            source = bfloat16_adam.bfloat16_source(gradient, LARGE_GRADIENT_ELEMENTS)
            if source is not None:
                return bfloat16_adam.clipped(source, clip_norm)
        return clip_by_norm(gradient, clip_norm) if clip_norm > 0 else gradient

    return [clip(g) for g in gradients]


def tensors_of(gradients: Sequence) -> list[tf.Tensor]:
    """The tensors an update of ``gradients`` (of ``clip_each``) reads."""
    tensors = []
    for gradient in gradients:
        if isinstance(gradient, GradientForm):
            tensors += gradient.tensors()
        elif gradient is not None:
            tensors.append(gradient)
    return tensors


def computed_last(gradients: Sequence[tf.Tensor],
                  min_elements: int = LARGE_GRADIENT_ELEMENTS) -> list[tf.Tensor]:
    """The gradients, with those of the largest weights made to wait for all
    the others (graph mode; no effect eagerly).

    The backward pass can compute a weight's gradient as soon as its layer's
    upstream gradient exists; for Gated NetVLAD's hidden layer (1.1 GB of
    gradient) that is while every pooling activation is still held. Computed
    last, it reuses their memory: a lower peak, the same values. What waits
    is the gradient's op and the large tensors that lead to it
    (``_own_large_ops``): for a weight with an L2 term, the matmul's gradient
    as well as the compiled pass that adds the term (``training.l2_gradient``;
    before it, the tape's float32 cast, ``lambda * w`` and their sum), which
    would otherwise be computed early and held through the rest of the
    backward pass (WILLOW's LSTM under bfloat16: its MoE's, about 1 GB).
    """
    if tf.executing_eagerly():
        return list(gradients)
    large, others = [], []
    for gradient in gradients:
        if gradient is not None:
            size = gradient.shape.num_elements() or 0
            (large if size >= min_elements else others).append(gradient)
    if not large or not others:
        return list(gradients)
    other_ops = [gradient.op for gradient in others]
    needed_by_others = _ancestors(other_ops)
    for gradient in large:
        for op in _own_large_ops(gradient, needed_by_others, min_elements):
            op._add_control_inputs(other_ops)  # pylint: disable=protected-access
    return list(gradients)


def _ancestors(ops) -> set:
    """Every op that ``ops`` depend on (through inputs and control inputs), and ``ops``."""
    seen, stack = set(ops), list(ops)
    while stack:
        op = stack.pop()
        for parent in [tensor.op for tensor in op.inputs] + list(op.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _own_large_ops(gradient: tf.Tensor, needed_by_others: set, min_elements: int) -> list:
    """The op of ``gradient`` and the ops reached from it through tensors of at
    least ``min_elements`` (statically known), leaving out every op in
    ``needed_by_others`` (so that waiting for the other gradients makes no
    cycle) and every stateful op or input (variable reads, placeholders,
    constants: nothing is computed there, and the function's automatic
    control dependencies order stateful ops)."""
    found, seen, stack = [], set(), [gradient]
    while stack:
        op = stack.pop().op
        if op in seen:
            continue
        seen.add(op)
        if op in needed_by_others or _is_input_or_stateful(op):
            continue
        found.append(op)
        stack += [tensor for tensor in op.inputs
                  if (tensor.shape.num_elements() or 0) >= min_elements]
    return found


def _is_input_or_stateful(op) -> bool:
    """Whether ``op`` is an input (placeholder, constant) or stateful (a
    variable read, a stateful call), which the walk leaves alone."""
    return op.type in ("Placeholder", "Const") or op._is_stateful  # pylint: disable=protected-access


def supports_fused_adam(optimizer) -> bool:
    return type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad


def supports_in_place(optimizer) -> bool:
    """Whether ``apply_in_place`` can run this optimizer's update (TF1 kernels
    on each replica's own copies)."""
    return supports_fused_adam(optimizer) or isinstance(optimizer, TF1Optimizer)


def apply_in_place(optimizer, gradients: Sequence[tf.Tensor], variables: Sequence) -> None:
    """One update with the original's kernel: fused Adam or a TF1Optimizer."""
    if isinstance(optimizer, TF1Optimizer):
        optimizer.apply_in_place(gradients, variables)
    else:
        apply_adam(optimizer, gradients, variables)


def apply_adam(optimizer: keras.optimizers.Adam, gradients: Sequence[tf.Tensor],
               variables: Sequence) -> None:
    """One Adam step with TF1's kernel, then ``optimizer.iterations += 1``.

    ``lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``, ``t = iterations + 1``,
    ``m += (g - m)(1 - beta1)``, ``v += (g^2 - v)(1 - beta2)``,
    ``w -= lr_t m / (sqrt(v) + epsilon)``: Keras' Adam in one pass. In a
    replica context each replica updates its own copy with the same values.
    A ``gradient_forms.GradientForm`` (of ``clip_each``) applies itself from
    its parts: a ``bfloat16_adam.Bfloat16Gradient`` from its bfloat16 tensor,
    by the same formula; a ``factored_adam.FactoredGradient`` a block of rows
    at a time, and a ``penalized_adam.PenalizedGradient`` in one pass, by
    TF1's.
    """
    step = tf.cast(optimizer.iterations + 1, tf.float32)
    beta_1 = tf.constant(optimizer.beta_1, tf.float32)
    beta_2 = tf.constant(optimizer.beta_2, tf.float32)
    hyper = dict(beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                 lr=tf.cast(optimizer.learning_rate, tf.float32), beta1=beta_1, beta2=beta_2,
                 epsilon=tf.constant(optimizer.epsilon, tf.float32))
    for variable, gradient in zip(variables, gradients):
        index = optimizer._get_variable_index(variable)
        slots = dict(var=handle(variable), m=handle(optimizer._momentums[index]),
                     v=handle(optimizer._velocities[index]))
        if isinstance(gradient, GradientForm):
            gradient.apply(**slots, **hyper)
        else:
            tf.raw_ops.ResourceApplyAdam(grad=tf.cast(gradient, tf.float32), use_locking=False,
                                         **slots, **hyper)
    optimizer.iterations.assign_add(1)


class DynamicLossScale:
    """float16 loss scaling: the loss is multiplied by ``scale`` before the
    gradient; a step whose gradients overflow is skipped and halves the scale;
    ``growth_interval`` good steps in a row double it.

    Create it inside the strategy's scope. In a replica context the decision
    is the same on every replica (it is taken on all-reduced gradients).
    """

    def __init__(self, initial_scale: float = 2.0 ** 15, growth_interval: int = 2000):
        self.growth_interval = int(growth_interval)
        self.scale = tf.Variable(float(initial_scale), trainable=False, name="loss_scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")

    def scaled(self, loss: tf.Tensor) -> tf.Tensor:
        return loss * tf.cast(self.scale, loss.dtype)

    def unscaled(self, gradients: Sequence[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor]:
        """(gradients / scale, whether they are all finite)."""
        inverse = 1.0 / self.scale
        gradients = [tf.cast(g, tf.float32) * inverse for g in gradients]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        return gradients, finite

    def update(self, finite: tf.Tensor) -> None:
        """Grows or shrinks the scale after a step."""
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
        shrunk = tf.maximum(self.scale * 0.5, 1.0)
        self.scale.assign(tf.where(grow, self.scale * 2.0,
                                   tf.where(finite, self.scale, shrunk)))
        self.good_steps.assign(tf.where(finite & ~grow, self.good_steps + 1, 0))
