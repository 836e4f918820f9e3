"""Reliability tests: a fast slice by default, the full runs with ``--reliability-full``.

The flag is recognised when pytest is pointed at this directory (``pytest tests/reliability
--reliability-full``); from anywhere, ``STONETOWN_RELIABILITY_FULL=1`` does the same.
``STONETOWN_SOAK_SECONDS`` overrides how long each soak and crash load runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stores"))  # file_faults

from reliability_harness import Budget  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--reliability-full``."""
    parser.addoption(
        "--reliability-full",
        action="store_true",
        default=False,
        help="run the long reliability runs (soak, crash, fuzz) instead of the CI slice",
    )


def _full(config: pytest.Config) -> bool:
    flag = bool(config.getoption("--reliability-full", default=False))
    return flag or os.environ.get("STONETOWN_RELIABILITY_FULL", "") not in ("", "0")


@pytest.fixture(scope="session")
def budget(pytestconfig: pytest.Config) -> Budget:
    """How big each run is: the CI slice, or the full run."""
    full = _full(pytestconfig)
    override = os.environ.get("STONETOWN_SOAK_SECONDS")
    return Budget.make(full, float(override) if override else None)
