"""Evaluates checkpoints of a train_dir: the original eval.py command line.

    python eval.py --eval_data_pattern='/data/validate*.tfrecord' \
        --train_dir=/tmp/yt8m_model --run_once=True
"""

from absl import app, flags

from youtube8m_willow import cli
from youtube8m_willow import flags as yt_flags

FLAGS = flags.FLAGS
yt_flags.define_eval_flags()


def main(argv):
    del argv
    cli.setup_logging()
    from youtube8m_willow.evaluation import EvalConfig, evaluate, wait_for_checkpoint

    def run():
        if not FLAGS.run_once and FLAGS.check_point < 0:
            # Started beside train.py: the model flags appear with its first checkpoint.
            wait_for_checkpoint(FLAGS.train_dir, FLAGS.poll_secs)
        model_config = yt_flags.model_config_for_train_dir(FLAGS.train_dir)
        config = EvalConfig(
            train_dir=FLAGS.train_dir, data_pattern=FLAGS.eval_data_pattern,
            batch_size=FLAGS.batch_size, num_readers=FLAGS.num_readers, top_k=FLAGS.top_k,
            check_point=FLAGS.check_point,
            free_model_fields=yt_flags.free_model_fields(FLAGS.train_dir),
            **yt_flags.loss_flags_for_train_dir(FLAGS.train_dir),
            run_once=FLAGS.run_once, poll_secs=FLAGS.poll_secs,
            skip_bad_records=FLAGS.skip_bad_records,
            drop_out_of_range_labels=FLAGS.drop_out_of_range_labels)
        return evaluate(config, model_config)

    cli.run_guarded(run)


if __name__ == "__main__":
    app.run(main)
