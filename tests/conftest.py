"""Shared test settings.

Every test runs with NumPy's floating-point errors raised (division by zero, overflow,
invalid operations): the library must not produce them silently. Code that handles them on
purpose (the solver's trial steps, which detect non-finite values themselves) says so locally
with ``np.errstate``.
"""
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def numpy_errors_raise():
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        yield
