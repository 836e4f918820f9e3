"""A multi-version datastore in one SQLite file (WAL mode), through aiosqlite.

Layout: `relationships` holds one row per version of a relationship, with the revision that
created it and the one that deleted it (NULL while live); `revisions` holds one row per
committed write; `schemas` the schema texts by revision; `stonetown_meta` the oldest readable
revision; `stonetown_migrations` the applied layout versions.

Every write is one transaction opened with BEGIN IMMEDIATE, so several processes can share
the file: the next revision is allocated inside it as max(revision) + 1, preconditions and
validators see the state before the write, and any error rolls everything back. With
`synchronous=FULL` (the default) a write is on disk before it is acknowledged.

Each process uses one writer connection (behind an asyncio lock) and a small pool of reader
connections; WAL lets readers see committed snapshots while a write is in progress.
Relationship writes, deletes and imports run on a second, plain sqlite3 writer connection
owned by one thread: the whole transaction is one call there (one thread hop instead of one
per statement), and a batch of writes shares one transaction and one fsync (group commit),
each write inside a SAVEPOINT of its own so a failing one is rolled back alone.

The file's identity (device and inode) is noted at open and checked before every write and
before it is acknowledged: once the file is deleted or replaced under a running store (its
connections would go on writing to a file nobody will open again), every write fails with
StoreError saying so. :meth:`SqliteDatastore.probe` reports that, a full disk and an
unreadable or corrupt file for the health status; :func:`lock_database` keeps a second
server off a file one already serves.
"""

from __future__ import annotations

import asyncio
import fcntl
import heapq
import json
import os
import resource
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, TypeVar

import aiosqlite

from stonetown.core.errors import AlreadyExists, InvalidArgument, StoreError
from stonetown.core.relationship import ContextualizedCaveat, Relationship, format_timestamp
from stonetown.engine.datastore import (
    LOAD_BATCH,
    BatchedDelete,
    BatchedWrite,
    BatchItem,
    BatchResult,
    Change,
    ChangeOp,
    Datastore,
    DeleteResult,
    ImportValidator,
    Precondition,
    PreconditionOp,
    RelationshipFields,
    RelationshipFilter,
    RevisionChanges,
    SchemaChangeValidator,
    StoredSchema,
    Update,
    UpdateOp,
    WriteValidator,
    check_import_duplicates,
)
from stonetown.stores.common import (
    Key,
    as_utc,
    changes_out_of_range,
    check_cursor,
    check_filter,
    check_no_duplicates,
    precondition_failed,
    revision_out_of_range,
)

T = TypeVar("T")

_KEY_COLUMNS = "resource_type, resource_id, relation, subject_type, subject_id, subject_relation"
_COLUMNS = f"{_KEY_COLUMNS}, caveat_name, caveat_context, expiration"
_KEY_MATCH = (
    "resource_type = ? AND resource_id = ? AND relation = ? AND subject_type = ? AND subject_id = ? "
    "AND subject_relation = ?"
)

# Each migration is (version, description, statements); never edit one that has shipped.
_MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial layout",
        [
            "CREATE TABLE stonetown_meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID",
            "INSERT INTO stonetown_meta (name, value) VALUES ('min_revision', 0)",
            """CREATE TABLE revisions (
                revision INTEGER PRIMARY KEY,
                timestamp INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
                schema_changed INTEGER NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE relationships (
                id INTEGER PRIMARY KEY,
                resource_type TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                relation TEXT NOT NULL,
                subject_type TEXT NOT NULL,
                subject_id TEXT NOT NULL,
                subject_relation TEXT NOT NULL DEFAULT '',
                caveat_name TEXT,
                caveat_context TEXT,
                expiration TEXT,
                created_revision INTEGER NOT NULL,
                deleted_revision INTEGER
            )""",
            "CREATE UNIQUE INDEX relationships_by_resource ON relationships "
            f"({_KEY_COLUMNS}, created_revision)",
            f"CREATE UNIQUE INDEX relationships_live ON relationships ({_KEY_COLUMNS}) "
            "WHERE deleted_revision IS NULL",
            "CREATE INDEX relationships_by_subject ON relationships "
            "(subject_type, subject_id, subject_relation, resource_type, relation)",
            "CREATE INDEX relationships_created ON relationships (created_revision)",
            "CREATE INDEX relationships_deleted ON relationships (deleted_revision) "
            "WHERE deleted_revision IS NOT NULL",
            "CREATE TABLE schemas (revision INTEGER PRIMARY KEY, text TEXT NOT NULL)",
        ],
    ),
]
_LATEST_VERSION = _MIGRATIONS[-1][0]
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

