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
    from youtube8m_willow.evaluation import EvalConfig, restored_predictor, run_inference
    from youtube8m_willow.segments.inference import run_segment_inference
    from youtube8m_willow.submission.model_tgz import extract_model_tgz, write_model_tgz
    from youtube8m_willow.submission.vocabulary import load_vocabulary

    def run():
        if not FLAGS.output_file:
            raise flags.ValidationError("--output_file is required")
        train_dir = FLAGS.train_dir
        if FLAGS.input_model_tgz:
            if FLAGS["train_dir"].present:
                raise flags.ValidationError("--train_dir cannot be given with --input_model_tgz "
                                            "(the model comes from the tarball)")
            train_dir = extract_model_tgz(FLAGS.input_model_tgz, FLAGS.untar_model_dir)
        model_config = yt_flags.model_config_for_train_dir(train_dir)
        config = EvalConfig(
            train_dir=train_dir, data_pattern=FLAGS.input_data_pattern,
            batch_size=FLAGS.batch_size, num_readers=FLAGS.num_readers, top_k=FLAGS.top_k,
            check_point=FLAGS.check_point,
            free_model_fields=yt_flags.free_model_fields(train_dir),
            skip_bad_records=FLAGS.skip_bad_records,
            drop_out_of_range_labels=FLAGS.drop_out_of_range_labels)
        predictor = restored_predictor(config, model_config)
        if FLAGS.output_model_tgz:
            write_model_tgz(FLAGS.output_model_tgz, predictor.path, predictor.model_config)
        if predictor.model_config.segment_labels:
            return run_segment_inference(predictor, config, FLAGS.output_file,
                                         FLAGS.segment_label_ids_file, FLAGS.segment_max_pred)
        vocabulary = load_vocabulary(FLAGS.vocabulary_file) if FLAGS.vocabulary_file else None
        return run_inference(predictor, config, FLAGS.output_file, vocabulary=vocabulary,
                             print_top_videos=FLAGS.print_top_videos)

    cli.run_guarded(run)


if __name__ == "__main__":
    app.run(main)
