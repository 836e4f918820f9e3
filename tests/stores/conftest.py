"""Fixtures for the shared datastore suite: every implementation runs every contract test.

To add a store (PostgreSQL, say), add one factory to STORE_FACTORIES.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from stonetown.engine.datastore import Datastore
from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore

sys.path.insert(0, str(Path(__file__).parent.parent / "postgres"))

import pgcluster  # noqa: E402

StoreFactory = Callable[[Path], Awaitable[Datastore]]


async def _memory(tmp_path: Path) -> Datastore:
    return MemoryDatastore()


async def _sqlite(tmp_path: Path) -> Datastore:
    return SqliteDatastore(str(tmp_path / "store.db"))


async def _postgres(tmp_path: Path) -> Datastore:
    """A fresh database in the throwaway cluster; skips when PostgreSQL is not installed."""
    from stonetown.stores.postgres import PostgresDatastore

    cluster = pgcluster.shared_cluster()
    if cluster is None:
        pytest.skip(pgcluster.MISSING)
    return PostgresDatastore(await cluster.new_database_async())


STORE_FACTORIES: dict[str, StoreFactory] = {"memory": _memory, "sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Datastore]:
    """An opened, empty store of each implementation; closed after the test."""
    datastore = await STORE_FACTORIES[request.param](tmp_path)
    await datastore.open()
    try:
        yield datastore
    finally:
        await datastore.close()
