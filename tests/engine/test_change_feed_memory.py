"""What the change feed read is let go once nobody watches (engine/change_feed.py): its reader
task used to keep its last read of the store in a local variable while it waited for the next
watcher, for good (after the hostile mix: an import's 5,000-change commit, a few MB that also
pinned pymalloc arenas). A real SQLite file."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from stonetown.core.relationship import Relationship
from stonetown.engine import change_feed
from stonetown.engine.datastore import RevisionChanges, Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.stores.sqlite import SqliteDatastore

SCHEMA = """
definition user {}

definition doc {
    relation reader: user
}
"""
COMMIT = 500


@asynccontextmanager
async def _watching(
    tmp_path: Path,
) -> AsyncIterator[tuple[PermissionSystem, AsyncIterator[RevisionChanges]]]:
    """A started system on a real SQLite file and a watcher of its docs from the schema's
    revision on (not started: its reads are the test's to hold or let go)."""
    system = PermissionSystem(SqliteDatastore(str(tmp_path / "st.db")), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        yield system, system.watch(await system.store.head_revision(), ["doc"])
    finally:
        await system.stop()


def _kept(revision: int) -> int:
    """Instances of RevisionChanges for `revision` still alive (after a collection)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is RevisionChanges and obj.revision == revision)


async def test_the_feed_keeps_no_read_once_its_last_watcher_is_gone(tmp_path: Path) -> None:
    async with _watching(tmp_path) as (system, stream):
        reading = asyncio.ensure_future(anext(stream))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the watcher is in: the reader task serves it
        rels = [Relationship.parse(f"doc:d{i}#reader@user:u") for i in range(COMMIT)]
        revision = await system.write_relationships([Update(UpdateOp.TOUCH, rel) for rel in rels])
        event = await asyncio.wait_for(reading, timeout=30)
        assert event.revision == revision and len(event.changes) == COMMIT  # read from the store
        del event, reading
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        assert system.feed.watchers == 0
        assert _kept(revision) == 0


async def test_a_watcher_that_is_not_read_holds_only_what_it_was_handed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Watch stream whose client does not read stays suspended with the revision it was
    handed. It held every revision of the read that revision came in (issue #18's mix: 100
    such streams, each with a few 5,000-change commits, for as long as they stayed open);
    the revisions after it are the feed's to keep or drop."""
    monkeypatch.setattr(change_feed, "KEEP_CHANGES", 3 * COMMIT + 100)  # three commits
    async with _watching(tmp_path) as (system, stream):
        reading = asyncio.ensure_future(anext(stream))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the watcher is in: the reader task serves it
        # three commits the feed reads at once (written to the store, then caught up with)
        written = []
        for commit in range(3):
            rels = [Relationship.parse(f"doc:c{commit}-{i}#reader@user:u") for i in range(COMMIT)]
            written.append(await system.store.write([Update(UpdateOp.TOUCH, rel) for rel in rels]))
        await system.catch_up()
        handed = await asyncio.wait_for(reading, timeout=30)
        assert handed.revision == written[0]  # held by its (stuck) reader from now on
        for commit in range(3, 7):  # later commits: the feed lets the first three go
            rels = [Relationship.parse(f"doc:c{commit}-{i}#reader@user:u") for i in range(COMMIT)]
            await system.write_relationships([Update(UpdateOp.TOUCH, rel) for rel in rels])
        while system.feed.base < written[-1]:
            await asyncio.sleep(0.01)
        assert [_kept(revision) for revision in written[1:]] == [0, 0]
        assert len(handed.changes) == COMMIT
        await stream.aclose()  # type: ignore[attr-defined]
