"""Fixtures: one real `stonetown serve` (SQLite file in a temp dir, free loopback port) with the
collaboration schema for this directory, the small organization of schema/collaboration.yaml
loaded into it over gRPC, and clients."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))
sys.path.insert(0, str(Path(__file__).parent))

from collaboration_support import SCHEMA_FILE, VALIDATION_FILE, load_platform_example  # noqa: E402
from grpc_harness import ServerProcess  # noqa: E402

from stonetown import Client  # noqa: E402
from stonetown.validation import load_validation_file  # noqa: E402

_ids = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server started with the collaboration schema."""
    workdir = tmp_path_factory.mktemp("collaboration")
    proc = ServerProcess(
        workdir, "--port", "0", "--datastore", str(workdir / "st.db"), "--schema", str(SCHEMA_FILE)
    )
    yield proc
    proc.stop()


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server for one test only, for tests that end Watch streams: ending a Watch while the
    server reads the change log can leave a pooled SQLite reader inside a transaction, and the
    next RPC on that reader fails with UNAVAILABLE (an engine bug, reported separately). Such
    tests end their streams last, on a server nobody else uses."""
    proc = ServerProcess(
        tmp_path, "--port", "0", "--datastore", str(tmp_path / "st.db"), "--schema", str(SCHEMA_FILE)
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def acme(server: ServerProcess) -> str:
    """The organization of collaboration.yaml, written once over gRPC; the write's token.

    Its ids (acme, olivia, mia, ...) belong to it: other tests use ids made with `uid`."""
    _schema, relationships = load_validation_file(VALIDATION_FILE)
    with Client(server.address) as client:
        return client.write(touch=relationships)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    """A sync client that reads its own writes."""
    with Client(server.address, read_your_writes=True) as c:
        yield c


@pytest.fixture
def uid() -> str:
    """An id suffix unique within the session, so tests sharing the server do not collide."""
    return f"t{next(_ids)}"


@pytest.fixture
def racers(server: ServerProcess) -> tuple[str, str]:
    """Where the two sides of a race send their calls, each on a channel of its own: this
    server, twice (on PostgreSQL, also one node each)."""
    return server.address, server.address


@pytest.fixture(scope="session")
def platform() -> ModuleType:
    """examples/platform_service.py, imported from its path."""
    return load_platform_example()
