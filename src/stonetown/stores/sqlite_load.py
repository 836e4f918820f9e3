"""A large SQLite store's plain relationships read by a child process for an index load.

The child (stores/sqlite_load_child.py) runs the scan in a read transaction of its own and
numbers every distinct string, (resource type, relation) pair and subject once; the parent
gets :class:`~stonetown.engine.datastore.CodedRows` batches, which the index builds from
without one Python string per column per row (engine/index.py). The child builds the rows'
objects on the other core, so reading and indexing overlap (a reading thread would hold the
GIL as long as the indexing: they took turns). Only for files of at least
:data:`CHILD_LOAD_BYTES` (a process costs ~50 ms to start).
"""

from __future__ import annotations

import asyncio
import marshal
import os
import struct
import sys
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from stonetown.core.errors import StoreError
from stonetown.engine.datastore import CodedRows, RelationshipFields, RelationshipFilter
from stonetown.stores.common import revision_out_of_range
from stonetown.stores.sql_common import COLUMNS, KEY_COLUMNS
from stonetown.stores.sqlite_reads import OTHER_ROWS, PLAIN_ROWS, to_fields, where

# files smaller than this are read in process
CHILD_LOAD_BYTES = 32 * 1024 * 1024
# rows per frame of the child's output
ROWS_PER_FRAME = 4096
# a frame's length can be no larger than this (a corrupt stream is not allocated for)
_MAX_FRAME = 1 << 30
_CHILD = str(Path(__file__).with_name("sqlite_load_child.py"))
# (head, min_revision) as a read transaction sees them
BOUNDS_SQL = (
    "SELECT (SELECT COALESCE(MAX(revision), 0) FROM revisions), "
    "(SELECT value FROM stonetown_meta WHERE name = 'min_revision')"
)


def child_load_wanted(path: str) -> bool:
    """Whether the store at `path` is a file large enough to be read by a child process (and
    there is an interpreter to start: not so in some embedding applications)."""
    if not sys.executable or not os.access(sys.executable, os.X_OK):
        return False
    try:
        return os.path.getsize(path) >= CHILD_LOAD_BYTES
    except OSError:
        return False  # an in-memory database, or a URI


async def child_rows(
    path: str, busy_timeout: float, revision: int
) -> AsyncIterator[CodedRows | list[RelationshipFields]]:
    """Every relationship live at `revision` in the store at `path`, read by a child process
    in one read transaction of its own (at `revision` exactly, not "the head": its snapshot
    may be newer than the caller's): the plain ones as :class:`CodedRows`, then the others
    as fields. FailedPrecondition if `revision` is no longer readable there, StoreError if
    the child fails; the child is killed if the caller stops early."""
    clause, params = where(RelationshipFilter(), revision)
    scan = "SELECT {} FROM relationships NOT INDEXED WHERE " + clause + " AND {}"
    plain, others = scan.format(KEY_COLUMNS, PLAIN_ROWS), scan.format(COLUMNS, OTHER_ROWS)
    job = (path, busy_timeout, BOUNDS_SQL, plain, others, params, ROWS_PER_FRAME)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", _CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    try:
        process.stdin.write(marshal.dumps(job))
        await process.stdin.drain()
        process.stdin.close()
        while frame := await _read_frame(process.stdout):
            kind = frame[0]
            if kind == "coded":
                _, strings, pairs, subjects, rows = frame
                yield CodedRows(strings, _numbers(pairs), _numbers(subjects), _numbers(rows))
            elif kind == "rows":
                yield to_fields(frame[1])
            elif kind == "bounds":
                error = revision_out_of_range(revision, int(frame[2] or 0), int(frame[1]))
                if error is not None:
                    raise error
            else:
                raise StoreError(f"SQLite store {path}: reading all relationships failed: {frame[-1]}")
        if await process.wait() != 0:
            raise StoreError(f"SQLite store {path}: the loading process failed")
    except (asyncio.IncompleteReadError, ValueError, EOFError, TypeError) as exc:
        if process.returncode is None:
            process.kill()
        error = (await process.stderr.read(2000)).decode(errors="replace")
        raise StoreError(f"SQLite store {path}: the loading process stopped early: {error or exc}") from exc
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _read_frame(stream: asyncio.StreamReader) -> Any:
    (length,) = struct.unpack("<Q", await stream.readexactly(8))
    if length > _MAX_FRAME:
        raise ValueError(f"a frame of {length} bytes")
    return marshal.loads(await stream.readexactly(length))


def _numbers(data: bytes) -> array[int]:
    numbers = array("I")
    numbers.frombytes(data)
    return numbers
