"""Fixtures: a real server per test module (SQLite file in a temp dir) and clients to it."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from grpc_harness import SCHEMA, ServerProcess  # noqa: E402

from stonetown import Client  # noqa: E402

_ids = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the test schema, no key, on a free port."""
    workdir = tmp_path_factory.mktemp("server")
    (workdir / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        workdir, "--port", "0", "--datastore", str(workdir / "st.db"), "--schema", "schema.zed"
    )
    yield proc
    proc.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    """A sync client to the module's server."""
    with Client(server.address) as c:
        yield c


@pytest.fixture
def uid() -> str:
    """An id unique within the test session, so tests sharing a server do not collide."""
    return f"t{next(_ids)}"
