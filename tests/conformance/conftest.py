"""Print the SpiceDB corpus summary (files, assertions, pairs cross-checked) at the end of the run."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Write the corpus line when the corpus ran (pytest captures a test's own prints)."""
    module = sys.modules.get("test_spicedb_corpus")
    if module is None or not module.SUMMARY["files"]:
        return
    terminalreporter.section("SpiceDB corpus")
    terminalreporter.write_line(module.summary_line())
