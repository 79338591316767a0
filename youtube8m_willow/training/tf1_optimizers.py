"""The TF1 optimizers the original could build, on their own TF1 kernels.

The original looked ``--optimizer`` up in ``tf.train`` and called it with the
learning rate alone, so every optimizer ran with its TF1 defaults. Keras'
optimizers differ from TF1's in initial slot values and in where epsilon
goes (RMSProp: TF1 adds it inside the square root; Adagrad: TF1 has none and
starts its accumulator at 0.1), so a checkpoint of the original would not
continue exactly on them. Here each optimizer is one row of ``RULES``: its
TF1 slots (suffix of the slot variable's name ``<var>/<suffix>``, in TF1's
creation order, and initial value), its TF1 defaults and its kernel
(``tf.raw_ops.ResourceApply*``, the op TF1's ``apply_gradients`` ran).

``TF1Optimizer`` is a Keras optimizer that holds those slots; the trainer
runs the kernels in place (``apply_in_place``, as the fused Adam path does),
``keras``' own ``apply`` works too. ``optimizer_state`` saves and restores
the slots under their TF1 names (``slots_of``), so a resumed run and an
original checkpoint continue with the state they stopped with.

Adam stays Keras' Adam with TF1's fused kernel (``training.updates``): its
slots ``<var>/Adam`` and ``<var>/Adam_1`` are Keras' ``_momentums`` and
``_velocities``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import keras
import tensorflow as tf

from youtube8m_willow.layers.core import register

ADAM_SLOTS = ("Adam", "Adam_1")


@dataclasses.dataclass(frozen=True)
class Slot:
    """A TF1 slot variable: ``<var>/<suffix>``, starting at ``initial``."""

    suffix: str
    initial: float = 0.0


@dataclasses.dataclass(frozen=True)
class Rule:
    """One TF1 optimizer: slots, TF1 default hyperparameters and its kernel.

    ``kernel(var, slots, grad, lr, hyper)`` takes resource handles for the
    variable and its slots (in ``slots`` order), float32 tensors otherwise.
    """

    name: str
    slots: tuple[Slot, ...]
    kernel: Callable
    hyper: Mapping[str, float] = dataclasses.field(default_factory=dict)


def _gradient_descent(var, slots, grad, lr, hyper):
    tf.raw_ops.ResourceApplyGradientDescent(var=var, alpha=lr, delta=grad)


def _momentum(var, slots, grad, lr, hyper):
    # accum = momentum * accum + g; var -= lr * accum
    tf.raw_ops.ResourceApplyMomentum(var=var, accum=slots[0], lr=lr, grad=grad,
                                     momentum=hyper["momentum"], use_nesterov=False)


def _adagrad(var, slots, grad, lr, hyper):
    # accum += g^2; var -= lr * g / sqrt(accum)  (no epsilon)
    tf.raw_ops.ResourceApplyAdagrad(var=var, accum=slots[0], lr=lr, grad=grad)


def _rmsprop(var, slots, grad, lr, hyper):
    # ms = decay ms + (1 - decay) g^2; mom = momentum mom + lr g / sqrt(ms + eps)
    tf.raw_ops.ResourceApplyRMSProp(var=var, ms=slots[0], mom=slots[1], lr=lr,
                                    rho=hyper["decay"], momentum=hyper["momentum"],
                                    epsilon=hyper["epsilon"], grad=grad)


def _adadelta(var, slots, grad, lr, hyper):
    tf.raw_ops.ResourceApplyAdadelta(var=var, accum=slots[0], accum_update=slots[1], lr=lr,
                                     rho=hyper["rho"], epsilon=hyper["epsilon"], grad=grad)


def _ftrl(var, slots, grad, lr, hyper):
    tf.raw_ops.ResourceApplyFtrl(var=var, accum=slots[0], linear=slots[1], grad=grad, lr=lr,
                                 l1=hyper["l1"], l2=hyper["l2"],
                                 lr_power=hyper["learning_rate_power"])


def _proximal_adagrad(var, slots, grad, lr, hyper):
    tf.raw_ops.ResourceApplyProximalAdagrad(var=var, accum=slots[0], lr=lr, l1=hyper["l1"],
                                            l2=hyper["l2"], grad=grad)


def _proximal_gradient_descent(var, slots, grad, lr, hyper):
    tf.raw_ops.ResourceApplyProximalGradientDescent(var=var, alpha=lr, l1=hyper["l1"],
                                                    l2=hyper["l2"], delta=grad)


RULES: dict[str, Rule] = {rule.name: rule for rule in (
    Rule("GradientDescentOptimizer", (), _gradient_descent),
    # The original could not build it (no momentum); 0.9 is this port's choice.
    Rule("MomentumOptimizer", (Slot("Momentum"),), _momentum, {"momentum": 0.9}),
    Rule("AdagradOptimizer", (Slot("Adagrad", 0.1),), _adagrad),
    Rule("RMSPropOptimizer", (Slot("RMSProp", 1.0), Slot("RMSProp_1")), _rmsprop,
         {"decay": 0.9, "momentum": 0.0, "epsilon": 1e-10}),
    Rule("AdadeltaOptimizer", (Slot("Adadelta"), Slot("Adadelta_1")), _adadelta,
         {"rho": 0.95, "epsilon": 1e-8}),
    Rule("FtrlOptimizer", (Slot("Ftrl", 0.1), Slot("Ftrl_1")), _ftrl,
         {"learning_rate_power": -0.5, "l1": 0.0, "l2": 0.0}),
    Rule("ProximalAdagradOptimizer", (Slot("ProximalAdagrad", 0.1),), _proximal_adagrad,
         {"l1": 0.0, "l2": 0.0}),
    Rule("ProximalGradientDescentOptimizer", (), _proximal_gradient_descent,
         {"l1": 0.0, "l2": 0.0}),
)}

SLOT_SUFFIXES = frozenset(ADAM_SLOTS) | {slot.suffix for rule in RULES.values()
                                         for slot in rule.slots}


def handle(variable) -> tf.Tensor:
    """The resource handle of a Keras or tf variable; the local copy's in a
    replica context or a ``strategy.extended.update`` call."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


