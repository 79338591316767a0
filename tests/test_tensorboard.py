"""TensorBoard scalars of train.py and eval.py: the original's tags, in the
train_dir, at the original's steps, with the values the scripts log, as the
original wrote them (``simple_value`` events, which TensorBoard's
EventAccumulator lists as scalars)."""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_script, shared_path
from youtube8m_willow.data.synthetic import write_synthetic_dataset

NUM_CLASSES, BATCH, STEPS, EVAL_BATCH, EVAL_VIDEOS = 8, 16, 4, 10, 40
BASE_LR, DECAY, DECAY_EXAMPLES = 0.01, 0.5, 32
MODEL = ["--model=LogisticModel", "--feature_names=mean_rgb,mean_audio", "--feature_sizes=16,8",
         f"--num_classes={NUM_CLASSES}"]
TRAIN_TAGS = {"model/Training_Hit@1", "model/Training_Perr", "model/Training_GAP",
              "model/label_loss", "model/reg_loss", "global_step/Examples/Second",
              "learning_rate", "model/total_loss"}


# eval.py's look at the classes (per-class AP histogram, PR curve): tensor
# summaries of TensorBoard's plugins, beside the scalars (tests/test_eval_report.py).
PLUGIN_SUMMARIES = ("histograms", "pr_curves")


