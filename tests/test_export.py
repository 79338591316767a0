"""The SavedModel export: the original export_model serving contract
(serialized records in; video ids, top class indexes and scores out), eval
mode with batch-norm moving statistics, loadable with plain TensorFlow."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import forked
from conftest import read_submission, run_script, shared_path
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.models.registry import create_model
from youtube8m_willow.training.export import export_model

PLAIN_TF_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    export_dir, records = sys.argv[1], sys.argv[2]
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(records)]
    out = serve(example_bytes=tf.constant(serialized))
    print(json.dumps({"ids": [v.decode() for v in out["video_id"].numpy()],
                      "classes": out["class_indexes"].numpy().tolist(),
                      "scores": out["predictions"].numpy().tolist()}))
""")


def test_export_serves_like_inference(tmp_path):
    fixture = shared_path("fixtures", "netvlad_gated")
    meta = json.loads((fixture / "meta.json").read_text())
    train_dir = tmp_path / "train_dir"
    shutil.copytree(fixture / "train_dir", train_dir)
    data = fixture / "data.tfrecord"
    classes = f"--num_classes={meta['num_classes']}"
    run_script("train.py", f"--train_dir={train_dir}", f"--train_data_pattern={data}",
               "--batch_size=24", "--max_steps=124", classes, "--frame_sampling=uniform",
               *meta["model_flags"])
    export_dir = train_dir / "export" / "step_124"
    assert (export_dir / "saved_model.pb").exists()

    # Plain TensorFlow, no project import: a fresh interpreter outside the repo.
    result = forked.run([sys.executable, "-c", PLAIN_TF_SCRIPT, str(export_dir), str(data)],
                        capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
                        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])

    csv = tmp_path / "inference.csv"
    run_script("inference.py", f"--train_dir={train_dir}", f"--input_data_pattern={data}",
               f"--output_file={csv}", "--batch_size=5")  # batch size must not matter
    rows = read_submission(csv)
    assert served["ids"] == meta["video_ids"] == list(rows)
    for video_id, classes_row, scores_row in zip(served["ids"], served["classes"],
                                                 served["scores"]):
        assert [label for label, _ in rows[video_id]] == classes_row
        np.testing.assert_allclose([s for _, s in rows[video_id]], scores_row, atol=1e-6)


# --- replacing an export of the same step ---------------------------------------

def _tiny_model():
    config = ModelConfig(model="LogisticModel", feature_names=("mean_rgb",), feature_sizes=(8,),
                         num_classes=4)
    return create_model(config).build_for_config(), config


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _fail(*args, **kwargs):
    raise RuntimeError("interrupted")


@pytest.fixture()
def exported(tmp_path):
    """A model and its export at step 5, with that export's files."""
    model, config = _tiny_model()
    path = Path(export_model(model, config, str(tmp_path), 5))
    assert path == tmp_path / "export" / "step_5"
    return model, config, path, _contents(path)


def test_a_failed_write_keeps_the_earlier_export_of_the_step(exported, tmp_path, monkeypatch):
    model, config, path, before = exported
    monkeypatch.setattr(tf.saved_model, "save", _fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        export_model(model, config, str(tmp_path), 5)
    assert _contents(path) == before


def test_a_failed_rename_puts_the_earlier_export_back(exported, tmp_path, monkeypatch):
    model, config, path, before = exported
    rename = tf.io.gfile.rename
    monkeypatch.setattr(tf.io.gfile, "rename", lambda old, new, overwrite=False: (
        _fail() if old.endswith(".tmp") else rename(old, new, overwrite)))
    with pytest.raises(RuntimeError, match="interrupted"):
        export_model(model, config, str(tmp_path), 5)
    assert _contents(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["step_5", "step_5.tmp"]
    # The next export of the step replaces it, the leftovers gone.
    monkeypatch.undo()
    model.tf1_weights()["fully_connected/biases"].assign(tf.ones([4]))
    export_model(model, config, str(tmp_path), 5)
    assert sorted(p.name for p in path.parent.iterdir()) == ["step_5"]
    assert _contents(path) != before
    assert "predictions" in tf.saved_model.load(str(path)).signatures[
        "serving_default"].structured_outputs


def test_an_export_moved_aside_by_a_crash_is_recovered(exported, tmp_path, monkeypatch):
    model, config, path, before = exported
    path.rename(path.parent / "step_5.old")  # killed between the two renames
    monkeypatch.setattr(tf.saved_model, "save", _fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        export_model(model, config, str(tmp_path), 6)  # the next export, of any step
    assert _contents(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["step_5"]
