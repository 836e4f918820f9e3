"""Helper process for the crash test: writes forever to a PostgreSQL store, printing
`revision relationship` after each acknowledged write, until it is killed."""

from __future__ import annotations

import asyncio
import sys

from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import RelationshipFilter, Update, UpdateOp
from stonetown.stores.postgres import PostgresDatastore


async def main(uri: str) -> None:
    """Write batches of 50 relationships (and every 5th time delete some) until killed."""
    store = PostgresDatastore(uri)
    await store.open()
    n = 0
    while True:
        n += 1
        if n % 5 == 0:
            result = await store.delete(RelationshipFilter(resource_type="doc", resource_id=f"d{n - 4}"))
            print(f"{result.revision} delete doc:d{n - 4}", flush=True)
            continue
        rels = [Relationship.parse(f"doc:d{n}#viewer@user:u{i}") for i in range(50)]
        revision = await store.write([Update(UpdateOp.CREATE, rel) for rel in rels])
        print(f"{revision} create doc:d{n}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
