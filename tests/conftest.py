"""Shared test settings.

Every test runs with NumPy's floating-point errors raised (division by zero, overflow,
invalid operations): the library must not produce them silently. Code that handles them on
purpose (the solver's trial steps, which detect non-finite values themselves) says so locally
with ``np.errstate``.

Hypothesis: on CI (``CI`` set, as the CI runner does) every run draws the same examples
(``derandomize``), so a submission's run cannot fail on an example drawn by chance that the
developer never saw; local runs keep drawing new examples, and the failures they find are
replayed from ``.hypothesis/`` and turned into explicit regression tests.
``HYPOTHESIS_PROFILE`` names a profile to load instead (``thorough``: below).
"""
import os

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
# The long run of the property-based boundary suite (tests/test_fuzz_boundary.py): 5,000
# examples per property (``HYPOTHESIS_PROFILE=thorough``, or pytest's
# ``--hypothesis-profile=thorough``); with ``CI`` set it draws the same examples every time.
settings.register_profile("thorough", max_examples=5000, deadline=None, print_blob=True,
                          derandomize=bool(os.environ.get("CI")))
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
elif os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def numpy_errors_raise():
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        yield
