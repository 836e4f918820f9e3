"""The authzed Python client's own test suite (../shared/conformance/authzed-py), unchanged,
against `stonetown serve-testing` on 127.0.0.1:50051, where the suite expects SpiceDB's
serve-testing. Skipped only when ../shared is absent."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stonetown.testing import TestingServer

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT.parent / "shared" / "conformance" / "authzed-py" / "tests"
PORT = 50051


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_authzed_py_suite_passes_against_serve_testing() -> None:
    if not SUITE.is_dir():
        pytest.skip("../shared/conformance/authzed-py is not present")
    assert not _port_taken(PORT), f"127.0.0.1:{PORT} is taken; the authzed-py suite needs that port"
    with TestingServer(port=PORT) as server:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", str(SUITE)],
            cwd=SUITE.parent,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},  # ../shared is read-only
            capture_output=True,
            text=True,
            timeout=300,
        )
        log = server.log()
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"authzed-py suite failed:\n{output[-6000:]}\nserver log:\n{log[-3000:]}"
    passed = re.search(r"(\d+) passed", output)
    assert passed is not None and int(passed.group(1)) > 0, output[-3000:]
