"""Crash safety of the bulk path: kill -9 a real server while ImportRelationships streams
arrive, restart it on the same SQLite file, and verify that every acknowledged import is
there in full and that no import is half applied."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from grpc_harness import ServerProcess  # noqa: E402

from stonetown import Client  # noqa: E402
from stonetown.core.errors import StonetownError  # noqa: E402
from stonetown.core.revision import decode_token  # noqa: E402

SCHEMA = """
definition user {}
definition team {
    relation member: user
}
definition doc {
    relation viewer: user | team#member
}
"""
SIZE = 1500  # per import: several of the store's multi-row INSERT statements


def _batch(importer: int, batch: int) -> list[str]:
    """The relationships of one import (the check recomputes them)."""
    rels = [f"doc:i{importer}b{batch}d{n}#viewer@user:u{n % 37}" for n in range(SIZE - 1)]
    rels.append(f"doc:i{importer}b{batch}s#viewer@team:t{batch}#member")
    return rels


def _load(
    address: str, importer: int, acknowledged: list[tuple[int, int, int]], stop: threading.Event
) -> None:
    """Import batch after batch; remember each one the server acknowledged."""
    with Client(address, timeout=30) as client:
        batch = 0
        while not stop.is_set():
            try:
                token = client.import_relationships(_batch(importer, batch), chunk_size=400)
            except (grpc.RpcError, StonetownError):
                return  # the server died: this import was not acknowledged
            acknowledged.append((importer, batch, decode_token(token)))
            batch += 1


def test_acknowledged_imports_survive_kill_9(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    db = str(tmp_path / "crash.db")
    server = ServerProcess(tmp_path, "--port", "0", "--datastore", db, "--schema", "schema.zed")
    acknowledged: list[tuple[int, int, int]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(server.address, i, acknowledged, stop)) for i in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGKILL)  # imports in flight, no chance to flush anything
    server.process.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    server.stop()
    assert len(acknowledged) >= 4, "the load acknowledged too few imports before the kill"

    restarted = ServerProcess(tmp_path, "--port", "0", "--datastore", db, "--schema", "schema.zed")
    try:
        with Client(restarted.address) as client:
            stored: dict[str, set[str]] = {}
            for rel in client.read("doc", consistency="fully_consistent"):
                prefix = rel.resource_id.split("d")[0].split("s")[0]
                stored.setdefault(prefix, set()).add(str(rel))
            for importer, batch, _revision in acknowledged:
                assert stored.get(f"i{importer}b{batch}") == set(_batch(importer, batch))
            # every import present is complete: none is half applied
            for prefix, rels in stored.items():
                importer, batch = map(int, prefix[1:].split("b"))
                assert rels == set(_batch(importer, batch)), prefix
            newest = max(revision for *_rest, revision in acknowledged)
            after = decode_token(client.write(touch=["doc:after#viewer@user:a"]))
            assert after > newest
            assert client.check("doc:i0b0d5", "viewer", "user:u5", consistency="fully_consistent").allowed
    finally:
        restarted.stop()
