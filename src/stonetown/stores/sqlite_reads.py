"""Reads of the SQLite store outside its pooled readers, and the row decoding they share.

- :class:`ThreadReaders`: each worker thread's own plain connection (opened on first use,
  closed with the store), for reads at any revision off the event loop (old-revision
  snapshots: :meth:`stonetown.stores.sqlite.SqliteDatastore.thread_reader`);
- :func:`scan`: every row of a revision (or those of plain relationships, or the others)
  through one cursor, batch by batch, the next batch read while the caller works on the
  current one (iter_all, iter_fields).
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import aiosqlite

from stonetown.core.errors import StoreError
from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import FilterReader, RelationshipFields, RelationshipFilter
from stonetown.stores.common import revision_out_of_range
from stonetown.stores.sql_common import COLUMNS, SqlConnection, filter_sql, run_sync
from stonetown.stores.sqlite_writer import SyncConnection, rollback

Row = tuple[Any, ...]
_PLAIN = (None, None)


def to_relationship(row: Row) -> Relationship:
    """A relationship from the nine columns of COLUMNS."""
    caveat = None
    if row[6] is not None:
        caveat = ContextualizedCaveat(row[6], json.loads(row[7]) if row[7] else {})
    expiration = None if row[8] is None else datetime.fromisoformat(row[8])
    return Relationship.shared(row[0], row[1], row[2], row[3], row[4], row[5], caveat, expiration)


def to_fields(rows: list[Row]) -> list[RelationshipFields]:
    """The fields of the relationships in `rows` (nine columns of COLUMNS each), decoded as
    :func:`to_relationship` decodes them; plain rows as they are."""
    return [_fields(row) if row[6] is not None or row[8] is not None else row[:6] + _PLAIN for row in rows]


def _fields(row: Row) -> RelationshipFields:
    caveat = None
    if row[6] is not None:
        caveat = ContextualizedCaveat(row[6], json.loads(row[7]) if row[7] else {})
    expiration = None if row[8] is None else datetime.fromisoformat(row[8]).timestamp()
    return (row[0], row[1], row[2], row[3], row[4], row[5], caveat, expiration)


def where(filter: RelationshipFilter, revision: int | None) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for `filter` at `revision`; None means the head,
    which lets SQLite use the partial index of live rows."""
    params: list[Any] = []
    return filter_sql(filter, revision, params, "?"), params


class ThreadReaders:
    """Each worker thread's own connection, each with the lock its thread holds while
    reading (memory release shrinks only the connections not in use)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        bounds: Callable[[SqlConnection], Awaitable[tuple[int, int]]],
        error: Callable[[sqlite3.Error, str], StoreError],
    ) -> None:
        """`connect` opens a thread's connection, `bounds` reads (head, min_revision) in a
        transaction, `error` turns a SQLite error into the store's StoreError."""
        self._connect = connect
        self._bounds = bounds
        self._error = error
        self._local = threading.local()
        self.connections: list[tuple[sqlite3.Connection, threading.Lock]] = []

    def close(self) -> None:
        """Close every thread's connection; a thread opens a new one on its next read."""
        for connection, _ in self.connections:
            try:
                connection.close()
            except sqlite3.Error:
                pass
        self.connections = []
        self._local = threading.local()

    def close_unused(self) -> int:
        """Close the connection of every thread not reading now (all it holds: page cache,
        prepared statements, schema), holding its lock meanwhile; how many were closed. Its
        thread opens a new one on its next read. Blocks for the frees: off the event loop."""
        closed = 0
        for entry in list(self.connections):
            connection, lock = entry
            if lock.acquire(blocking=False):
                try:
                    self.connections.remove(entry)  # under the lock: see _entry
                    connection.close()
                    closed += 1
                except (sqlite3.Error, ValueError):
                    pass  # closed with the store meanwhile
                finally:
                    lock.release()
        return closed

    def _entry(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """The calling thread's connection, open, and its lock, acquired."""
        entry = getattr(self._local, "entry", None)
        if entry is not None:
            entry[1].acquire()
            if entry in self.connections:
                return entry  # not closed by close_unused, which removes it under the lock
            entry[1].release()
        try:
            connection = self._connect()
        except sqlite3.Error as exc:
            raise self._error(exc, "reading relationships") from exc
        entry = self._local.entry = (connection, threading.Lock())
        entry[1].acquire()
        self.connections.append(entry)
        return entry

    @contextmanager
    def read(self, revision: int) -> Iterator[FilterReader]:
        """One read transaction at `revision` on the calling thread's connection, and a
        function reading a filter at it."""
        connection, lock = self._entry()
        try:
            try:
                connection.execute("BEGIN")
                head, min_revision = run_sync(self._bounds(SyncConnection(connection)))
                error = revision_out_of_range(revision, min_revision, head)
                if error is not None:
                    raise error
                at = None if revision == head else revision

                def read(filter: RelationshipFilter, limit: int | None = None) -> list[Relationship]:
                    clause, params = where(filter, at)
                    if limit is not None:  # a parameter: one prepared statement for every limit
                        clause += " LIMIT ?"
                        params.append(int(limit))
                    try:
                        sql = f"SELECT {COLUMNS} FROM relationships WHERE {clause}"
                        rows = connection.execute(sql, params)
                        return [to_relationship(row) for row in rows]
                    except sqlite3.Error as exc:
                        raise self._error(exc, "reading relationships") from exc

                yield read
            except sqlite3.Error as exc:
                raise self._error(exc, "reading relationships") from exc
            finally:
                rollback(connection)
        finally:
            lock.release()


# the rows of plain relationships (no caveat, no expiration), and of the others
PLAIN_ROWS = "caveat_name IS NULL AND expiration IS NULL"
OTHER_ROWS = "(caveat_name IS NOT NULL OR expiration IS NOT NULL)"


async def scan(
    connection: aiosqlite.Connection,
    revision: int | None,
    batch: int,
    columns: str = COLUMNS,
    rows: str | None = None,
) -> AsyncIterator[list[Row]]:
    """Every row live at `revision` (None: the head), in batches, in storage order, inside
    the connection's current transaction: its `columns`, of the `rows` that condition names
    (all by default)."""
    clause, params = where(RelationshipFilter(), revision)
    if rows is not None:
        clause = f"{clause} AND {rows}"
    # NOT INDEXED: a table scan in rowid order beats walking an index for every row.
    async with connection.execute(
        f"SELECT {columns} FROM relationships NOT INDEXED WHERE {clause}", params
    ) as cursor:
        # the connection's thread reads the next batch while the caller works on this
        # one (SQLite steps without the GIL): a load overlaps reading and indexing
        pending = asyncio.ensure_future(cursor.fetchmany(batch))
        try:
            while rows := await pending:
                pending = asyncio.ensure_future(cursor.fetchmany(batch))
                yield rows  # type: ignore[misc]
        finally:
            if not pending.done():  # the caller stopped early, or was cancelled
                await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # retrieved; a read error after the end is moot
