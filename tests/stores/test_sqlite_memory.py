"""The SQLite store gives its page caches back when asked (stores/sqlite_memory.py).

Issue #18's soak ended with glibc holding 105 MB in use (10 MB at the start): the page caches
of the writer and of every reader connection, each filled by one large read or import and
kept for as long as the connection was open. These tests fill every kind of connection from a
real file, then measure SQLite's own account of its memory (``sqlite3_memory_used``)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlite_holding import sqlite_holding

from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import RelationshipFilter
from stonetown.stores import sqlite_memory
from stonetown.stores.sqlite import SqliteDatastore

ROWS = 30_000
THREADS = 3

pytestmark = pytest.mark.skipif(sqlite_memory.memory_used() is None, reason="SQLite's figures not reachable")


@pytest.fixture
def workers() -> Iterator[ThreadPoolExecutor]:
    """THREADS long-lived threads reading old revisions (a server's worker threads)."""
    with ThreadPoolExecutor(THREADS) as pool:
        yield pool


def _used() -> int:
    used = sqlite_memory.memory_used()
    assert used is not None
    return used


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteDatastore]:
    """A store on a real file holding ROWS relationships (a few MB of pages)."""
    texts = (f"document:doc{i}#viewer@user:someone-{i % 977}" for i in range(ROWS))
    async with sqlite_holding(tmp_path / "store.db", texts) as datastore:
        yield datastore


def _read_on_threads(
    store: SqliteDatastore, revision: int, workers: ThreadPoolExecutor, hold: threading.Event | None = None
) -> list[Future[None]]:
    """Read every row on each of the THREADS threads of `workers` (each has a connection of
    its own); with `hold`, the first keeps its read open until `hold` is set (the reads'
    futures are returned without waiting)."""
    together = threading.Barrier(THREADS)

    def read(first: bool) -> None:
        reader = store.thread_reader(revision)
        assert reader is not None
        with reader as read_filter:
            assert len(read_filter(RelationshipFilter(resource_type="document"))) > ROWS - 10
            together.wait(timeout=30)  # all at once: one read on each thread
            if hold is not None and first:
                hold.wait(timeout=30)

    reads = [workers.submit(read, i == 0) for i in range(THREADS)]
    if hold is None:
        for done in reads:
            done.result()
    return reads


async def _fill_every_cache(store: SqliteDatastore, workers: ThreadPoolExecutor) -> int:
    revision = await store.head_revision()
    everything = RelationshipFilter(resource_type="document")
    # both pooled readers at once, the writer through a delete's scan, and thread readers
    read = await asyncio.gather(*(store.read(everything, revision) for _ in range(2)))
    assert len(read[0]) == len(read[1]) > ROWS - 10
    await store.delete(RelationshipFilter(resource_type="document", resource_id=f"doc{revision}"))
    await asyncio.to_thread(_read_on_threads, store, revision, workers)
    return revision


async def test_idle_connections_give_their_page_caches_back(
    store: SqliteDatastore, workers: ThreadPoolExecutor
) -> None:
    await store.release_memory()
    empty = _used()
    await _fill_every_cache(store, workers)
    full = _used()
    assert full - empty > 4 * 1024 * 1024, "the reads did not fill the caches"
    # the writer, both pooled readers and each thread's reader
    assert await store.release_memory() == 1 + 2 + THREADS
    assert _used() - empty < (full - empty) / 10
    # the store serves on: reads refill the caches, writes go through
    revision = await _fill_every_cache(store, workers)
    assert revision < await store.head_revision()
    assert _used() - empty > (full - empty) / 2


async def test_a_connection_in_use_keeps_its_cache_and_its_read(
    store: SqliteDatastore, workers: ThreadPoolExecutor
) -> None:
    revision = await _fill_every_cache(store, workers)
    hold = threading.Event()
    reads = await asyncio.to_thread(_read_on_threads, store, revision, workers, hold)
    try:
        # the other threads' reads over (a lock count of 1 alone may be seen before they start)
        while not all(done.done() for done in reads[1:]):
            await asyncio.sleep(0.01)
        while [lock.locked() for _, lock in store._thread_readers.connections].count(True) != 1:
            await asyncio.sleep(0.01)
        # one thread's read transaction is open: its connection is not touched
        assert await store.release_memory() == 1 + 2 + THREADS - 1
    finally:
        hold.set()
    while any(lock.locked() for _, lock in store._thread_readers.connections):
        await asyncio.sleep(0.01)
    # the others were closed (their threads open new ones on their next read): this one now
    assert await store.release_memory() == 1 + 2 + 1


async def test_the_soft_heap_limit_is_set_once_and_a_lower_one_stays(tmp_path: Path) -> None:
    probe = sqlite3.connect(":memory:")
    try:
        (before,) = probe.execute("PRAGMA soft_heap_limit").fetchone()
        probe.execute("PRAGMA soft_heap_limit=0")
        datastore = SqliteDatastore(str(tmp_path / "a.db"))
        await datastore.open()
        await datastore.close()
        assert probe.execute("PRAGMA soft_heap_limit").fetchone() == (sqlite_memory.SOFT_HEAP_LIMIT,)
        probe.execute("PRAGMA soft_heap_limit=1000000")  # an embedding application's own
        datastore = SqliteDatastore(str(tmp_path / "b.db"))
        await datastore.open()
        await datastore.close()
        assert probe.execute("PRAGMA soft_heap_limit").fetchone() == (1_000_000,)
    finally:
        probe.execute(f"PRAGMA soft_heap_limit={before}")
        probe.close()


async def test_imports_at_many_revisions_keep_few_prepared_statements(store: SqliteDatastore) -> None:
    """Issue #18's soak ended with 7.5 MB of prepared statements on the writer: each import's
    INSERT had its revision written into its text, so every import (and every remainder
    size) was a statement of its own, kept by the connection's statement cache (128 of them,
    up to 150 rows each); emptying the page caches does not free them."""
    await store.release_memory()
    before = _used()
    for n in range(60):
        size = 150 + 2 * n + 1  # a full statement and a remainder of its own each time
        await store.import_relationships(
            [Relationship.parse(f"folder:f{n}-{i}#viewer@user:u{i}") for i in range(size)]
        )
    await store.release_memory()
    grown = _used() - before
    # the few statements of each power-of-two row count, not one (or two) per import
    assert grown < 1024 * 1024, f"SQLite holds {grown} bytes more after 60 imports"
