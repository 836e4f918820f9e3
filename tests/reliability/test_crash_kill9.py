"""Crash safety: kill -9 a real server during a write load, restart it on the same SQLite file,
and verify that every acknowledged write survived, that no write is half applied, and that
revisions keep increasing."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from grpc_harness import ServerProcess  # noqa: E402

from stonetown import Client  # noqa: E402
from stonetown.core.errors import StonetownError  # noqa: E402
from stonetown.core.revision import decode_token  # noqa: E402

SCHEMA = """
definition user {}
definition doc {
    relation viewer: user
    relation editor: user
    relation owner: user
    permission view = viewer + editor + owner
}
"""
WRITERS = 3
LOAD_SECONDS = 1.5


def _load(address: str, writer: int, acknowledged: list[tuple[int, int, int]], stop: threading.Event) -> None:
    """Write batches of three relationships; remember each batch the server acknowledged."""
    with Client(address, timeout=10) as client:
        batch = 0
        while not stop.is_set():
            doc = f"w{writer}b{batch}"
            try:
                token = client.write(
                    touch=[f"doc:{doc}#viewer@user:a", f"doc:{doc}#editor@user:b", f"doc:{doc}#owner@user:c"]
                )
            except (grpc.RpcError, StonetownError):
                return  # the server died: this batch was not acknowledged
            acknowledged.append((writer, batch, decode_token(token)))
            batch += 1


@pytest.mark.parametrize("round_", [1, 2])
def test_acknowledged_writes_survive_kill_9(tmp_path: Path, round_: int) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    db = str(tmp_path / "crash.db")
    server = ServerProcess(tmp_path, "--port", "0", "--datastore", db, "--schema", "schema.zed")
    acknowledged: list[tuple[int, int, int]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_load, args=(server.address, w, acknowledged, stop)) for w in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS * round_)
    server.process.send_signal(signal.SIGKILL)  # mid-load, no chance to flush anything
    server.process.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    server.stop()
    assert acknowledged, "the load acknowledged no write before the kill"

    restarted = ServerProcess(tmp_path, "--port", "0", "--datastore", db, "--schema", "schema.zed")
    try:
        with Client(restarted.address) as client:
            stored: dict[str, set[str]] = {}
            for rel in client.read("doc", consistency="fully_consistent"):
                stored.setdefault(rel.resource_id, set()).add(rel.relation)
            for writer, batch, _revision in acknowledged:
                assert stored.get(f"w{writer}b{batch}") == {"viewer", "editor", "owner"}
            # every batch present is complete: no partial write is visible
            assert all(relations == {"viewer", "editor", "owner"} for relations in stored.values())
            newest = max(revision for *_rest, revision in acknowledged)
            after = decode_token(client.write(touch=["doc:after#viewer@user:a"]))
            assert after > newest
    finally:
        restarted.stop()
