"""Averages submission CSVs into one ensemble submission (WILLOW's last step).

    python file_averaging.py --inputs=a.csv,b.csv --weights=1,2 --output=ens.csv
    python file_averaging.py a.csv b.csv --output=ens.csv --top_k=20
    python file_averaging.py    # WILLOW's seven CSVs -> WILLOW_submission.csv

Scores are divided by the sum of the weights; a class or video missing from
a file counts 0 for that file (``youtube8m_willow.submission.ensemble``).
"""

from absl import app

from youtube8m_willow import apps, cli
from youtube8m_willow import flags as yt_flags

yt_flags.define_averaging_flags()
yt_flags.declare_key_flags("file_averaging.py", __name__)


def main(argv):
    cli.start_script()
    cli.run_guarded(lambda: apps.run_averaging(*yt_flags.averaging_config(argv)))


if __name__ == "__main__":
    app.run(main)
