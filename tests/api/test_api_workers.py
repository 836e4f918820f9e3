"""Two worker processes on one port and one SQLite file honour each other's tokens."""

from __future__ import annotations

import socket
from pathlib import Path

from grpc_harness import SCHEMA, ServerProcess, wait_healthy

from stonetown import Client
from stonetown.client import ReadConsistency


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_tokens_from_one_worker_are_honoured_by_the_other(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    port = _free_port()
    proc = ServerProcess(
        tmp_path,
        "--port",
        str(port),
        "--workers",
        "2",
        "--datastore",
        str(tmp_path / "st.db"),
        "--schema",
        "schema.zed",
        listeners=2,
    )
    try:
        wait_healthy(proc.address)
        pids = set()
        for n in range(24):
            # A fresh channel per call, so the kernel spreads them across both workers.
            with Client(proc.address) as writer:
                token = writer.write(touch=[f"document:w{n}#viewer@user:u{n}"])
            with Client(proc.address) as reader:
                fresh = ReadConsistency.at_least_as_fresh(token)
                assert reader.check(f"document:w{n}", "view", f"user:u{n}", consistency=fresh).allowed
                assert [str(r) for r in reader.read(f"document:w{n}", consistency=fresh)] == [
                    f"document:w{n}#viewer@user:u{n}"
                ]
        for line in proc.log().splitlines():
            if "event=listening" in line:
                pids.add(line.split("pid=")[1].split()[0])
        assert len(pids) == 2
    finally:
        assert proc.stop() == 0
