"""Mixed precision keeps float32 weights and probabilities and still learns
(--xla's parity with the original: tests/test_fixtures.py); the log says
which precision and whether XLA a run uses."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_script
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import ReaderConfig, make_dataset, parse_serialized
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.training.run import precision_and_xla
from youtube8m_willow.training.trainer import TrainConfig, Trainer

POLICY_LINES = {
    "bfloat16": "precision: mixed_bfloat16 (bfloat16 compute, float32 weights), XLA: off",
    "float16": "precision: mixed_float16 (float16 compute, float32 weights, dynamic loss "
               "scaling), XLA: off",
}


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
                         gating=True, moe_prob_gating=True, frame_sampling="uniform")
    trainer = Trainer(TrainConfig(train_dir=str(tmp_path), train_data_pattern=frame_data,
                                  batch_size=32, base_learning_rate=0.01, seed=1,
                                  precision=precision), config)
    assert {v.dtype for v in trainer.model.weights} == {"float32"}
    assert precision_and_xla(trainer) == POLICY_LINES[precision]
    batches = make_dataset(frame_data, ReaderConfig.for_model(config), 32, training=True,
                           num_epochs=None, num_readers=1, seed=1)
    losses = [trainer.step(batch)["loss"] for batch, _ in zip(batches, range(60))]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    if precision == "bfloat16":  # the export computes in float32, like eval.py's model
        exported = tf.saved_model.load(trainer.export()).signatures["serving_default"]
        records = next(iter(tf.data.TFRecordDataset(frame_data.replace("*", "0000")).batch(4)))
        served = exported(example_bytes=records)["predictions"]
        assert served.dtype == tf.float32
        batch = parse_serialized(records, ReaderConfig.for_model(config))
        float32 = create_model(config).build_for_config()
        for name, weight in float32.tf1_weights().items():
            weight.assign(trainer.model.tf1_weights()[name])
        expected = tf.math.top_k(float32(batch, training=False), k=10).values
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
        mixed = tf.math.top_k(tf.cast(trainer.model(batch, training=False), tf.float32), k=10)
        assert np.max(np.abs(mixed.values - expected)) > 1e-4  # what bfloat16 compute gives
        # Training goes on in bfloat16: the export put the layers' policy back.
        assert {layer.dtype_policy.name for layer in trainer.model._flatten_layers()} == {
            "mixed_bfloat16"}
    if precision == "float16":  # the initial scale 2**15 overflows: steps were skipped
        assert float(trainer.loss_scale.scale) < 2.0 ** 15


@pytest.mark.parametrize("flags,line", [
    ((), "precision: float32, XLA: off"),
    (("--precision=bfloat16", "--xla=True"),
     "precision: mixed_bfloat16 (bfloat16 compute, float32 weights), XLA: on"),
])
def test_the_log_says_the_precision_and_xla_of_the_run(flags, line, frame_data, tmp_path):
    result = run_script("train.py", f"--train_dir={tmp_path}", f"--train_data_pattern={frame_data}",
                        "--model=FrameLevelLogisticModel", "--frame_features=True",
                        "--feature_names=rgb,audio", "--feature_sizes=16,8", "--num_classes=10",
                        "--batch_size=16", "--max_steps=1", *flags)
    logged = [text for text in result.stderr.splitlines() if "precision: " in text]
    assert len(logged) == 1 and logged[0].endswith(line), result.stderr[-3000:]
