"""The model of a checkpoint, built the way the code that wrote it did.

A train_dir written by this project records every model flag in
``model_flags.json``: that file defines the model. One written by the
original code records at most the model name, the features and the loss
(the 2017 starter and WILLOW record nothing), and the originals' defaults
differ (SPEC sections 2, 4, 14, 15). So each model flag that is neither
given on the command line nor recorded (a *free* field) is read off the
checkpoint, most reliable source first:

1. the variable names: LstmModel's graph (WILLOW's or the starter's);
2. the variable shapes: ``num_classes`` (4716 in 2017, 3862 from 2018 on),
   MoE's ``moe_num_mixtures`` (NeXtVLAD's fork: 4, the others: 2), the
   starter DbofModel's ``dbof_cluster_size`` and ``dbof_hidden_size``
   (8192 and 1024 in the starters, WILLOW's flags default to 16384 and 2048)
   and ``dbof_add_batch_norm`` (``cluster_bn`` or ``cluster_biases``), and
   each model's own (``VideoModel.flags_from_shapes``: the NeXtVLAD sizes,
   which the fork's eval.py needed repeated);
3. the graph in ``model.ckpt-N.meta``: DbofModel's ``dbof_activation`` (the
   2019 starter's flag defaults to sigmoid, the 2017 starter hard-codes
   relu6) and ``dbof_pooling_method``;
4. without a ``.meta`` file, the default of the original that most likely
   wrote the train_dir, said in one log line with the reason and the flag
   that overrides it.

The names always choose LstmModel's graph: a checkpoint holds one of them.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from youtube8m_willow import checkpoint
from youtube8m_willow.config import MODEL_FLAGS_FILE, ModelConfig
from youtube8m_willow.layers.core import weights_to_be_restored
from youtube8m_willow.legacy.meta_graph import read_graph_facts
from youtube8m_willow.models.registry import create_model, model_class

log = logging.getLogger("youtube8m_willow")

# DbofModel's activation without a graph: the 2018+ starters (which write
# model_flags.json) default to sigmoid; the 2017 starter hard-codes relu6.
STARTER_2019_DBOF_ACTIVATION = "sigmoid"
STARTER_2017_DBOF_ACTIVATION = "relu6"


def resolve(config: ModelConfig, path: str | None, free: frozenset = frozenset(),
            built=None) -> ModelConfig:
    """``config`` with the graph of the checkpoint ``path`` (None: unchanged)
    and its ``free`` fields read off the checkpoint; what changed is logged.
    ``built``: a model already built (eval's and inference's), used as the
    class-count probe when its config is the one probed."""
    if path is None:
        return config
    shapes = checkpoint.StoredTensors(path).shapes
    resolved = model_class(config.model).config_for_tf1_names(config, list(shapes))
    sized = _from_shapes(resolved, shapes, free)
    resolved = resolved.replace(**sized, **_from_graph(resolved, path, free))
    if "num_classes" in free and "num_classes" not in sized:
        classes = num_classes_in_checkpoint(resolved, shapes, built)
        if classes is not None:
            resolved = resolved.replace(num_classes=classes)
    changed = {k: v for k, v in dataclasses.asdict(resolved).items() if v != getattr(config, k)}
    if changed:
        log.info("checkpoint %s holds the model with %s (pass the flags to override)", path,
                 ", ".join(f"{k}={v}" for k, v in sorted(changed.items())))
    return resolved


def _from_shapes(config: ModelConfig, shapes: dict, free: frozenset) -> dict:
    """What the variables pin down: MoE mixtures (and classes), the starter
    DbofModel's batch norm, cluster and hidden sizes."""
    found = {}
    gates, experts = shapes.get("gates/weights"), shapes.get("experts/weights")
    if gates and experts and len(gates) == len(experts) == 2:
        classes = gates[1] - experts[1]  # gates: C * (M + 1), experts: C * M
        if classes > 0 and experts[1] % classes == 0:
            found.update(num_classes=classes, moe_num_mixtures=experts[1] // classes)
    found.update(model_class(config.model).flags_from_shapes(config, shapes))
    if config.model == "DbofModel":
        if "cluster_biases" in shapes or "cluster_bn/beta" in shapes:
            found["dbof_add_batch_norm"] = "cluster_bn/beta" in shapes
        if len(shapes.get("cluster_weights", ())) == 2:
            found["dbof_cluster_size"] = shapes["cluster_weights"][1]
        if len(shapes.get("hidden1_weights", ())) == 2:
            found["dbof_hidden_size"] = shapes["hidden1_weights"][1]
    return {name: value for name, value in found.items() if name in free}


def _from_graph(config: ModelConfig, path: str, free: frozenset) -> dict:
    """The model flags the ``.meta`` graph settles (the model's
    ``graph_fields``: DbofModel's activation and pooling, the NeXtVLAD
    fork's training-only flags), else for DbofModel's activation the likely
    original's default (said once, with the overriding flag)."""
    wanted = [name for name in model_class(config.model).graph_fields if name in free]
    if not wanted:
        return {}
    facts = read_graph_facts(path + ".meta")
    if facts is not None:
        found = {k: v for k, v in facts.as_flags().items() if k in wanted}
        if found:
            log.info("the graph %s.meta was built with %s", path,
                     ", ".join(f"--{k}={v}" for k, v in sorted(found.items())))
        return found
    if "dbof_activation" not in wanted:
        return {}
    train_dir = os.path.dirname(path)
    if os.path.exists(os.path.join(train_dir, MODEL_FLAGS_FILE)):
        activation, why, other = (STARTER_2019_DBOF_ACTIVATION,
                                  f"the 2019 starter's default ({MODEL_FLAGS_FILE} was written "
                                  "by a starter of 2018 or later)",
                                  "--dbof_activation=relu6 for the NeXtVLAD fork's DbofModel")
    else:
        activation, why, other = (STARTER_2017_DBOF_ACTIVATION,
                                  f"as the 2017 starter built it (no {MODEL_FLAGS_FILE}, which "
                                  "later starters write)",
                                  "--dbof_activation=sigmoid for a 2019 starter's")
    log.warning("no graph %s.meta: DbofModel's activation taken as %s, %s; pass %s",
                path, activation, why, other)
    return {"dbof_activation": activation}


def num_classes_in_checkpoint(config: ModelConfig, shapes: dict, built=None) -> int | None:
    """The class count read off the shapes of the model's class-sized
    weights (each a multiple of ``num_classes``: C, C * mixtures, ...);
    None when every shape fits or the shapes disagree. ``built`` serves as
    the probe when it is ``config``'s model, else one is built."""
    model = built
    if model is None or model.config != config:
        with weights_to_be_restored():  # a probe: its values are never used
            model = create_model(config).build_for_config()
    classes = config.num_classes
    found = set()
    for name, variable in model.tf1_weights().items():
        shape = shapes.get(name)
        if shape is None or len(shape) != len(variable.shape):
            continue
        for got, want in zip(shape, variable.shape):
            per_class = want // classes
            if got != want and want % classes == 0 and got % per_class == 0:
                found.add(got // per_class)
    return found.pop() if len(found) == 1 else None
