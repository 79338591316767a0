"""TrainConfig: the train.py flags that are not model flags, typed."""

from __future__ import annotations

import dataclasses

from youtube8m_willow.errors import ConfigError

# --precision: the Keras dtype policy of the model (variables stay float32).
PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The train.py flags that are not model flags.

    ``shuffle=False`` reads the files in order, every epoch the same
    (deterministic batches); ``xla`` compiles the step with XLA (numerics may
    differ slightly); ``precision`` is float32, bfloat16 or float16 (mixed
    precision: float32 variables and probabilities, float16 with loss
    scaling); ``num_gpu`` (the NeXtVLAD fork's towers) multiplies
    ``batch_size`` into the global batch, ``examples_per_step``.
    """

    train_dir: str
    train_data_pattern: str
    batch_size: int = 1024
    label_loss: str = "CrossEntropyLoss"
    alpha: float = 0.5
    regularization_penalty: float = 1.0
    base_learning_rate: float = 0.001
    learning_rate_decay: float = 0.9
    learning_rate_decay_examples: float = 4000000
    num_epochs: int | None = 15
    max_steps: int | None = None
    export_model_steps: int = 10000
    num_readers: int = 8
    optimizer: str = "AdamOptimizer"
    clip_gradient_norm: float = 1.0
    start_new_model: bool = False
    save_checkpoint_secs: float = 600
    keep_checkpoints: int = 5
    skip_bad_records: bool = False
    drop_out_of_range_labels: bool = False
    seed: int | None = None
    shuffle: bool = True
    xla: bool = False
    precision: str = "float32"
    # The NeXtVLAD fork's towers: --batch_size is per tower.
    num_gpu: int = 1

    @property
    def examples_per_step(self) -> int:
        """The global batch: --batch_size per tower times --num_gpu towers (the
        learning-rate schedule counts these)."""
        return self.batch_size * self.num_gpu

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown --precision={self.precision!r}; valid: "
                             f"{', '.join(PRECISIONS)}")
