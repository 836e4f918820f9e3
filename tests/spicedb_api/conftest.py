"""Fixtures: a real `stonetown serve` (SQLite file, preshared key) and authzed clients to it."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from authzed.api.v1 import SyncClient
from grpcutil import insecure_bearer_token_credentials

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from authzed_support import KEY  # noqa: E402
from grpc_harness import SCHEMA, ServerProcess  # noqa: E402

_ids = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the API tests' schema, a preshared key, on a free port."""
    workdir = tmp_path_factory.mktemp("authzed")
    (workdir / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        workdir,
        "--port", "0", "--datastore", str(workdir / "st.db"), "--schema", "schema.zed",
        "--preshared-key", KEY, "--max-updates-per-write", "20", "--max-page-size", "50",
    )  # fmt: skip
    yield proc
    proc.stop()


@pytest.fixture
def client(server: ServerProcess) -> SyncClient:
    """A synchronous authzed client with the key."""
    return SyncClient(server.address, insecure_bearer_token_credentials(KEY))


@pytest.fixture
def uid() -> str:
    """An id unique within the session, so tests sharing a server do not collide."""
    return f"az{next(_ids)}"
