"""The portable weights file: TF1-named arrays, a model config and their
origin in one ``.npz``, written atomically and read with NumPy alone.

Layout: one array per weight under its port name (``gates/weights``), plus
``__model_config__`` (the ``ModelConfig`` as JSON, or empty for weights of a
lone layer) and ``__about__`` (JSON: format, version, global step, the
checkpoint and its naming). No pickles: ``np.load`` reads it safely.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Mapping

import numpy as np

from youtube8m_willow.atomic import AtomicFile
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.errors import WeightsFileError
from youtube8m_willow.legacy.fit import fit_problems

FORMAT = "youtube8m_willow.tf1_weights"
VERSION = 1
CONFIG_KEY = "__model_config__"
ABOUT_KEY = "__about__"


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """A read weights file: ``arrays`` by TF1 name, the model's ``config``
    (None for a lone layer's weights) and ``about`` (origin metadata)."""

    path: str
    arrays: Mapping[str, np.ndarray]
    config: ModelConfig | None
    about: dict


def write_weights(path: str, arrays: Mapping[str, np.ndarray],
                  config: ModelConfig | None = None, about: dict | None = None) -> None:
    """Writes ``arrays`` (TF1 name -> array) with ``config`` and ``about``
    to ``path``; written beside it first and renamed, so a crash never
    leaves a truncated file under the name."""
    reserved = {CONFIG_KEY, ABOUT_KEY} & set(arrays)
    if reserved:
        raise ValueError(f"weight names {sorted(reserved)} are reserved")
    entries = {name: np.asarray(value) for name, value in arrays.items()}
    entries[CONFIG_KEY] = np.array(config.to_json() if config is not None else "")
    entries[ABOUT_KEY] = np.array(json.dumps({"format": FORMAT, "version": VERSION,
                                              **(about or {})}))
    with AtomicFile(path, "wb") as target:
        np.savez(target.handle, **entries)


def read_weights(path: str) -> WeightsFile:
    """Reads a weights file written by ``write_weights``."""
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise WeightsFileError(f"{path!r} is not a weights file (.npz): not a zip archive")
    try:
        with np.load(path, allow_pickle=False) as stored:
            entries = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise WeightsFileError(f"cannot read weights file {path!r}: {error}") from None
    if ABOUT_KEY not in entries or CONFIG_KEY not in entries:
        raise WeightsFileError(f"{path!r} is not a youtube8m_willow weights file "
                               f"(no {ABOUT_KEY} entry)")
    about = json.loads(str(entries.pop(ABOUT_KEY)))
    if about.get("format") != FORMAT or about.get("version", 0) > VERSION:
        raise WeightsFileError(f"{path!r}: unsupported weights format {about.get('format')!r} "
                               f"version {about.get('version')!r}")
    config_text = str(entries.pop(CONFIG_KEY))
    config = ModelConfig.from_json(config_text) if config_text else None
    return WeightsFile(path, entries, config, about)


def load_weights(target, weights: WeightsFile | str, scope: str = "") -> None:
    """Assigns a weights file's arrays to ``target`` (a model or layer with
    ``tf1_weights()``), name by name; nothing is assigned unless every name
    and shape fits.

    ``scope`` picks one layer's weights out of a model's file: e.g.
    ``load_weights(NetVLAD(64), "willow.npz", scope="video_VLAD")``.
    """
    weights = read_weights(weights) if isinstance(weights, str) else weights
    prefix = f"{scope}/" if scope else ""
    arrays = {name[len(prefix):]: value for name, value in weights.arrays.items()
              if name.startswith(prefix)}
    model_weights = target.tf1_weights()
    problems = fit_problems(model_weights, {name: value.shape for name, value in arrays.items()},
                            lambda name: prefix + name)
    if problems:
        raise WeightsFileError("; ".join([f"{weights.path!r} does not fit "
                                          f"{type(target).__name__}", *problems]))
    for name, variable in model_weights.items():
        variable.assign(arrays[name].astype(variable.dtype, copy=False))


def load_model(weights: WeightsFile | str, **config_changes):
    """The model a weights file was converted from, built on the current
    Keras backend with its weights; ``config_changes`` set runtime options
    (e.g. ``frame_sampling="uniform"``).

    The model maps a batch of dequantized features to class probabilities
    ``[B, num_classes]``. Call it with ``(frames, num_frames)``: ``frames``
    ``[B, T, D]`` float32 (``D``: the feature sizes together, e.g. 1024 rgb +
    128 audio; ``[B, D]`` for a video-level model), ``num_frames`` ``[B]``
    int32, each video's valid frames; or with ``frames`` alone (every frame
    valid); or with the readers' dict ``{"video_matrix": frames,
    "num_frames": num_frames}``. Arrays of NumPy or of the backend are both
    taken, and under ``jax.jit`` (``model.stateless_call``) too."""
    from youtube8m_willow.layers.core import weights_to_be_restored
    from youtube8m_willow.models import create_model

    weights = read_weights(weights) if isinstance(weights, str) else weights
    if weights.config is None:
        raise WeightsFileError(f"{weights.path!r} holds a layer's weights, not a model's "
                               "(no model config): use load_weights on the layer")
    with weights_to_be_restored():
        model = create_model(weights.config.replace(**config_changes)).build_for_config()
    load_weights(model, weights)
    return model
