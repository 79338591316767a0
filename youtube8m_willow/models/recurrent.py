"""WILLOW's recurrent frame-level models: LstmModel and GruModel (SPEC section 4),
and the Google starter's LstmModel (SPEC section 14).

A stack of TF1 cells reads each video's valid frames in order (or reversed,
or a random draw of frames), and the video-level classifier sees the final
state of every layer, concatenated. Nothing is batch-normalized or
L2-normalized beyond the input normalization every model applies.

Two originals call a different graph ``LstmModel``: WILLOW's (every layer's
``[c, h]`` under ``RNN/rnn/multi_rnn_cell``) and the starter's (the last
layer's final ``h`` only, under ``rnn/multi_rnn_cell``, frames read in order
up to ``num_frames``). ``--lstm_variant`` chooses for a new run; a
checkpoint's names choose otherwise (``config_for_tf1_names``).

Random sequences: the original replaces the input with ``iterations`` frames
drawn like "random" sampling but keeps ``sequence_length = num_frames``. TF1's
dynamic_rnn never ran past the time dimension, so a video with more than
``iterations`` frames reads all the drawn frames; one with fewer reads only its
first ``num_frames`` draws. Here the length is clipped to the time dimension
explicitly, which gives the same result, and also makes the random+backward
combination work (the original's reverse_sequence rejected lengths beyond the
time dimension).
"""

from __future__ import annotations

import dataclasses

from keras import ops

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.layers.kernels import gather_frames
from youtube8m_willow.layers.recurrent import StackedRNN
from youtube8m_willow.layers.sampling import sample_indices
from youtube8m_willow.models.base import VideoModel
from youtube8m_willow.models.classifiers import create_classifier
from youtube8m_willow.models.registry import register_model

RNN_SCOPE = "RNN/rnn/multi_rnn_cell"


def reverse_valid_frames(features, lengths):
    """Each video's first ``lengths[b]`` frames in reverse order, the padding
    after them in place (``tf.reverse_sequence`` along time)."""
    times = ops.arange(ops.shape(features)[1], dtype="int32")[None, :]
    lengths = lengths[:, None]
    return gather_frames(features, ops.where(times < lengths, lengths - 1 - times, times))


@dataclasses.dataclass(frozen=True)
class LstmVariant:
    """One original's LstmModel graph: where its cells' TF1 names live and
    whether the classifier reads only the last layer's final ``h``."""

    scope: str
    last_h_only: bool

    def readout(self, states, units: int):
        """The classifier input from the stacked final states ``[c1, h1, ...]``."""
        return states[:, -units:] if self.last_h_only else states


LSTM_VARIANTS = {"willow": LstmVariant(RNN_SCOPE, last_h_only=False),
                 "starter": LstmVariant("rnn/multi_rnn_cell", last_h_only=True)}


class _RecurrentModel(VideoModel):
    """Frames -> stacked RNN final states -> video-level classifier."""

    frame_level = True
    cell_type = ""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        units, layers, self.random_sequence, self.backward = self.recurrent_options(config)
        self.variant = self.graph_variant(config)
        self.rnn = StackedRNN(self.cell_type, units, layers, name="multi_rnn_cell")
        self.classifier = create_classifier(config.video_level_classifier_model, config)

    @staticmethod
    def graph_variant(config: ModelConfig) -> LstmVariant:
        """WILLOW's graph (every model but the starter's LstmModel)."""
        return LSTM_VARIANTS["willow"]

    @staticmethod
    def recurrent_options(config: ModelConfig) -> tuple[int, int, bool, bool]:
        """(units, layers, random_sequence, backward) from the model's flags."""
        raise NotImplementedError

    def predict_probabilities(self, features, num_frames, training=False, sampling_seed=None):
        indices = self.frame_indices(num_frames, sampling_seed)
        if indices is not None:
            features = gather_frames(features, indices)
        return self.predict_sampled(features, num_frames, training=training)

    def frame_indices(self, num_frames, sampling_seed=None):
        if not self.random_sequence:
            return None
        # The original always drew these like "random"; --frame_sampling overrides.
        return sample_indices(num_frames, self.config.iterations,
                              self.config.frame_sampling or "random", sampling_seed=sampling_seed)

    def predict_sampled(self, frames, num_frames, training=False):
        """The RNN over the frames it reads (all of them, or the random
        sequence already drawn), then the classifier."""
        frames, lengths = self.arrange_frames(frames, num_frames)
        states = self.rnn(frames, lengths, training=training)
        return self.classifier(self.variant.readout(states, self.rnn.units), training=training)

    def arrange_frames(self, features, num_frames):
        """The frames the RNN reads in its order, ``[B, T', D]`` (``features``
        already sampled where the model samples), and their lengths ``[B]``."""
        lengths = ops.minimum(ops.cast(num_frames, "int32"), ops.shape(features)[1])
        if self.backward:
            features = reverse_valid_frames(features, lengths)
        return features, lengths

    def tf1_scopes(self):
        return {self.variant.scope: self.rnn, "": self.classifier}


@register_model
class LstmModel(_RecurrentModel):
    """A stack of ``lstm_layers`` BasicLSTM cells of ``lstm_cells`` units;
    the classifier input is ``[c1, h1, c2, h2, ...]`` (WILLOW) or the last
    layer's ``h`` (``lstm_variant="starter"``, which reads the frames in
    order: no random sequence, no backward)."""

    cell_type = "lstm"

    @staticmethod
    def recurrent_options(config):
        return (config.lstm_cells, config.lstm_layers, config.lstm_random_sequence,
                config.lstm_backward)

    @staticmethod
    def graph_variant(config: ModelConfig) -> LstmVariant:
        if config.lstm_variant not in LSTM_VARIANTS:
            raise ValueError(f"unknown lstm_variant {config.lstm_variant!r}; valid: "
                             f"{', '.join(LSTM_VARIANTS)}")
        if config.lstm_variant == "starter" and (config.lstm_random_sequence
                                                 or config.lstm_backward):
            raise ValueError("the starter's LstmModel reads the frames in order: it takes "
                             "neither --lstm_random_sequence nor --lstm_backward")
        return LSTM_VARIANTS[config.lstm_variant]

    @classmethod
    def config_for_tf1_names(cls, config, names):
        """The variant whose cell scope the checkpoint's names use."""
        for variant, spec in LSTM_VARIANTS.items():
            if any(name.startswith(spec.scope + "/") for name in names):
                return config.replace(lstm_variant=variant)
        return config


@register_model
class GruModel(_RecurrentModel):
    """A stack of ``gru_layers`` GRU cells of ``gru_cells`` units; the
    classifier input is ``[h1, h2, ...]``."""

    cell_type = "gru"

    @staticmethod
    def recurrent_options(config):
        return (config.gru_cells, config.gru_layers, config.gru_random_sequence,
                config.gru_backward)
