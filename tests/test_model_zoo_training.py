"""Every frame-level model learns the synthetic data of the demo generator
(its easy setting, so that a couple of hundred steps suffice): the loss
falls and the batch GAP rises (small cluster and hidden sizes, short
videos)."""

from __future__ import annotations

import numpy as np
import pytest

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import ReaderConfig, make_dataset
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.training.trainer import Trainer, TrainConfig

NUM_CLASSES = 20
MAX_FRAMES = 24
STEPS = 160

MODELS = {
    "NetVLADModelLF": dict(netvlad_cluster_size=8, netvlad_hidden_size=64, gating=True,
                           moe_prob_gating=True),
    "NetVLADModelLF-light": dict(netvlad_cluster_size=8, netvlad_hidden_size=64, lightvlad=True),
    "NetVLADModelLF-vlagd": dict(netvlad_cluster_size=8, netvlad_hidden_size=64, vlagd=True),
    "NetFVModelLF": dict(fv_cluster_size=8, fv_hidden_size=64, gating=True),
    "GatedDbofModelLF": dict(dbof_cluster_size=64, dbof_hidden_size=64),
    "SoftDbofModelLF": dict(dbof_cluster_size=64, dbof_hidden_size=64, softdbof_maxpool=True),
    "DbofModelLF": dict(dbof_cluster_size=64, dbof_hidden_size=64),
    "DbofModel": dict(dbof_cluster_size=64, dbof_hidden_size=64),
    "FrameLevelLogisticModel": dict(),
    "FrameStatisticsModel": dict(stats_top_k=3),
    "LstmModel": dict(lstm_cells=32, lstm_layers=2),
    "GruModel": dict(gru_cells=32, gru_layers=2),
}


@pytest.fixture(scope="module")
def frame_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    return write_synthetic_dataset(str(root), num_videos=640, num_classes=NUM_CLASSES,
                                   num_shards=2, video_level=False, max_frames=MAX_FRAMES,
                                   min_frames=4, seed=3, difficulty="easy")["frame"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_learns_synthetic_data(name, frame_data, tmp_path):
    config = ModelConfig(model=name.split("-")[0], num_classes=NUM_CLASSES, frame_features=True,
                         feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                         max_frames=MAX_FRAMES, iterations=12, **MODELS[name])
    train_config = TrainConfig(train_dir=str(tmp_path), train_data_pattern=frame_data,
                               batch_size=32, base_learning_rate=0.005, seed=1)
    trainer = Trainer(train_config, config)
    dataset = make_dataset(frame_data, ReaderConfig.for_model(config), 32, training=True, num_epochs=None,
                           num_readers=2, seed=1)
    history = [trainer.step(batch) for batch, _ in zip(dataset, range(STEPS))]
    first = {k: np.mean([h[k] for h in history[:10]]) for k in ("loss", "gap")}
    last = {k: np.mean([h[k] for h in history[-10:]]) for k in ("loss", "gap")}
    assert last["loss"] < 0.6 * first["loss"], (first, last)
    assert last["gap"] > first["gap"] + 0.2 and last["gap"] > 0.6, (first, last)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_video_without_frames_gets_a_defined_prediction(name):
    import tensorflow as tf

    from youtube8m_willow.models.registry import create_model

    config = ModelConfig(model=name.split("-")[0], num_classes=NUM_CLASSES, frame_features=True,
                         feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                         max_frames=MAX_FRAMES, iterations=12, frame_sampling="random",
                         **MODELS[name])
    model = create_model(config).build_for_config()
    frames = tf.concat([tf.zeros([1, MAX_FRAMES, 1152]),
                        tf.random.uniform([1, MAX_FRAMES, 1152], -2, 2)], axis=0)
    for training in (False, True):
        predictions = model({"video_matrix": frames, "num_frames": tf.constant([0, 7])},
                            training=training).numpy()
        assert np.isfinite(predictions).all(), (name, training)
        assert ((predictions >= 0) & (predictions <= 1)).all()
