"""Watchers behind the change feed's kept revisions (engine/change_feed.py): watchers at the same
position share one read of the store, a few revisions at a time (issue #18: a hundred slow
Watch consumers of the same large commits each held their own copy of up to a thousand
revisions, hundreds of MB), and each still gets every change in order."""

from __future__ import annotations

import asyncio

import pytest

from stonetown.core.relationship import Relationship
from stonetown.engine import change_feed
from stonetown.engine.datastore import RevisionChanges, Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.stores.memory import MemoryDatastore

SCHEMA = """
definition user {}

definition doc {
    relation reader: user
}
"""

WATCHERS = 20
COMMITS = 12


class CountingStore(MemoryDatastore):
    """The memory store, counting reads of its change log and the revisions each returned."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []

    async def changes(
        self, after_revision: int, *, limit: int | None = None, urgent: bool = False
    ) -> list[RevisionChanges]:
        """Read as the memory store does; remember how many revisions came back."""
        found = await super().changes(after_revision, limit=limit, urgent=urgent)
        self.reads.append(len(found))
        return found


async def test_watchers_behind_share_small_reads_and_see_every_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(change_feed, "KEEP_CHANGES", 2)
    monkeypatch.setattr(change_feed, "BEHIND_READ_BATCH", 3)
    store = CountingStore()
    system = PermissionSystem(store, poll_interval=None, gc_interval=None, max_watchers=100)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        start = await system.write_relationships(
            [Update(UpdateOp.TOUCH, Relationship.parse("doc:start#reader@user:u"))]
        )
        for i in range(COMMITS):
            texts = [f"doc:d{i}-{j}#reader@user:u" for j in range(3)]
            await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(t)) for t in texts])
        streams = [system.watch(start, ["doc"]) for _ in range(WATCHERS)]
        store.reads.clear()

        async def follow(stream: object) -> list[str]:
            seen: list[str] = []
            while len(seen) < COMMITS:
                event = await anext(stream)  # type: ignore[call-overload]
                seen.append(event.changes[0].relationship.resource_id.split("-")[0])
            return seen

        try:
            results = await asyncio.wait_for(asyncio.gather(*(follow(s) for s in streams)), timeout=30)
        finally:
            for stream in streams:
                await stream.aclose()  # type: ignore[attr-defined]
        expected = [f"d{i}" for i in range(COMMITS)]
        assert all(result == expected for result in results)
        # every watcher was behind for (almost) every commit: read together, three at a time
        assert max(store.reads) <= 3
        assert len(store.reads) <= COMMITS, store.reads  # not one read per watcher
    finally:
        await system.stop()
