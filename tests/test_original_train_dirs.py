"""Original train_dirs evaluated with the user's usual command line.

The train_dirs under tests/data/original_train_dirs were written by the
2019 and the 2017 starter (see its README). The model flags that the
originals' defaults disagree on (DbofModel's activation, cluster and
hidden sizes, the class count) are not passed: eval.py must read them off
the train_dir and give the original's numbers.
"""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_script, shared_path
from youtube8m_willow.legacy.meta_graph import read_graph_facts

DATA = REPO / "tests" / "data" / "original_train_dirs"
# What a user of the originals passes to eval.py besides the train_dir: the
# flags the run was trained with that no original file records.
USUAL_FLAGS = ["--run_once=True", "--num_readers=1", "--batch_size=1024", "--top_k=20",
               "--video_level_classifier_model=LogisticModel",
               "--sample_random_frames=False", "--iterations=8"]
STARTER_2017_MODEL = ["--model=DbofModel", "--frame_features=True",
                      "--feature_names=rgb,audio", "--feature_sizes=1024,128"]


def _copy(name: str, tmp_path: Path, meta: bool = True) -> Path:
    """The fixture's train_dir copied to tmp (eval.py writes summaries there)."""
    train_dir = tmp_path / name
    shutil.copytree(DATA / name / "train_dir", train_dir)
    if not meta:
        for path in train_dir.glob("*.meta"):
            path.unlink()
    return train_dir


def _epoch_scalars(train_dir: Path) -> dict[str, float]:
    """The ``Epoch/*`` scalars of the event files in train_dir, whether
    written as plain ``simple_value`` or as tensor summaries."""
    values = {}
    for path in glob.glob(str(train_dir / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("Epoch/"):
                    values[value.tag] = (value.simple_value if value.HasField("simple_value")
                                         else float(tf.make_ndarray(value.tensor)))
    return values


def _assert_original_numbers(name: str, train_dir: Path) -> None:
    expected = json.loads((DATA / name / "expected_eval.json").read_text())["scalars"]
    got = _epoch_scalars(train_dir)
    for tag, value in expected.items():
        assert tag in got, f"{tag} not written; got {sorted(got)}"
        np.testing.assert_allclose(got[tag], value, rtol=1e-5, atol=1e-6, err_msg=tag)


def _eval(name: str, train_dir: Path, *flags: str):
    return run_script("eval.py", f"--train_dir={train_dir}",
                      f"--eval_data_pattern={DATA / name / 'validate.tfrecord'}",
                      *USUAL_FLAGS, *flags)


def test_2019_starter_dbof_is_evaluated_with_the_graph_it_was_trained_with(tmp_path):
    train_dir = _copy("starter2019_dbof", tmp_path)
    result = _eval("starter2019_dbof", train_dir, "--segment_labels=True")
    assert "--dbof_activation=sigmoid" in result.stderr
    _assert_original_numbers("starter2019_dbof", train_dir)


def test_2019_starter_dbof_without_its_graph_takes_the_2019_default_and_says_so(tmp_path):
    train_dir = _copy("starter2019_dbof", tmp_path, meta=False)
    result = _eval("starter2019_dbof", train_dir, "--segment_labels=True")
    warning = [line for line in result.stderr.splitlines() if "no graph" in line]
    assert len(warning) == 1, result.stderr[-3000:]
    assert "taken as sigmoid" in warning[0] and "--dbof_activation=relu6" in warning[0]
    _assert_original_numbers("starter2019_dbof", train_dir)


def test_2017_starter_dbof_is_evaluated_with_relu6_and_its_sizes(tmp_path):
    train_dir = _copy("starter2017_dbof", tmp_path)
    result = _eval("starter2017_dbof", train_dir, *STARTER_2017_MODEL)
    assert "--dbof_activation=relu6" in result.stderr
    _assert_original_numbers("starter2017_dbof", train_dir)


def test_2017_starter_dbof_without_its_graph_takes_relu6_and_says_so(tmp_path):
    train_dir = _copy("starter2017_dbof", tmp_path, meta=False)
    result = _eval("starter2017_dbof", train_dir, *STARTER_2017_MODEL)
    assert "taken as relu6, as the 2017 starter built it" in result.stderr
    _assert_original_numbers("starter2017_dbof", train_dir)


def test_a_given_flag_wins_over_the_graph(tmp_path):
    train_dir = _copy("starter2019_dbof", tmp_path)
    result = _eval("starter2019_dbof", train_dir, "--segment_labels=True",
                   "--dbof_activation=relu6")
    assert "dbof_activation=sigmoid" not in result.stderr  # the flag was given
    expected = json.loads((DATA / "starter2019_dbof" / "expected_eval.json").read_text())
    gap = _epoch_scalars(train_dir)["Epoch/SegEval_GAP"]
    assert abs(gap - expected["scalars"]["Epoch/SegEval_GAP"]) > 1e-3


@pytest.mark.parametrize("name, activation", [("starter2019_dbof", "sigmoid"),
                                              ("starter2017_dbof", "relu6")])
def test_graph_facts_of_original_dbof_graphs(name, activation):
    meta = DATA / name / "train_dir" / "model.ckpt-10.meta"
    facts = read_graph_facts(str(meta))
    assert facts.dbof_activation == activation
    assert facts.dbof_pooling_method == "max"


def test_graph_facts_of_a_graph_without_dbof_and_of_no_graph(tmp_path):
    netvlad = shared_path("fixtures", "netvlad_gated", "train_dir")
    metas = sorted(netvlad.glob("*.meta"))
    assert metas, f"no .meta in {netvlad}"
    assert read_graph_facts(str(metas[0])).as_flags() == {}
    assert read_graph_facts(str(tmp_path / "model.ckpt-1.meta")) is None


def test_shapes_set_only_the_free_fields():
    from youtube8m_willow.config import ModelConfig
    from youtube8m_willow.models.original_train_dir import _from_shapes

    moe = {"gates/weights": (1152, 5 * 3862), "experts/weights": (1152, 4 * 3862)}
    every = frozenset({"num_classes", "moe_num_mixtures", "dbof_cluster_size",
                       "dbof_hidden_size", "dbof_add_batch_norm"})
    assert _from_shapes(ModelConfig(model="MoeModel"), moe, every) == {
        "num_classes": 3862, "moe_num_mixtures": 4}
    assert _from_shapes(ModelConfig(model="MoeModel"), moe, frozenset({"num_classes"})) == {
        "num_classes": 3862}
    dbof = {"cluster_weights": (1152, 8192), "hidden1_weights": (8192, 1024),
            "cluster_biases": (8192,), **moe}
    assert _from_shapes(ModelConfig(model="DbofModel"), dbof, every) == {
        "num_classes": 3862, "moe_num_mixtures": 4, "dbof_cluster_size": 8192,
        "dbof_hidden_size": 1024, "dbof_add_batch_norm": False}
    # WILLOW's DbofModelLF has other names for its sizes: none is read.
    assert _from_shapes(ModelConfig(model="DbofModelLF"), dbof, frozenset(
        {"dbof_cluster_size"})) == {}