_Row = tuple[Any, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _to_micros(value: datetime) -> int:
    """Microseconds since the epoch, exactly (floats would round)."""
    return (as_utc(value) - _EPOCH) // _MICROSECOND


def _from_micros(value: int) -> datetime:
    """The aware UTC datetime for microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=value)


def _to_relationship(row: _Row) -> Relationship:
    """A relationship from the nine columns of _COLUMNS."""
    caveat = None
    if row[6] is not None:
        caveat = ContextualizedCaveat(row[6], json.loads(row[7]) if row[7] else {})
    expiration = None if row[8] is None else datetime.fromisoformat(row[8])
    return Relationship(row[0], row[1], row[2], row[3], row[4], row[5], caveat, expiration)


_PLAIN = (None, None)


def _to_fields(row: _Row) -> RelationshipFields:
    """The fields of a relationship from the nine columns of _COLUMNS, decoded as
    :func:`_to_relationship` decodes them."""
    caveat = None
    if row[6] is not None:
        caveat = ContextualizedCaveat(row[6], json.loads(row[7]) if row[7] else {})
    expiration = None if row[8] is None else datetime.fromisoformat(row[8]).timestamp()
    return (row[0], row[1], row[2], row[3], row[4], row[5], caveat, expiration)


def _row_values(rel: Relationship, revision: int) -> tuple[Any, ...]:
    """The INSERT parameters for `rel` created at `revision`."""
    caveat_name = caveat_context = None
    if rel.caveat is not None:
        caveat_name = rel.caveat.name
        try:
            caveat_context = json.dumps(rel.caveat.context, separators=(",", ":"), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"relationship {rel}: caveat context is not JSON: {exc}") from None
    expiration = None if rel.expiration is None else format_timestamp(rel.expiration)
    return (*rel.key, caveat_name, caveat_context, expiration, revision)


def _prefix_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None if none)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:  # skip surrogates, which cannot be encoded
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _filter_sql(filter: RelationshipFilter, revision: int | None) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for `filter` at `revision`; None means the head,
    which lets SQLite use the partial index of live rows."""
    clauses: list[str] = []
    params: list[Any] = []
    if revision is None:
        clauses.append("deleted_revision IS NULL")
    else:
        clauses.append("created_revision <= ? AND (deleted_revision IS NULL OR deleted_revision > ?)")
        params += [revision, revision]
    if filter.resource_type is not None:
        clauses.append("resource_type = ?")
        params.append(filter.resource_type)
    if filter.resource_id is not None:
        clauses.append("resource_id = ?")
        params.append(filter.resource_id)
    if filter.resource_id_prefix:
        clauses.append("resource_id >= ?")
        params.append(filter.resource_id_prefix)
        bound = _prefix_bound(filter.resource_id_prefix)
        if bound is not None:
            clauses.append("resource_id < ?")
            params.append(bound)
    if filter.relation is not None:
        clauses.append("relation = ?")
        params.append(filter.relation)
    subject = filter.subject
    if subject is not None:
        clauses.append("subject_type = ?")
        params.append(subject.type)
        if subject.id is not None:
            clauses.append("subject_id = ?")
            params.append(subject.id)
        if subject.relation is not None:
            clauses.append("subject_relation = ?")
            params.append(subject.relation)
    return " AND ".join(clauses), params


class SqliteDatastore(Datastore):
    """A multi-version datastore in one SQLite file; several processes may share the file."""

    def __init__(
        self,
        path: str,
        *,
        gc_window_seconds: float = 24 * 3600.0,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        readers: int = 2,
    ) -> None:
        """Describe the store; nothing is opened before :meth:`open`.

        `synchronous` is SQLite's setting (FULL: every acknowledged write is on disk);
        `busy_timeout` is how long to wait for another process's write lock before giving up
        with StoreError; `readers` is the number of reader connections.
        """
        if synchronous.upper() not in _SYNCHRONOUS:
            raise InvalidArgument(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}"
            )
        if readers < 1:
            raise InvalidArgument("a SQLite store needs at least one reader connection")
        self.path = str(path)
        self.gc_window_seconds = gc_window_seconds
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self._reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._sync_writer: _SyncWriter | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] | None = None
        self._all_readers: list[aiosqlite.Connection] = []
        # (device, inode) of the file as opened; None for an in-memory database
        self._identity: tuple[int, int] | None = None
        # why the file can no longer be written (deleted or replaced): permanent
        self._lost: str | None = None
        # worker threads' own connections (see thread_reader)
        self._local = threading.local()
        self._thread_connections: list[sqlite3.Connection] = []
        # the last write failed for lack of space or a disk error (cleared by a write that succeeds)
        self._full: str | None = None

    # ------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Open (creating if needed) and migrate the file; raise StoreError if it cannot."""
        if self._writer is not None:
            return
        try:
            self._writer = await self._connect()
            mode = await self._fetchone(self._writer, "PRAGMA journal_mode=WAL")
            if mode is None or str(mode[0]).lower() not in ("wal", "memory"):
                raise StoreError(f"SQLite store {self.path}: cannot switch to WAL mode (got {mode})")
            await self._migrate(self._writer)
            self._identity = _file_identity(self.path)
            self._lost = self._full = None
            self._sync_writer = await _SyncWriter.open(self._connect_sync)
            self._readers = asyncio.Queue()
            for _ in range(self._reader_count):
                reader = await self._connect()
                self._all_readers.append(reader)
                self._readers.put_nowait(reader)
        except BaseException as exc:
            await self.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, "opening the store") from exc
            raise

    async def close(self) -> None:
        """Close every connection. Safe to call twice."""
        connections = [c for c in [self._writer, *self._all_readers] if c is not None]
        sync_writer, self._sync_writer = self._sync_writer, None
        if sync_writer is not None:
            await sync_writer.close()
        self._writer = None
        self._readers = None
        self._all_readers = []
        for thread_connection in self._thread_connections:
            try:
                thread_connection.close()
            except sqlite3.Error:
                pass
        self._thread_connections = []
        self._local = threading.local()
        for connection in connections:
            try:
                await connection.close()
            except (sqlite3.Error, ValueError):
                pass

    async def _connect(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, cached_statements=256
        )
        try:
            await connection
        except BaseException:
            # aiosqlite stops its worker thread without waiting; wait here so the thread does
            # not report to an event loop that may be closed by then.
            thread = getattr(connection, "_thread", None)
            if thread is not None:
                await asyncio.to_thread(thread.join, 2.0)
            raise
        try:
            await connection.execute(f"PRAGMA synchronous={self.synchronous}")
            # The default 2 MB page cache makes index upkeep thrash beyond ~100k rows.
            await connection.execute("PRAGMA cache_size=-65536")
            await connection.execute("PRAGMA temp_store=MEMORY")
        except BaseException:
            # Close it here: each connection owns a thread that would outlive the event loop.
            await connection.close()
            raise
        return connection

    def _connect_sync(self) -> sqlite3.Connection:
        """A plain connection with the same settings as :meth:`_connect` (for _SyncWriter)."""
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute("PRAGMA cache_size=-65536")
            connection.execute("PRAGMA temp_store=MEMORY")
        except BaseException:
            connection.close()
            raise
        return connection

    async def _migrate(self, connection: aiosqlite.Connection) -> None:
        version = await self._layout_version(connection)
        if version == _LATEST_VERSION:
            return
        await connection.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated between the check and the lock.
            version = await self._layout_version(connection)
            if version == 0:
                await connection.execute(
                    "CREATE TABLE stonetown_migrations "
                    "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
                )
            for number, description, statements in _MIGRATIONS:
                if number <= version:
                    continue
                for statement in statements:
                    await connection.execute(statement)
                await connection.execute(
                    "INSERT INTO stonetown_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                    (number, description, time.time()),
                )
            await connection.execute("COMMIT")
        except BaseException:
            await self._rollback(connection)
            raise

    async def _layout_version(self, connection: aiosqlite.Connection) -> int:
        rows = await self._fetchall(connection, "SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = sorted(row[0] for row in rows)
        if not tables:
            return 0
        if "stonetown_migrations" not in tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise StoreError(f"{self.path} is not a Stonetown database (it holds other tables: {shown})")
        row = await self._fetchone(connection, "SELECT COALESCE(MAX(version), 0) FROM stonetown_migrations")
        version = int(row[0]) if row is not None else 0
        if version > _LATEST_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer Stonetown (layout version {version}; "
                f"this one knows up to {_LATEST_VERSION})"
            )
        return version

    # ------------------------------------------------------------------------ plumbing

    def _error(self, exc: sqlite3.Error, action: str) -> StoreError:
        text = str(exc)
        lowered = text.lower()
        if "readonly" in lowered or "read-only" in lowered:
            reason = "the database file (or its directory) is read-only"
        elif "locked" in lowered or "busy" in lowered:
            reason = f"the database is locked by another connection (waited {self.busy_timeout:g} s)"
        elif "disk is full" in lowered or "database or disk is full" in lowered:
            reason = "the disk is full"
        elif "disk i/o error" in lowered:
            reason = "writing to the disk failed (disk full, file size limit, or a failing disk)"
        elif "not a database" in lowered:
            reason = "file is not a database"
        elif "malformed" in lowered or "corrupt" in lowered:
            reason = "the database file is corrupt"
        elif "unable to open" in lowered:
            reason = "unable to open the database file (missing directory or no permission?)"
        else:
            reason = text
        detail = "" if reason == text else f" ({text})"
        return StoreError(f"SQLite store {self.path}: {action} failed: {reason}{detail}")

    @staticmethod
    async def _fetchall(connection: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        async with connection.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    @staticmethod
    async def _fetchone(
        connection: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()
    ) -> _Row | None:
        async with connection.execute(sql, params) as cursor:
            row = await cursor.fetchone()
            return None if row is None else tuple(row)

    @staticmethod
    async def _rollback(connection: aiosqlite.Connection) -> None:
        try:
            if connection.in_transaction:
                await connection.execute("ROLLBACK")
        except (sqlite3.Error, ValueError):
            pass

    def _require_open(self) -> None:
        if self._writer is None or self._readers is None or self._sync_writer is None:
            raise StoreError(f"SQLite store {self.path} is not open")

    def _require_same_file(self) -> None:
        """Raise StoreError once the database file was deleted or replaced since it was
        opened: what this store writes would be lost (a stat call, a few microseconds)."""
        if self._lost is None and self._identity is not None:
            try:
                now = _file_identity(self.path)
            except FileNotFoundError:
                now = None
            except OSError as exc:
                raise StoreError(f"SQLite store {self.path}: cannot check the database file: {exc}") from None
            if now != self._identity:
                what = "deleted" if now is None else "replaced by another file"
                self._lost = (
                    f"SQLite store {self.path}: the database file was {what} while the server was running; "
                    "writes are refused (they would be lost): restore the file or restart the server"
                )
        if self._lost is not None:
            raise StoreError(self._lost)

    def _write_error(self, exc: sqlite3.Error, action: str) -> StoreError:
        """The StoreError for a failed write; remembers a full disk (or a failed disk
        write) for :meth:`probe`."""
        error = self._error(exc, action)
        if getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_FULL", "SQLITE_IOERR")):
            self._full = str(error)
        return error

    def thread_reader(
        self, revision: int
    ) -> AbstractContextManager[Callable[[RelationshipFilter], list[Relationship]]] | None:
        """One read transaction at `revision` on the calling thread's own connection (opened
        on first use, closed with the store), and a function reading a filter at it."""
        self._require_open()
        return self._thread_read(revision)

    @contextmanager
    def _thread_read(self, revision: int) -> Iterator[Callable[[RelationshipFilter], list[Relationship]]]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = self._local.connection = self._connect_sync()
                connection.execute("PRAGMA cache_size=-8192")  # 8 MB: old reads stay small
            except sqlite3.Error as exc:
                raise self._error(exc, "reading relationships") from exc
            self._thread_connections.append(connection)
        try:
            connection.execute("BEGIN")
            head, min_revision = _sync_bounds(connection)
            error = revision_out_of_range(revision, min_revision, head)
            if error is not None:
                raise error
            at = None if revision == head else revision

            def read(filter: RelationshipFilter) -> list[Relationship]:
                where, params = _filter_sql(filter, at)
                try:
                    rows = connection.execute(f"SELECT {_COLUMNS} FROM relationships WHERE {where}", params)
                    return [_to_relationship(row) for row in rows]
                except sqlite3.Error as exc:
                    raise self._error(exc, "reading relationships") from exc

            yield read
        except sqlite3.Error as exc:
            raise self._error(exc, "reading relationships") from exc
        finally:
            _rollback_sync(connection)

    async def probe(self) -> str | None:
        """None while the store can serve; else what is wrong, in one line: the file deleted
        or replaced, the disk full (until a small write succeeds again), the file unreadable
        or not a database. The file checks run off the event loop."""
        if self._writer is None:
            return f"SQLite store {self.path} is not open"
        try:
            await asyncio.to_thread(self._require_same_file)
            if await asyncio.to_thread(_read_header, self.path) not in (None, _SQLITE_HEADER):
                return f"SQLite store {self.path}: the database file is corrupt (no SQLite header)"
            if self._full is not None:
                # Full until there is room again (a small write alone could fit in the last
                # few bytes while the writes callers send still fail).
                room = await asyncio.to_thread(_room, self.path)
                if room is not None and room < FULL_MARGIN:
                    return f"{self._full} ({room} bytes of room left)"
                await self._in_sync_write("checking for free space", _touch_meta)
            await self.head_revision()
        except StoreError as exc:
            return str(exc)
        except OSError as exc:
            return f"SQLite store {self.path}: cannot read the database file: {exc}"
        return None

    async def _in_write(self, action: str, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `body` in one BEGIN IMMEDIATE transaction; commit, or roll back on any error.

        The transaction runs to its end even if the caller is cancelled: aiosqlite queues each
        statement on the connection's thread, so abandoning it halfway would leave BEGIN or
        COMMIT queued behind our back and the connection inside a transaction.
        """
        return await _shielded(self._write_transaction(action, body))

    async def _write_transaction(
        self, action: str, body: Callable[[aiosqlite.Connection], Awaitable[T]]
    ) -> T:
        self._require_open()
        assert self._writer is not None
        async with self._write_lock:
            connection = self._writer
            try:
                self._require_same_file()
                await connection.execute("BEGIN IMMEDIATE")
                result = await body(connection)
                await connection.execute("COMMIT")
                self._full = None
                self._require_same_file()  # the commit may have gone to a deleted file
                return result
            except BaseException as exc:
                await self._rollback(connection)
                if isinstance(exc, sqlite3.Error):
                    raise self._write_error(exc, action) from exc
                raise

    async def _in_sync_write(
        self, action: str, body: Callable[[sqlite3.Connection], T], *, body_on_loop: bool = False
    ) -> T:
        """Run `body` in one BEGIN IMMEDIATE transaction on the sync writer's connection; commit,
        or roll back on any error. Runs to its end even if the caller is cancelled.

        COMMIT (the fsync) and a BEGIN that has to wait for another process's lock run on the
        writer's thread. With `body_on_loop` the body itself runs on the event loop: short
        in-memory work that, on the thread, would wait for the GIL after every statement (a
        busy loop holds it for up to the switch interval, 5 ms); measured under gRPC write
        load, a group commit took 2.7 ms with the body on the thread. Long bodies (imports)
        stay on the thread so the loop keeps serving.
        """
        return await _shielded(self._sync_write_transaction(action, body, body_on_loop))

    async def _sync_write_transaction(
        self, action: str, body: Callable[[sqlite3.Connection], T], body_on_loop: bool
    ) -> T:
        self._require_open()
        writer = self._sync_writer
        assert writer is not None

        def transaction(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            result = body(connection)
            connection.execute("COMMIT")
            return result

        # The same lock as the aiosqlite writer: the two connections never wait on each other.
        async with self._write_lock:
            try:
                self._require_same_file()
                if not body_on_loop:
                    result = await writer.run(transaction)
                else:
                    if not _try_begin(writer.connection, self.busy_timeout):
                        await writer.run(_begin_sync)  # another process writes: wait off the loop
                    result = body(writer.connection)
                    await writer.run(_commit_sync)
                self._full = None
                self._require_same_file()  # the commit may have gone to a deleted file
                return result
            except BaseException as exc:
                await writer.run(_rollback_sync)
                if isinstance(exc, sqlite3.Error):
                    raise self._write_error(exc, action) from exc
                raise

    async def _in_read(self, action: str, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `body` in one read transaction (a consistent snapshot) on a pooled reader,
        to its end even if the caller is cancelled (see :meth:`_in_write`)."""
        return await _shielded(self._read_transaction(action, body))

    async def _read_transaction(self, action: str, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        self._require_open()
        assert self._readers is not None
        readers = self._readers
        connection = await readers.get()
        try:
            await connection.execute("BEGIN")
            result = await body(connection)
            await connection.execute("COMMIT")
            return result
        except BaseException as exc:
            await self._rollback(connection)
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, action) from exc
            raise
        finally:
            readers.put_nowait(connection)

    async def _bounds(self, connection: aiosqlite.Connection) -> tuple[int, int]:
        """(head, min_revision) as the current transaction sees them."""
        row = await self._fetchone(
            connection,
            "SELECT (SELECT COALESCE(MAX(revision), 0) FROM revisions), "
            "(SELECT value FROM stonetown_meta WHERE name = 'min_revision')",
        )
        assert row is not None
        return int(row[0]), int(row[1] or 0)

    async def _check_revision(self, connection: aiosqlite.Connection, revision: int) -> int:
        """Raise FailedPrecondition unless `revision` is readable; return the head."""
        head, min_revision = await self._bounds(connection)
        error = revision_out_of_range(revision, min_revision, head)
        if error is not None:
            raise error
        return head

    async def _schema_at(self, connection: aiosqlite.Connection, revision: int) -> StoredSchema | None:
        row = await self._fetchone(
            connection,
            "SELECT text, revision FROM schemas WHERE revision <= ? ORDER BY revision DESC LIMIT 1",
            (revision,),
        )
        return None if row is None else StoredSchema(row[0], int(row[1]))

    async def _new_revision(self, connection: aiosqlite.Connection, head: int, schema_changed: bool) -> int:
        revision = head + 1
        await connection.execute(
            "INSERT INTO revisions (revision, timestamp, schema_changed) VALUES (?, ?, ?)",
            (revision, _to_micros(datetime.now(UTC)), int(schema_changed)),
        )
        return revision

    # ---------------------------------------------------------------------------- writes

    async def head_revision(self) -> int:
        """The newest committed revision (0 for an empty store)."""

        async def body(connection: aiosqlite.Connection) -> int:
            return (await self._bounds(connection))[0]

        return await self._in_read("reading the head revision", body)

    async def min_revision(self) -> int:
        """The oldest revision that can still be read exactly."""

        async def body(connection: aiosqlite.Connection) -> int:
            return (await self._bounds(connection))[1]

        return await self._in_read("reading the oldest revision", body)

    async def write(
        self,
        updates: Sequence[Update],
        preconditions: Sequence[Precondition] = (),
        validate: WriteValidator | None = None,
    ) -> int:
        """Apply every update in one transaction and return the new revision."""
        result = (
            await self._batch([BatchedWrite(updates, preconditions)], validate, "writing relationships")
        )[0]
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, int)
        return result

    async def delete(
        self,
        filter: RelationshipFilter,
        preconditions: Sequence[Precondition] = (),
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete every live relationship matching `filter` (at most `limit`) in one transaction."""
        item = BatchedDelete(filter, preconditions, limit)
        result = (await self._batch([item], None, "deleting relationships"))[0]
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, DeleteResult)
        return result

    async def write_batch(
        self, items: Sequence[BatchItem], validate: WriteValidator | None = None
    ) -> list[BatchResult]:
        """Apply the items in one transaction (one fsync), each in a SAVEPOINT of its own."""
        return await self._batch(items, validate, "writing relationships")

    async def _batch(
        self, items: Sequence[BatchItem], validate: WriteValidator | None, action: str
    ) -> list[BatchResult]:
        single = len(items) == 1

        def body(connection: sqlite3.Connection) -> list[BatchResult]:
            head = _sync_bounds(connection)[0]
            schema: list[StoredSchema | None] = []  # read once, when a validator first needs it
            results: list[BatchResult] = []
            for item in items:
                if not single:
                    connection.execute("SAVEPOINT item")
                try:
                    if isinstance(item, BatchedWrite):
                        if validate is not None and not schema:
                            schema.append(_sync_schema_at(connection, head))
                        result: BatchResult = self._write_item(connection, item, head, validate, schema)
                        head = result
                    else:
                        result = self._delete_item(connection, item, head)
                        head = result.revision
                except Exception as exc:
                    if single:
                        raise
                    connection.execute("ROLLBACK TO item")
                    connection.execute("RELEASE item")
                    results.append(self._error(exc, action) if isinstance(exc, sqlite3.Error) else exc)
                    continue
                if not single:
                    connection.execute("RELEASE item")
                results.append(result)
            return results

        if single:
            # One item: its error rolls back the whole transaction and is its result.
            try:
                return await self._in_sync_write(action, body, body_on_loop=True)
            except Exception as exc:  # noqa: BLE001 - the item's result
                return [exc]
        return await self._in_sync_write(action, body, body_on_loop=True)

    def _write_item(
        self,
        connection: sqlite3.Connection,
        item: BatchedWrite,
        head: int,
        validate: WriteValidator | None,
        schema: list[StoredSchema | None],
    ) -> int:
        """One write inside the batch transaction."""
        updates = item.updates
        check_no_duplicates(updates)
        for precondition in item.preconditions:
            check_filter(precondition.filter)
        if validate is not None:
            validate(schema[0], updates)
        _sync_check_preconditions(connection, item.preconditions)
        ending = [update.relationship.key for update in updates if update.op is not UpdateOp.CREATE]
        revision = _sync_new_revision(connection, head, False)
        inserts = [_row_values(u.relationship, revision) for u in updates if u.op is not UpdateOp.DELETE]
        if ending:
            connection.executemany(
                "UPDATE relationships SET deleted_revision = ? "
                f"WHERE {_KEY_MATCH} AND deleted_revision IS NULL",
                [(revision, *key) for key in ending],
            )
        if inserts:
            try:
                connection.executemany(_INSERT, inserts)
            except sqlite3.IntegrityError:
                created = [u.relationship for u in updates if u.op is UpdateOp.CREATE]
                _sync_raise_already_exists(connection, created, revision)
                raise
        return revision

    @staticmethod
    def _delete_item(connection: sqlite3.Connection, item: BatchedDelete, head: int) -> DeleteResult:
        """One delete-by-filter inside the batch transaction."""
        check_filter(item.filter)
        for precondition in item.preconditions:
            check_filter(precondition.filter)
        _sync_check_preconditions(connection, item.preconditions)
        limit = item.limit
        where, params = _filter_sql(item.filter, None)
        probe = -1 if limit is None else limit + 1
        rows = connection.execute(
            f"SELECT id FROM relationships WHERE {where} ORDER BY {_KEY_COLUMNS} LIMIT ?", [*params, probe]
        ).fetchall()
        limit_reached = limit is not None and len(rows) > limit
        if limit_reached:
            rows = rows[:limit]
        if not rows:
            return DeleteResult(head, 0, limit_reached)
        revision = _sync_new_revision(connection, head, False)
        connection.executemany(
            "UPDATE relationships SET deleted_revision = ? WHERE id = ?", [(revision, row[0]) for row in rows]
        )
        return DeleteResult(revision, len(rows), limit_reached)

    async def import_relationships(
        self, relationships: Sequence[Relationship], validate: ImportValidator | None = None
    ) -> int:
        """Create every relationship in one transaction and one revision, inserted in key order;
        all or nothing."""

        def body(connection: sqlite3.Connection) -> int:
            head = _sync_bounds(connection)[0]
            if validate is not None:
                validate(_sync_schema_at(connection, head), relationships)
            revision = _sync_new_revision(connection, head, False)
            try:
                _sync_insert_sorted(connection, relationships, revision)
            except sqlite3.IntegrityError:
                _sync_raise_already_exists(connection, relationships, revision, numbered=True)
                # Not stored before: the import names one relationship twice (checked only
                # now, so a good import does not pay for it).
                check_import_duplicates(relationships)
                raise
            return revision

        return await self._in_sync_write("importing relationships", body)

    async def write_schema(self, text: str, validate: SchemaChangeValidator | None = None) -> int:
        """Store schema text as the schema in force; return the new revision."""

        async def body(connection: aiosqlite.Connection) -> int:
            head, _ = await self._bounds(connection)
            if validate is not None:
                rows = await self._fetchall(
                    connection,
                    f"SELECT {_COLUMNS} FROM relationships WHERE id IN ("
                    "SELECT MIN(id) FROM relationships WHERE deleted_revision IS NULL GROUP BY "
                    "resource_type, relation, subject_type, subject_relation, subject_id = '*', "
                    "caveat_name, expiration IS NULL) ORDER BY id",
                )
                validate([_to_relationship(row) for row in rows])
            revision = await self._new_revision(connection, head, True)
            await connection.execute("INSERT INTO schemas (revision, text) VALUES (?, ?)", (revision, text))
            return revision

        return await self._in_write("writing the schema", body)

    async def gc(self, older_than: datetime) -> int:
        """Drop history older than the newest revision committed before `older_than`."""
        cutoff = _to_micros(older_than)

        async def body(connection: aiosqlite.Connection) -> int:
            _, min_revision = await self._bounds(connection)
            row = await self._fetchone(
                connection, "SELECT MAX(revision) FROM revisions WHERE timestamp < ?", (cutoff,)
            )
            horizon = int(row[0]) if row is not None and row[0] is not None else 0
            # Rows that expired before the cutoff: no query sees them at any revision.
            async with connection.execute(
                "DELETE FROM relationships "
                "WHERE expiration IS NOT NULL AND julianday(expiration) < julianday(?)",
                (format_timestamp(older_than),),
            ) as cursor:
                expired = cursor.rowcount
            if horizon <= min_revision:
                return expired
            async with connection.execute(
                "DELETE FROM relationships WHERE deleted_revision IS NOT NULL AND deleted_revision <= ?",
                (horizon,),
            ) as cursor:
                removed = expired + cursor.rowcount
            await connection.execute("DELETE FROM revisions WHERE revision < ?", (horizon,))
            await connection.execute(
                "DELETE FROM schemas WHERE revision < "
                "(SELECT MAX(revision) FROM schemas WHERE revision <= ?)",
                (horizon,),
            )
            await connection.execute(
                "UPDATE stonetown_meta SET value = ? WHERE name = 'min_revision'", (horizon,)
            )
            return removed

        return await self._in_write("garbage collection", body)

    # ----------------------------------------------------------------------------- reads

    async def read(
        self,
        filter: RelationshipFilter,
        revision: int,
        *,
        after: tuple[str, ...] | None = None,
        limit: int | None = None,
    ) -> list[Relationship]:
        """Relationships live at `revision` matching `filter`, in key order, after `after`."""
        check_filter(filter)
        check_cursor(after)
        if limit is not None and limit <= 0:
            limit = 0

        async def body(connection: aiosqlite.Connection) -> list[Relationship]:
            head = await self._check_revision(connection, revision)
            where, params = _filter_sql(filter, None if revision == head else revision)
            if after is not None:
                where += f" AND ({_KEY_COLUMNS}) > (?, ?, ?, ?, ?, ?)"
                params += list(after)
            rows = await self._fetchall(
                connection,
                f"SELECT {_COLUMNS} FROM relationships WHERE {where} ORDER BY {_KEY_COLUMNS} LIMIT ?",
                [*params, -1 if limit is None else limit],
            )
            return [_to_relationship(row) for row in rows]

        return await self._in_read("reading relationships", body)

    async def iter_all(self, revision: int, batch: int = 50000) -> AsyncIterator[list[Relationship]]:
        """Every relationship live at `revision`, in batches, in storage order (not key order).

        Uses a connection of its own holding one read transaction, so the batches form one
        snapshot however long the caller takes between them.
        """
        async for rows in self._iter_rows(revision, batch):
            yield [_to_relationship(row) for row in rows]

    async def iter_fields(
        self, revision: int, batch: int = LOAD_BATCH
    ) -> AsyncIterator[list[RelationshipFields]]:
        """:meth:`iter_all` as fields, straight from the rows (no Relationship objects)."""
        async for rows in self._iter_rows(revision, batch):
            yield [
                _to_fields(row) if row[6] is not None or row[8] is not None else row[:6] + _PLAIN
                for row in rows
            ]

    async def _iter_rows(self, revision: int, batch: int) -> AsyncIterator[list[_Row]]:
        self._require_open()
        try:
            connection = await self._connect()
        except sqlite3.Error as exc:
            raise self._error(exc, "reading all relationships") from exc
        try:
            await connection.execute("BEGIN")
            head = await self._check_revision(connection, revision)
            where, params = _filter_sql(RelationshipFilter(), None if revision == head else revision)
            # NOT INDEXED: a table scan in rowid order beats walking an index for every row.
            async with connection.execute(
                f"SELECT {_COLUMNS} FROM relationships NOT INDEXED WHERE {where}", params
            ) as cursor:
                # the connection's thread reads the next batch while the caller works on this
                # one (SQLite steps without the GIL): a load overlaps reading and indexing
                pending = asyncio.ensure_future(cursor.fetchmany(batch))
                try:
                    while rows := await pending:
                        pending = asyncio.ensure_future(cursor.fetchmany(batch))
                        yield rows
                finally:
                    if not pending.done():  # the caller stopped early, or was cancelled
                        await asyncio.wait([pending])
                    if not pending.cancelled():
                        pending.exception()  # retrieved; a read error after the end is moot
            await connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc, "reading all relationships") from exc
        finally:
            await self._rollback(connection)
            await connection.close()

    async def changes(self, after_revision: int, *, limit: int | None = None) -> list[RevisionChanges]:
        """The revisions after `after_revision` in order (at most `limit`), with their changes."""

        async def body(connection: aiosqlite.Connection) -> list[RevisionChanges]:
            _, min_revision = await self._bounds(connection)
            error = changes_out_of_range(after_revision, min_revision)
            if error is not None:
                raise error
            revisions = await self._fetchall(
                connection,
                "SELECT revision, timestamp, schema_changed FROM revisions WHERE revision > ? "
                "ORDER BY revision LIMIT ?",
                (after_revision, -1 if limit is None else limit),
            )
            if not revisions:
                return []
            last = int(revisions[-1][0])
            per_revision: dict[int, list[Change]] = {int(row[0]): [] for row in revisions}
            touched = await self._fetchall(
                connection,
                f"SELECT created_revision, {_COLUMNS} FROM relationships "
                "WHERE created_revision > ? AND created_revision <= ?",
                (after_revision, last),
            )
            for row in touched:
                per_revision[int(row[0])].append(Change(ChangeOp.TOUCH, _to_relationship(row[1:])))
            # A row ended in a revision that re-created its key was replaced, not deleted.
            deleted = await self._fetchall(
                connection,
                f"SELECT r.deleted_revision, {', '.join('r.' + c for c in _COLUMNS.split(', '))} "
                "FROM relationships AS r WHERE r.deleted_revision > ? AND r.deleted_revision <= ? "
                "AND NOT EXISTS (SELECT 1 FROM relationships AS n WHERE "
                "n.resource_type = r.resource_type AND n.resource_id = r.resource_id "
                "AND n.relation = r.relation AND n.subject_type = r.subject_type "
                "AND n.subject_id = r.subject_id AND n.subject_relation = r.subject_relation "
                "AND n.created_revision = r.deleted_revision)",
                (after_revision, last),
            )
            for row in deleted:
                per_revision[int(row[0])].append(Change(ChangeOp.DELETE, _to_relationship(row[1:])))
            result = []
            for revision, timestamp, schema_changed in revisions:
                entries = sorted(per_revision[int(revision)], key=_change_key)
                result.append(
                    RevisionChanges(
                        int(revision), _from_micros(int(timestamp)), tuple(entries), bool(schema_changed)
                    )
                )
            return result

        return await self._in_read("reading the change log", body)

    async def read_schema(self, revision: int | None = None) -> StoredSchema | None:
        """The schema in force at `revision` (default: head), or None if none was written."""

        async def body(connection: aiosqlite.Connection) -> StoredSchema | None:
            if revision is None:
                at = (await self._bounds(connection))[0]
            else:
                await self._check_revision(connection, revision)
                at = revision
            return await self._schema_at(connection, at)

        return await self._in_read("reading the schema", body)


_INSERT = f"INSERT INTO relationships ({_COLUMNS}, created_revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SQLITE_HEADER = b"SQLite format 3\x00"
# the room a store that ran out of space needs again before it counts as writable
FULL_MARGIN = 8 * 1024 * 1024


def _file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the database file; None for an in-memory database. Raises
    FileNotFoundError when the file is gone."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _read_header(path: str) -> bytes | None:
    """The first 16 bytes of the database file (fewer if it is shorter; an open store's file
    always has its header, written when it switched to WAL); None for an in-memory one."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    with open(path, "rb") as handle:
        return handle.read(len(_SQLITE_HEADER))


def _room(path: str) -> int | None:
    """Bytes the database files can still grow by: the free space of their file system, and
    the process's file size limit (RLIMIT_FSIZE) less the larger of the file and its WAL.
    None for an in-memory database."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    info = os.statvfs(Path(path).absolute().parent)
    room = info.f_bavail * info.f_frsize
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        sizes = [os.stat(name).st_size for name in (path, f"{path}-wal") if os.path.exists(name)]
        room = min(room, limit - max(sizes, default=0))
    return room


def _touch_meta(connection: sqlite3.Connection) -> None:
    """Rewrite one row unchanged: a write that needs a little free space, and nothing else."""
    connection.execute("UPDATE stonetown_meta SET value = value WHERE name = 'min_revision'")


def lock_database(path: str) -> IO[str]:
    """Take the lock that lets one server at a time serve the SQLite file `path`, and return
    the open lock file (keep it open while serving; closing it releases the lock).

    The lock file is `.NAME.lock` beside the database, outside `NAME*`, so removing the
    database files leaves it in place and a second server still finds the first one's lock.
    Raises StoreError naming the holder's pid when another process holds it.
    """
    target = Path(path).absolute()
    lock_path = target.parent / f".{target.name}.lock"
    try:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the server's lifetime
    except OSError as exc:
        raise StoreError(f"SQLite store {path}: cannot open the lock file {lock_path}: {exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreError(
            f"SQLite store {path} is already served by another stonetown server (pid {holder}, "
            f"lock file {lock_path}); stop that server first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class _SyncWriter:
    """A plain sqlite3 connection with a thread of its own for the calls that may block (lock
    waits, fsync, long bodies); short bodies use it from the event loop in between, never
    at the same time (the store's write lock is held throughout)."""

    def __init__(self, pool: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._pool = pool
        self.connection = connection

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection]) -> _SyncWriter:
        """Open the connection on the writer's thread."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stonetown-sqlite-writer")
        try:
            connection = await asyncio.get_running_loop().run_in_executor(pool, connect)
        except BaseException:
            pool.shutdown(wait=False)
            raise
        return cls(pool, connection)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the writer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, self.connection)

    async def close(self) -> None:
        """Close the connection and stop the thread (after any work in progress)."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self.connection.close)
        except (sqlite3.Error, RuntimeError):
            pass
        self._pool.shutdown(wait=True)


def _try_begin(connection: sqlite3.Connection, busy_timeout: float) -> bool:
    """BEGIN IMMEDIATE without waiting (on the event loop); False when another connection
    holds the write lock."""
    connection.execute("PRAGMA busy_timeout = 0")
    try:
        connection.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc).lower() or "busy" in str(exc).lower():
            return False
        raise
    finally:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")


def _begin_sync(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")


def _commit_sync(connection: sqlite3.Connection) -> None:
    connection.execute("COMMIT")


def _rollback_sync(connection: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any (errors ignored: the write already failed)."""
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _sync_bounds(connection: sqlite3.Connection) -> tuple[int, int]:
    """(head, min_revision) as the current transaction sees them."""
    row = connection.execute(
        "SELECT (SELECT COALESCE(MAX(revision), 0) FROM revisions), "
        "(SELECT value FROM stonetown_meta WHERE name = 'min_revision')"
    ).fetchone()
    return int(row[0]), int(row[1] or 0)


def _sync_schema_at(connection: sqlite3.Connection, revision: int) -> StoredSchema | None:
    row = connection.execute(
        "SELECT text, revision FROM schemas WHERE revision <= ? ORDER BY revision DESC LIMIT 1", (revision,)
    ).fetchone()
    return None if row is None else StoredSchema(row[0], int(row[1]))


def _sync_check_preconditions(connection: sqlite3.Connection, preconditions: Sequence[Precondition]) -> None:
    for precondition in preconditions:
        where, params = _filter_sql(precondition.filter, None)
        row = connection.execute(f"SELECT 1 FROM relationships WHERE {where} LIMIT 1", params).fetchone()
        if (row is not None) != (precondition.op is PreconditionOp.MUST_MATCH):
            raise precondition_failed(precondition)


def _sync_new_revision(connection: sqlite3.Connection, head: int, schema_changed: bool) -> int:
    revision = head + 1
    connection.execute(
        "INSERT INTO revisions (revision, timestamp, schema_changed) VALUES (?, ?, ?)",
        (revision, _to_micros(datetime.now(UTC)), int(schema_changed)),
    )
    return revision


_KEY_OF = attrgetter(
    "resource_type", "resource_id", "relation", "subject_type", "subject_id", "subject_relation"
)
_MAX_PARAMETERS = 900  # per statement: below every SQLite build's limit (999 before 3.32)


def _sync_insert_sorted(
    connection: sqlite3.Connection, relationships: Sequence[Relationship], revision: int
) -> None:
    """Insert `relationships` created at `revision` in key order, many rows per statement.

    Key order turns the inserts into the primary index (and the live one) into appends.
    Relationships without caveat and expiration (the usual case) are bound as their six key
    fields only.
    """
    plain: Sequence[Relationship] = relationships
    extra = [rel for rel in relationships if rel.caveat is not None or rel.expiration is not None]
    if extra:
        plain = [rel for rel in relationships if rel.caveat is None and rel.expiration is None]
        rows = _sorted_yielding([_row_values(rel, revision) for rel in extra], _key_fields)
        _sync_insert_rows(connection, "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    row = f"(?, ?, ?, ?, ?, ?, NULL, NULL, NULL, {int(revision)})"
    _sync_insert_rows(connection, row, _sorted_yielding(list(map(_KEY_OF, plain))))


_SORT_RUN = 20_000


def _sorted_yielding(items: list[_Row], key: Callable[[_Row], _Row] | None = None) -> list[_Row]:
    """`sorted(items, key=key)`, without holding the GIL for the whole sort: one sort is one C
    call, during which the event loop's thread (health checks included) cannot run; sorted
    runs of :data:`_SORT_RUN` merged by heapq.merge (Python code) leave it room."""
    if len(items) <= _SORT_RUN:
        return sorted(items, key=key)
    runs = [sorted(items[i : i + _SORT_RUN], key=key) for i in range(0, len(items), _SORT_RUN)]
    return list(heapq.merge(*runs, key=key))


def _sync_insert_rows(connection: sqlite3.Connection, row: str, rows: list[_Row]) -> None:
    """INSERT `rows` into relationships (all columns but id and deleted_revision), `row`
    being the VALUES term of one row, as many rows per statement as the parameters allow.

    Several rows per statement keep the Python part (binding) short next to SQLite's (which
    runs without the GIL): with one row per statement the writer thread had to win the GIL
    back after every row, and so waited behind the event loop's Python work (the index update
    of the previous import) instead of running beside it.
    """
    insert = f"INSERT INTO relationships ({_COLUMNS}, created_revision) VALUES "
    per = _MAX_PARAMETERS // row.count("?")
    full = len(rows) - len(rows) % per
    if full:
        connection.executemany(
            insert + ", ".join([row] * per),
            (tuple(chain.from_iterable(rows[i : i + per])) for i in range(0, full, per)),
        )
    if full < len(rows):
        rest = rows[full:]
        connection.execute(insert + ", ".join([row] * len(rest)), tuple(chain.from_iterable(rest)))


def _key_fields(row: _Row) -> _Row:
    return row[:6]


def _sync_raise_already_exists(
    connection: sqlite3.Connection, created: Sequence[Relationship], revision: int, *, numbered: bool = False
) -> None:
    """After a failed insert: raise AlreadyExists for the first of `created` that was live
    before `revision` (rows inserted by this write before the failure do not count); with
    `numbered`, the message starts with its position (`relationships[i]: ...`)."""
    chunk = 500
    for start in range(0, len(created), chunk):
        part = created[start : start + chunk]
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(part))
        rows = connection.execute(
            f"SELECT {_KEY_COLUMNS} FROM relationships WHERE deleted_revision IS NULL "
            f"AND created_revision < ? AND ({_KEY_COLUMNS}) IN (VALUES {values})",
            [revision, *(field for rel in part for field in rel.key)],
        ).fetchall()
        if rows:
            found = {tuple(row) for row in rows}
            position, rel = next((start + i, rel) for i, rel in enumerate(part) if rel.key in found)
            where = f"relationships[{position}]: " if numbered else ""
            raise AlreadyExists(f"{where}relationship {rel} already exists")


def _change_key(change: Change) -> Key:
    return change.relationship.key


async def _shielded(work: Coroutine[Any, Any, T]) -> T:
    """Await `work` in a task of its own that a cancellation of the caller does not stop."""
    task = asyncio.ensure_future(work)
    # Retrieve the outcome even when nobody awaits it any more (the caller was cancelled).
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(task)
