"""Runs a layer case on the current Keras backend and returns what the
backends must agree on, as NumPy arrays: the inference output, the
training-mode output, the batch-norm statistics after that call, and the
gradients of ``sum(output * cotangent)`` with respect to the float inputs and
every trainable weight (by TF1 name).

Each backend differentiates its own way: ``tf.GradientTape``, ``jax.grad``
under ``jax.jit`` (the layer through ``stateless_call``), ``torch.autograd``.
"""

from __future__ import annotations

import keras
import numpy as np

import cases

BACKEND = keras.backend.backend()


def build(case: cases.Case, inputs: dict):
    """The case's layer, built on ``inputs`` and given ``weight_values``."""
    layer = case.make()
    args, kwargs = call_inputs(case, inputs)
    layer(*args, **kwargs)
    set_weights(layer, cases.weight_values(layer))
    return layer


def call_inputs(case: cases.Case, inputs: dict):
    return ([inputs[name] for name in case.args],
            {key: inputs[name] for key, name in case.kwargs})


def set_weights(layer, values: dict) -> None:
    for name, variable in getattr(layer, "tf1_weights", dict)().items():
        variable.assign(values[name])


def measure(case: cases.Case, inputs: dict) -> dict[str, np.ndarray]:
    """``{"eval": ..., "train": ..., "state/<name>": ..., "grad/<input or
    weight>": ...}`` for ``case`` on this backend."""
    layer = build(case, inputs)
    args, kwargs = call_inputs(case, inputs)
    options = _training_options(layer)
    eval_output = layer(*args, **kwargs, **options(False))
    results = {"eval": keras.ops.convert_to_numpy(eval_output)}
    training = case.has_training_mode
    output, gradients, state = GRADIENTS[BACKEND](
        layer, case, inputs, options(training), cases.cotangent(eval_output.shape))
    if training:
        results["train"] = output
        results.update({f"state/{name}": value for name, value in state.items()})
    results.update({f"grad/{name}": value for name, value in gradients.items()})
    return results


def _training_options(layer):
    takes_training = "training" in layer.call.__code__.co_varnames
    return lambda training: {"training": training} if takes_training else {}


def _float_names(case):
    """The case's inputs that are differentiated (the float ones)."""
    names = [*case.args, *(name for _, name in case.kwargs)]
    return [name for name in names if name != "num_frames"]


def seed_weights(*layers) -> None:
    """Gives each built layer its ``weight_values``: a start that is set, not
    drawn (``keras.utils.set_random_seed`` would import TensorFlow)."""
    for layer in layers:
        set_weights(layer, cases.weight_values(layer))


def _weight_names(layer) -> dict[int, str]:
    return {id(v): name for name, v in getattr(layer, "tf1_weights", dict)().items()}


def _non_trainable(layer) -> dict[str, object]:
    names = _weight_names(layer)
    return {names[id(v)]: v for v in layer.non_trainable_variables if id(v) in names}


def _tensorflow_gradients(layer, case, inputs, options, cot):
    import tensorflow as tf

    floats = {name: tf.constant(inputs[name]) for name in _float_names(case)}
    with tf.GradientTape() as tape:
        tape.watch(list(floats.values()))
        args = [floats.get(name, inputs[name]) for name in case.args]
        kwargs = {key: floats[name] for key, name in case.kwargs}
        output = layer(*args, **kwargs, **options)
        loss = tf.reduce_sum(output * cot)
    names = _weight_names(layer)
    weights = [v for v in layer.trainable_variables if id(v) in names]
    grads = tape.gradient(loss, [*floats.values(), *weights])
    gradients = {f"input/{name}": g.numpy() for name, g in zip(floats, grads)}
    gradients.update({names[id(v)]: g.numpy() for v, g in zip(weights, grads[len(floats):])})
    state = {name: v.numpy() for name, v in _non_trainable(layer).items()}
    return output.numpy(), gradients, state


def _jax_gradients(layer, case, inputs, options, cot):
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    float_names = _float_names(case)

    def loss(trainable, floats):
        args = [floats[name] if name in floats else inputs[name] for name in case.args]
        kwargs = {key: floats[name] for key, name in case.kwargs}
        output, new_state = layer.stateless_call(trainable, non_trainable, *args, **kwargs,
                                                 **options)
        return jax.numpy.sum(output * cot), (output, new_state)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, (output, new_state)), (weight_grads, input_grads) = step(
        trainable, {name: inputs[name] for name in float_names})
    names = _weight_names(layer)
    gradients = {f"input/{name}": np.asarray(input_grads[name]) for name in float_names}
    gradients.update({names[id(v)]: np.asarray(g)
                      for v, g in zip(layer.trainable_variables, weight_grads) if id(v) in names})
    state = {names[id(v)]: np.asarray(value)
             for v, value in zip(layer.non_trainable_variables, new_state) if id(v) in names}
    return np.asarray(output), gradients, state


def _torch_gradients(layer, case, inputs, options, cot):
    import torch

    floats = {name: torch.tensor(inputs[name], requires_grad=True) for name in _float_names(case)}
    args = [floats.get(name, inputs[name]) for name in case.args]
    kwargs = {key: floats[name] for key, name in case.kwargs}
    output = layer(*args, **kwargs, **options)
    names = _weight_names(layer)
    weights = [v for v in layer.trainable_variables if id(v) in names]
    grads = torch.autograd.grad((output * torch.tensor(cot)).sum(),
                                [*floats.values(), *(v.value for v in weights)])
    gradients = {f"input/{name}": g.numpy() for name, g in zip(floats, grads)}
    gradients.update({names[id(v)]: g.numpy() for v, g in zip(weights, grads[len(floats):])})
    state = {name: keras.ops.convert_to_numpy(v) for name, v in _non_trainable(layer).items()}
    return output.detach().numpy(), gradients, state


GRADIENTS = {"tensorflow": _tensorflow_gradients, "jax": _jax_gradients,
             "torch": _torch_gradients}
