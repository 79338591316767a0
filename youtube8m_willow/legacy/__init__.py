"""Original (TF1) checkpoint names: which code wrote a checkpoint, and how its
names map onto the port's.

The port's own names are WILLOW's (``gates/weights``,
``RNN/rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel``, ``<var>/Adam``,
``model/beta1_power``, ``global_step``): the names every model's
``tf1_weights()`` gives, with optimizer slots appended. A checkpoint written
by another origin is read through a ``Naming``: its origin (``willow``,
``starter2017``: one module each) and the TF release that spelled its RNN
cells (``rnn_spellings``). Both are detected from the stored names alone, so
no flag says where a checkpoint came from; continued training writes the
names back in the same spelling.
"""

from youtube8m_willow.legacy.naming import PORT_NAMING, Naming, detect_naming

__all__ = ["Naming", "PORT_NAMING", "detect_naming"]
