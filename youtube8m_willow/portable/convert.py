"""Writes a portable weights file from a train_dir's TF1 checkpoint.

    python -m youtube8m_willow.portable.convert --train_dir=willow_model \\
        --output_file=willow.npz [--check_point=N] [model flags]

The model is resolved exactly as inference.py resolves it (the train_dir's
model_flags.json, then the model flags; the class count and graph variant
from the checkpoint), restored, and its ``tf1_weights()`` written with the
config, so ``youtube8m_willow.portable.load_model`` rebuilds it on any
Keras backend. Optimizer slots are left out. ``-h`` (as ``--help``) lists
its flags with their defaults.
"""

from __future__ import annotations

import sys

from absl import app, flags

from youtube8m_willow import cli, train_dir_flags
from youtube8m_willow import flags as yt_flags
from youtube8m_willow.train_dir_flags import GivenFlags

FLAGS = flags.FLAGS


def convert(train_dir: str, output_file: str, given: GivenFlags, check_point: int = -1) -> str:
    """Converts ``train_dir``'s checkpoint (latest, or ``check_point``) with
    the model resolved from it and the command line ``given``; returns the
    checkpoint path."""
    from youtube8m_willow import checkpoint
    from youtube8m_willow.evaluation import EvalConfig
    from youtube8m_willow.portable.weights_file import write_weights
    from youtube8m_willow.prediction import restored_predictor

    model_config = train_dir_flags.model_config_for_train_dir(train_dir, given)
    config = EvalConfig(train_dir=train_dir, data_pattern="", check_point=check_point,
                        free_model_fields=train_dir_flags.free_model_fields(train_dir, given))
    predictor = restored_predictor(config, model_config)
    arrays = {name: variable.numpy() for name, variable in predictor.model.tf1_weights().items()}
    about = {"checkpoint": predictor.path, "global_step": checkpoint.step_of(predictor.path),
             "naming": checkpoint.naming_of(predictor.path).description}
    write_weights(output_file, arrays, predictor.model_config, about)
    return predictor.path


def main(argv):
    del argv
    cli.start_script()

    def run():
        if not FLAGS.output_file:
            raise flags.ValidationError("--output_file is required (e.g. model.npz)")
        path = convert(FLAGS.train_dir, FLAGS.output_file, yt_flags.given_flags(),
                       FLAGS.check_point)
        print(f"wrote {FLAGS.output_file} from {path}")

    cli.run_guarded(run)


if __name__ == "__main__":
    yt_flags.define_convert_flags()
    yt_flags.declare_key_flags("portable.convert", __name__)
    app.run(main, argv=cli.help_alias(sys.argv))
