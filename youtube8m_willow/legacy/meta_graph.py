"""What an original checkpoint's ``.meta`` graph says about its model.

TF1's ``Saver`` writes ``model.ckpt-N.meta`` beside every checkpoint: the
whole graph the original train.py built, ops included. Some model flags
change the math without changing any variable's name or shape, and their
defaults differ between the originals (the 2019 starter's DbofModel applies
``--dbof_activation``, sigmoid by default; the 2017 starter's hard-codes
relu6). The graph records the op that was built, so it settles them.

Facts are read from the graph's structure (which op consumes which), not
from generated op names, so graphs of any TF1 release read the same.
"""

from __future__ import annotations

import dataclasses

# TF op type -> the original's activation name (dbof_activation values).
ACTIVATION_OPS = {"Sigmoid": "sigmoid", "Relu6": "relu6", "Relu": "relu"}
# TF reduction op type -> dbof_pooling_method.
POOLING_OPS = {"Max": "max", "Mean": "average"}


@dataclasses.dataclass(frozen=True)
class GraphFacts:
    """Model flags read off a graph; None where the graph does not tell."""

    dbof_activation: str | None = None
    dbof_pooling_method: str | None = None

    def as_flags(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


class MetaGraphError(ValueError):
    """A ``.meta`` file that cannot be parsed."""


def read_graph_facts(meta_path: str) -> GraphFacts | None:
    """The facts of the graph in ``meta_path``; None when there is no such file."""
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
    return graph_facts(meta_graph.graph_def.node)


def graph_facts(nodes) -> GraphFacts:
    """Facts of a GraphDef's ``nodes`` (NodeDef protos)."""
    graph = _Graph(nodes)
    activation = graph.cluster_activation()
    pooling = graph.pooling_after(activation) if activation is not None else None
    return GraphFacts(dbof_activation=ACTIVATION_OPS[activation.op] if activation else None,
                      dbof_pooling_method=POOLING_OPS[pooling.op] if pooling else None)


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

    def _inputs(self, node):
        return [self.nodes[_source(n)] for n in node.input
                if not n.startswith("^") and _source(n) in self.nodes]

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
