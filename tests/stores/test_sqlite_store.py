"""SQLite-specific behaviour: persistence, crash safety, foreign files, read-only files, locks."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from file_faults import read_only

from stonetown.core.errors import AlreadyExists, InvalidArgument, StoreError
from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import ChangeOp, RelationshipFilter, StoredSchema, Update, UpdateOp
from stonetown.engine.loop_budget import LOOP_ROWS
from stonetown.stores.sql_flow import DECODE_CHUNK
from stonetown.stores.sqlite import SqliteDatastore

WRITER_SCRIPT = Path(__file__).with_name("sqlite_crash_writer.py")


def create(text: str) -> Update:
    """A CREATE update from tuple notation."""
    return Update(UpdateOp.CREATE, Relationship.parse(text))


async def opened(path: Path, **options: object) -> SqliteDatastore:
    """An opened SQLite store at `path`."""
    store = SqliteDatastore(str(path), **options)  # type: ignore[arg-type]
    await store.open()
    return store


async def all_text(store: SqliteDatastore) -> list[str]:
    """Every relationship at the head, as strings in key order."""
    return [str(r) for r in await store.read(RelationshipFilter(), await store.head_revision())]


async def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await opened(path)
    r1 = await store.write([create("document:a#viewer@user:ana[expiration:2030-01-01T00:00:00Z]")])
    r2 = await store.write_schema("definition user {}")
    r3 = await store.write([create('document:b#viewer@user:bob[c:{"k":[1,2]}]')])
    await store.close()
    await store.close()  # closing twice is harmless

    store = await opened(path)
    try:
        assert await store.head_revision() == r3
        assert await all_text(store) == [
            "document:a#viewer@user:ana[expiration:2030-01-01T00:00:00Z]",
            'document:b#viewer@user:bob[c:{"k":[1,2]}]',
        ]
        assert await store.read_schema() == StoredSchema("definition user {}", r2)
        assert [e.revision for e in await store.changes(0)] == [r1, r2, r3]
        assert await store.write([]) == r3 + 1
        await store.gc(datetime.now(UTC) + timedelta(seconds=5))
        horizon = await store.min_revision()
        assert horizon == r3 + 1
    finally:
        await store.close()
    store = await opened(path)
    try:
        assert await store.min_revision() == horizon
    finally:
        await store.close()


@pytest.mark.parametrize("mode", ["write", "import", "large-write"])
async def test_acknowledged_writes_survive_kill_9(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "crash.db"
    # Imports: batches of several multi-row INSERT statements (and one partial one). Large
    # writes: too many rows for the event loop, so each is moved to the writer's thread.
    size = 40 if mode == "write" else 1234
    process = subprocess.Popen(
        [sys.executable, str(WRITER_SCRIPT), str(path), str(size), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: dict[int, int] = {}
    try:
        assert process.stdout is not None
        while len(acknowledged) < (60 if mode == "write" else 12):
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {process.stderr.read() if process.stderr else ''}")
            batch, revision = map(int, line.split())
            acknowledged[batch] = revision
        os.kill(process.pid, signal.SIGKILL)  # mid-load: the writer never pauses
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    store = await opened(path)
    try:
        head = await store.head_revision()
        assert head >= max(acknowledged.values())
        rows = await store.read(RelationshipFilter(resource_type="document"), head)
        per_batch: dict[int, int] = {}
        for rel in rows:
            batch = int(rel.resource_id[1:].split("_")[0])
            per_batch[batch] = per_batch.get(batch, 0) + 1
        for batch, revision in acknowledged.items():
            assert per_batch.get(batch) == size, (
                f"acknowledged batch {batch} (revision {revision}) is missing"
            )
            at_revision = await store.read(RelationshipFilter(resource_type="document"), revision)
            assert len(at_revision) == size * (batch + 1)
        # Nothing partial: every batch that is visible at all is complete.
        assert all(count == size for count in per_batch.values())
        assert sorted(per_batch) == list(range(len(per_batch)))
        assert await store.write([create("document:after#viewer@user:crash")]) == head + 1
    finally:
        await store.close()


async def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    store = SqliteDatastore(str(path))
    with pytest.raises(StoreError, match=r"other\.db is not a Stonetown database.*invoices"):
        await store.open()
    await store.close()
    with sqlite3.connect(path) as connection:  # untouched
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["invoices"]


async def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(StoreError, match=r"notes\.txt.*file is not a database"):
        await opened(path)
    assert path.read_bytes() == content


async def test_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await opened(path)
    await store.close()
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO stonetown_migrations VALUES (999, 'from the future', 0)")
    with pytest.raises(StoreError, match="newer Stonetown"):
        await opened(path)


async def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no/such/dir"):
        await opened(tmp_path / "no" / "such" / "dir" / "store.db")


async def test_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await opened(path)
    head = await store.write([create("document:a#viewer@user:ana")])
    await store.close()
    with read_only(path):
        store = await opened(path)
        try:
            with pytest.raises(StoreError, match=r"store\.db.*read-only"):
                await store.write([create("document:b#viewer@user:bob")])
            with pytest.raises(StoreError, match="read-only"):
                await store.write_schema("definition user {}")
            assert await store.head_revision() == head
            assert await all_text(store) == ["document:a#viewer@user:ana"]
        finally:
            await store.close()
    store = await opened(path)
    try:
        assert await all_text(store) == ["document:a#viewer@user:ana"]
        assert await store.write([create("document:b#viewer@user:bob")]) == head + 1
    finally:
        await store.close()


async def test_lock_held_too_long_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await opened(path, busy_timeout=0.2)
    try:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked"):
                await store.write([create("document:a#viewer@user:ana")])
            assert await store.head_revision() == 0  # reads still work under WAL
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await store.write([create("document:a#viewer@user:ana")]) == 1
    finally:
        await store.close()


async def test_two_stores_sharing_a_file_allocate_distinct_revisions(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = await opened(path), await opened(path)
    try:

        async def load(store: SqliteDatastore, name: str) -> list[int]:
            return [await store.write([create(f"document:{name}{i}#viewer@user:ana")]) for i in range(25)]

        revisions_a, revisions_b = await asyncio.gather(load(first, "a"), load(second, "b"))
        assert sorted(revisions_a + revisions_b) == list(range(1, 51))
        assert len(await all_text(first)) == 50
        log = await second.changes(0)
        assert [len(entry.changes) for entry in log] == [1] * 50
        assert all(c.op is ChangeOp.TOUCH for entry in log for c in entry.changes)
    finally:
        await first.close()
        await second.close()


async def test_iter_all_is_one_snapshot(tmp_path: Path) -> None:
    store = await opened(tmp_path / "store.db")
    try:
        head = await store.write([create(f"document:d{i}#viewer@user:ana") for i in range(100)])
        batches = store.iter_all(head, batch=30)
        first = await anext(batches)
        await store.write([Update(UpdateOp.DELETE, r) for r in first])
        await store.gc(datetime.now(UTC) + timedelta(seconds=5))  # the deleted rows are gone
        rest = [batch async for batch in batches]
        assert sum(len(b) for b in [first, *rest]) == 100
    finally:
        await store.close()


async def test_a_load_stopped_or_cancelled_mid_read_leaves_the_store_clean(tmp_path: Path) -> None:
    """A load reads the next batch while the caller indexes this one: a caller that stops
    early, or is cancelled, with that read in flight waits for it, so the load's connection
    closes and nothing is left running; a whole load still yields every relationship once."""
    store = await opened(tmp_path / "load.db", readers=1)
    try:
        rels = [create(f"document:d{i}#viewer@user:u{i % 7}") for i in range(100)]
        head = await store.write(rels)
        batches = store.iter_fields(head, batch=10)
        assert len(await anext(batches)) == 10
        await batches.aclose()

        async def slow_load() -> None:
            async for _ in store.iter_fields(head, batch=10):
                await asyncio.sleep(0.01)

        for delay in (0, 0.005, 0.025):
            task = asyncio.ensure_future(slow_load())
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # the abandoned generators are closed by asyncio's finalizer tasks, which end
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 10)
        fields = [f for batch in [b async for b in store.iter_fields(head, batch=7)] for f in batch]
        assert sorted(f[:6] for f in fields) == sorted(u.relationship.key for u in rels)
        await store.write([create("document:after#viewer@user:ana")])
        assert "document:after#viewer@user:ana" in await all_text(store)
    finally:
        await store.close()


async def test_cancelled_calls_leave_connections_clean(tmp_path: Path) -> None:
    """A caller cancelled while its read or write waits on SQLite must not leave a pooled
    connection inside a transaction (the next call on it would fail)."""
    store = await opened(tmp_path / "cancel.db", readers=1)
    try:
        for attempt in range(20):
            for call in (store.changes(0), store.write([create(f"document:c{attempt}#viewer@user:ana")])):
                task = asyncio.ensure_future(call)
                await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            await store.changes(0)
            await store.write([create(f"document:after{attempt}#viewer@user:ana")])
        assert "document:after19#viewer@user:ana" in await all_text(store)
    finally:
        await store.close()


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the file (row ids included), read by a connection of its own."""
    connection = sqlite3.connect(path)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            table: connection.execute(
                f"SELECT {'id, ' if table == 'relationships' else ''}* FROM {table}"
            ).fetchall()
            for table in sorted(tables)
            if table != "stonetown_migrations"
        }
    finally:
        connection.close()


