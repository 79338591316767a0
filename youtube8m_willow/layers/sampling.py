"""Frame samplers (SPEC section 3): pick ``num_samples`` of each video's
``num_frames`` valid frames before pooling."""

from __future__ import annotations

import keras
from keras import ops

from youtube8m_willow.layers import kernels
from youtube8m_willow.layers.core import register

SAMPLING_METHODS = ("random", "sequence", "uniform")


def random_indices(num_frames, num_samples: int, draw):
    """``floor(u * num_frames)`` with u ~ U[0, 1): with replacement, unsorted."""
    u = draw((ops.shape(num_frames)[0], num_samples))
    frames = ops.cast(num_frames, "float32")[:, None]
    return ops.cast(u * frames, "int32")


def sequence_indices(num_frames, num_samples: int, draw):
    """A random window of consecutive frames, clipped to the last valid one."""
    num_frames = ops.cast(num_frames, "int32")
    starts_range = ops.cast(ops.maximum(num_frames - num_samples, 0) + 1, "float32")
    start = ops.cast(draw((ops.shape(num_frames)[0],)) * starts_range, "int32")
    indices = start[:, None] + ops.arange(num_samples, dtype="int32")[None, :]
    return ops.minimum(indices, ops.maximum(num_frames - 1, 0)[:, None])


def uniform_indices(num_frames, num_samples: int, draw=None):
    """Deterministic, evenly spread: ``floor(i * num_frames / num_samples)``."""
    steps = ops.arange(num_samples, dtype="int32")[None, :]
    return steps * ops.cast(num_frames, "int32")[:, None] // num_samples


_INDEXERS = {"random": random_indices, "sequence": sequence_indices,
             "uniform": uniform_indices}


def sample_indices(num_frames, num_samples: int, method: str, seed=None, sampling_seed=None,
                   generator=None):
    """The int32 ``[B, num_samples]`` positions of the frames to keep.

    Random methods draw from ``sampling_seed`` (int ``[2]``) statelessly when
    given, else from ``seed`` (TensorFlow's stateful op) or ``generator``
    (other backends): see ``kernels.uniform``.
    """
    if method not in _INDEXERS:
        raise ValueError(f"unknown frame sampling {method!r}; valid: {', '.join(SAMPLING_METHODS)}")

    def draw(shape):
        return kernels.uniform(shape, seed, generator, sampling_seed)

    return _INDEXERS[method](num_frames, num_samples, draw)


@register
class FrameSampler(keras.layers.Layer):
    """Samples ``num_samples`` frames per video, in training and inference
    alike (as the original did; use ``method="uniform"`` for determinism).

    Args:
        num_samples: frames kept per video (the original ``--iterations``).
        method: ``"random"``, ``"sequence"`` or ``"uniform"``.

    Input: ``frames`` ``[B, T, D]``, ``num_frames`` ``[B]`` and optionally
    ``sampling_seed`` (int ``[2]``: stateless draws, a function of it).
    Output: ``[B, num_samples, D]``.

    Example:
        >>> frames = np.arange(10, dtype="float32")[None, :, None] * np.ones([2, 1, 1])
        >>> np.asarray(FrameSampler(4, "uniform")(frames, np.array([10, 5])))[:, :, 0]
        array([[0., 2., 5., 7.],
               [0., 1., 2., 3.]], dtype=float32)
    """

    def __init__(self, num_samples: int, method: str = "random", seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if method not in SAMPLING_METHODS:
            raise ValueError(f"unknown frame sampling {method!r}; valid: {', '.join(SAMPLING_METHODS)}")
        self.num_samples = int(num_samples)
        self.method = method
        self.seed = seed
        self.generator = kernels.seed_generator(seed) if method != "uniform" else None

    def call(self, frames, num_frames, sampling_seed=None):
        return kernels.gather_frames(frames, self.indices(num_frames, sampling_seed))

    def indices(self, num_frames, sampling_seed=None):
        """The positions ``call`` gathers, int32 ``[B, num_samples]``: a caller
        holding the frames in another form (bytes) reads only these."""
        return sample_indices(num_frames, self.num_samples, self.method, self.seed,
                              sampling_seed, self.generator)

    def compute_output_shape(self, frames_shape, num_frames_shape=None):
        return (frames_shape[0], self.num_samples, frames_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_samples": self.num_samples, "method": self.method,
                "seed": self.seed}
