"""Two worker processes on one port and one SQLite file honour each other's tokens."""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

from grpc_harness import (
    OWN_CONNECTION,
    SCHEMA,
    ServerProcess,
    connections_by_process,
    listening_pids,
    wait_healthy,
)

from stonetown import Client
from stonetown.client import ReadConsistency

PAIRS = 24


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
        workers = listening_pids(proc.log())
        assert len(workers) == 2
        crossed = 0
        with ExitStack() as open_clients:

            def connect() -> tuple[Client, int]:
                """A client with a connection of its own, and the worker that accepted it."""
                before = connections_by_process(workers, port)
                client = open_clients.enter_context(Client(proc.address, channel_options=OWN_CONNECTION))
                client.read_schema()  # connects
                after = connections_by_process(workers, port)
                (worker,) = [pid for pid in workers if after[pid] == before[pid] + 1]
                return client, worker

            for n in range(PAIRS):
                # A connection of its own per client (kept open), so the kernel spreads them
                # across both workers and /proc shows which worker holds, and answers, each.
                (writer, wrote_on), (reader, read_on) = connect(), connect()
                token = writer.write(touch=[f"document:w{n}#viewer@user:u{n}"])
                fresh = ReadConsistency.at_least_as_fresh(token)
                assert reader.check(f"document:w{n}", "view", f"user:u{n}", consistency=fresh).allowed
                assert [str(r) for r in reader.read(f"document:w{n}", consistency=fresh)] == [
                    f"document:w{n}#viewer@user:u{n}"
                ]
                crossed += wrote_on != read_on
            held = connections_by_process(workers, port)
        print(f"\n[workers] connections per worker: {held}; pairs across workers: {crossed}")
        assert sum(held.values()) == 2 * PAIRS  # one connection per client
        assert crossed > 0  # some tokens were written on one worker and honoured by the other
    finally:
        assert proc.stop() == 0
