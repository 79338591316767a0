"""How the dequantized features are scaled before a model sees them: the
one place every caller (training, eval.py, inference.py, the exported
SavedModel, the portable weights) goes through, ``VideoModel.call``.

- ``l2``: the starter code's L2 normalization of each frame (frame-level)
  or video (video-level) over the concatenated features; zero (padded)
  frames stay zero.
- ``eigen``: the NeXtVLAD fork's "reverse whitening": the rgb columns
  become ``(x - 4/512) * (sqrt(eigenvalue) + 1e-4)``, the PCA eigenvalues of
  the YouTube-8M features (``yt8m_pca/eigenvals.npy``), the other columns
  stay as they are; so padded frames become a constant non-zero rgb vector.
- ``auto``: the model's own (``VideoModel.default_input_scaling``): eigen
  for the NeXtVLAD fork's models, l2 for every other.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from youtube8m_willow.layers.core import l2_normalize

INPUT_SCALINGS = ("auto", "l2", "eigen")
EIGENVALUES_FILE = os.path.join(os.path.dirname(__file__), "yt8m_pca", "eigenvals.npy")
RGB_SIZE = 1024  # the eigenvalues' rgb columns: the first 1024 features
RGB_OFFSET = 4.0 / 512  # half a quantization step: the dequantized bytes' offset
EIGEN_EPSILON = 1e-4


@functools.lru_cache(maxsize=None)
def eigen_scales() -> np.ndarray:
    """``sqrt(eigenvalue) + 1e-4`` of the rgb columns (float32 ``[1024]``,
    computed in float32 as the fork does)."""
    eigenvalues = np.load(EIGENVALUES_FILE)[:RGB_SIZE, 0].astype(np.float32)
    return np.sqrt(eigenvalues) + np.float32(EIGEN_EPSILON)


def _eigen_constants(width: int) -> tuple[np.ndarray, np.ndarray]:
    """The offset and scale of each of ``width`` columns (rgb first, the rest
    passed through: offset 0, scale 1)."""
    rest = width - RGB_SIZE
    offset = np.concatenate([np.full(RGB_SIZE, RGB_OFFSET, np.float32),
                             np.zeros(rest, np.float32)])
    scale = np.concatenate([eigen_scales(), np.ones(rest, np.float32)])
    return offset, scale


def scale_features(features, method: str):
    """``features`` (float32 ``[..., D]``, rgb first) scaled by ``method``
    (``l2`` or ``eigen``; ``auto`` is resolved by the model)."""
    if method == "l2":
        return l2_normalize(features, axis=-1)
    if method == "eigen":
        width = features.shape[-1]
        if width is None or width < RGB_SIZE:
            raise ValueError(f"eigen input scaling needs the {RGB_SIZE} rgb features first, "
                             f"got {width} features")
        offset, scale = _eigen_constants(int(width))
        return (features - offset) * scale
    raise ValueError(f"unknown input scaling {method!r}; valid: l2, eigen")
