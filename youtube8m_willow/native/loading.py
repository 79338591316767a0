"""Loads a kernel library of ``native`` once, or says why it cannot."""

from __future__ import annotations

import functools

import tensorflow as tf
from absl import logging

from youtube8m_willow.native import build


@functools.lru_cache(maxsize=None)
def load(name: str):
    """The loaded ``lib<name>.so``, or None (not built, or built for another
    TensorFlow or CPU: logged once); the callers then take TensorFlow's own
    path."""
    path = build.library_path(name)
    if not path.exists():
        logging.info("%s is not built (python -m youtube8m_willow.native.build)", path)
        return None
    if not build.built_for_this_cpu(name):
        logging.warning("%s was built for another CPU; rebuild it with python -m "
                        "youtube8m_willow.native.build", path)
        return None
    try:
        return tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as error:
        logging.warning("cannot load %s (%s); rebuild it with python -m "
                        "youtube8m_willow.native.build", path, error)
        return None


def runs_here(name: str) -> bool:
    """Whether the kernel ``name`` runs here: loaded, on a machine without a
    GPU (the project's kernels are the CPU's; TensorFlow would place the
    variables and tensors they take on the GPU)."""
    return not tf.config.list_logical_devices("GPU") and load(name) is not None
