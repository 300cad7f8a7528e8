"""Shared test setup: the installed seqlib, hypothesis profiles (bounded on CI), GPU skipping,
seeding."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy
import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
# The suite tests the installed package (`pip install .`, or `pip install -e .` while developing),
# not the checkout that `python -m pytest` puts first on sys.path: packaging mistakes must show.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT]
try:
    import seqlib
except ImportError as error:
    raise pytest.UsageError(f"seqlib is not installed ({error}): run `pip install \".[test]\"` "
                            "(or `pip install -e \".[test]\"` while developing) first") from error


def pytest_report_header(config):
    return f"seqlib {seqlib.__version__} from {Path(seqlib.__file__).parent}"

settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _cuda_available() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    return bool(cupy.is_available())


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (cupy.is_available() is false)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global seed."""
    import seqlib as sl

    sl.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return numpy.random.default_rng(0)
