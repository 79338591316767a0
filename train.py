"""Trains a YouTube-8M model: the original train.py command line.

    python train.py --train_data_pattern='/data/train*.tfrecord' \
        --model=MoeModel --train_dir=/tmp/yt8m_model
"""

import dataclasses

from absl import app, flags

from youtube8m_willow import cli
from youtube8m_willow import flags as yt_flags

FLAGS = flags.FLAGS
yt_flags.define_train_flags()


def main(argv):
    del argv
    cli.setup_logging()
    from youtube8m_willow.training import distribute
    from youtube8m_willow.training.trainer import prepare_train_dir, resolved_model_config, train

    def run():
        model_config = yt_flags.model_config_for_training(FLAGS.train_dir, FLAGS.start_new_model)
        config = yt_flags.train_config_from_flags()
        model_config = resolved_model_config(
            "" if FLAGS.start_new_model else FLAGS.train_dir, FLAGS.train_data_pattern,
            model_config, yt_flags.free_model_fields(FLAGS.train_dir, FLAGS.start_new_model),
            skip_bad_records=config.skip_bad_records)
        strategy = distribute.select_strategy()  # first: it sets up the collective ops
        if distribute.strategy_is_chief(strategy):  # the other workers write nothing
            prepare_train_dir(config)  # start_new_model clears it once, here
        return train(dataclasses.replace(config, start_new_model=False), model_config, strategy)

    cli.run_guarded(run)


if __name__ == "__main__":
    app.run(main)
