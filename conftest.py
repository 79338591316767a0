"""Doctests of the package: the names its docstring examples use."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import keras  # here, not at the top: the -n controller would import TensorFlow for nothing

    doctest_namespace["np"] = np
    doctest_namespace["keras"] = keras
