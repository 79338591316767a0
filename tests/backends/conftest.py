"""The backend suite: run by ``tests/test_backends.py`` once per Keras
backend, each in its own process (the backend is fixed at import), with
``KERAS_BACKEND`` set and ``YT8M_BACKEND_REFERENCE`` naming the folder the
TensorFlow backend's reference results were written to. Collected only
there (``tests/conftest.py`` ignores this folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REFERENCE_ENV = "YT8M_BACKEND_REFERENCE"
REPORT_ENV = "YT8M_BACKEND_REPORT"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    folder = os.environ.get(REFERENCE_ENV)
    if not folder or not Path(folder, "reference.npz").exists():
        pytest.fail(f"{REFERENCE_ENV} must name the folder tests/test_backends.py writes "
                    f"(got {folder!r})")
    return Path(folder)


@pytest.fixture(scope="session")
def inputs(reference_dir) -> dict:
    with np.load(reference_dir / "inputs.npz") as stored:
        return {name: stored[name] for name in stored.files}


@pytest.fixture(scope="session")
def reference(reference_dir) -> dict:
    with np.load(reference_dir / "reference.npz") as stored:
        return {name: stored[name] for name in stored.files}


@pytest.fixture(scope="session")
def agreement():
    """``{case: {"forward": worst, "gradients": worst}}``, the worst
    ``|diff| / (1 + |TensorFlow's value|)`` of each (test_layers), written
    to ``$YT8M_BACKEND_REPORT/<backend>.json`` at the end when that is set."""
    import keras

    measured: dict = {}
    yield measured
    folder = os.environ.get(REPORT_ENV)
    if folder:
        Path(folder, f"{keras.backend.backend()}.json").write_text(
            json.dumps(measured, indent=1, sort_keys=True))


@pytest.fixture(scope="session", autouse=True)
def _initial_weights_not_drawn():
    """Every layer here is given ``cases.weight_values`` (or a checkpoint's
    values) right after it is built, so its initializers' values are never
    used. On JAX each initializer compiles an XLA program per weight shape
    (about 10 of the suite's 57 s): there they give zeros instead. A
    weight left out of those values would then differ from the TensorFlow
    reference, initialized as usual, and fail its comparison."""
    import keras
    from keras.src.backend.common.variables import Variable

    if keras.backend.backend() != "jax":
        yield
        return
    drawn = Variable._initialize_with_initializer

    def initialize(variable, initializer):
        if not isinstance(initializer, keras.initializers.Initializer):
            return drawn(variable, initializer)
        variable._initialize(variable._convert_to_tensor(
            np.zeros(variable._shape, dtype=variable._dtype)))

    Variable._initialize_with_initializer = initialize
    yield
    Variable._initialize_with_initializer = drawn
