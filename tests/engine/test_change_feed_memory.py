"""What the change feed read is let go once nobody watches (engine/change_feed.py): its reader
task used to keep its last read of the store in a local variable while it waited for the next
watcher, for good (after the hostile mix: an import's 5,000-change commit, a few MB that also
pinned pymalloc arenas). A real SQLite file."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from stonetown.core.relationship import Relationship
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


def _kept(revision: int) -> int:
    """Instances of RevisionChanges for `revision` still alive (after a collection)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is RevisionChanges and obj.revision == revision)


async def test_the_feed_keeps_no_read_once_its_last_watcher_is_gone(tmp_path: Path) -> None:
    system = PermissionSystem(SqliteDatastore(str(tmp_path / "st.db")), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        start = await system.store.head_revision()
        stream = system.watch(start, ["doc"])
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
    finally:
        await system.stop()
