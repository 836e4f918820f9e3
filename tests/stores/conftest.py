"""Fixtures for the shared datastore suite: every implementation runs every contract test.

To add a store (PostgreSQL, say), add one factory to STORE_FACTORIES.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from stonetown.engine.datastore import Datastore
from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore

StoreFactory = Callable[[Path], Awaitable[Datastore]]


async def _memory(tmp_path: Path) -> Datastore:
    return MemoryDatastore()


async def _sqlite(tmp_path: Path) -> Datastore:
    return SqliteDatastore(str(tmp_path / "store.db"))


STORE_FACTORIES: dict[str, StoreFactory] = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Datastore]:
    """An opened, empty store of each implementation; closed after the test."""
    datastore = await STORE_FACTORIES[request.param](tmp_path)
    await datastore.open()
    try:
        yield datastore
    finally:
        await datastore.close()
