"""Averages submission CSVs into one ensemble submission (WILLOW's last step).

    python file_averaging.py --inputs=a.csv,b.csv --weights=1,2 --output=ens.csv
    python file_averaging.py a.csv b.csv --output=ens.csv --top_k=20
    python file_averaging.py    # WILLOW's seven CSVs -> WILLOW_submission.csv

Scores are divided by the sum of the weights; a class or video missing from
a file counts 0 for that file. Without inputs it averages, with equal
weights, the seven files that the inference lines of WILLOW's README write in
the current directory (see recipes/willow_ensemble.sh), as the original
script did, whose hard-coded names did not all match those files. The math
is in ``youtube8m_willow.submission.ensemble``.
"""

from absl import app, flags

from youtube8m_willow import cli

WILLOW_INPUTS = (
    "test-gatednetvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-GRU-0002-1200.csv",
    "test-gatednetfvLF-128k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-gateddboflf-4096-1024-80-0002-300iter-gatedmoe.csv",
    "test-softdboflf-8000-1024-80-0002-300iter.csv",
    "test-gatedlightvladLF-256k-1024-80-0002-300iter-norelu-basic-gatedmoe.csv",
    "test-lstm-0002-val-150-random.csv",
)

FLAGS = flags.FLAGS
flags.DEFINE_list("inputs", [], "Input submission CSVs (positional arguments work too). "
                  "Default: WILLOW's seven inference outputs.")
flags.DEFINE_list("weights", [], "One weight per input (default: equal weights).")
flags.DEFINE_string("output", "WILLOW_submission.csv", "Where to write the ensemble CSV.")
flags.DEFINE_integer("top_k", 20, "Classes kept per video.")


def _weights(values: list[str]) -> list[float] | None:
    try:
        return [float(value) for value in values] or None
    except ValueError:
        raise flags.ValidationError(f"--weights must be numbers, got {','.join(values)!r}")


def main(argv):
    cli.start_script()
    from youtube8m_willow.submission.ensemble import average_submissions

    def run():
        paths = list(argv[1:]) + list(FLAGS.inputs) or list(WILLOW_INPUTS)
        return average_submissions(paths, _weights(FLAGS.weights), FLAGS.output,
                                   top_k=FLAGS.top_k)

    cli.run_guarded(run)


if __name__ == "__main__":
    app.run(main)
