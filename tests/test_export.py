"""The SavedModel export: the original export_model serving contract
(serialized records in; video ids, top class indexes and scores out), eval
mode with batch-norm moving statistics, loadable with plain TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np

from conftest import read_submission, run_script, shared_path

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
    result = subprocess.run([sys.executable, "-c", PLAIN_TF_SCRIPT, str(export_dir), str(data)],
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