def read_scalars(directory) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} over every event file directly in
    ``directory``, read as TF1-era scripts read them: ``value.simple_value``
    (every value but the plugins' histograms and PR curves)."""
    scalars = defaultdict(list)
    for path in sorted(tf.io.gfile.glob(f"{directory}/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name in PLUGIN_SUMMARIES:
                    continue
                assert value.WhichOneof("value") == "simple_value", value.tag
                scalars[value.tag].append((event.step, value.simple_value))
    return dict(scalars)


def accumulated_scalars(directory) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} as TensorBoard's EventAccumulator loads them."""
    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def logged(pattern: str, stderr: str) -> list[tuple[float, ...]]:
    return [tuple(float(v) for v in match) for match in re.findall(pattern, stderr)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb_data")
    kwargs = dict(num_classes=NUM_CLASSES, num_shards=1, frame_level=False, feature_sizes=(16, 8),
                  max_frames=6, min_frames=1, seed=2)
    return (write_synthetic_dataset(str(root), num_videos=64, prefix="train", **kwargs)["video"],
            write_synthetic_dataset(str(root), num_videos=EVAL_VIDEOS, prefix="validate",
                                    **kwargs)["video"])


def train(train_dir, pattern, *extra):
    return run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={pattern}",
                      f"--batch_size={BATCH}", f"--max_steps={STEPS}", "--shuffle=False",
                      f"--base_learning_rate={BASE_LR}", f"--learning_rate_decay={DECAY}",
                      f"--learning_rate_decay_examples={DECAY_EXAMPLES}",
                      "--export_model_steps=100000", "--seed=1", *MODEL, *extra)


def test_train_and_eval_write_the_original_tags(data, tmp_path):
    train_pattern, eval_pattern = data
    train_dir = tmp_path / "train_dir"
    train_log = train(train_dir, train_pattern, "--regularization_penalty=1e6").stderr
    scalars = read_scalars(train_dir)
    assert set(scalars) == TRAIN_TAGS
    assert accumulated_scalars(train_dir) == scalars  # TensorBoard's scalars, the same values
    for tag in TRAIN_TAGS:  # one value per step, at the global step after the update
        assert [step for step, _ in scalars[tag]] == list(range(1, STEPS + 1)), tag
    value = {tag: [v for _, v in values] for tag, values in scalars.items()}

    # The learning rate each step was trained with: the staircase by examples.
    assert value["learning_rate"] == pytest.approx(
        [BASE_LR * DECAY ** ((step - 1) * BATCH // DECAY_EXAMPLES)
         for step in range(1, STEPS + 1)], rel=1e-6)
    # The batch metrics and losses the log lines show (rounded there).
    lines = logged(r"training step \d+ \| Loss: ([\d.]+) Examples/sec: [\d.]+ \| Hit@1: ([\d.]+) "
                   r"PERR: ([\d.]+) GAP: ([\d.]+) \| Total loss: ([\d.]+)", train_log)
    assert len(lines) == STEPS
    for i, (loss, hit, perr, gap, total) in enumerate(lines):
        assert value["model/label_loss"][i] == pytest.approx(loss, abs=0.0051)
        assert value["model/Training_Hit@1"][i] == pytest.approx(hit, abs=0.0051)
        assert value["model/Training_Perr"][i] == pytest.approx(perr, abs=0.0051)
        assert value["model/Training_GAP"][i] == pytest.approx(gap, abs=0.0051)
        assert value["model/total_loss"][i] == pytest.approx(total, abs=6e-5)
        # reg_loss is the unweighted L2 sum; the total weighs it by the penalty.
        assert value["model/reg_loss"][i] > 0
        assert value["model/total_loss"][i] == pytest.approx(
            value["model/label_loss"][i] + 1e6 * value["model/reg_loss"][i], rel=1e-5)
    assert min(value["global_step/Examples/Second"]) > 0

    eval_log = run_script("eval.py", f"--train_dir={train_dir}",
                          f"--eval_data_pattern={eval_pattern}", "--run_once=True",
                          f"--batch_size={EVAL_BATCH}").stderr
    assert not (train_dir / "eval").exists()  # the original wrote into the train_dir
    scalars = read_scalars(train_dir)
    batches = EVAL_VIDEOS // EVAL_BATCH
    batch_tags = ["GlobalStep/Eval_Hit@1", "GlobalStep/Eval_Perr", "GlobalStep/Eval_Loss",
                  "GlobalStep/Eval_Example_Second"]
    epoch_tags = ["Epoch/Eval_Avg_Hit@1", "Epoch/Eval_Avg_Perr", "Epoch/Eval_Avg_Loss",
                  "Epoch/Eval_MAP", "Epoch/Eval_GAP", "Epoch/Eval_MAP_positive_classes"]
    assert set(scalars) == TRAIN_TAGS | set(batch_tags) | set(epoch_tags)
    assert accumulated_scalars(train_dir) == scalars
    for tag in batch_tags:  # every batch at the checkpoint's global step
        assert [step for step, _ in scalars[tag]] == [STEPS] * batches, tag
    for tag in epoch_tags:
        assert [step for step, _ in scalars[tag]] == [STEPS], tag
    value = {tag: [v for _, v in values] for tag, values in scalars.items()}

    # Equal-size batches: the epoch averages are the means of the batch values.
    for batch_tag, epoch_tag in [("GlobalStep/Eval_Hit@1", "Epoch/Eval_Avg_Hit@1"),
                                 ("GlobalStep/Eval_Perr", "Epoch/Eval_Avg_Perr"),
                                 ("GlobalStep/Eval_Loss", "Epoch/Eval_Avg_Loss")]:
        assert value[epoch_tag][0] == pytest.approx(sum(value[batch_tag]) / batches, rel=1e-6)
    batch_lines = logged(r"examples_processed: \d+ \| Hit@1: ([\d.]+) PERR: ([\d.]+) "
                         r"Loss: ([\d.]+)", eval_log)
    assert len(batch_lines) == batches
    for i, (hit, perr, loss) in enumerate(batch_lines):
        assert value["GlobalStep/Eval_Hit@1"][i] == pytest.approx(hit, abs=5.1e-4)
        assert value["GlobalStep/Eval_Perr"][i] == pytest.approx(perr, abs=5.1e-4)
        assert value["GlobalStep/Eval_Loss"][i] == pytest.approx(loss, abs=5.1e-6)
    (hit, perr, mean_ap, gap, loss), = logged(
        r"epoch/eval number 4 \| Avg_Hit@1: ([\d.]+) \| Avg_PERR: ([\d.]+) \| MAP: ([\d.]+) \| "
        r"GAP: ([\d.]+) \| Avg_Loss: ([\d.]+)", eval_log)
    assert value["Epoch/Eval_GAP"][0] == pytest.approx(gap, abs=5.1e-5) and 0 < gap < 1
    assert value["Epoch/Eval_MAP"][0] == pytest.approx(mean_ap, abs=5.1e-4)
    assert value["Epoch/Eval_Avg_Hit@1"][0] == pytest.approx(hit, abs=5.1e-4)
    assert value["Epoch/Eval_Avg_Loss"][0] == pytest.approx(loss, abs=1e-6)  # float32
    # All classes (zeros included) vs classes with positives: the second is larger.
    assert value["Epoch/Eval_MAP_positive_classes"][0] >= value["Epoch/Eval_MAP"][0]


def test_no_reg_loss_without_a_penalty(data, tmp_path):
    train(tmp_path, data[0], "--regularization_penalty=0")
    scalars = read_scalars(tmp_path)
    assert set(scalars) == TRAIN_TAGS - {"model/reg_loss"}
    assert [v for _, v in scalars["model/total_loss"]] == [
        v for _, v in scalars["model/label_loss"]]


SEGMENT_FIXTURE = ("segment_fixtures", "frame_logistic")


def test_segment_eval_writes_the_original_tags(tmp_path):
    """SegEval on the original's 2019 train_dir: TensorBoard lists the later
    starter's tags as scalars, with the values of the original's evaluation."""
    fixture = shared_path(*SEGMENT_FIXTURE)
    shutil.copytree(fixture / "train_dir", tmp_path / "train_dir")
    meta = json.loads((fixture / "meta.json").read_text())
    expected = json.loads((fixture / "expected_eval.json").read_text())
    run_script("eval.py", f"--train_dir={tmp_path / 'train_dir'}",
               f"--eval_data_pattern={fixture / 'validate.tfrecord'}", "--segment_labels=True",
               "--run_once=True", "--num_readers=1", "--batch_size=1024",
               f"--num_classes={meta['num_classes']}", "--frame_sampling=uniform")
    scalars = read_scalars(tmp_path / "train_dir")
    assert accumulated_scalars(tmp_path / "train_dir") == scalars
    step = int(meta["checkpoint"].rsplit("-", 1)[1])
    for name, tag in {"Avg_Hit@1": "Epoch/SegEval_Avg_Hit@1", "Avg_PERR": "Epoch/SegEval_Avg_Perr",
                      "MAP": "Epoch/SegEval_MAP", "GAP": "Epoch/SegEval_GAP",
                      "Avg_Loss": "Epoch/SegEval_Avg_Loss"}.items():
        assert scalars[tag] == [(step, pytest.approx(expected[name], abs=1e-5))], tag
    for tag in ("GlobalStep/SegEval_Hit@1", "GlobalStep/SegEval_Perr", "GlobalStep/SegEval_Loss",
                "GlobalStep/SegEval_Example_Second"):
        assert [s for s, _ in scalars[tag]] == [step] * len(expected["batches"]), tag
    assert scalars["GlobalStep/SegEval_Hit@1"][0][1] == pytest.approx(
        expected["batches"][0]["hit_at_one"], abs=1e-5)
