"""A multi-version datastore in one SQLite file (WAL mode).

Layout (see :mod:`stonetown.stores.sqlite_file`): `relationships` holds one row per version of
a relationship, with the revision that created it and the one that deleted it (NULL while
live); `revisions` one row per committed write; `schemas` the schema texts by revision;
`stonetown_meta` the oldest readable revision; `stonetown_migrations` the applied layout versions.

The transaction flow (writes, deletes, imports, the schema, garbage collection, reads, the
change log) is :class:`stonetown.stores.sql_flow.SqlDatastore`'s, shared with PostgreSQL; this
module holds the SQLite dialect and connection handling.

Every write is one transaction opened with BEGIN IMMEDIATE, so several processes can share
the file: the next revision is allocated inside it as max(revision) + 1, preconditions and
validators see the state before the write, and any error rolls everything back. With
`synchronous=FULL` (the default) a write is on disk before it is acknowledged.

Each process writes through one plain sqlite3 connection owned by one thread, behind an
asyncio lock (:mod:`stonetown.stores.sqlite_writer`): a long transaction (import, schema,
garbage collection) is one call there (one thread hop instead of one per statement), and a
batch of writes shares one transaction and one fsync (group commit), each write inside a
SAVEPOINT of its own so a failing one is rolled back alone. Reads use a small pool of
aiosqlite connections; WAL lets them see committed snapshots while a write is in progress.
Worker threads read through connections of their own, and a whole revision is scanned on a
connection of its own (:mod:`stonetown.stores.sqlite_reads`).

The file's identity (device and inode) is noted at open and checked before every write and
before it is acknowledged: once the file is deleted or replaced under a running store (its
connections would go on writing to a file nobody will open again), every write fails with
StoreError saying so. :meth:`SqliteDatastore.probe` reports that, a full disk and an
unreadable or corrupt file for the health status; :func:`lock_database` keeps a second
server off a file one already serves.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, aclosing
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiosqlite

from stonetown.core.errors import InvalidArgument, StoreError
from stonetown.core.relationship import Relationship, format_timestamp
from stonetown.engine.datastore import LOAD_BATCH, CodedRows, FilterReader, PlainFields, RelationshipFields
from stonetown.engine.loop_budget import LOOP_ROWS, TooLongForLoop, leave_loop_if, movable_off_loop
from stonetown.stores.common import Key, as_utc, shielded
from stonetown.stores.reader_pool import ReaderPool
from stonetown.stores.sql_common import COLUMNS, KEY_COLUMNS, SqlConnection, run_sync
from stonetown.stores.sql_flow import SqlDatastore
from stonetown.stores.sqlite_file import (
    FULL_MARGIN,
    SQLITE_HEADER,
    describe_error,
    file_identity,
    lock_database,
    migrate,
    read_header,
    room_left,
)
from stonetown.stores.sqlite_load import BOUNDS_SQL, child_load_wanted, child_rows
from stonetown.stores.sqlite_memory import (
    READER_CACHE_KIB,
    THREAD_READER_CACHE_KIB,
    WRITER_CACHE_KIB,
    limit_heap,
    settings,
    shrink,
)
from stonetown.stores.sqlite_reads import (
    OTHER_ROWS,
    PLAIN_ROWS,
    Row,
    ThreadReaders,
    scan,
    to_fields,
    to_relationship,
)
from stonetown.stores.sqlite_writer import (
    INSERT,
    AioConnection,
    SyncConnection,
    SyncWriter,
    begin,
    commit,
    insert_sorted,
    raw,
    rollback,
    row_values,
    try_begin,
    wal_mode,
)

__all__ = ["FULL_MARGIN", "SqliteDatastore", "lock_database"]

T = TypeVar("T")

_KEY_MATCH = (
    "resource_type = ? AND resource_id = ? AND relation = ? AND subject_type = ? AND subject_id = ? "
    "AND subject_relation = ?"
)

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _to_micros(value: datetime) -> int:
    """Microseconds since the epoch, exactly (floats would round)."""
    return (as_utc(value) - _EPOCH) // _MICROSECOND


def _from_micros(value: int) -> datetime:
    """The aware UTC datetime for microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=value)


