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
    from youtube8m_willow.training.trainer import (TrainConfig, prepare_train_dir, train,
                                                   with_inferred_num_classes)

    def run():
        model_config = yt_flags.model_config_for_training(FLAGS.train_dir, FLAGS.start_new_model)
        config = TrainConfig(
            train_dir=FLAGS.train_dir, train_data_pattern=FLAGS.train_data_pattern,
            batch_size=FLAGS.batch_size, label_loss=FLAGS.label_loss, alpha=FLAGS.alpha,
            regularization_penalty=FLAGS.regularization_penalty,
            base_learning_rate=FLAGS.base_learning_rate,
            learning_rate_decay=FLAGS.learning_rate_decay,
            learning_rate_decay_examples=FLAGS.learning_rate_decay_examples,
            num_epochs=FLAGS.num_epochs, max_steps=FLAGS.max_steps,
            export_model_steps=FLAGS.export_model_steps, num_readers=FLAGS.num_readers,
            optimizer=FLAGS.optimizer, clip_gradient_norm=FLAGS.clip_gradient_norm,
            start_new_model=FLAGS.start_new_model,
            save_checkpoint_secs=FLAGS.save_checkpoint_secs,
            keep_checkpoints=FLAGS.keep_checkpoints, skip_bad_records=FLAGS.skip_bad_records,
            drop_out_of_range_labels=FLAGS.drop_out_of_range_labels, seed=FLAGS.seed,
            shuffle=FLAGS.shuffle, xla=FLAGS.xla, precision=FLAGS.precision)
        yt_flags.validate_train_config(config)
        if yt_flags.num_classes_unknown(FLAGS.train_dir, FLAGS.start_new_model):
            model_config = with_inferred_num_classes(
                "" if FLAGS.start_new_model else FLAGS.train_dir, FLAGS.train_data_pattern,
                model_config, skip_bad_records=FLAGS.skip_bad_records)
        strategy = distribute.select_strategy()  # first: it sets up the collective ops
        if distribute.strategy_is_chief(strategy):  # the other workers write nothing
            prepare_train_dir(config)  # start_new_model clears it once, here
        return train(dataclasses.replace(config, start_new_model=False), model_config, strategy)

    cli.run_guarded(run)


if __name__ == "__main__":
    app.run(main)
