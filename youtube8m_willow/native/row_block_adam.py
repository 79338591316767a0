"""The ``RowBlockApplyAdam`` kernel (``row_block_adam.cc``), loaded once.

``apply(var, m, v, grad, start, **hyper)`` runs TF1's ApplyAdam on rows
``[start, start + len(grad))`` of the float32 matrix ``var`` and its slots
``m``, ``v`` (resource handles), in place, with ``ResourceApplyAdam``'s
hyperparameters: bit for bit what ``ResourceApplyAdam`` does to those rows.
"""

from __future__ import annotations

import functools

import tensorflow as tf
from absl import logging

from youtube8m_willow.native import build


@functools.lru_cache(maxsize=None)
def library():
    """The loaded kernel library, or None (not built, or built for another
    TensorFlow: logged once)."""
    path = build.library_path("row_block_adam")
    if not path.exists():
        logging.info("%s is not built (python -m youtube8m_willow.native.build)", path)
        return None
    try:
        return tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as error:
        logging.warning("cannot load %s (%s); rebuild it with python -m "
                        "youtube8m_willow.native.build", path, error)
        return None


def available() -> bool:
    return library() is not None


def apply(var, m, v, grad, start, **hyper) -> None:
    library().row_block_apply_adam(var=var, m=m, v=v, grad=grad,
                                   start=tf.cast(start, tf.int64), **hyper)
