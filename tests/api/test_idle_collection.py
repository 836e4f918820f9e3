"""A quiet server frees what only reference cycles hold (api/runtime.py give_back_freed_memory):
the collector runs its passes as objects are allocated, so after the hostile mix an idle
server kept tens of MB of aborted calls' cycles for good (issue #18)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from stonetown.api import runtime
from stonetown.core.errors import StoreError
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import RelationshipFilter
from stonetown.stores import sqlite_memory
from stonetown.stores.sqlite import SqliteDatastore


class Node:
    """A tracked object that can be part of a cycle and be watched by a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


@pytest.fixture
def automatic_collection_off() -> Iterator[None]:
    """Only explicit collections run (as on a server that allocates nothing)."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


async def _run_for(
    seconds: float, release: Callable[[], int], release_store: Callable[[], Awaitable[object]] | None = None
) -> None:
    hook = runtime.give_back_freed_memory(release, interval=0.02, release_store=release_store)
    task = asyncio.create_task(hook)
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.usefixtures("automatic_collection_off")
@pytest.mark.parametrize(
    ("quiet_enough", "released", "freed"),
    [
        (0.1, 0, True),  # no full pass for a while: one runs
        (3600.0, 1, True),  # idle caches released: one runs at once
        (3600.0, 0, False),  # neither: the cycle waits (the above are what freed theirs)
    ],
)
async def test_a_quiet_server_frees_cycles(
    monkeypatch: pytest.MonkeyPatch, quiet_enough: float, released: int, freed: bool
) -> None:
    monkeypatch.setattr(runtime, "FULL_PASS_AT_LEAST", quiet_enough)
    watched = _cycle()
    store_releases = 0

    async def release_store() -> None:
        nonlocal store_releases
        store_releases += 1
        if store_releases == 1:
            raise StoreError("a store that fails to shrink does not stop the trimming")

    await _run_for(0.4, lambda: released, release_store)
    assert (watched() is None) == freed
    assert (store_releases > 1) == freed  # with the collection, and again after a failure
    gc.collect()


async def test_a_quiet_server_empties_the_sqlite_page_caches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The store's connections keep their page caches full after a large read; the idle
    hook empties them (glibc's trim then returns the pages)."""
    used = sqlite_memory.memory_used
    if used() is None:
        pytest.skip("SQLite's memory figures are not reachable")
    monkeypatch.setattr(runtime, "FULL_PASS_AT_LEAST", 0.05)
    store = SqliteDatastore(str(tmp_path / "st.db"), synchronous="OFF")
    await store.open()
    try:
        empty = used()
        assert empty is not None
        rows = [Relationship.parse(f"doc:d{i}#viewer@user:u{i}") for i in range(20_000)]
        head = await store.import_relationships(rows)
        everything = RelationshipFilter(resource_type="doc")
        await asyncio.gather(store.read(everything, head), store.read(everything, head))  # both readers
        full = used()
        assert full is not None and full - empty > 4 * 1024 * 1024
        hook = runtime.give_back_freed_memory(lambda: 0, interval=0.02, release_store=store.release_memory)
        task = asyncio.create_task(hook)
        try:  # a loaded machine may take a while to run the hook: wait for it, bounded
            for _ in range(200):
                await asyncio.sleep(0.05)
                after = used()
                if after is not None and after - empty < (full - empty) / 10:
                    break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert after is not None and after - empty < (full - empty) / 10, (empty, full, after)
    finally:
        await store.close()


async def test_watch_responses_are_dropped_once_their_streams_had_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Watch response shared by the streams of a commit was kept until newer commits
    pushed it out: an idle server kept the last few (a 5,000-change commit: about 1 MB each)."""
    from stonetown.api.servicers import shared

    monkeypatch.setattr(shared, "RESPONSE_KEPT_SECONDS", 0.05)
    responses = shared.SharedResponses()
    first = await responses.get((1, ()), lambda: b"x" * 1000, 1)
    assert await responses.get((1, ()), lambda: b"rebuilt", 1) is first  # shared while kept
    await asyncio.sleep(0.03)
    await responses.get((2, ()), lambda: b"y" * 1000, 1)
    await asyncio.sleep(0.04)  # the first one expired, the second not yet
    assert list(responses._items) == [(2, ())] and responses._bytes == 1000
    await asyncio.sleep(0.05)
    assert not responses._items and responses._bytes == 0 and responses._expiry is None
