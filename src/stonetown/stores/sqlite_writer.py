"""The SQLite writer: one plain sqlite3 connection with a thread of its own, the shared flow's
connections over sqlite3 and aiosqlite, and the bulk insert path of imports (key order, many
rows per statement)."""

from __future__ import annotations

import asyncio
import heapq
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from typing import Any, TypeVar

import aiosqlite

from stonetown.core.relationship import Relationship, format_timestamp
from stonetown.stores.common import encode_caveat
from stonetown.stores.sql_common import COLUMNS as _COLUMNS
from stonetown.stores.sql_common import SqlConnection

T = TypeVar("T")

# Rows an aiosqlite reader hands over at a time to be decoded (AioConnection.fetch_decoded).
FETCH_BATCH = 1000
_Row = tuple[Any, ...]

INSERT = f"INSERT INTO relationships ({_COLUMNS}, created_revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class SyncConnection:
    """The shared flow's connection over a plain sqlite3 connection: its coroutines never
    suspend, so a body runs to its end in one :func:`run_sync` call, on any thread."""

    __slots__ = ("connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query."""
        return self.connection.execute(sql, params).fetchall()

    async def fetch_decoded(self, sql: str, params: Sequence[Any], decode: Callable[[Any], T]) -> list[T]:
        """Every row of a query passed through `decode` as it is read (one row at a time)."""
        return [decode(row) for row in self.connection.execute(sql, params)]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of a query, or None."""
        return self.connection.execute(sql, params).fetchone()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        return self.connection.execute(sql, params).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""
        self.connection.executemany(sql, rows)


class AioConnection:
    """The shared flow's connection over an aiosqlite connection (the readers)."""

    __slots__ = ("connection",)

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection = connection

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query."""
        async with self.connection.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetch_decoded(self, sql: str, params: Sequence[Any], decode: Callable[[Any], T]) -> list[T]:
        """Every row of a query passed through `decode` as it is read (:data:`FETCH_BATCH`
        rows at a time; the event loop has a turn between batches)."""
        decoded: list[T] = []
        async with self.connection.execute(sql, params) as cursor:
            while rows := await cursor.fetchmany(FETCH_BATCH):
                decoded.extend(map(decode, rows))
        return decoded

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of a query, or None."""
        async with self.connection.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        async with self.connection.execute(sql, params) as cursor:
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""
        await self.connection.executemany(sql, rows)


def raw(connection: SqlConnection) -> sqlite3.Connection:
    """The sqlite3 connection under a writer's :class:`SyncConnection`."""
    assert isinstance(connection, SyncConnection)
    return connection.connection


class SyncWriter:
    """A plain sqlite3 connection with a thread of its own for the calls that may block (lock
    waits, fsync, long bodies); short bodies use it from the event loop in between, never
    at the same time (the store's write lock is held throughout)."""

    def __init__(self, pool: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._pool = pool
        self.connection = connection

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection]) -> SyncWriter:
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


def try_begin(connection: sqlite3.Connection, busy_timeout: float) -> bool:
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


def begin(connection: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting up to the busy timeout for another process's write lock."""
    connection.execute("BEGIN IMMEDIATE")


def commit(connection: sqlite3.Connection) -> None:
    """COMMIT (the fsync, with synchronous=FULL)."""
    connection.execute("COMMIT")


def rollback(connection: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any (errors ignored: the write already failed)."""
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def wal_mode(connection: sqlite3.Connection) -> Any:
    """Switch the database to WAL mode; the row naming the mode in force."""
    return connection.execute("PRAGMA journal_mode=WAL").fetchone()


def row_values(rel: Relationship, revision: int) -> tuple[Any, ...]:
    """The INSERT parameters for `rel` created at `revision`."""
    expiration = None if rel.expiration is None else format_timestamp(rel.expiration)
    return (*rel.key, *encode_caveat(rel), expiration, revision)


_KEY_OF = attrgetter(
    "resource_type", "resource_id", "relation", "subject_type", "subject_id", "subject_relation"
)
_MAX_PARAMETERS = 900  # per statement: below every SQLite build's limit (999 before 3.32)


def insert_sorted(
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
        rows = _sorted_yielding([row_values(rel, revision) for rel in extra], _key_fields)
        _insert_rows(connection, rows, 10)
    _insert_rows(connection, _sorted_yielding(list(map(_KEY_OF, plain))), 6, revision)


_SORT_RUN = 20_000


def _sorted_yielding(items: list[_Row], key: Callable[[_Row], _Row] | None = None) -> list[_Row]:
    """`sorted(items, key=key)`, without holding the GIL for the whole sort: one sort is one C
    call, during which the event loop's thread (health checks included) cannot run; sorted
    runs of :data:`_SORT_RUN` merged by heapq.merge (Python code) leave it room."""
    if len(items) <= _SORT_RUN:
        return sorted(items, key=key)
    runs = [sorted(items[i : i + _SORT_RUN], key=key) for i in range(0, len(items), _SORT_RUN)]
    return list(heapq.merge(*runs, key=key))


def _insert_rows(
    connection: sqlite3.Connection, rows: list[_Row], fields: int, revision: int | None = None
) -> None:
    """INSERT `rows` of `fields` values into relationships (all columns but id and
    deleted_revision; given `revision`, each row is the six key fields, the revision bound
    once for all), as many rows per statement as the parameters allow.

    Several rows per statement keep the Python part (binding) short next to SQLite's (which
    runs without the GIL): with one row per statement the writer thread had to win the GIL
    back after every row, and so waited behind the event loop's Python work (the index update
    of the previous import) instead of running beside it. The statements' texts depend on
    nothing but their row count, a power of two but the full one (the connection keeps each
    prepared statement it ran: one per revision and per remainder was MBs of them).
    """
    shared = () if revision is None else (revision,)
    per = (_MAX_PARAMETERS - len(shared)) // fields
    full = len(rows) - len(rows) % per
    if full:
        connection.executemany(
            _insert_statement(per, fields, bool(shared)),
            (shared + tuple(chain.from_iterable(rows[i : i + per])) for i in range(0, full, per)),
        )
    while full < len(rows):
        count = 1 << ((len(rows) - full).bit_length() - 1)
        part = shared + tuple(chain.from_iterable(rows[full : full + count]))
        connection.execute(_insert_statement(count, fields, bool(shared)), part)
        full += count


@lru_cache(maxsize=64)
def _insert_statement(count: int, fields: int, revision: bool) -> str:
    """INSERT of `count` rows of `fields` numbered parameters each; with `revision`, the
    caveat and expiration columns NULL and the created revision parameter 1 in every row."""
    first = 2 if revision else 1
    terms = []
    for row in range(count):
        start = first + row * fields
        values = ", ".join(f"?{start + i}" for i in range(fields))
        terms.append(f"({values}, NULL, NULL, NULL, ?1)" if revision else f"({values})")
    return f"INSERT INTO relationships ({_COLUMNS}, created_revision) VALUES " + ", ".join(terms)


def _key_fields(row: _Row) -> _Row:
    return row[:6]
