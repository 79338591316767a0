"""The layers on every Keras backend (TensorFlow, JAX, PyTorch): the same
numbers as the TensorFlow backend, and the original checkpoints' predictions
through the portable weights file.

This process (TensorFlow) writes the reference: the layer cases' results
(``tests/backends/probe.py``) on inputs cut from the netvlad_gated fixture,
and each fixture checkpoint converted by the converter command, with its
inputs and the original's predictions. Then ``tests/backends`` runs once per
backend, each in its own process with ``KERAS_BACKEND`` set. The README's
per-backend examples run here too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_script, shared_path

SUITE = REPO / "tests" / "backends"
sys.path.insert(0, str(SUITE))

import cases  # noqa: E402  (tests/backends)
import probe  # noqa: E402

BACKENDS = ["tensorflow", "jax", "torch"]
FIXTURES = {"moe_video": "fixtures", "netvlad_gated": "fixtures",
            "starter_moe_video": "starter_fixtures", "nextvlad_small": "nextvlad_fixtures"}
FRAMES, VIDEOS = 10, 4


def _layer_inputs(video_matrix, num_frames) -> dict:
    frames = video_matrix[:VIDEOS, :FRAMES]
    video = frames[..., :1024].mean(axis=1)
    audio = frames[..., 1024:]
    untied = audio + 1e-6 * np.arange(audio.size, dtype="float32").reshape(audio.shape)
    return {"frames": frames[..., :1024], "audio": audio, "untied_audio": untied, "video": video,
            "hidden": video[:, :64], "num_frames": np.minimum(num_frames[:VIDEOS], FRAMES),
            "padding_audio": audio[0, 0] / 2}


def _records(path, model_config):
    from youtube8m_willow.data.readers import ReaderConfig, make_dataset

    dataset = make_dataset(str(path), ReaderConfig.for_model(model_config), 1024,
                           training=False, num_epochs=1, num_readers=1)
    batch = next(iter(dataset))
    return batch["video_matrix"].numpy(), batch["num_frames"].numpy().astype("int32")


def _convert_fixtures(folder):
    """Runs the converter command on every fixture's train_dir: the first in
    a process of its own under ``KERAS_BACKEND=jax`` (the scripts run on
    TensorFlow whatever it says), the others in this process."""
    converted = {}
    for index, (name, parent) in enumerate(FIXTURES.items()):
        fixture = shared_path(parent, name)
        meta = json.loads((fixture / "meta.json").read_text())
        result = run_script(
            "youtube8m_willow/portable/convert.py", f"--train_dir={fixture / 'train_dir'}",
            f"--output_file={folder / name}.npz", f"--num_classes={meta['num_classes']}",
            *meta["model_flags"], env={"KERAS_BACKEND": "jax"} if index == 0 else None)
        assert result.stdout.strip() == (f"wrote {folder / name}.npz from "
                                         f"{fixture / 'train_dir' / 'model.ckpt-123'}")
        converted[name] = (fixture, meta)
    return converted


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    from youtube8m_willow import portable

    folder = tmp_path_factory.mktemp("backend_reference")
    (folder / "weights").mkdir()
    for name, (fixture, meta) in _convert_fixtures(folder / "weights").items():
        weights = portable.read_weights(str(folder / "weights" / f"{name}.npz"))
        video_matrix, num_frames = _records(fixture / "data.tfrecord", weights.config)
        np.savez(folder / "weights" / f"{name}.inputs.npz", video_matrix=video_matrix,
                 num_frames=num_frames,
                 expected_predictions=np.load(fixture / "expected_predictions.npy"))
        if name == "netvlad_gated":
            inputs = _layer_inputs(video_matrix, num_frames)
    np.savez(folder / "inputs.npz", **inputs)
    results = {f"{case.name}/{key}": value for case in cases.CASES
               for key, value in probe.measure(case, inputs).items()}
    np.savez(folder / "reference.npz", **results)
    return folder


def test_reference_covers_every_exported_layer(reference_dir):
    from youtube8m_willow import layers

    covered = {type(case.make()).__name__ for case in cases.CASES}
    cells = {"BasicLSTMCell", "GRUCell", "ClusterAssignment", "SlimL2"}  # inside other cases
    assert set(layers.__all__) - cells <= covered
    with np.load(reference_dir / "reference.npz") as stored:
        assert len([k for k in stored.files if k.endswith("/eval")]) == len(cases.CASES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_suite(backend, reference_dir):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "YT8M_BACKEND_REFERENCE": str(reference_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
         "ignore::DeprecationWarning", f"--confcutdir={SUITE}", str(SUITE)],
        cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, f"{backend}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 2 * len(cases.CASES), summary
    assert "skipped" not in summary and "xfail" not in summary, summary


NO_TENSORFLOW = """
import sys
import keras
import numpy as np
from youtube8m_willow import portable
model = portable.load_model(sys.argv[1], frame_sampling="uniform")
with np.load(sys.argv[2]) as stored:
    batch = {"video_matrix": stored["video_matrix"], "num_frames": stored["num_frames"]}
    expected = stored["expected_predictions"]
error = np.abs(keras.ops.convert_to_numpy(model(batch)) - expected).max()
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
print(f"max error {error:.2e}")
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_portable_weights_need_no_tensorflow(backend, reference_dir):
    weights = reference_dir / "weights"
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, str(weights / "netvlad_gated.npz"),
         str(weights / "netvlad_gated.inputs.npz")], cwd=REPO, capture_output=True, text=True,
        timeout=600, env={**os.environ, "KERAS_BACKEND": backend})
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split()[-1]) < 1e-5


def _readme_examples():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    return {backend: block for block in blocks for backend in ("jax", "torch")
            if f'os.environ["KERAS_BACKEND"] = "{backend}"' in block}


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_readme_example_runs(backend):
    example = _readme_examples().get(backend)
    assert example is not None, f"the README has no {backend} example"
    assert len(example.strip().splitlines()) <= 14
    result = subprocess.run([sys.executable, "-c", example], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "the example prints its result"