@register
class TF1Optimizer(keras.optimizers.Optimizer):
    """A TF1 optimizer of ``RULES`` with TF1's slots, defaults and kernel.

    Args:
        optimizer: the TF1 class name (``"RMSPropOptimizer"``, ...).
        learning_rate: a float or a Keras learning-rate schedule.
        **kwargs: Keras optimizer options (``clipnorm``, ``name``).

    Example:
        >>> weights = keras.Variable(np.ones([3], "float32"))
        >>> optimizer = TF1Optimizer("AdagradOptimizer", 0.1)
        >>> optimizer.build([weights])
        >>> {name: slot.numpy() for name, slot in optimizer.slots_of(weights).items()}
        {'Adagrad': array([0.1, 0.1, 0.1], dtype=float32)}
    """

    def __init__(self, optimizer: str, learning_rate=0.001, **kwargs):
        if optimizer not in RULES:
            raise ValueError(f"no TF1 rule for {optimizer!r}; valid: {', '.join(sorted(RULES))}")
        kwargs.setdefault("name", optimizer)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rule = RULES[optimizer]
        self._slot_lists: list[list] = []

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._slot_lists = [
            self.add_optimizer_variables(
                variables, slot.suffix.lower(), initializer=keras.initializers.Constant(
                    slot.initial))
            for slot in self.rule.slots]

    def slots_of(self, variable) -> dict:
        """``{TF1 slot suffix: slot variable}`` of a trainable variable."""
        index = self._get_variable_index(variable)
        return {slot.suffix: slots[index] for slot, slots in zip(self.rule.slots,
                                                                 self._slot_lists)}

    def _apply_kernel(self, variable, gradient, learning_rate) -> None:
        index = self._get_variable_index(variable)
        hyper = {k: tf.constant(v, tf.float32) for k, v in self.rule.hyper.items()}
        self.rule.kernel(handle(variable), [handle(s[index]) for s in self._slot_lists],
                         tf.cast(gradient, tf.float32), tf.cast(learning_rate, tf.float32),
                         hyper)

    def update_step(self, gradient, variable, learning_rate):
        self._apply_kernel(variable, gradient, learning_rate)

    def apply_in_place(self, gradients, variables) -> None:
        """One step with the kernels on each replica's own copies (the
        gradients already summed over replicas), then ``iterations += 1``."""
        learning_rate = tf.cast(self.learning_rate, tf.float32)
        for variable, gradient in zip(variables, gradients):
            self._apply_kernel(variable, gradient, learning_rate)
        self.iterations.assign_add(1)

    def get_config(self):
        return {**super().get_config(), "optimizer": self.rule.name}


def slots_of(optimizer, variable) -> dict:
    """``{TF1 slot suffix: slot variable}`` of a trainable variable, for any
    optimizer ``create_optimizer`` builds (empty for slot-less ones)."""
    if isinstance(optimizer, TF1Optimizer):
        return optimizer.slots_of(variable)
    if isinstance(optimizer, keras.optimizers.Adam):
        index = optimizer._get_variable_index(variable)
        return dict(zip(ADAM_SLOTS, (optimizer._momentums[index],
                                     optimizer._velocities[index])))
    return {}
