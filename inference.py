r"""Writes a Kaggle submission CSV: the original inference.py command line.

    python inference.py --input_data_pattern='/data/test*.tfrecord' \
        --train_dir=/tmp/yt8m_model --output_file=predictions.csv
"""

from absl import app

from youtube8m_willow import apps, cli
from youtube8m_willow import flags as yt_flags

yt_flags.define_inference_flags()
yt_flags.declare_key_flags("inference.py", __name__)


def main(argv):
    del argv
    cli.start_script()
    cli.run_guarded(lambda: apps.run_inference(*yt_flags.inference_configs()))


if __name__ == "__main__":
    app.run(main)
