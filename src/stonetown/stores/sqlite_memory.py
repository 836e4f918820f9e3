"""What the SQLite store's connections keep in memory, and how it is given back.

Each connection has a page cache of its own (the file's pages, 4 KB each, kept after use):
filled to its size by any large read or write, it stays full for as long as the connection is
open. In issue #18's soak that was most of what the process held at the end (glibc's blocks in
use 10 → 105 MB). The sizes below are chosen by what each connection does:

- the writer keeps 64 MB: an import's index upkeep (four indexes over millions of rows)
  rereads interior pages at every row, and thrashes beyond ~100k rows with SQLite's 2 MB;
- the pooled readers 16 MB: the change log, the schema and the head revision are small,
  recent pages, and a full read (the index load) is sequential, which a cache does not help;
- the worker threads' readers (old-revision reads, one connection per thread) 8 MB.

The process-wide soft heap limit (:data:`SOFT_HEAP_LIMIT`) bounds them all together: beyond it
a connection reuses its own least recently used pages instead of taking more (with many
worker threads the caches could otherwise add up to hundreds of MB). And when the server is
idle, :func:`shrink` (``PRAGMA shrink_memory``) empties a connection's cache (the worker
threads' readers are closed instead, their prepared statements with them: sqlite_reads.py);
the server then asks glibc to return the freed pages (api/runtime.py).
"""

from __future__ import annotations

import ctypes
import sqlite3

WRITER_CACHE_KIB = 65_536
READER_CACHE_KIB = 16_384
THREAD_READER_CACHE_KIB = 8_192
SOFT_HEAP_LIMIT = 128 * 1024 * 1024


def settings(synchronous: str, cache_kib: int) -> list[str]:
    """The PRAGMAs of a connection with a page cache of `cache_kib` KiB."""
    return [
        f"PRAGMA synchronous={synchronous}",
        f"PRAGMA cache_size=-{int(cache_kib)}",
        "PRAGMA temp_store=MEMORY",
    ]


def limit_heap(connection: sqlite3.Connection) -> None:
    """Set SQLite's process-wide soft heap limit to :data:`SOFT_HEAP_LIMIT`, unless the
    process already set one (a lower limit chosen by an embedding application stays)."""
    (current,) = connection.execute("PRAGMA soft_heap_limit").fetchone()
    if not current:
        connection.execute(f"PRAGMA soft_heap_limit={SOFT_HEAP_LIMIT}")


def shrink(connection: sqlite3.Connection) -> None:
    """Free the page cache of `connection` (pages in use by an open statement stay)."""
    connection.execute("PRAGMA shrink_memory")


def _library() -> ctypes.CDLL | None:
    """The SQLite library the sqlite3 module runs on (for its memory figures), or None when
    it cannot be reached (SQLite linked into the module without exported symbols)."""
    import _sqlite3

    try:
        library = ctypes.CDLL(_sqlite3.__file__)
        library.sqlite3_memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):
        return None
    return library


_LIBRARY = _library()


def memory_used() -> int | None:
    """Bytes SQLite holds in this process (page caches, statements, schemas), or None when
    the library cannot be asked."""
    return None if _LIBRARY is None else int(_LIBRARY.sqlite3_memory_used())
