"""The health status follows the store, and a SQLite file lost under a running server stops
its writes (issue #18 items 8 and 9), seen through a real server.

Deleting the database files used to go unnoticed: writes were acknowledged into the deleted
file, a second server on the path started a fresh store, and after a restart the rows were
gone while health said SERVING. Now the file's identity is checked before every write and its
acknowledgement and by a background probe, health turns NOT_SERVING, and a lock file keeps a
second server off the path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest
from grpc_harness import ServerProcess
from grpc_health.v1 import health_pb2, health_pb2_grpc
from reliability_harness import SOAK_SCHEMA, fill_until_refused, serve_with_little_room, start_server

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import Unavailable

FRESH = ReadConsistency.fully_consistent()
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_DEADLINE = 2.0  # a liveness bound: health answers from memory, whatever the store does
NOTICE_WITHIN = 20.0  # the probe runs every second; generous for a loaded machine


def health(address: str, service: str = "") -> int:
    """The health status, asked on a connection of its own with a deadline."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=HEALTH_DEADLINE).status


def wait_for_health(address: str, wanted: int) -> float:
    """Seconds until health reports `wanted` (every poll must answer in time)."""
    start = time.monotonic()
    while health(address) != wanted:
        assert time.monotonic() - start < NOTICE_WITHIN, f"health never became {wanted}"
        time.sleep(0.05)
    return time.monotonic() - start


def _serve(workdir: Path) -> ServerProcess:
    return ServerProcess(
        workdir, "--port", "0", "--datastore", str(workdir / "st.db"), "--schema", "schema.zed"
    )


def test_deleting_the_database_stops_writes_and_health(tmp_path: Path) -> None:
    server = start_server(tmp_path, SOAK_SCHEMA)
    try:
        with Client(server.address, timeout=30) as client:
            client.write(touch=["doc:before#viewer@user:u1"])
            assert health(server.address) == SERVING
            for name in ("st.db", "st.db-wal", "st.db-shm"):
                (tmp_path / name).unlink(missing_ok=True)
            deleted = time.monotonic()
            acknowledged = 0
            for n in range(50):
                try:
                    client.write(touch=[f"doc:after{n}#viewer@user:u1"])
                    acknowledged += 1
                except Unavailable as exc:
                    assert "st.db" in str(exc) and "deleted" in str(exc), exc
            assert acknowledged == 0
            wait_for_health(server.address, NOT_SERVING)
            print(f"health NOT_SERVING {(time.monotonic() - deleted) * 1000:.0f} ms after the deletion")
            assert health(server.address, "stonetown.v1.RelationshipService") == NOT_SERVING
            # reads go on from memory, at the revision of the last acknowledged write
            assert client.check("doc:before", "view", "user:u1").allowed
        # a second server on the same path refuses to start while the first one runs
        with pytest.raises(RuntimeError, match="server exited") as refused:
            _serve(tmp_path).stop()
        message = str(refused.value)
        assert "already served by another stonetown server" in message, message
        assert f"pid {server.process.pid}" in message, message
    finally:
        assert server.stop() == 0


def test_a_database_replaced_or_overwritten_under_the_server(tmp_path: Path) -> None:
    server = start_server(tmp_path, SOAK_SCHEMA)
    try:
        with Client(server.address, timeout=30) as client:
            client.write(touch=["doc:a#viewer@user:u1"])
            db = tmp_path / "st.db"
            with db.open("r+b") as handle:  # scribble over the header, in place
                handle.write(os.urandom(16))
            wait_for_health(server.address, NOT_SERVING)
            log = server.log()
            assert "corrupt" in log and "NOT_SERVING" in log, log[-2000:]
    finally:
        server.stop()
    other = tmp_path / "other"
    other.mkdir()
    server = start_server(other, SOAK_SCHEMA)
    try:
        with Client(server.address, timeout=30) as client:
            client.write(touch=["doc:a#viewer@user:u1"])
            db = other / "st.db"
            os.replace(db, other / "moved.db")
            db.write_bytes((other / "moved.db").read_bytes())  # same content, another file
            with pytest.raises(Unavailable, match=r"st\.db.*replaced"):
                client.write(touch=["doc:b#viewer@user:u1"])
            wait_for_health(server.address, NOT_SERVING)
    finally:
        server.stop()


def test_a_second_server_refuses_a_served_file_and_starts_once_it_is_free(tmp_path: Path) -> None:
    first = start_server(tmp_path, SOAK_SCHEMA)
    try:
        with pytest.raises(RuntimeError, match="server exited") as refused:
            _serve(tmp_path).stop()
        lines = [line for line in str(refused.value).splitlines() if "already served" in line]
        assert len(lines) == 1 and str(tmp_path / "st.db") in lines[0], str(refused.value)
    finally:
        assert first.stop() == 0
    second = _serve(tmp_path)  # the lock went with the first server
    try:
        assert health(second.address) == SERVING
    finally:
        assert second.stop() == 0


def test_a_full_disk_turns_health_not_serving(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SOAK_SCHEMA)
    seeded = start_server(tmp_path, SOAK_SCHEMA)
    assert seeded.stop() == 0
    server = serve_with_little_room(tmp_path, tmp_path / "st.db")
    try:
        with Client(server.address, timeout=60) as client:
            _acknowledged, _refused, error = fill_until_refused(client)
            assert "st.db" in str(error) and "disk" in str(error), error
            wait_for_health(server.address, NOT_SERVING)
            log = server.log()
            assert "NOT_SERVING" in log and "bytes of room left" in log, log[-2000:]
            assert client.check("doc:b0x1" + "p" * 200, "view", "user:u1").allowed  # reads go on
    finally:
        server.stop()
