"""The reading side of a large SQLite index load, run as a child process (standard library
only: started with ``python -I -S <this file>``, so it needs neither the package nor a venv).

Its parent (stores/sqlite_load.py) writes one job to its stdin, marshalled: (path, busy
timeout, bounds SQL, plain scan SQL, other scan SQL, scan parameters, rows per frame). In one
read transaction the child runs the bounds query, then the scan of the plain relationships'
six key columns, then the scan of the others, and writes frames to stdout, each an 8-byte
little-endian length and a marshalled tuple: ("bounds", head, min_revision); ("coded",
strings, pairs, subjects, rows), the fields of :class:`CodedRows`: every distinct string,
(resource type, relation) pair and subject (type, id, relation) numbered once, in order of
first appearance, so the parent builds each of them once; ("rows", rows) of the other scan as
they are; ("error", message) for a SQLite error; () at the end.

Why a process: building each row's Python strings is most of a read, and it holds the GIL;
in a thread it only takes turns with the indexing, in a process it runs beside it.
"""

import marshal
import sqlite3
import struct
import sys
from array import array


def _frame(out, value) -> None:  # type: ignore[no-untyped-def]
    data = marshal.dumps(value)
    out.write(struct.pack("<Q", len(data)))
    out.write(data)


def main() -> None:
    """Read the job from stdin, write the frames to stdout."""
    out = sys.stdout.buffer
    path, timeout, bounds_sql, scan_sql, other_sql, params, per_frame = marshal.loads(sys.stdin.buffer.read())
    try:
        connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        connection.execute("PRAGMA query_only=1")
        connection.execute("BEGIN")
        _frame(out, ("bounds", *connection.execute(bounds_sql).fetchone()))
        cursor = connection.execute(scan_sql, params)
        strings: dict = {}
        pair_ids: dict = {}
        subject_ids: dict = {}
        new_strings: list = []

        def number(text: str) -> int:
            found = strings.get(text)
            if found is None:
                found = strings[text] = len(strings)
                new_strings.append(text)
            return found

        last_rid, rid_number = None, 0
        while True:
            batch = cursor.fetchmany(per_frame)
            if not batch:
                break
            new_strings.clear()
            pairs: list = []
            subjects: list = []
            rows: list = []
            for rtype, rid, relation, stype, sid, srel in batch:
                pair = pair_ids.get((rtype, relation))
                if pair is None:
                    pair = pair_ids[(rtype, relation)] = len(pair_ids)
                    pairs += (number(rtype), number(relation))
                if rid != last_rid:
                    last_rid, rid_number = rid, strings.get(rid)
                    if rid_number is None:
                        rid_number = number(rid)
                subject = subject_ids.get((stype, sid, srel))
                if subject is None:
                    subject = subject_ids[(stype, sid, srel)] = len(subject_ids)
                    subjects += (number(stype), number(sid), number(srel))
                rows += (pair, rid_number, subject)
            coded = (array("I", pairs).tobytes(), array("I", subjects).tobytes(), array("I", rows).tobytes())
            _frame(out, ("coded", new_strings, *coded))
        cursor = connection.execute(other_sql, params)
        while batch := cursor.fetchmany(per_frame):
            _frame(out, ("rows", batch))
        connection.execute("COMMIT")
        connection.close()
    except sqlite3.Error as exc:
        _frame(out, ("error", str(exc) or type(exc).__name__))
        out.flush()
        sys.exit(1)
    _frame(out, ())
    out.flush()


if __name__ == "__main__":
    main()
