"""`stonetown serve --allocator`: the server re-executes itself (same process id) on the
allocator asked for, and so do its workers; the interpreter's own count of pymalloc blocks
(the pause summary's `python_blocks_k`, logged at stop) says which allocator served."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from grpc_harness import SCHEMA, ServerProcess

from stonetown import Client
from stonetown.cli.allocator import MALLOC, running_allocator
from stonetown.cli.main import EXIT_ERROR, main
from stonetown.client import ReadConsistency

sys.path.insert(0, str(Path(__file__).parent.parent / "reliability"))

from reliability_harness import worker_pids  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _python_blocks_k(server: ServerProcess) -> float:
    summary = [line for line in server.log().splitlines() if "event=pause_summary" in line]
    assert summary, server.log()[-2000:]
    fields = dict(part.split("=", 1) for part in summary[-1].split() if "=" in part)
    return float(fields["python_blocks_k"])


@pytest.mark.parametrize(
    ("allocator", "started_with"),
    [("malloc", None), ("pymalloc", {"PYTHONMALLOC": "malloc"})],
)
def test_the_server_and_its_workers_run_on_the_allocator_asked_for(
    tmp_path: Path, allocator: str, started_with: dict[str, str] | None
) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    server = ServerProcess(
        tmp_path,
        "--port", "0", "--datastore", str(tmp_path / "st.db"), "--schema", "schema.zed",
        "--workers", "2", "--allocator", allocator,
        env=started_with, listeners=2,
    )  # fmt: skip
    try:
        # the process started was re-executed in place (its pid), its workers started after
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2, server.log()[-2000:]
        for pid in (server.process.pid, *workers):
            assert _environ(pid).get("PYTHONMALLOC") == (MALLOC if allocator == MALLOC else None), pid
        with Client(server.address) as client:
            token = client.write(touch=["document:d#viewer@user:u"])
            fresh = ReadConsistency.at_least_as_fresh(token)
            assert client.check("document:d", "view", "user:u", consistency=fresh).allowed
    finally:
        assert server.stop() == 0
    blocks = _python_blocks_k(server)
    assert blocks == 0.0 if allocator == MALLOC else blocks > 0, server.log()[-2000:]


@pytest.mark.skipif(running_allocator() == MALLOC, reason="this interpreter runs on malloc already")
def test_the_cli_called_in_process_refuses_to_switch_rather_than_replace_its_caller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--port", "0", "--datastore", str(tmp_path / "st.db"), "--allocator", "malloc"])
    assert code == EXIT_ERROR
    assert "--allocator malloc needs a process of its own" in capsys.readouterr().err
    assert not (tmp_path / "st.db").exists()  # nothing served
