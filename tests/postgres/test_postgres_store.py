"""PostgreSQL-specific store behaviour on a real server: commit-ordered revisions under
concurrent writers from several stores, migrations, schema isolation, errors, LISTEN/NOTIFY,
and crash safety of a writer killed with SIGKILL. (The shared contract suite in tests/stores
runs on PostgreSQL too.)"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from pgcluster import PgCluster

from stonetown.core.errors import StoreError
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import ChangeOp, RelationshipFilter, Update, UpdateOp
from stonetown.stores.postgres import LATEST_VERSION, PostgresDatastore


def touch(text: str) -> list[Update]:
    """One TOUCH update."""
    return [Update(UpdateOp.TOUCH, Relationship.parse(text))]


async def test_concurrent_writers_on_two_stores_commit_in_revision_order(pg_uri: str) -> None:
    """Revisions are gap-free and a follower never sees revision N+1 before N, even with
    writers on two separate stores (standing in for two nodes) racing each other."""
    stores = [PostgresDatastore(pg_uri, max_connections=4) for _ in range(2)]
    follower_store = PostgresDatastore(pg_uri)
    for store in [*stores, follower_store]:
        await store.open()
    acknowledged: dict[int, str] = {}
    done = asyncio.Event()
    seen: list[int] = []

    async def writer(store: PostgresDatastore, name: str) -> None:
        for n in range(40):
            text = f"document:{name}_{n}#viewer@user:u{n}"
            acknowledged[await store.write(touch(text))] = text

    async def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            for entry in await follower_store.changes(cursor):
                assert entry.revision == cursor + 1, f"saw revision {entry.revision} right after {cursor}"
                cursor = entry.revision
                seen.append(cursor)
            if finished:
                return
            await asyncio.sleep(0)

    try:
        follower = asyncio.create_task(follow())
        await asyncio.gather(*(writer(stores[i % 2], f"w{i}") for i in range(6)))
        done.set()
        await follower
        assert sorted(acknowledged) == list(range(1, 241))
        assert seen == list(range(1, 241))
        log = await follower_store.changes(0)
        assert [[str(c.relationship) for c in entry.changes] for entry in log] == [
            [acknowledged[revision]] for revision in range(1, 241)
        ]
        stamps = [entry.timestamp for entry in log]
        assert stamps == sorted(stamps)
    finally:
        for store in [*stores, follower_store]:
            await store.close()


async def test_migrations_are_versioned_and_race_free(pg_cluster: PgCluster, pg_uri: str) -> None:
    strict = PostgresDatastore(pg_uri, auto_migrate=False)
    with pytest.raises(StoreError, match="layout version 0.*stonetown migrate"):
        await strict.open()
    # Several nodes starting at once: exactly one applies each migration.
    racers = [PostgresDatastore(pg_uri) for _ in range(5)]
    await asyncio.gather(*(store.open() for store in racers))
    assert sorted(len(store.applied_migrations) for store in racers) == [0, 0, 0, 0, LATEST_VERSION]
    for store in racers:
        await store.close()
    await strict.open()  # current layout: opens without migrating
    assert await strict.layout_version() == LATEST_VERSION
    await strict.close()
    database = pg_uri.rsplit("/", 1)[1]
    versions = pg_cluster.psql("SELECT version FROM stonetown_migrations ORDER BY version", database)
    assert versions.split() == [str(v) for v in range(1, LATEST_VERSION + 1)]
    # An older layout (version 1, with data) is upgraded in place.
    pg_cluster.psql(
        "DELETE FROM stonetown_migrations WHERE version > 1; DROP INDEX stonetown_relationships_expiring",
        database,
    )
    old = PostgresDatastore(pg_uri)
    await old.open()
    try:
        assert [version for version, _ in old.applied_migrations] == list(range(2, LATEST_VERSION + 1))
        assert await old.write(touch("document:a#viewer@user:ana[expiration:2030-01-01T00:00:00Z]")) == 1
    finally:
        await old.close()
    pg_cluster.psql("INSERT INTO stonetown_migrations (version, description) VALUES (99, 'future')", database)
    with pytest.raises(StoreError, match="newer Stonetown"):
        await PostgresDatastore(pg_uri).open()


async def test_refuses_foreign_tables_with_our_names(pg_cluster: PgCluster, pg_uri: str) -> None:
    pg_cluster.psql("CREATE TABLE stonetown_relationships (x int)", pg_uri.rsplit("/", 1)[1])
    with pytest.raises(StoreError, match="not a Stonetown layout"):
        await PostgresDatastore(pg_uri).open()


async def test_search_path_keeps_two_stores_apart(pg_cluster: PgCluster, pg_uri: str) -> None:
    pg_cluster.psql("CREATE SCHEMA tenant_a; CREATE SCHEMA tenant_b", pg_uri.rsplit("/", 1)[1])
    a = PostgresDatastore(pg_uri + "?search_path=tenant_a")
    b = PostgresDatastore(pg_uri + "?search_path=tenant_b")
    await a.open()
    await b.open()
    try:
        assert await a.write(touch("document:x#viewer@user:ana")) == 1
        assert await b.head_revision() == 0
        assert await b.write(touch("document:y#viewer@user:bob")) == 1
        assert [str(r) for r in await a.read(RelationshipFilter(), 1)] == ["document:x#viewer@user:ana"]
    finally:
        await a.close()
        await b.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_failures_are_clear_store_errors(pg_cluster: PgCluster) -> None:
    refused = PostgresDatastore(f"postgresql://app:s3cret@127.0.0.1:{_closed_port()}/db", connect_timeout=5)
    with pytest.raises(StoreError, match="connection refused") as caught:
        await refused.open()
    assert "s3cret" not in str(caught.value) and "app:***@" in str(caught.value)
    missing = PostgresDatastore(pg_cluster.uri("no_such_database"))
    with pytest.raises(StoreError, match="database does not exist"):
        await missing.open()
    with pytest.raises(StoreError, match="not open"):
        await missing.head_revision()


async def test_a_lost_connection_fails_one_call_then_recovers(
    pg_cluster: PgCluster, pg_store: PostgresDatastore
) -> None:
    await pg_store.write(touch("document:a#viewer@user:ana"))
    database = pg_store.uri.rsplit("/", 1)[1]
    pg_cluster.psql(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' "
        "AND pid <> pg_backend_pid()"
    )
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(await pg_store.head_revision())
        except StoreError as exc:
            assert "connection" in str(exc)
            outcomes.append(None)
    assert outcomes[-1] == 1  # the pool replaced the dead connection


async def test_listen_wakes_on_commits_from_another_store(pg_cluster: PgCluster, pg_uri: str) -> None:
    listener, writer = PostgresDatastore(pg_uri), PostgresDatastore(pg_uri)
    await listener.open()
    await writer.open()
    heads: list[tuple[float, int]] = []

    async def on_change() -> None:
        heads.append((time.monotonic(), await listener.head_revision()))

    try:
        listener.listen(on_change, retry_interval=0.1)
        await _until(lambda: len(heads) >= 1)  # the call made right after connecting
        lags = []
        for n in range(20):
            started = time.monotonic()
            revision = await writer.write(touch(f"document:d{n}#viewer@user:ana"))
            await _until(lambda revision=revision: any(head >= revision for _, head in heads))
            lags.append(next(t for t, head in heads if head >= revision) - started)
        assert max(lags) < 1.0
        median, worst = sorted(lags)[10] * 1000, max(lags) * 1000
        print(f"\nNOTIFY wake-up after commit: median {median:.1f} ms, max {worst:.1f} ms")
        # Kill the listening connection: the listener reconnects and still wakes.
        database = pg_uri.rsplit("/", 1)[1]
        pg_cluster.psql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' "
            "AND query LIKE 'LISTEN%'"
        )
        await asyncio.sleep(0.3)
        revision = await writer.write(touch("document:after#viewer@user:ana"))
        await _until(lambda: any(head >= revision for _, head in heads), timeout=5.0)
    finally:
        await listener.close()
        await writer.close()


async def _until(condition: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


async def test_writer_killed_mid_write_leaves_a_consistent_store(pg_uri: str, tmp_path: Path) -> None:
    """SIGKILL a writing process: every acknowledged write is there, nothing half-written is,
    and revisions stay gap-free."""
    out = tmp_path / "acks.txt"
    with open(out, "w") as sink:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "pg_crash_writer.py"), pg_uri], stdout=sink
        )
        deadline = time.monotonic() + 30
        while out.read_text().count("\n") < 40 and time.monotonic() < deadline:
            assert process.poll() is None, "the writer exited early"
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    acks = [line.split() for line in out.read_text().splitlines() if line.strip()]
    assert len(acks) >= 40
    store = PostgresDatastore(pg_uri)
    await store.open()
    try:
        head = await store.head_revision()
        assert head >= int(acks[-1][0])
        log = await store.changes(0)
        assert [entry.revision for entry in log] == list(range(1, head + 1))
        for entry in log:  # every revision is a whole write: 50 creates, or one delete of 50
            ops = {change.op for change in entry.changes}
            assert len(entry.changes) == 50 and len(ops) == 1, entry.revision
            assert len({change.relationship.resource_id for change in entry.changes}) == 1
        for revision, op, resource in acks:
            [entry] = [e for e in log if e.revision == int(revision)]
            expected = ChangeOp.TOUCH if op == "create" else ChangeOp.DELETE
            assert {(c.op, f"doc:{c.relationship.resource_id}") for c in entry.changes} == {
                (expected, resource)
            }
        # The store keeps working after the crash.
        assert await store.write(touch("doc:after#viewer@user:u0")) == head + 1
        live = await store.read(RelationshipFilter(resource_type="doc"), head + 1)
        creates = sum(1 for e in log for c in e.changes if c.op is ChangeOp.TOUCH)
        deletes = sum(1 for e in log for c in e.changes if c.op is ChangeOp.DELETE)
        assert len(live) == creates - deletes + 1
    finally:
        await store.close()


async def test_a_write_blocked_past_lock_timeout_is_a_store_error(pg_uri: str) -> None:
    """Writers queue on the state-row lock; one that gives up (lock_timeout) rolls back
    cleanly, surfaces as StoreError and uses up no revision."""
    await PostgresDatastore(pg_uri).open()  # migrate
    holder = await asyncpg.connect(pg_uri)
    store = PostgresDatastore(pg_uri + "?lock_timeout=200")
    await store.open()
    try:
        async with holder.transaction():
            await holder.execute("SELECT head FROM stonetown_state FOR UPDATE")
            with pytest.raises(StoreError, match="lock timeout"):
                await store.write(touch("document:a#viewer@user:ana"))
        assert await store.head_revision() == 0
        assert await store.write(touch("document:a#viewer@user:ana")) == 1
    finally:
        await store.close()
        await holder.close()
