"""A SQLite store on a real file, filled by one import, for the store tests that measure it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from stonetown.core.relationship import Relationship
from stonetown.stores.sqlite import SqliteDatastore


@asynccontextmanager
async def sqlite_holding(path: Path, texts: Iterable[str]) -> AsyncIterator[SqliteDatastore]:
    """An opened SQLite store at `path` holding the relationships `texts` (one import);
    closed on exit."""
    datastore = SqliteDatastore(str(path), synchronous="OFF")
    await datastore.open()
    try:
        await datastore.import_relationships([Relationship.parse(text) for text in texts])
        yield datastore
    finally:
        await datastore.close()
