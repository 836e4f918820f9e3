"""The SQLite database file: its layout (versioned migrations), and the checks on the file
itself the store's health rests on: its identity (deleted or replaced under a running store),
its header (corrupt), the room left to grow (full disk), and the lock that keeps a second
server off a file one already serves."""

from __future__ import annotations

import fcntl
import os
import resource
import sqlite3
import time
from pathlib import Path
from typing import IO

from stonetown.core.errors import StoreError
from stonetown.stores.sql_common import KEY_COLUMNS as _KEY_COLUMNS
from stonetown.stores.sqlite_writer import rollback

# Each migration is (version, description, statements); never edit one that has shipped.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
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
LATEST_VERSION = MIGRATIONS[-1][0]


def migrate(connection: sqlite3.Connection, path: str) -> None:
    """Bring the layout of the database `path` up to date (under BEGIN IMMEDIATE: another
    process migrating at the same time waits); StoreError if it is not a Stonetown database
    or a newer one."""
    version = layout_version(connection, path)
    if version == LATEST_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between the check and the lock.
        version = layout_version(connection, path)
        if version == 0:
            connection.execute(
                "CREATE TABLE stonetown_migrations "
                "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        for number, description, statements in MIGRATIONS:
            if number <= version:
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO stonetown_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (number, description, time.time()),
            )
        connection.execute("COMMIT")
    except BaseException:
        rollback(connection)
        raise


def layout_version(connection: sqlite3.Connection, path: str) -> int:
    """The layout version of the database (0: empty); StoreError if it is not a Stonetown
    database or a newer one."""
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    tables = sorted(row[0] for row in rows)
    if not tables:
        return 0
    if "stonetown_migrations" not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(f"{path} is not a Stonetown database (it holds other tables: {shown})")
    row = connection.execute("SELECT COALESCE(MAX(version), 0) FROM stonetown_migrations").fetchone()
    version = int(row[0]) if row is not None else 0
    if version > LATEST_VERSION:
        raise StoreError(
            f"{path} was written by a newer Stonetown (layout version {version}; "
            f"this one knows up to {LATEST_VERSION})"
        )
    return version


def describe_error(exc: sqlite3.Error, busy_timeout: float) -> str:
    """What a sqlite3 error means for the database file, in words (with SQLite's own text)."""
    text = str(exc)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        reason = "the database file (or its directory) is read-only"
    elif "locked" in lowered or "busy" in lowered:
        reason = f"the database is locked by another connection (waited {busy_timeout:g} s)"
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
        return text
    return f"{reason} ({text})"


SQLITE_HEADER = b"SQLite format 3\x00"
# the room a store that ran out of space needs again before it counts as writable
FULL_MARGIN = 8 * 1024 * 1024


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the database file; None for an in-memory database. Raises
    FileNotFoundError when the file is gone."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    info = os.stat(path)
    return info.st_dev, info.st_ino


def read_header(path: str) -> bytes | None:
    """The first 16 bytes of the database file (fewer if it is shorter; an open store's file
    always has its header, written when it switched to WAL); None for an in-memory one."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    with open(path, "rb") as handle:
        return handle.read(len(SQLITE_HEADER))


def room_left(path: str) -> int | None:
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
