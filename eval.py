r"""Evaluates checkpoints of a train_dir: the original eval.py command line.

    python eval.py --eval_data_pattern='/data/validate*.tfrecord' \
        --train_dir=/tmp/yt8m_model --run_once=True
"""

from absl import app

from youtube8m_willow import apps, cli
from youtube8m_willow import flags as yt_flags

yt_flags.define_eval_flags()
yt_flags.declare_key_flags("eval.py", __name__)


def main(argv):
    del argv
    cli.start_script()
    cli.run_guarded(lambda: apps.run_eval(*yt_flags.eval_configs()))


if __name__ == "__main__":
    app.run(main)