async def test_a_failed_import_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await opened(path)
    try:
        await store.write([create("document:aaa#viewer@user:ana"), create("document:zzz#viewer@user:ana")])
        await store.import_relationships(
            [Relationship.parse(f"document:old{i}#viewer@user:u{i}") for i in range(300)]
        )
        before = dump(path)
        # More than one INSERT statement's worth, so a failure can come after rows went in.
        fresh = [Relationship("document", f"n{i:04d}", "viewer", "user", f"u{i % 5}") for i in range(1000)]
        caveated = Relationship("document", "c", "viewer", "user", "u1", "", ContextualizedCaveat("ip", {}))
        cases: list[tuple[list[Relationship], type[Exception], str]] = [
            # an existing relationship sorting before (first statement) or after (last) the rest
            (
                [*fresh[:600], Relationship.parse("document:aaa#viewer@user:ana"), *fresh[600:]],
                AlreadyExists,
                r"^relationships\[600\]: relationship document:aaa#viewer@user:ana already exists$",
            ),
            (
                [*fresh, Relationship.parse("document:zzz#viewer@user:ana")],
                AlreadyExists,
                r"^relationships\[1000\]: relationship document:zzz#viewer@user:ana already exists$",
            ),
            ([*fresh, fresh[999]], InvalidArgument, r"^relationships\[1000\]: .* more than once"),
            (
                [*fresh[:10], caveated, *fresh[10:], caveated],
                InvalidArgument,
                r"^relationships\[1001\]: .* more than once",
            ),
            (
                [
                    *fresh,
                    Relationship(
                        "document",
                        "n0005",
                        "viewer",
                        "user",
                        "u0",
                        expiration=datetime(2300, 1, 1, tzinfo=UTC),
                    ),
                ],
                InvalidArgument,
                r"^relationships\[1000\]: .* more than once",
            ),
        ]
        for rels, error, message in cases:
            with pytest.raises(error, match=message):
                await store.import_relationships(rels)
            assert dump(path) == before

        def refuse(schema: StoredSchema | None, rels: Sequence[Relationship]) -> None:
            raise InvalidArgument("relationships[500]: refused")

        with pytest.raises(InvalidArgument, match="refused"):
            await store.import_relationships(fresh, refuse)
        assert dump(path) == before
        assert await store.import_relationships([*fresh, caveated]) == 3  # the store still works
    finally:
        await store.close()


