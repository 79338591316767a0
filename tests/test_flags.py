"""Every flag of the original command lines exists with its original default
(SPEC section 2), in each of the three scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

MODEL_FLAGS = {
    "gating_remove_diag": False, "lightvlad": False, "vlagd": False, "iterations": 30,
    "dbof_add_batch_norm": True, "sample_random_frames": True, "dbof_cluster_size": 16384,
    "dbof_hidden_size": 2048, "dbof_relu": True, "dbof_var_features": 0,
    "dbof_activation": "relu", "softdbof_maxpool": False, "netvlad_cluster_size": 64,
    "netvlad_relu": True, "netvlad_dimred": -1, "gatednetvlad_dimred": 1024, "gating": False,
    "hidden_size": 1024, "netvlad_hidden_size": 1024, "netvlad_hidden_size_video": 1024,
    "netvlad_hidden_size_audio": 64, "netvlad_add_batch_norm": True, "fv_cluster_size": 64,
    "fv_hidden_size": 2048, "fv_relu": True, "fv_couple_weights": True,
    "fv_coupling_factor": 0.01, "dbof_pooling_method": "max",
    "video_level_classifier_model": "MoeModel", "lstm_cells": 1024, "lstm_layers": 2,
    "lstm_cells_video": 1024, "lstm_cells_audio": 128, "gru_cells": 1024,
    "gru_cells_video": 1024, "gru_cells_audio": 128, "gru_layers": 2,
    "lstm_random_sequence": False, "gru_random_sequence": False, "gru_backward": False,
    "lstm_backward": False, "fc_dimred": True, "moe_num_mixtures": 2, "moe_l2": 1e-8,
    "moe_low_rank_gating": -1, "moe_prob_gating": False, "moe_prob_gating_input": "prob",
    "alpha": 0.5, "num_classes": 4716, "feature_names": "mean_rgb", "feature_sizes": "1024",
    "frame_features": False, "model": "LogisticModel", "label_loss": "CrossEntropyLoss",
}
TRAIN_FLAGS = {
    "train_dir": "/tmp/yt8m_model/", "train_data_pattern": "", "start_new_model": False,
    "batch_size": 1024, "regularization_penalty": 1.0, "base_learning_rate": 0.001,
    "learning_rate_decay": 0.9, "learning_rate_decay_examples": 4000000, "num_epochs": 15,
    "max_steps": None, "export_model_steps": 10000, "num_readers": 8,
    "optimizer": "AdamOptimizer", "clip_gradient_norm": 1.0, "log_device_placement": False,
}
EVAL_FLAGS = {"train_dir": "/tmp/yt8m_model/", "eval_data_pattern": "", "batch_size": 1024,
              "num_readers": 4, "run_once": False, "top_k": 20, "check_point": -1}
INFERENCE_FLAGS = {"train_dir": "/tmp/yt8m_model/", "output_file": "", "input_data_pattern": "",
                   "batch_size": 8192, "num_readers": 4, "top_k": 20, "check_point": -1}

DUMP = ("import json, sys; sys.argv = ['x']; import {module}; from absl import flags; "
        "flags.FLAGS(['x']); print(json.dumps({{n: flags.FLAGS[n].default "
        "for n in flags.FLAGS}}, default=str))")


def _defaults(script: str) -> dict:
    result = subprocess.run([sys.executable, "-c", DUMP.format(module=script)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("script,own", [("train", TRAIN_FLAGS), ("eval", EVAL_FLAGS),
                                        ("inference", INFERENCE_FLAGS)])
def test_original_flags_and_defaults(script, own):
    defaults = _defaults(script)
    for name, value in {**MODEL_FLAGS, **own}.items():
        assert name in defaults, f"{script}.py lacks --{name}"
        assert defaults[name] == value, f"{script}.py --{name}: {defaults[name]!r} != {value!r}"


def test_max_step_is_an_alias(tmp_path):
    code = ("import sys; sys.argv = ['x']; import train; from absl import flags; "
            "flags.FLAGS(['x', '--max_step=7']); print(flags.FLAGS.max_steps)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "7"


def _command_line(**given):
    """A parsed command line with every model flag at its default and
    ``given`` given explicitly, as ``flags.given_flags()`` would return it."""
    import dataclasses

    from youtube8m_willow.config import ModelConfig
    from youtube8m_willow.train_dir_flags import GivenFlags

    return GivenFlags(values={**dataclasses.asdict(ModelConfig()), **given},
                      present=frozenset(given))


def test_resolution_against_a_train_dir_takes_values_not_flags(tmp_path):
    from absl import flags

    from youtube8m_willow import train_dir_flags
    from youtube8m_willow.config import ModelConfig, save_model_config

    saved = ModelConfig(model="MoeModel", num_classes=7, feature_names=("mean_rgb",),
                        feature_sizes=(8,))
    save_model_config(str(tmp_path), saved)
    resumed = train_dir_flags.model_config_for_training(
        str(tmp_path), False, _command_line(frame_sampling="uniform"))
    assert resumed == saved.replace(frame_sampling="uniform")  # a runtime flag may be given
    with pytest.raises(flags.ValidationError, match=r"--num_classes=9 contradicts .*"
                                                    r"\(num_classes=7\)"):
        train_dir_flags.model_config_for_training(str(tmp_path), False,
                                                  _command_line(num_classes=9))
    assert train_dir_flags.model_config_for_train_dir(
        str(tmp_path), _command_line(num_classes=9)) == saved  # eval: ignored, warned
    assert train_dir_flags.free_model_fields(str(tmp_path), _command_line()) == frozenset()
    free = train_dir_flags.free_model_fields(str(tmp_path / "original"),
                                             _command_line(max_frames=5))
    assert "max_frames" not in free and "iterations" in free


def test_importing_cli_leaves_the_environment_alone():
    code = ("import os; before = dict(os.environ); import youtube8m_willow.cli; "
            "assert dict(os.environ) == before, 'changed'; "
            "from youtube8m_willow.cli import prepare_environment; prepare_environment(); "
            "print(os.environ['KERAS_BACKEND'], os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "KERAS_BACKEND", "YT8M_VERBOSE_TF")}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={**env, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["tensorflow", "2"]
