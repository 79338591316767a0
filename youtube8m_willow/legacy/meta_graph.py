"""What an original checkpoint's ``.meta`` graph says about its model.

TF1's ``Saver`` writes ``model.ckpt-N.meta`` beside every checkpoint: the
whole graph the original train.py built, ops included. Some model flags
change the math without changing any variable's name or shape, and their
defaults differ between the originals (the 2019 starter's DbofModel applies
``--dbof_activation``, sigmoid by default; the 2017 starter's hard-codes
relu6). The graph records the op that was built, so it settles them.

The training graph also holds the constants of the run's training flags
(the learning-rate schedule, examples per step, the optimizer's update op,
the gradient clip, the regularization penalty): a continued original run
goes on with them (``training_flags``). Likewise the NeXtVLAD fork's model
flags that only training reads (``--drop_rate``, ``--l2_penalty``,
``--cl_temperature``, ``--cl_lambda``): their constants are in its graph.

Facts are read from the graph's structure (which op consumes which), not
from generated op names, so graphs of any TF1 release read the same.
"""

from __future__ import annotations

import dataclasses

from youtube8m_willow.errors import MetaGraphError

# TF op type -> the original's activation name (dbof_activation values).
ACTIVATION_OPS = {"Sigmoid": "sigmoid", "Relu6": "relu6", "Relu": "relu"}
# TF reduction op type -> dbof_pooling_method.
POOLING_OPS = {"Max": "max", "Mean": "average"}
# TF1 update op (without Resource/Sparse) -> the --optimizer that builds it.
UPDATE_OPS = {"ApplyAdam": "AdamOptimizer", "ApplyRMSProp": "RMSPropOptimizer",
              "ApplyAdagrad": "AdagradOptimizer", "ApplyAdagradV2": "AdagradOptimizer",
              "ApplyGradientDescent": "GradientDescentOptimizer",
              "ApplyAdadelta": "AdadeltaOptimizer", "ApplyFtrl": "FtrlOptimizer",
              "ApplyFtrlV2": "FtrlOptimizer", "ApplyMomentum": "MomentumOptimizer",
              "ApplyProximalAdagrad": "ProximalAdagradOptimizer",
              "ApplyProximalGradientDescent": "ProximalGradientDescentOptimizer"}