async def test_an_import_keeps_every_index_whole(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await opened(path)
    try:
        await store.write([create(f"document:w{i}#viewer@user:ana") for i in range(50)])
        rels = [Relationship("document", f"d{i}", "viewer", "user", f"u{i % 97}") for i in range(2000, 0, -1)]
        rels += [Relationship("document", f"s{i}", "viewer", "team", f"t{i}", "member") for i in range(300)]
        rels += [
            Relationship(
                "document", f"c{i}", "viewer", "user", "u1", "", ContextualizedCaveat("ip", {"n": i})
            )
            for i in range(200)
        ]
        rels += [
            Relationship(
                "document", f"e{i}", "viewer", "user", "u1", expiration=datetime(2300, 1, 1, tzinfo=UTC)
            )
            for i in range(200)
        ]
        revision = await store.import_relationships(rels)
        assert sorted(await all_text(store)) == sorted(
            [*(str(r) for r in rels), *(f"document:w{i}#viewer@user:ana" for i in range(50))]
        )
        [entry] = await store.changes(revision - 1)
        assert sorted(str(c.relationship) for c in entry.changes) == sorted(str(r) for r in rels)
    finally:
        await store.close()
    connection = sqlite3.connect(path)
    try:
        indexes = {
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name = 'relationships' AND sql IS NOT NULL"
            )
        }
        assert indexes == {
            "relationships_by_resource",
            "relationships_live",
            "relationships_by_subject",
            "relationships_created",
            "relationships_deleted",
        }
        # Every index holds exactly the table's rows.
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        live = connection.execute(
            "SELECT COUNT(*) FROM relationships INDEXED BY relationships_live WHERE deleted_revision IS NULL"
        ).fetchone()
        assert live == (2750,)
    finally:
        connection.close()