class SqliteDatastore(SqlDatastore):
    """A multi-version datastore in one SQLite file; several processes may share the file."""

    _MARK = "?"
    _RELATIONSHIPS = "relationships"
    _REVISIONS = "revisions"
    _SCHEMAS = "schemas"
    _REVISION_TIME = "timestamp"
    _EXPIRED_BEFORE = "julianday(expiration) < julianday(?1)"
    _CHECK_CREATES_FIRST = False
    _UNIQUE_VIOLATION = sqlite3.IntegrityError

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
        self._sync_writer: SyncWriter | None = None
        self._write_lock = asyncio.Lock()
        self._readers: ReaderPool[aiosqlite.Connection] | None = None
        self._all_readers: list[aiosqlite.Connection] = []
        # (device, inode) of the file as opened; None for an in-memory database
        self._identity: tuple[int, int] | None = None
        # why the file can no longer be written (deleted or replaced): permanent
        self._lost: str | None = None
        self._thread_readers = ThreadReaders(
            lambda: self._connect_sync(THREAD_READER_CACHE_KIB), self._bounds, self._error
        )
        # the last write failed for lack of space or a disk error (cleared by a write that succeeds)
        self._full: str | None = None

    # ------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Open (creating if needed) and migrate the file; raise StoreError if it cannot."""
        if self._sync_writer is not None:
            return
        try:
            writer = self._sync_writer = await SyncWriter.open(self._connect_sync)
            await writer.run(limit_heap)
            mode = await writer.run(wal_mode)
            if mode is None or str(mode[0]).lower() not in ("wal", "memory"):
                raise StoreError(f"SQLite store {self.path}: cannot switch to WAL mode (got {mode})")
            await writer.run(lambda connection: migrate(connection, self.path))
            self._identity = file_identity(self.path)
            self._lost = self._full = None
            for _ in range(self._reader_count):
                self._all_readers.append(await self._connect())
            self._readers = ReaderPool(self._all_readers)
        except BaseException as exc:
            await self.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, "opening the store") from exc
            raise

    async def close(self) -> None:
        """Close every connection. Safe to call twice."""
        connections = list(self._all_readers)
        sync_writer, self._sync_writer = self._sync_writer, None
        if sync_writer is not None:
            await sync_writer.close()
        self._readers = None
        self._all_readers = []
        self._thread_readers.close()
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
            for pragma in settings(self.synchronous, READER_CACHE_KIB):
                await connection.execute(pragma)
        except BaseException:
            # Close it here: each connection owns a thread that would outlive the event loop.
            await connection.close()
            raise
        return connection

    def _connect_sync(self, cache_kib: int = WRITER_CACHE_KIB) -> sqlite3.Connection:
        """A plain connection with the same settings as :meth:`_connect` but its page cache's
        size (the writer's by default, for SyncWriter)."""
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            for pragma in settings(self.synchronous, cache_kib):
                connection.execute(pragma)
        except BaseException:
            connection.close()
            raise
        return connection

    # ------------------------------------------------------------------------ plumbing

    def _error(self, exc: sqlite3.Error, action: str) -> StoreError:
        reason = describe_error(exc, self.busy_timeout)
        return StoreError(f"SQLite store {self.path}: {action} failed: {reason}")

    @staticmethod
    async def _rollback(connection: aiosqlite.Connection) -> None:
        try:
            if connection.in_transaction:
                await connection.execute("ROLLBACK")
        except (sqlite3.Error, ValueError):
            pass

    def _require_open(self) -> None:
        if self._readers is None or self._sync_writer is None:
            raise StoreError(f"SQLite store {self.path} is not open")

    def _require_same_file(self) -> None:
        """Raise StoreError once the database file was deleted or replaced since it was
        opened: what this store writes would be lost (a stat call, a few microseconds)."""
        if self._lost is None and self._identity is not None:
            try:
                now = file_identity(self.path)
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

    def thread_reader(self, revision: int) -> AbstractContextManager[FilterReader] | None:
        """One read transaction at `revision` on the calling thread's own connection (opened
        on first use, closed with the store), and a function reading a filter at it."""
        self._require_open()
        return self._thread_readers.read(revision)

    async def probe(self) -> str | None:
        """None while the store can serve; else what is wrong, in one line: the file deleted
        or replaced, the disk full (until a small write succeeds again), the file unreadable
        or not a database. The file checks run off the event loop."""
        if self._sync_writer is None:
            return f"SQLite store {self.path} is not open"
        try:
            await asyncio.to_thread(self._require_same_file)
            if await asyncio.to_thread(read_header, self.path) not in (None, SQLITE_HEADER):
                return f"SQLite store {self.path}: the database file is corrupt (no SQLite header)"
            if self._full is not None:
                # Full until there is room again (a small write alone could fit in the last
                # few bytes while the writes callers send still fail).
                room = await asyncio.to_thread(room_left, self.path)
                if room is not None and room < FULL_MARGIN:
                    return f"{self._full} ({room} bytes of room left)"
                await self._in_write("checking for free space", _touch_meta, long=True)
            await self.head_revision()
        except StoreError as exc:
            return str(exc)
        except OSError as exc:
            return f"SQLite store {self.path}: cannot read the database file: {exc}"
        return None

    async def release_memory(self) -> int:
        """Empty the page caches of the connections not in use (see
        :mod:`stonetown.stores.sqlite_memory`), each on its own thread: the writer's between
        writes, the pooled readers while free; and close the worker threads' readers while
        their thread is not reading (their prepared statements too: a thread opens a new one
        on its next old-revision read). How many were emptied or closed."""
        writer, readers = self._sync_writer, self._readers
        if writer is None or readers is None:
            return 0
        shrunk = 0
        if not self._write_lock.locked():  # a write in progress keeps its cache
            async with self._write_lock:
                await writer.run(shrink)
            shrunk += 1
        free = readers.take_free()
        try:
            for connection in free:
                await connection.execute("PRAGMA shrink_memory")
                shrunk += 1
        except (sqlite3.Error, ValueError):
            pass  # closed with the store meanwhile
        finally:
            for connection in free:
                readers.put(connection)
        return shrunk + await asyncio.to_thread(self._thread_readers.close_unused)

    async def _in_write(
        self, action: str, body: Callable[[SqlConnection], Awaitable[T]], *, long: bool = False
    ) -> T:
        """Run `body` in one BEGIN IMMEDIATE transaction on the writer connection; commit, or
        roll back on any error. Runs to its end even if the caller is cancelled.

        COMMIT (the fsync) and a BEGIN that has to wait for another process's lock run on the
        writer's thread. A short body runs on the event loop: in-memory work that, on the
        thread, would wait for the GIL after every statement (a busy loop holds it for up to
        the switch interval, 5 ms); measured under gRPC write load, a group commit took 2.7 ms
        with the body on the thread. A `long` body (imports) runs on the thread whole, so the
        loop keeps serving, and so does a short one that finds it is long after all (it calls
        :func:`~stonetown.engine.loop_budget.leave_loop_if`: a statement changing more than
        :data:`~stonetown.engine.loop_budget.LOOP_ROWS` rows, a schema to compile): it is
        rolled back and run again on the thread, in a transaction of its own.
        """
        return await shielded(self._write_transaction(action, body, long))

    async def _write_transaction(
        self, action: str, body: Callable[[SqlConnection], Awaitable[T]], long: bool
    ) -> T:
        self._require_open()
        writer = self._sync_writer
        assert writer is not None

        def transaction(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            result = run_sync(body(SyncConnection(connection)))
            connection.execute("COMMIT")
            return result

        async with self._write_lock:
            try:
                self._require_same_file()
                if long:
                    result = await writer.run(transaction)
                else:
                    if not try_begin(writer.connection, self.busy_timeout):
                        await writer.run(begin)  # another process writes: wait off the loop
                    try:
                        with movable_off_loop():
                            result = run_sync(body(SyncConnection(writer.connection)))
                    except TooLongForLoop:
                        # long after all (thousands of rows, a schema to compile): undone,
                        # and run again whole on the writer's thread
                        await writer.run(rollback)
                        result = await writer.run(transaction)
                    else:
                        await writer.run(commit)
                self._full = None
                self._require_same_file()  # the commit may have gone to a deleted file
                return result
            except BaseException as exc:
                await writer.run(rollback)
                if isinstance(exc, sqlite3.Error):
                    raise self._write_error(exc, action) from exc
                raise

    async def _in_read(
        self, action: str, body: Callable[[SqlConnection], Awaitable[T]], *, urgent: bool = False
    ) -> T:
        """Run `body` in one read transaction (a consistent snapshot) on a pooled reader,
        to its end even if the caller is cancelled (aiosqlite queues each statement on the
        connection's thread: abandoning it halfway would leave the connection in a transaction).
        An `urgent` read gets the next free reader before the reads already waiting."""
        return await shielded(self._read_transaction(action, body, urgent))

    async def _read_transaction(
        self, action: str, body: Callable[[SqlConnection], Awaitable[T]], urgent: bool
    ) -> T:
        self._require_open()
        assert self._readers is not None
        readers = self._readers
        connection = await readers.get(urgent)
        try:
            await connection.execute("BEGIN")
            result = await body(AioConnection(connection))
            await connection.execute("COMMIT")
            return result
        except BaseException as exc:
            await self._rollback(connection)
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, action) from exc
            raise
        finally:
            readers.put(connection)

    # -------------------------------------------------------------------- dialect hooks

    async def _bounds(self, connection: SqlConnection, *, lock: bool = False) -> tuple[int, int]:
        """(head, min_revision) as the current transaction sees them (BEGIN IMMEDIATE holds
        the writers' lock already)."""
        row = await connection.fetchone(BOUNDS_SQL)
        assert row is not None
        return int(row[0]), int(row[1] or 0)

    async def _new_revision(self, connection: SqlConnection, head: int, schema_changed: bool) -> int:
        """Log revision head + 1 (the writers' lock makes it the next one)."""
        revision = head + 1
        await connection.execute(
            "INSERT INTO revisions (revision, timestamp, schema_changed) VALUES (?, ?, ?)",
            (revision, _to_micros(datetime.now(UTC)), int(schema_changed)),
        )
        return revision

    async def _set_min_revision(self, connection: SqlConnection, revision: int) -> None:
        """Record `revision` as the oldest readable one."""
        await connection.execute(
            "UPDATE stonetown_meta SET value = ? WHERE name = 'min_revision'", (revision,)
        )

    _decode = staticmethod(to_relationship)

    def _encode_inserts(self, relationships: Sequence[Relationship]) -> Any:
        """The relationships themselves: SQLite encodes them as it inserts them."""
        return relationships

    async def _insert(self, connection: SqlConnection, encoded: Any, revision: int) -> None:
        """Insert `encoded` (relationships), created at `revision`."""
        leave_loop_if(len(encoded) > LOOP_ROWS)
        await connection.executemany(INSERT, [row_values(rel, revision) for rel in encoded])

    async def _import_rows(
        self, connection: SqlConnection, relationships: Sequence[Relationship], revision: int
    ) -> None:
        """Insert an import in key order, many rows per statement (see insert_sorted)."""
        insert_sorted(raw(connection), relationships, revision)

    async def _end_keys(self, connection: SqlConnection, revision: int, keys: Sequence[Key]) -> None:
        """Mark the live rows with these keys deleted at `revision`."""
        leave_loop_if(len(keys) > LOOP_ROWS)
        await connection.executemany(
            f"UPDATE relationships SET deleted_revision = ? WHERE {_KEY_MATCH} AND deleted_revision IS NULL",
            [(revision, *key) for key in keys],
        )

    async def _end_ids(self, connection: SqlConnection, revision: int, ids: Sequence[int]) -> None:
        """Mark the rows with these ids deleted at `revision`."""
        leave_loop_if(len(ids) > LOOP_ROWS)
        await connection.executemany(
            "UPDATE relationships SET deleted_revision = ? WHERE id = ?", [(revision, id_) for id_ in ids]
        )

    async def _first_live(
        self, connection: SqlConnection, relationships: Sequence[Relationship], before: int
    ) -> int | None:
        """The position of the first of `relationships` live before revision `before` (rows
        inserted by the failing write itself do not count), looked up 500 at a time."""
        chunk = 500
        for start in range(0, len(relationships), chunk):
            part = relationships[start : start + chunk]
            values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(part))
            rows = await connection.fetch(
                f"SELECT {KEY_COLUMNS} FROM relationships WHERE deleted_revision IS NULL "
                f"AND created_revision < ? AND ({KEY_COLUMNS}) IN (VALUES {values})",
                [before, *(field for rel in part for field in rel.key)],
            )
            if rows:
                found = {tuple(row) for row in rows}
                return next(start + i for i, rel in enumerate(part) if rel.key in found)
        return None

    def _item_error(self, exc: Exception, action: str) -> Exception | None:
        """Every error fails its item only (SQLite's as StoreError)."""
        return self._error(exc, action) if isinstance(exc, sqlite3.Error) else exc

    def _revision_cutoff(self, older_than: datetime) -> Any:
        """Microseconds since the epoch, as revisions.timestamp holds them."""
        return _to_micros(older_than)

    def _expiration_cutoff(self, older_than: datetime) -> Any:
        """The timestamp text julianday() reads."""
        return format_timestamp(older_than)

    def _revision_time(self, value: Any) -> datetime:
        """revisions.timestamp as a datetime."""
        return _from_micros(int(value))

    # ----------------------------------------------------------------------------- reads

    async def iter_all(self, revision: int, batch: int = 50000) -> AsyncIterator[list[Relationship]]:
        """Every relationship live at `revision`, in batches, in storage order (not key order).

        Uses a connection of its own holding one read transaction, so the batches form one
        snapshot however long the caller takes between them.
        """
        async for _, rows in self._iter_rows(revision, batch, ((COLUMNS, None),)):
            yield [to_relationship(row) for row in rows]

    async def iter_fields(
        self, revision: int, batch: int = LOAD_BATCH
    ) -> AsyncIterator[list[RelationshipFields] | list[PlainFields] | CodedRows]:
        """:meth:`iter_all` as fields, straight from the rows (no Relationship objects): the
        plain relationships first, as the six key columns of their rows (the rows themselves,
        no copy), then the others, in one read transaction. A file of at least
        :data:`~stonetown.stores.sqlite_load.CHILD_LOAD_BYTES` is read by a child process,
        the plain relationships as :class:`CodedRows` (stores/sqlite_load.py)."""
        self._require_open()
        if child_load_wanted(self.path):
            async with aclosing(child_rows(self.path, self.busy_timeout, revision)) as batches:
                async for found in batches:
                    yield found
            return
        scans = ((KEY_COLUMNS, PLAIN_ROWS), (COLUMNS, OTHER_ROWS))
        async for plain, rows in self._iter_rows(revision, batch, scans):
            yield rows if plain == 0 else to_fields(rows)

    async def _iter_rows(
        self, revision: int, batch: int, scans: Sequence[tuple[str, str | None]]
    ) -> AsyncIterator[tuple[int, list[Row]]]:
        """The batches of the `scans` ((columns, rows) of :func:`scan`) in turn, each with the
        position of its scan, in one read transaction."""
        self._require_open()
        try:
            connection = await self._connect()
        except sqlite3.Error as exc:
            raise self._error(exc, "reading all relationships") from exc
        try:
            await connection.execute("BEGIN")
            head = await self._check_revision(AioConnection(connection), revision)
            at = None if revision == head else revision
            for position, (columns, rows) in enumerate(scans):
                # closed here, before the connection: its cursor and pending batch go first
                async with aclosing(scan(connection, at, batch, columns, rows)) as rows_of:
                    async for found in rows_of:
                        yield position, found
            await connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc, "reading all relationships") from exc
        finally:
            await self._rollback(connection)
            await connection.close()


async def _touch_meta(connection: SqlConnection) -> None:
    """Rewrite one row unchanged: a write that needs a little free space, and nothing else."""
    await connection.execute("UPDATE stonetown_meta SET value = value WHERE name = 'min_revision'")
