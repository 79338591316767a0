"""eval.py's per-class report and its TensorBoard look at the classes: read
back from the CSV and the event files, and checked against the numbers
computed here from the model's own predictions with the starter's
calculators (MeanAveragePrecisionCalculator over each video's top k, as the
starter's eval_util fed it) and TensorBoard's own pr_curve summary."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.pr_curve import summary as pr_curve_summary

from conftest import run_script
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.evaluation import EvalConfig
from youtube8m_willow.metrics.eval_util import top_k_by_class
from youtube8m_willow.metrics.mean_average_precision_calculator import (
    MeanAveragePrecisionCalculator)
from youtube8m_willow.prediction import eval_dataset, restored_predictor

NUM_CLASSES, TOP_K, STEPS, EVAL_BATCH = 12, 3, 6, 16
MODEL = ["--model=LogisticModel", "--feature_names=mean_rgb,mean_audio", "--feature_sizes=16,8",
         f"--num_classes={NUM_CLASSES}"]
NAMES = {0: "Game", 1: "Vehicle, land", 2: "Music", 3: "Dance", 5: "Food"}  # 4, 6...: unnamed


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A trained LogisticModel evaluated with --top_k=3 and a 2017
    label_names.csv: the train_dir, the eval data and eval.py's log."""
    root = tmp_path_factory.mktemp("report")
    kwargs = dict(num_classes=NUM_CLASSES, num_shards=1, frame_level=False, feature_sizes=(16, 8),
                  seed=5)
    train = write_synthetic_dataset(str(root / "data"), num_videos=64, prefix="train",
                                    **kwargs)["video"]
    validate = write_synthetic_dataset(str(root / "data"), num_videos=40, prefix="validate",
                                       **kwargs)["video"]
    vocabulary = root / "label_names.csv"
    vocabulary.write_text("label_id,label_name\n" + "".join(
        f'{i},"{name}"\n' for i, name in NAMES.items()))
    train_dir = root / "train_dir"
    run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={train}",
               "--batch_size=16", f"--max_steps={STEPS}", "--export_model_steps=100000",
               "--base_learning_rate=0.05", "--seed=1", *MODEL)
    log = run_script("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={validate}",
                     "--run_once=True", f"--batch_size={EVAL_BATCH}", f"--top_k={TOP_K}",
                     f"--vocabulary_file={vocabulary}").stderr
    return train_dir, validate, log


def _predictions(train_dir, pattern):
    """The restored model's predictions and the labels of every eval video,
    computed here (same checkpoint, same batches)."""
    config = EvalConfig(train_dir=str(train_dir), data_pattern=pattern, batch_size=EVAL_BATCH)
    model_config = ModelConfig(model="LogisticModel", feature_names=("mean_rgb", "mean_audio"),
                               feature_sizes=(16, 8), num_classes=NUM_CLASSES)
    predictor = restored_predictor(config, model_config)
    predictions, labels = [], []
    for batch in eval_dataset(config, predictor.model_config):
        predictions.append(predictor(batch).numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(predictions), np.concatenate(labels)


def _summaries(train_dir) -> dict[str, list[tuple[int, object]]]:
    """{tag: [(step, value)]} of the tensor summaries in train_dir's event files."""
    found: dict[str, list] = {}
    for path in sorted(tf.io.gfile.glob(f"{train_dir}/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    found.setdefault(value.tag, []).append(
                        (event.step, value.metadata.plugin_data.plugin_name,
                         tf.make_ndarray(value.tensor)))
    return found


def test_the_report_holds_each_classs_ap_positives_and_top_k_entries(evaluated):
    train_dir, validate, log = evaluated
    predictions, labels = _predictions(train_dir, validate)
    calculator = MeanAveragePrecisionCalculator(NUM_CLASSES)
    calculator.accumulate(*top_k_by_class(predictions, labels, TOP_K))
    expected_aps = calculator.peek_map_at_n()
    # Each video's top 3 classes, counted per class.
    top = np.argsort(-predictions, axis=1, kind="stable")[:, :TOP_K]
    expected_kept = np.bincount(top.reshape(-1), minlength=NUM_CLASSES)

    report = train_dir / f"eval_per_class_step_{STEPS}.csv"
    with open(report, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["class_id", "name", "ap", "positives", f"in_top_{TOP_K}"]
    assert [int(row["class_id"]) for row in rows] == list(range(NUM_CLASSES))
    assert [row["name"] for row in rows] == [NAMES.get(i, "?") for i in range(NUM_CLASSES)]
    assert [float(row["ap"]) for row in rows] == pytest.approx(expected_aps, abs=5e-7)
    assert [int(row["positives"]) for row in rows] == labels.sum(axis=0).astype(int).tolist()
    assert [int(row[f"in_top_{TOP_K}"]) for row in rows] == expected_kept.tolist()
    assert sum(int(row[f"in_top_{TOP_K}"]) for row in rows) == TOP_K * len(labels)

    # The epoch line's MAP is the mean of these APs (WILLOW's: all classes).
    mean_ap = float(re.search(r"\| MAP: ([\d.]+) \|", log).group(1))
    assert mean_ap == pytest.approx(np.mean(expected_aps), abs=5e-4)
    assert f"per-class report: {report} ({NUM_CLASSES} classes, " in log

    # The five best and worst of the classes with positives, named.
    with_positives = [i for i in range(NUM_CLASSES) if labels[:, i].sum() > 0]
    best = sorted(with_positives, key=lambda i: -expected_aps[i])[:5]
    worst = sorted(with_positives, key=lambda i: expected_aps[i])[:5]
    for name, classes in (("best", best), ("worst", worst)):
        shown = ", ".join(f"{i} {NAMES.get(i, '?')}: {expected_aps[i]:.3f}" for i in classes)
        assert f"] {name} classes by AP: {shown}\n" in log


def test_tensorboard_gets_the_ap_histogram_and_the_pr_curve(evaluated):
    train_dir, validate, _ = evaluated
    predictions, labels = _predictions(train_dir, validate)
    found = _summaries(train_dir)
    assert set(found) == {"Eval/AP_per_class", "Eval/PR/pr_curves"}

    (step, plugin, buckets), = found["Eval/AP_per_class"]
    assert step == STEPS and plugin == "histograms"
    # Buckets [left, right, count] over the APs of the classes with positives.
    calculator = MeanAveragePrecisionCalculator(NUM_CLASSES)
    calculator.accumulate(*top_k_by_class(predictions, labels, TOP_K))
    aps = np.array(calculator.peek_map_at_n())[labels.sum(axis=0) > 0]
    assert buckets[:, 2].sum() == len(aps)
    assert buckets[0, 0] == pytest.approx(aps.min()) and buckets[-1, 1] == pytest.approx(aps.max())

    (step, plugin, curve), = found["Eval/PR/pr_curves"]
    assert step == STEPS and plugin == "pr_curves"
    # The curve of every (video, class) prediction, as TensorBoard computes it at once.
    expected = pr_curve_summary.pb("PR", labels > 0, predictions)
    np.testing.assert_array_equal(curve, tf.make_ndarray(expected.value[0].tensor))
    assert curve[0, 0] == labels.sum()  # at threshold 0 every positive is predicted


def test_a_missing_vocabulary_file_is_one_line(evaluated, tmp_path):
    train_dir, validate, _ = evaluated
    result = run_script("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={validate}",
                        "--run_once=True", f"--vocabulary_file={tmp_path / 'nope.csv'}",
                        check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert errors == [f"ERROR: {tmp_path / 'nope.csv'}: no such vocabulary file"]
    assert "epoch/eval number" not in result.stderr  # checked before evaluating