async def test_a_caveat_context_that_is_not_json_is_refused_by_name(tmp_path: Path) -> None:
    store = await opened(tmp_path / "store.db")
    try:
        await store.write([create("document:a#viewer@user:ana")])
        odd = Relationship(
            "document", "b", "viewer", "user", "bob", "", ContextualizedCaveat("c", {"at": object()})
        )
        plain = [Relationship.parse(f"document:n{i}#viewer@user:ana") for i in range(20)]
        for attempt in (
            store.write([Update(UpdateOp.CREATE, odd)]),
            store.import_relationships([*plain, odd]),
        ):
            with pytest.raises(InvalidArgument, match=r"document:b#viewer@user:bob\[c:.*not JSON"):
                await attempt
        assert await all_text(store) == ["document:a#viewer@user:ana"]
        assert await store.head_revision() == 1
    finally:
        await store.close()


def statement_threads(store: SqliteDatastore) -> list[tuple[int, str]]:
    """From now on, every statement the store's writer connection runs, with the thread that
    ran it (SQLite's trace callback runs on the thread executing the statement)."""
    ran: list[tuple[int, str]] = []
    assert store._sync_writer is not None
    store._sync_writer.connection.set_trace_callback(
        lambda statement: ran.append((threading.get_ident(), statement))
    )
    return ran


async def test_a_large_delete_or_write_runs_off_the_event_loop(tmp_path: Path) -> None:
    store = await opened(tmp_path / "store.db")
    try:
        many = LOOP_ROWS * 5
        await store.import_relationships(
            [Relationship("document", f"d{i}", "viewer", "user", "ana") for i in range(many)]
        )
        ran = statement_threads(store)
        loop_thread = threading.get_ident()

        def updates() -> list[int]:
            changing = ("UPDATE relationships", "INSERT INTO relationships")
            threads = [thread for thread, statement in ran if statement.startswith(changing)]
            ran.clear()
            return threads

        small = await store.delete(RelationshipFilter(resource_type="document", resource_id="d0"))
        assert small.deleted == 1
        assert updates() == [loop_thread]  # a short write stays on the loop (no thread hop)

        result = await store.delete(RelationshipFilter(resource_type="document"))
        assert result.deleted == many - 1
        threads = updates()
        assert len(threads) == many - 1 and loop_thread not in threads

        written = await store.write([create(f"folder:f{i}#viewer@user:bob") for i in range(many)])
        assert written == result.revision + 1
        threads = updates()
        assert threads and loop_thread not in threads
        assert await all_text(store) == sorted(f"folder:f{i}#viewer@user:bob" for i in range(many))
    finally:
        await store.close()


class DecodeWatchingStore(SqliteDatastore):
    """The real store, noting how many turns a heartbeat task had had at each row decoded."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.beats = 0
        self.seen: list[int] = []

    def _decode(self, row: Sequence[object]) -> Relationship:  # type: ignore[override]
        self.seen.append(self.beats)
        return super()._decode(row)  # type: ignore[arg-type]


async def test_reading_a_large_revision_of_the_change_log_gives_the_loop_turns(tmp_path: Path) -> None:
    store = DecodeWatchingStore(str(tmp_path / "store.db"))
    await store.open()

    async def heartbeat() -> None:
        while True:
            store.beats += 1
            await asyncio.sleep(0)

    try:
        rows = 5 * DECODE_CHUNK
        revision = await store.import_relationships(
            [Relationship("document", f"d{i}", "viewer", "user", "ana") for i in range(rows)]
        )
        beating = asyncio.create_task(heartbeat())
        [changes] = await store.changes(revision - 1)
        beating.cancel()
        assert len(changes.changes) == rows
        # the loop ran between slices of the decoding (a count of turns, not a time)
        assert len(set(store.seen)) >= rows // DECODE_CHUNK
    finally:
        await store.close()
