"""Loads a kernel library of ``native`` once, or says why it cannot, and
says where the kernels may run."""

from __future__ import annotations

import contextlib
import functools

import tensorflow as tf
from absl import logging
from tensorflow.python.ops import control_flow_util

from youtube8m_willow.native import build


@functools.lru_cache(maxsize=None)
def load(name: str):
    """The loaded ``lib<name>.so``, or None (not built, built from another
    version of its source, or for another TensorFlow or CPU: logged once);
    the callers then take TensorFlow's own path."""
    path = build.library_path(name)
    if not path.exists():
        logging.info("%s is not built (python -m youtube8m_willow.native.build)", path)
        return None
    if not build.built_from_current_source(name):
        logging.warning("%s was built from another version of %s.cc; rebuild it with "
                        "python -m youtube8m_willow.native.build", path, name)
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


_TENSORFLOW_OPS_ONLY = False


@contextlib.contextmanager
def tensorflow_ops_only():
    """A context in which nothing traces the project's kernels, only
    TensorFlow's own ops: for a graph that leaves this process (a SavedModel
    export, which TensorFlow Serving or a plain TensorFlow must load without
    the kernels' libraries)."""
    global _TENSORFLOW_OPS_ONLY
    before, _TENSORFLOW_OPS_ONLY = _TENSORFLOW_OPS_ONLY, True
    try:
        yield
    finally:
        _TENSORFLOW_OPS_ONLY = before


def runs_here(name: str) -> bool:
    """Whether the kernel ``name`` runs here: loaded, on a machine without a
    GPU (the project's kernels are the CPU's; TensorFlow would place the
    variables and tensors they take on the GPU), outside
    ``tensorflow_ops_only`` and outside an XLA-compiled function (which
    cannot hold them)."""
    return (not _TENSORFLOW_OPS_ONLY
            and not control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
            and not tf.config.list_logical_devices("GPU") and load(name) is not None)
