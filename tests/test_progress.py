"""The pieces of the run output, on their own: the progress bar and when it
is drawn, the cheap record count of a run's first lines, the
precision-recall counts and the per-class report of eval.py."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest

from conftest import screen_lines
from youtube8m_willow import eval_report, progress
from youtube8m_willow.data.files import count_records, count_records_from_headers, file_sizes
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.errors import ConfigError
from youtube8m_willow.metrics.pr_curve import PrecisionRecallCounts


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_bar_is_drawn_on_a_terminal_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    assert progress.bar_wanted(Terminal()) and not progress.bar_wanted(io.StringIO())
    monkeypatch.setenv(progress.PROGRESS_ENV, "lines")
    assert not progress.bar_wanted(Terminal())
    monkeypatch.setenv(progress.PROGRESS_ENV, "bar")
    assert progress.bar_wanted(io.StringIO())
    monkeypatch.setenv(progress.PROGRESS_ENV, "Auto")
    assert progress.bar_wanted(Terminal()) and not progress.bar_wanted(io.StringIO())
    monkeypatch.setenv(progress.PROGRESS_ENV, "fancy")
    with pytest.raises(ConfigError, match="YT8M_PROGRESS='fancy': expected one of auto, bar"):
        progress.bar_wanted(Terminal())


def test_without_a_terminal_the_bar_writes_nothing(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    stream = io.StringIO()
    with progress.ProgressBar("train", total=10, stream=stream) as bar:
        bar.update(3, loss="1.00")
    assert not bar.active and stream.getvalue() == ""


@pytest.fixture
def root_handler():
    """A root handler writing to a terminal, as absl's writes to stderr."""
    stream = Terminal()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("youtube8m_willow")
    level = logger.level
    logger.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)
    logger.setLevel(level)


def test_on_a_terminal_the_bar_shows_the_counts_and_log_lines_pass_above_it(monkeypatch,
                                                                            root_handler):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    with progress.ProgressBar("step", total=10, completed=2, examples_per_unit=64,
                              stream=root_handler) as bar:
        bar.update(3, loss="1.25", GAP="0.50")
        logging.getLogger("youtube8m_willow").info("wrote checkpoint model.ckpt-5")
    assert bar.active
    raw = root_handler.getvalue()
    # While it ran: the record above, the bar below with its counts and
    # numbers (no rate and no ETA yet from one update).
    record, drawn = screen_lines(raw.replace("\x1b[1A", ""))
    assert record == "wrote checkpoint model.ckpt-5"
    assert re.fullmatch(r"step [━╸╺]{10} +5/10 +ETA --:-- loss 1\.25  GAP 0\.50", drawn), drawn
    # Once done: the bar is gone, the record stays, printed once on a line of its own.
    assert screen_lines(raw) == ["wrote checkpoint model.ckpt-5"]
    assert raw.count("wrote checkpoint model.ckpt-5") == 1
    # The routing ends with the bar: later records go to the handler as before.
    logging.getLogger("youtube8m_willow").info("after the bar")
    assert root_handler.getvalue().endswith("after the bar\n")


def test_an_unknown_total_shows_a_question_mark(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    stream = Terminal()
    with progress.ProgressBar("eval", unit="segments", stream=stream) as bar:
        bar.update(200)
    assert "200/? segments" in "".join(screen_lines(stream.getvalue().replace("\x1b[1A", "")))


def test_record_count_from_headers(tmp_path, monkeypatch):
    """Read off the TFRecord length headers: the count of a full read; None
    for a damaged file, over the budget, or a remote path."""
    pattern = write_synthetic_dataset(str(tmp_path), num_videos=37, num_classes=5, num_shards=3,
                                      frame_level=True, video_level=False)["frame"]
    files = file_sizes(pattern)
    assert count_records_from_headers(files) == count_records(pattern) == 37
    assert count_records_from_headers(files, max_records=36) is None
    # Given up after the first file when the rest would, at its bytes per
    # record, pass the budget: the other files are not opened.
    from youtube8m_willow.data import files as files_module

    opened = []
    monkeypatch.setattr(files_module, "open", lambda *args, **kw: opened.append(args[0])
                        or open(*args, **kw), raising=False)
    first = count_records_from_headers(files[:1])
    assert count_records_from_headers(files, max_records=2 * first) is None
    assert opened == [files[0][0], files[0][0]]
    assert count_records_from_headers([("gs://bucket/train0.tfrecord", 100)]) is None
    path, size = files[0]
    with open(path, "r+b") as handle:  # cut the last record short
        handle.truncate(size - 10)
    assert count_records_from_headers([(path, size - 10)]) is None


def test_pr_counts_equal_tensorboards_curve_of_all_predictions_at_once():
    """Accumulated batch by batch, the counts are what TensorBoard's own
    ``pr_curve.summary.pb`` computes from every prediction at once, with and
    without weights."""
    import tensorflow as tf
    from tensorboard.plugins.pr_curve import summary as pr_curve_summary

    rng = np.random.default_rng(3)
    predictions = rng.random((50, 7), dtype=np.float32)
    predictions[0, :3] = [0.0, 1.0, 0.5]  # the ends of the range and a bucket edge
    labels = rng.random((50, 7)) < 0.3
    weights = (rng.random((50, 7)) < 0.8).astype(np.float32)
    for batch_weights in (None, weights):
        counts = PrecisionRecallCounts(num_thresholds=11)
        for rows in np.array_split(np.arange(50), 4):
            counts.accumulate(predictions[rows], labels[rows].astype(np.float32),
                              None if batch_weights is None else batch_weights[rows])
        expected = pr_curve_summary.pb("pr", labels, predictions, num_thresholds=11,
                                       weights=1.0 if batch_weights is None else batch_weights)
        curve = counts.curve()
        got = np.stack([curve[name] for name in (
            "true_positive_counts", "false_positive_counts", "true_negative_counts",
            "false_negative_counts", "precision", "recall")]).astype(np.float32)
        np.testing.assert_array_equal(got, tf.make_ndarray(expected.value[0].tensor))


def test_per_class_report_and_best_and_worst_classes():
    result = {"aps": [0.5, 0.9, 0.0, 0.7, 0.7, 0.1], "class_positives": np.array([2, 3, 0, 1, 4, 2.0]),
              "class_in_top_k": np.array([5, 6, 0, 2, 3, 1]), "global_step": 7}
    vocabulary = {0: "Game", 1: "Vehicle, land", 3: "Car", 4: "Music", 5: "Dance"}
    assert eval_report.best_and_worst(result, count=3) == ([1, 3, 4], [5, 0, 3])
    text = eval_report.report_text(result, top_k=20, vocabulary=vocabulary)
    assert text.splitlines() == [
        "class_id,name,ap,positives,in_top_20",
        "0,Game,0.500000,2,5",
        '1,"Vehicle, land",0.900000,3,6',
        "2,?,0.000000,0,0",
        "3,Car,0.700000,1,2",
        "4,Music,0.700000,4,3",
        "5,Dance,0.100000,2,1"]
    assert eval_report.report_text(result, top_k=3).splitlines()[1] == "0,,0.500000,2,5"
    assert eval_report.describe_classes([1, 3], result["aps"], vocabulary) == (
        "1 Vehicle, land: 0.900, 3 Car: 0.700")
    assert eval_report.describe_classes([1, 3], result["aps"], None) == "1: 0.900, 3: 0.700"
