r"""mAP@N of a segment-level submission (the 2019 challenge metric).

    python segment_eval_inference.py --eval_data_pattern='validate*.tfrecord' \
        --submission_file=submission.csv --top_n=100000

The math, and the original's bugs fixed: ``youtube8m_willow.segments.map_at_n``.
"""

from absl import app

from youtube8m_willow import apps, cli
from youtube8m_willow import flags as yt_flags

yt_flags.define_segment_map_flags()
yt_flags.declare_key_flags("segment_eval_inference.py", __name__)


def main(argv):
    del argv
    cli.start_script()
    cli.run_guarded(lambda: apps.run_segment_map(*yt_flags.segment_map_config()))


if __name__ == "__main__":
    app.run(main)
