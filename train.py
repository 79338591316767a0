r"""Trains a YouTube-8M model: the original train.py command line.

    python train.py --train_data_pattern='/data/train*.tfrecord' \
        --model=MoeModel --train_dir=/tmp/yt8m_model
"""

from absl import app

from youtube8m_willow import apps, cli
from youtube8m_willow import flags as yt_flags

yt_flags.define_train_flags()
yt_flags.declare_key_flags("train.py", __name__)


def main(argv):
    del argv
    cli.start_script()
    cli.run_guarded(lambda: apps.run_training(*yt_flags.train_configs()))


if __name__ == "__main__":
    app.run(main)