@dataclasses.dataclass(frozen=True)
class GraphFacts:
    """Model flags read off a graph; None where the graph does not tell."""

    dbof_activation: str | None = None
    dbof_pooling_method: str | None = None
    # The NeXtVLAD fork's training-only model flags (see ``fork_facts``).
    drop_rate: float | None = None
    l2_penalty: float | None = None
    cl_temperature: float | None = None
    cl_lambda: float | None = None

    def as_flags(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def read_graph_facts(meta_path: str) -> GraphFacts | None:
    """The model facts of the graph in ``meta_path``; None without the file."""
    nodes = _read_nodes(meta_path)
    return None if nodes is None else graph_facts(nodes)


def read_training_flags(meta_path: str) -> dict:
    """The training flags of the graph in ``meta_path`` ({} without the file)."""
    nodes = _read_nodes(meta_path)
    return {} if nodes is None else training_flags(nodes)


def _read_nodes(meta_path: str):
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    if not tf.io.gfile.exists(meta_path):
        return None
    meta_graph = meta_graph_pb2.MetaGraphDef()
    try:
        with tf.io.gfile.GFile(meta_path, "rb") as handle:
            meta_graph.ParseFromString(handle.read())
    except Exception as error:  # protobuf's DecodeError and I/O errors alike
        raise MetaGraphError(f"cannot parse the graph {meta_path}: {error}") from None
    return meta_graph.graph_def.node


def graph_facts(nodes) -> GraphFacts:
    """Facts of a GraphDef's ``nodes`` (NodeDef protos)."""
    graph = _Graph(nodes)
    activation = graph.cluster_activation()
    pooling = graph.pooling_after(activation) if activation is not None else None
    return GraphFacts(dbof_activation=ACTIVATION_OPS[activation.op] if activation else None,
                      dbof_pooling_method=POOLING_OPS[pooling.op] if pooling else None,
                      **(graph.fork_facts() if graph.is_training_graph() else {}))


def training_flags(nodes) -> dict:
    """The training flags a TF1 training graph was built with, as far as it
    holds them: ``base_learning_rate``, ``learning_rate_decay``,
    ``learning_rate_decay_examples``, ``batch_size`` (examples per step, from
    the decay's step count), ``optimizer``, ``clip_gradient_norm`` (0 when
    the graph clips nothing) and ``regularization_penalty``."""
    graph = _Graph(nodes)
    if not graph.is_training_graph():  # or one this reader does not know
        return {}
    found = {"optimizer": graph.update_ops().pop(), **graph.learning_rate_schedule()}
    found["clip_gradient_norm"] = graph.gradient_clip()
    penalty = graph.regularization_penalty()
    if penalty is not None:
        found["regularization_penalty"] = penalty
    return found


def _source(name: str) -> str:
    """The producing node of an input reference (``^ctrl``, ``node:1``)."""
    return name.lstrip("^").split(":")[0]


class _Graph:
    def __init__(self, nodes):
        self.nodes = {node.name: node for node in nodes}
        self.consumers: dict[str, list] = {}
        for node in nodes:
            for name in node.input:
                if not name.startswith("^"):
                    self.consumers.setdefault(_source(name), []).append(node)

    def update_ops(self) -> set[str]:
        """The --optimizer of every TF1 update op in the graph."""
        return {UPDATE_OPS.get(node.op.replace("Resource", "").replace("Sparse", ""))
                for node in self.nodes.values()} - {None}

    def is_training_graph(self) -> bool:
        return len(self.update_ops()) == 1

    def _scales(self, op: str, other: str) -> set:
        """The constants that ``op`` nodes combine with an ``other`` node."""
        found = set()
        for node in self.nodes.values():
            if node.op == op and any(n.op == other for n in self._inputs(node)):
                value = self._const_input(node)
                if value is not None:
                    found.add(value)
        return found

    def fork_facts(self) -> dict:
        """The NeXtVLAD fork's training-only model flags in its training
        graph, each where the graph holds exactly one value:
        ``drop_rate`` (what its dropout compares uniform draws with; 0 when
        it built none), ``l2_penalty`` (the scale of its slim L2
        regularizers; 0 when there are none), ``cl_temperature`` (the
        divisor of the logits under a softmax) and ``cl_lambda`` (the factor
        of the mean KL divergence, a difference of logs)."""
        facts = {}
        # keep = uniform >= rate (the draws scaled and shifted: an Add, or not)
        rates = self._scales("GreaterEqual", "RandomUniform") | self._scales("GreaterEqual", "Add")
        facts["drop_rate"] = rates or {0.0}
        facts["l2_penalty"] = self._scales("Mul", "L2Loss") or {0.0}
        facts["cl_temperature"] = {
            self._const(self._inputs(node)[1]) for node in self.nodes.values()
            if node.op in ("RealDiv", "Div") and len(node.input) == 2
            and any(c.op == "Softmax" for c in self.consumers.get(node.name, []))} - {None}
        facts["cl_lambda"] = {
            self._const_input(node) for node in self.nodes.values()
            if node.op == "Mul" and any(n.op == "Mean" and self._holds_log_ratio(n)
                                        for n in self._inputs(node))} - {None}
        return {name: float(values.pop()) for name, values in facts.items() if len(values) == 1}

    def _holds_log_ratio(self, node, depth: int = 4) -> bool:
        """Whether ``log(a) - log(b)`` is among ``node``'s inputs, ``depth`` deep."""
        if node.op == "Sub" and [n.op for n in self._inputs(node)] == ["Log", "Log"]:
            return True
        return depth > 0 and any(self._holds_log_ratio(n, depth - 1) for n in self._inputs(node))

    def _inputs(self, node):
        return [self.nodes[_source(n)] for n in node.input
                if not n.startswith("^") and _source(n) in self.nodes]

    def _const(self, node):
        """A scalar Const node's value (through Identity/Cast), else None."""
        while node is not None and node.op in ("Identity", "Cast") and node.input:
            node = self.nodes.get(_source(node.input[0]))
        if node is None or node.op != "Const":
            return None
        from tensorflow.python.framework import tensor_util

        value = tensor_util.MakeNdarray(node.attr["value"].tensor)
        if value.size != 1:
            return None
        value = value.reshape(())
        # float32 constants as written: 0.01, not 0.009999999776482582
        return float(str(value)) if value.dtype.kind == "f" else value.item()

    def _const_input(self, node):
        values = [self._const(source) for source in self._inputs(node)]
        return next((v for v in values if v is not None), None)

    def learning_rate_schedule(self) -> dict:
        """``tf.train.exponential_decay`` with staircase: base * decay **
        floor(global_step * examples_per_step / decay_examples)."""
        for floor in (n for n in self.nodes.values() if n.op == "Floor"):
            divide = self._inputs(floor)[0] if floor.input else None
            if divide is None or divide.op not in ("RealDiv", "Div", "TrueDiv"):
                continue
            steps_node, examples_node = self._inputs(divide)[:2]
            for power in self.consumers.get(floor.name, []):
                if power.op != "Pow":
                    continue
                for scaled in self.consumers.get(power.name, []):
                    if scaled.op != "Mul":
                        continue
                    found = {"base_learning_rate": self._const_input(scaled),
                             "learning_rate_decay": self._const(self._inputs(power)[0]),
                             "learning_rate_decay_examples": self._const(examples_node),
                             "batch_size": self._examples_per_step(steps_node)}
                    return {k: v for k, v in found.items() if v is not None}
        return {}

    def _examples_per_step(self, node):
        """The product of the constants multiplying the global step."""
        product = 1
        while node is not None:
            if node.op in ("Cast", "Identity"):
                node = self._inputs(node)[0] if node.input else None
            elif node.op == "Mul":
                value = self._const_input(node)
                if value is None:
                    return None
                product *= value
                node = next((n for n in self._inputs(node) if self._const(n) is None), None)
            else:
                return int(product) if "global_step" in node.name else None
        return None

    def gradient_clip(self) -> float:
        """``tf.clip_by_norm``'s norm (the Maximum of the norm and a
        constant); 0 when nothing is clipped."""
        for node in self.nodes.values():
            if node.op == "Maximum" and "clip_by_norm" in node.name:
                value = self._const_input(node)
                if value is not None:
                    return float(value)
        return 0.0

    def regularization_penalty(self):
        """The constant times the summed slim L2 losses in the total loss."""
        regularizers = [n for n in self.nodes.values() if n.op == "AddN" and n.input
                        and all("Regularizer" in name for name in n.input)]
        for total in regularizers:
            for node in [total, *self.consumers.get(total.name, [])]:
                for scaled in self.consumers.get(node.name, []):
                    if scaled.op == "Mul":
                        value = self._const_input(scaled)
                        if value is not None:
                            return float(value)
        return None

    def cluster_activation(self):
        """DBoF's cluster activation: the activation op applied to the output
        of the ``cluster_bn`` batch norm, or to the sum with ``cluster_biases``
        (the starter's DbofModel without batch norm)."""
        for node in self.nodes.values():
            if node.op not in ACTIVATION_OPS:
                continue
            for source in self._inputs(node):
                if "cluster_bn/" in source.name or any(
                        "cluster_biases" in s.name for s in self._inputs(source)):
                    return node
        return None

    def pooling_after(self, activation):
        """The reduction over frames of the reshaped cluster activations."""
        for reshape in self.consumers.get(activation.name, []):
            if reshape.op != "Reshape":
                continue
            for node in self.consumers.get(reshape.name, []):
                if node.op in POOLING_OPS:
                    return node
        return None
