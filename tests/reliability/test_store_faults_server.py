"""Store faults seen through a real server: a read-only file, a full disk, a file locked by
another process, a corrupt or foreign file. Each gives a clear error naming the file (at start,
or UNAVAILABLE on the write); no answer is silently wrong and no acknowledged write is lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from file_faults import read_only
from grpc_harness import ServerProcess
from reliability_harness import SOAK_SCHEMA, alive, fill_until_refused, serve_with_little_room, start_server

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import StonetownError, Unavailable
from stonetown.core.revision import decode_token

FRESH = ReadConsistency.fully_consistent()
SEED = [f"doc:seed{n}#viewer@user:u1" for n in range(20)]


def _seeded(tmp_path: Path) -> Path:
    """A store holding the soak schema and SEED, written by a server that then stopped."""
    server = start_server(tmp_path, SOAK_SCHEMA)
    try:
        with Client(server.address) as client:
            client.write(touch=SEED)
    finally:
        assert server.stop() == 0
    return tmp_path / "st.db"


def _stored(address: str) -> set[str]:
    with Client(address, timeout=30) as client:
        return {str(r) for r in client.read("doc", consistency=FRESH)}


def _serve(tmp_path: Path, *args: str) -> ServerProcess:
    return ServerProcess(
        tmp_path, "--port", "0", "--datastore", str(tmp_path / "st.db"), "--schema", "schema.zed", *args
    )


def test_read_only_file_refuses_writes_and_keeps_serving_reads(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    with read_only(db):
        server = _serve(tmp_path)
        try:
            with Client(server.address, timeout=30) as client:
                with pytest.raises(Unavailable, match=r"st\.db.*read-only"):
                    client.write(touch=["doc:new#viewer@user:u2"])
                assert client.check("doc:seed3", "view", "user:u1", consistency=FRESH).allowed
                assert not client.check("doc:new", "view", "user:u2", consistency=FRESH).allowed
            assert _stored(server.address) == set(SEED)
        finally:
            assert server.stop() == 0
    server = _serve(tmp_path)
    try:
        with Client(server.address) as client:
            client.write(touch=["doc:new#viewer@user:u2"])
        assert _stored(server.address) == {*SEED, "doc:new#viewer@user:u2"}
    finally:
        server.stop()


def test_full_disk_fails_the_write_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    server = serve_with_little_room(tmp_path, db)
    try:
        with Client(server.address, timeout=60) as client:
            acknowledged, refused, error = fill_until_refused(client)
            assert "st.db" in str(error) and "full" in str(error), error
            # still serving, with everything acknowledged and nothing of the refused write
            stored = {str(r) for r in client.read("doc", consistency=FRESH)}
            assert all(rel in stored for rels in acknowledged for rel in rels)
            assert not any(rel in stored for rel in refused)
        assert alive(server.process.pid)
    finally:
        server.stop()
    server = _serve(tmp_path)
    try:
        stored = _stored(server.address)
        assert set(SEED) <= stored
        assert all(rel in stored for rels in acknowledged for rel in rels)
        assert not any(rel in stored for rel in refused)
        with Client(server.address) as client:
            client.write(touch=["doc:after#viewer@user:u1"])
    finally:
        server.stop()


_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


def test_file_locked_by_another_process(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    server = _serve(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with Client(server.address, timeout=60) as client:
            with pytest.raises(Unavailable, match=r"st\.db.*locked"):
                client.write(touch=["doc:locked#viewer@user:u2"])
            assert client.check("doc:seed1", "view", "user:u1", consistency=FRESH).allowed
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=30) == 0
            token = client.write(touch=["doc:locked#viewer@user:u2"])
            assert decode_token(token) > 0
            assert client.check("doc:locked", "view", "user:u2", consistency=FRESH).allowed
        assert _stored(server.address) == {*SEED, "doc:locked#viewer@user:u2"}
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        server.stop()


def _start_fails(tmp_path: Path, *phrases: str) -> None:
    (tmp_path / "schema.zed").write_text(SOAK_SCHEMA)
    with pytest.raises(RuntimeError, match="server exited") as failure:
        _serve(tmp_path).stop()
    message = str(failure.value)
    assert "st.db" in message, message
    assert any(phrase in message for phrase in phrases), message


def test_garbage_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "st.db").write_bytes(os.urandom(64 * 1024))
    _start_fails(tmp_path, "not a database", "corrupt")


def test_foreign_sqlite_file_is_refused_at_start(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "st.db")
    connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    connection.commit()
    connection.close()
    _start_fails(tmp_path, "not a Stonetown database")
    with sqlite3.connect(tmp_path / "st.db") as check:  # the foreign file was not touched
        tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"customers"}


@pytest.mark.parametrize("damage", ["pages", "truncated"])
def test_corrupted_file_gives_an_error_never_a_wrong_answer(tmp_path: Path, damage: str) -> None:
    db = _seeded(tmp_path)
    data = bytearray(db.read_bytes())
    if damage == "pages":
        page = 4096
        for start in range(page, len(data), 2 * page):  # scribble over every other page after the first
            data[start : start + page] = os.urandom(min(page, len(data) - start))
    else:
        data = data[: len(data) // 2]
    db.write_bytes(bytes(data))
    for extra in ("st.db-wal", "st.db-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    (tmp_path / "schema.zed").write_text(SOAK_SCHEMA)
    try:
        server = _serve(tmp_path)
    except RuntimeError as exc:
        assert "st.db" in str(exc), exc
        return
    try:  # it started: every answer is either right or UNAVAILABLE naming the file
        with Client(server.address, timeout=30) as client:
            for n in range(20):
                try:
                    assert client.check(f"doc:seed{n}", "view", "user:u1", consistency=FRESH).allowed
                except StonetownError as exc:
                    assert isinstance(exc, Unavailable) and "st.db" in str(exc), exc
    finally:
        server.stop()
