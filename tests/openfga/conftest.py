"""Print the OpenFGA matrix summary (counts per assertion kind) at the end of the run."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Write one line per matrix file and variant."""
    module = sys.modules.get("test_openfga_matrix")
    if module is None:
        return
    lines = module.summary_lines()
    if lines:
        terminalreporter.section("OpenFGA matrix")
        for line in lines:
            terminalreporter.write_line(line)
