"""Writes batches of relationships to a SQLite store forever, printing each acknowledged one.

Used by test_sqlite_store.py, which kills this process with SIGKILL mid-load. Each output line
is `<batch> <revision>`, printed (and flushed) only after the write returned.
Usage: python sqlite_crash_writer.py PATH BATCH_SIZE [import]
(with `import`, each batch is one call of the bulk path, import_relationships)
"""

from __future__ import annotations

import asyncio
import sys

from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.stores.sqlite import SqliteDatastore


def batch_relationships(batch: int, size: int) -> list[Relationship]:
    """The relationships batch number `batch` writes (the test recomputes them)."""
    return [Relationship("document", f"b{batch}_{j}", "viewer", "user", f"u{j}") for j in range(size)]


async def main(path: str, size: int, bulk: bool) -> None:
    """Write batch after batch until killed."""
    store = SqliteDatastore(path)
    await store.open()
    batch = 0
    while True:
        rels = batch_relationships(batch, size)
        if bulk:
            revision = await store.import_relationships(rels)
        else:
            revision = await store.write([Update(UpdateOp.CREATE, r) for r in rels])
        sys.stdout.write(f"{batch} {revision}\n")
        sys.stdout.flush()
        batch += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:] == ["import"]))
