"""Training options for speed: --xla keeps the original's numbers; mixed
precision keeps float32 weights and probabilities and still learns."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_script, shared_path
from test_fixtures import _infer
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import make_dataset
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.training.trainer import TrainConfig, Trainer, reader_config


def test_xla_continues_original_run(tmp_path):
    fixture = shared_path("train_fixtures", "train_netvlad")
    meta = json.loads((fixture / "meta.json").read_text())
    train_dir = tmp_path / "train_dir"
    shutil.copytree(fixture / "train_dir", train_dir)
    step = meta["checkpoint_step"]
    data = fixture / "data.tfrecord"
    result = run_script(
        "train.py", f"--train_dir={train_dir}", f"--train_data_pattern={data}",
        f"--batch_size={meta['batch_size']}", f"--max_steps={step + 1}", "--num_epochs=1",
        f"--num_classes={meta['num_classes']}", "--frame_sampling=uniform", "--xla=True",
        *meta["model_flags"], *meta["train_flags"])
    line = result.stderr.split(f"training step {step + 1} | ")[1].splitlines()[0]
    assert float(line.split("Total loss: ")[1]) == pytest.approx(meta["loss_of_checked_step"],
                                                                 rel=1e-4)
    predictions = _infer(train_dir, fixture / "data.tfrecord", meta, tmp_path / "after.csv")
    np.testing.assert_allclose(predictions, np.load(fixture / "expected_predictions.npy"),
                               atol=2e-4, rtol=0)


@pytest.fixture(scope="module")
def frame_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    return write_synthetic_dataset(str(root), num_videos=96, num_classes=10, num_shards=1,
                                   video_level=False, max_frames=12, min_frames=4,
                                   feature_sizes=(16, 8), seed=2)["frame"]


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_learns_with_float32_weights(precision, frame_data, tmp_path):
    config = ModelConfig(model="NetVLADModelLF", num_classes=10, frame_features=True,
                         feature_names=("rgb", "audio"), feature_sizes=(16, 8), max_frames=12,
                         iterations=6, netvlad_cluster_size=4, netvlad_hidden_size=16,
                         gating=True, moe_prob_gating=True)
    trainer = Trainer(TrainConfig(train_dir=str(tmp_path), train_data_pattern=frame_data,
                                  batch_size=32, base_learning_rate=0.01, seed=1,
                                  precision=precision), config)
    assert {v.dtype for v in trainer.model.weights} == {"float32"}
    batches = make_dataset(frame_data, reader_config(config), 32, training=True,
                           num_epochs=None, num_readers=1, seed=1)
    losses = [trainer.step(batch)["loss"] for batch, _ in zip(batches, range(60))]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    if precision == "bfloat16":  # the export is float32, like eval.py's model
        exported = tf.saved_model.load(trainer.export()).signatures["serving_default"]
        records = next(iter(tf.data.TFRecordDataset(frame_data.replace("*", "0000")).batch(4)))
        assert exported(example_bytes=records)["predictions"].dtype == tf.float32
    if precision == "float16":  # the initial scale 2**15 overflows: steps were skipped
        assert float(trainer.loss_scale.scale) < 2.0 ** 15
