"""Mistakes at the command line get one line that says what to do: a second server on a port
in use (which must not touch the running server's store), a client with no server to reach."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from grpc_harness import SCHEMA, ServerProcess, stonetown_command

from stonetown import Client

OTHER_SCHEMA = "definition user {}\n\ndefinition intruder {}\n"


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STONETOWN_")}
    return subprocess.run(
        stonetown_command(*args), capture_output=True, text=True, timeout=120, env=env, cwd=workdir
    )


def test_a_second_server_on_a_port_in_use_changes_nothing_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    (tmp_path / "other.zed").write_text(OTHER_SCHEMA)
    db = str(tmp_path / "st.db")
    running = ServerProcess(tmp_path, "--port", "0", "--datastore", db, "--schema", "schema.zed")
    try:
        port = running.address.rpartition(":")[2]
        for workers in ("1", "2"):
            second = _run(
                tmp_path,
                "serve", "--port", port, "--datastore", db, "--schema", "other.zed", "--workers", workers,
            )  # fmt: skip
            assert second.returncode == 2, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr  # no traceback, no grpc log
            assert "in use" in lines[0] and "--port" in lines[0], lines[0]
        with Client(running.address) as client:
            assert client.read_schema().text.strip() == SCHEMA.strip()  # not rewritten
    finally:
        assert running.stop() == 0


def test_a_client_with_no_server_to_reach_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = f"127.0.0.1:{sock.getsockname()[1]}"
    result = _run(tmp_path, "check", "document:a", "view", "user:b", "--endpoint", free, "--timeout", "10")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert free in lines[0] and "stonetown serve" in lines[0] and "Connection refused" in lines[0], lines[0]
