"""Writes a Kaggle submission CSV: the original inference.py command line.

    python inference.py --input_data_pattern='/data/test*.tfrecord' \
        --train_dir=/tmp/yt8m_model --output_file=predictions.csv
"""

from absl import app, flags

from youtube8m_willow import cli
from youtube8m_willow import flags as yt_flags

FLAGS = flags.FLAGS
yt_flags.define_inference_flags()


def main(argv):
    del argv
    cli.setup_logging()
    from youtube8m_willow.evaluation import EvalConfig, run_inference
    from youtube8m_willow.submission.vocabulary import load_vocabulary

    def run():
        if not FLAGS.output_file:
            raise flags.ValidationError("--output_file is required")
        model_config = yt_flags.model_config_for_train_dir(FLAGS.train_dir)
        config = EvalConfig(
            train_dir=FLAGS.train_dir, data_pattern=FLAGS.input_data_pattern,
            batch_size=FLAGS.batch_size, num_readers=FLAGS.num_readers, top_k=FLAGS.top_k,
            check_point=FLAGS.check_point,
            num_classes_from_checkpoint=yt_flags.num_classes_unknown(FLAGS.train_dir),
            skip_bad_records=FLAGS.skip_bad_records,
            drop_out_of_range_labels=FLAGS.drop_out_of_range_labels)
        vocabulary = load_vocabulary(FLAGS.vocabulary_file) if FLAGS.vocabulary_file else None
        return run_inference(config, model_config, FLAGS.output_file, vocabulary=vocabulary,
                             print_top_videos=FLAGS.print_top_videos)

    cli.run_guarded(run)


if __name__ == "__main__":
    app.run(main)
