"""Group commit and bulk import through PermissionSystem: every caller gets its own verdict,
and the index always ends up equal to the store, whoever else writes to it."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import pytest

from stonetown.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.datastore import (
    Precondition,
    PreconditionOp,
    RelationshipFilter,
    Update,
    UpdateOp,
)
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship
from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore

SCHEMA = """
definition user {}
definition doc {
    relation viewer: user
    relation owner: user
    permission view = viewer + owner
}
"""


def rel(text: str) -> Relationship:
    """Parse tuple notation."""
    return Relationship.parse(text)


async def assert_index_matches_store(system: PermissionSystem) -> None:
    """The index holds exactly the store's relationships at the store's head."""
    head = await system.catch_up()
    assert head == await system.store.head_revision()
    stored = sorted(str(r) for r in await system.store.read(RelationshipFilter(), head))
    assert sorted(str(r) for r in system.index.relationships()) == stored


@pytest.fixture(params=["sqlite", "memory"])
async def system(request: pytest.FixtureRequest, tmp_path: Path) -> PermissionSystem:
    """A started system with SCHEMA (background poll off: only writes move the index)."""
    store = SqliteDatastore(str(tmp_path / "s.db")) if request.param == "sqlite" else MemoryDatastore()
    started = PermissionSystem(store, poll_interval=None, gc_interval=None)
    await started.start()
    await started.write_schema(SCHEMA)
    yield started  # type: ignore[misc]
    await started.stop()


async def test_concurrent_writes_and_deletes_keep_index_and_store_equal(system: PermissionSystem) -> None:
    rng = random.Random(7)
    await system.write_relationships([Update(UpdateOp.CREATE, rel("doc:taken#owner@user:ana"))])

    async def one(n: int) -> object:
        doc, user = f"doc:d{rng.randrange(12)}", f"user:u{rng.randrange(5)}"
        kind = n % 5
        try:
            if kind == 0:
                return await system.write_relationships([Update(UpdateOp.TOUCH, rel(f"{doc}#viewer@{user}"))])
            if kind == 1:
                return await system.write_relationships(
                    [Update(UpdateOp.DELETE, rel(f"{doc}#viewer@{user}"))]
                )
            if kind == 2:
                updates = [Update(UpdateOp.CREATE, rel(f"{doc}#owner@{user}"))]
                return await system.write_relationships(updates)
            if kind == 3:
                found = await system.delete_relationships(RelationshipFilter("doc", doc.split(":")[1]))
                return found.revision
            guard = Precondition(PreconditionOp.MUST_NOT_MATCH, RelationshipFilter("doc", "taken"))
            return await system.write_relationships(
                [Update(UpdateOp.TOUCH, rel(f"{doc}#owner@{user}"))], [guard]
            )
        except (AlreadyExists, FailedPrecondition) as exc:
            return exc

    results = await asyncio.gather(*(one(n) for n in range(300)))
    assert all(isinstance(r, FailedPrecondition) for n, r in enumerate(results) if n % 5 == 4)
    revisions = [r for r in results if isinstance(r, int)]
    assert max(revisions) == await system.store.head_revision()
    await assert_index_matches_store(system)
    # every successful write's token is honoured without waiting on anything else
    for revision in revisions:
        answer = await system.check(
            ObjectRef("doc", "taken"),
            "view",
            SubjectRef("user", "ana"),
            Consistency.at_least_as_fresh(revision),
        )
        assert answer.permissionship is Permissionship.ALLOWED


async def test_a_failing_write_changes_nothing_and_does_not_block_others(system: PermissionSystem) -> None:
    before = await system.store.head_revision()
    bad = system.write_relationships(
        [
            Update(UpdateOp.TOUCH, rel("doc:a#viewer@user:ana")),
            Update(UpdateOp.TOUCH, rel("doc:a#nosuch@user:ana")),
        ]
    )
    good = system.write_relationships([Update(UpdateOp.TOUCH, rel("doc:b#viewer@user:bob"))])
    outcomes = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(outcomes[0], InvalidArgument) and outcomes[1] == before + 1
    assert [str(r) for r in system.index.relationships()] == ["doc:b#viewer@user:bob"]
    await assert_index_matches_store(system)


async def test_writes_interleaved_with_another_process(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    first = PermissionSystem(SqliteDatastore(path), poll_interval=None, gc_interval=None)
    second = PermissionSystem(SqliteDatastore(path), poll_interval=None, gc_interval=None)
    await first.start()
    await second.start()
    try:
        await first.write_schema(SCHEMA)

        async def writes(system: PermissionSystem, name: str) -> None:
            for n in range(40):
                await system.write_relationships(
                    [Update(UpdateOp.TOUCH, rel(f"doc:{name}{n}#viewer@user:u"))]
                )

        await asyncio.gather(*(writes(first, f"a{k}_") for k in range(3)), writes(second, "b"))
        await assert_index_matches_store(first)
        await assert_index_matches_store(second)
        assert first.index.count == second.index.count == 160
    finally:
        await first.stop()
        await second.stop()


async def test_import_updates_the_index_and_is_all_or_nothing(system: PermissionSystem) -> None:
    await system.write_relationships([Update(UpdateOp.CREATE, rel("doc:there#viewer@user:ana"))])
    rels = [rel(f"doc:i{n}#viewer@user:u{n % 9}") for n in range(3000)]
    revision = await system.import_relationships(rels)
    assert revision == await system.store.head_revision() == system.index.revision
    await assert_index_matches_store(system)
    answer = await system.check(
        ObjectRef("doc", "i2999"), "view", SubjectRef("user", "u2"), Consistency.at_least_as_fresh(revision)
    )
    assert answer.permissionship is Permissionship.ALLOWED
    for bad, error, message in [
        ([rel("doc:new#viewer@user:x"), rel("doc:there#viewer@user:ana")], AlreadyExists, "doc:there"),
        (
            [rel("doc:new#viewer@user:x"), rel("doc:new#editor@user:x")],
            InvalidArgument,
            r"relationships\[1\]",
        ),
        ([rel("doc:new#viewer@user:x"), rel("doc:new#view@user:x")], InvalidArgument, "permission"),
    ]:
        with pytest.raises(error, match=message):
            await system.import_relationships(bad)
    assert await system.store.head_revision() == revision
    await assert_index_matches_store(system)


async def test_a_schema_not_compiled_yet_is_compiled_off_the_event_loop(tmp_path: Path) -> None:
    """Another process writes a new schema: the next write's validator compiles it on the
    store's writer thread (the transaction moved there whole), not on the event loop."""
    path = str(tmp_path / "s.db")
    system = PermissionSystem(SqliteDatastore(path), poll_interval=None, gc_interval=None)
    await system.start()
    other = SqliteDatastore(path)
    await other.open()
    try:
        await system.write_schema(SCHEMA)
        writer = system.store._sync_writer  # type: ignore[attr-defined]
        ran: list[tuple[int, str]] = []
        writer.connection.set_trace_callback(lambda statement: ran.append((threading.get_ident(), statement)))
        loop_thread = threading.get_ident()

        def inserts() -> list[int]:
            threads = [thread for thread, sql in ran if sql.startswith("INSERT INTO relationships")]
            ran.clear()
            return threads

        await system.write_relationships([Update(UpdateOp.CREATE, rel("doc:a#viewer@user:ana"))])
        assert inserts() == [loop_thread]  # the schema in force: compiled already

        newer = SCHEMA.replace("relation owner: user", "relation owner: user\n    relation editor: user")
        await other.write_schema(newer)
        await system.write_relationships([Update(UpdateOp.CREATE, rel("doc:a#editor@user:bob"))])
        threads = inserts()
        assert threads and loop_thread not in threads
        await assert_index_matches_store(system)
    finally:
        await other.close()
        await system.stop()
