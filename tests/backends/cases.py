"""The layer cases every Keras backend must agree on: how to build each
layer, which inputs it takes and how it is called.

Inputs are cut from the netvlad_gated fixture's records (``inputs.npz``,
written by ``tests/test_backends.py``): 4 videos, their first 10 frames.
Weights are set, not drawn: ``weight_values`` gives every TF1-named weight a
value from a seeded NumPy generator, the same on every backend.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from youtube8m_willow import layers as L
from youtube8m_willow.models.frame_level import HiddenLayer

# Input name -> what it is (arrays of inputs.npz).
INPUTS = {
    "frames": "[4, 10, 1024] rgb frames",
    "audio": "[4, 10, 128] audio frames",
    "untied_audio": "audio frames + 1e-6 * position: no two values equal (the quantized "
                    "features tie often, and each backend routes a tied top-k gradient "
                    "to another of the tied frames)",
    "video": "[4, 1024] mean rgb of the 10 frames",
    "hidden": "[4, 64] the first 64 mean rgb values",
    "num_frames": "[4] valid frames per video (10, 7, 3, 1)",
    "padding_audio": "[128] the first video's first audio frame, halved: the value a "
                     "NeXtVLAD is told its padded frames hold",
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One layer configuration: ``make()`` builds it; it is called on the
    ``args`` inputs (positional) and ``kwargs`` inputs (by keyword)."""

    name: str
    make: Callable[[], object]
    args: tuple[str, ...]
    kwargs: tuple[tuple[str, str], ...] = ()
    has_training_mode: bool = True  # batch norm: compare training-mode calls too


def _case(name, make, *args, kwargs=(), training=True):
    return Case(name, make, tuple(args), tuple(kwargs), training)


CASES = [
    _case("ContextGating", lambda: L.ContextGating(), "video"),
    _case("ContextGating[remove_diag,no_bn]",
          lambda: L.ContextGating(add_batch_norm=False, remove_diag=True), "hidden"),
    _case("ContextGating[context]", lambda: L.ContextGating(), "hidden",
          kwargs=(("context", "video"),)),
    _case("NetVLAD", lambda: L.NetVLAD(16), "frames"),
    _case("NetVLAD[no_bn]", lambda: L.NetVLAD(8, add_batch_norm=False), "audio"),
    _case("NetRVLAD", lambda: L.NetRVLAD(8), "frames"),
    _case("NetVLAGD", lambda: L.NetVLAGD(8), "frames"),
    _case("NetVLAGD[no_bn]", lambda: L.NetVLAGD(8, add_batch_norm=False), "audio"),
    _case("NetFV", lambda: L.NetFV(8), "audio"),
    _case("NetFV[uncoupled]", lambda: L.NetFV(8, couple_weights=False), "audio"),
    _case("SoftDBoF[max_pool]", lambda: L.SoftDBoF(16, max_pool=True), "frames"),
    _case("GatedDBoF", lambda: L.GatedDBoF(16), "frames"),
    _case("GatedDBoF[no_bn]", lambda: L.GatedDBoF(8, add_batch_norm=False), "audio"),
    _case("DBoF", lambda: L.DBoF(16), "frames"),
    _case("StarterDBoF[sigmoid,average]",
          lambda: L.StarterDBoF(16, activation="sigmoid", pooling_method="average"), "frames"),
    _case("MixtureOfExperts", lambda: L.MixtureOfExperts(20, num_mixtures=2), "video",
          training=False),
    _case("MixtureOfExperts[low_rank,prob_gating]",
          lambda: L.MixtureOfExperts(20, num_mixtures=3, low_rank_gating=8, prob_gating=True),
          "video"),
    _case("MixtureOfExperts[gating_input]",
          lambda: L.MixtureOfExperts(20, prob_gating=True, prob_gating_input="input",
                                     remove_diag=False), "hidden"),
    _case("LogisticClassifier", lambda: L.LogisticClassifier(20), "video", training=False),
    _case("BatchNorm", lambda: L.BatchNorm(), "video"),
    _case("BatchNorm[population_variance]", lambda: L.BatchNorm(bessel_correction=False),
          "hidden"),
    _case("Dense", lambda: L.Dense(32, l2=1e-3), "video", training=False),
    _case("HiddenLayer[relu6]", lambda: HiddenLayer(32, stddev=0.1), "video"),
    _case("NeXtVLAD", lambda: L.NeXtVLAD(4, groups=4, expansion=2), "audio", "num_frames"),
    _case("NeXtVLAD[padding_frame]", lambda: L.NeXtVLAD(4, groups=4, expansion=2), "audio",
          "num_frames", kwargs=(("padding_frame", "padding_audio"),)),
    _case("NeXtVLAD[no_mask]", lambda: L.NeXtVLAD(3, groups=2, expansion=1), "audio"),
    _case("SEGating", lambda: L.SEGating(8), "hidden"),
    _case("FrameSampler[uniform]", lambda: L.FrameSampler(4, "uniform"), "frames", "num_frames",
          training=False),
    _case("FrameStatistics", lambda: L.FrameStatistics(3), "untied_audio", "num_frames",
          training=False),
    _case("StackedRNN[lstm,2]", lambda: L.StackedRNN("lstm", 16, 2), "audio", "num_frames",
          training=False),
    _case("StackedRNN[gru]", lambda: L.StackedRNN("gru", 16), "audio", "num_frames",
          training=False),
]

BY_NAME = {case.name: case for case in CASES}


def weight_values(layer, seed: int = 0) -> dict[str, np.ndarray]:
    """A value for every TF1-named weight of a built ``layer``: normal with
    stddev 0.3, batch norm scales and variances in [0.5, 1.5)."""
    rng = np.random.default_rng(seed)
    named = layer.tf1_weights() if hasattr(layer, "tf1_weights") else {}
    values = {}
    for name, variable in sorted(named.items()):
        shape = tuple(variable.shape)
        if name.endswith(("gamma", "moving_variance")):
            values[name] = rng.uniform(0.5, 1.5, shape).astype("float32")
        else:
            values[name] = (0.3 * rng.standard_normal(shape)).astype("float32")
    return values


def cotangent(shape, seed: int = 1) -> np.ndarray:
    """The fixed upstream gradient: gradients are of ``sum(output * cotangent)``."""
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")
