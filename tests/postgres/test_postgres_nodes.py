"""Several Stonetown nodes over one PostgreSQL database: separate `stonetown serve` processes on
separate ports (standing in for machines), each with its own in-memory index advanced from the
change log (woken by LISTEN/NOTIFY). A token from a write on one node is honoured by the other;
Watch works on any node; killing one node does not disturb the other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pgcluster import PgCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from grpc_harness import SCHEMA, ServerProcess, stonetown_command, wait_healthy  # noqa: E402

from stonetown import Client  # noqa: E402
from stonetown.client import ReadConsistency  # noqa: E402

ROUNDS = 300


def _node(workdir: Path, uri: str) -> ServerProcess:
    """A `stonetown serve` node on a free port over the database at `uri`."""
    node = ServerProcess(
        workdir,
        "--port",
        "0",
        "--datastore",
        "postgres",
        "--datastore-uri",
        uri,
        "--schema",
        "schema.zed",
    )
    wait_healthy(node.address)
    return node


@pytest.fixture
def database(pg_cluster: PgCluster, tmp_path: Path) -> str:
    """A fresh database, migrated by `stonetown migrate` as an operator would."""
    (tmp_path / "schema.zed").write_text(SCHEMA)
    uri = pg_cluster.new_database()
    done = subprocess.run(
        stonetown_command("migrate", "--datastore", "postgres", "--datastore-uri", uri),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "applied migration 1" in done.stdout
    return uri


def test_tokens_cross_nodes_with_no_stale_answer(database: str, tmp_path: Path) -> None:
    node_a = _node(tmp_path, database)
    node_b = _node(tmp_path, database)
    try:
        with Client(node_a.address) as a, Client(node_b.address) as b:
            start = a.write(touch=["document:start#viewer@user:nobody"])
            events: list[str] = []
            watch_client = Client(node_b.address)
            watcher = threading.Thread(target=_collect, args=(watch_client, start, events), daemon=True)
            watcher.start()
            lags: list[float] = []
            for n in range(ROUNDS):
                writer, reader = (a, b) if n % 2 == 0 else (b, a)
                doc, user = f"document:d{n}", f"user:u{n}"
                if n % 10 == 0:
                    # Without a token: how long until the other node's index shows a write.
                    writer.write(touch=[f"document:lag{n}#viewer@{user}"])
                    lags.append(_lag(reader, f"document:lag{n}", user, expect=True))
                token = writer.write(touch=[f"{doc}#viewer@{user}"])
                fresh = ReadConsistency.at_least_as_fresh(token)
                assert reader.check(doc, "view", user, consistency=fresh).allowed, f"stale allow, round {n}"
                if n % 3 == 0:
                    token = reader.write(delete=[f"{doc}#viewer@{user}"])
                    fresh = ReadConsistency.at_least_as_fresh(token)
                    assert not writer.check(doc, "view", user, consistency=fresh).allowed, f"stale deny, {n}"
            lags.sort()
            print(
                f"\nnode catch-up lag without a token (NOTIFY): median {lags[len(lags) // 2] * 1000:.1f} ms, "
                f"max {lags[-1] * 1000:.1f} ms over {len(lags)} samples; {ROUNDS} token round trips"
            )
            assert lags[-1] < 2.0
            expected = ROUNDS + len(range(0, ROUNDS, 3)) + len(range(0, ROUNDS, 10))
            deadline = time.monotonic() + 10
            while len(events) < expected and time.monotonic() < deadline:
                time.sleep(0.02)
            watch_client.close()  # ends the stream, so the node need not drain it at shutdown
            watcher.join(10)
            assert len(events) == expected
            assert events[:2] == ["touch document:lag0#viewer@user:u0", "touch document:d0#viewer@user:u0"]
            assert events.count("delete document:d3#viewer@user:u3") == 1
    finally:
        assert node_a.stop() == 0
        assert node_b.stop() == 0


def _lag(client: Client, resource: str, subject: str, *, expect: bool) -> float:
    """Seconds until a minimize-latency check on `client` gives `expect`."""
    started = time.monotonic()
    latency = ReadConsistency.minimize_latency()
    while client.check(resource, "view", subject, consistency=latency).allowed != expect:
        if time.monotonic() - started > 5:
            raise AssertionError(f"{resource} never became {expect} without a token")
        time.sleep(0.001)
    return time.monotonic() - started


def _collect(client: Client, after: str, events: list[str]) -> None:
    """Append `op relationship` for every change Watch through `client` reports after `after`."""
    try:
        for event in client.watch(after=after):
            for change in event.changes:
                events.append(f"{change.op.value} {change.relationship}")
    except Exception:  # noqa: BLE001 - the stream ends when the client is closed
        return


def test_killing_one_node_does_not_disturb_the_other(database: str, tmp_path: Path) -> None:
    node_a = _node(tmp_path, database)
    node_b = _node(tmp_path, database)
    try:
        with Client(node_a.address) as a:
            token = a.write(touch=["document:k#viewer@user:ana"])
        node_a.process.send_signal(signal.SIGKILL)
        node_a.process.wait()
        with Client(node_b.address) as b:
            fresh = ReadConsistency.at_least_as_fresh(token)
            assert b.check("document:k", "view", "user:ana", consistency=fresh).allowed
            for n in range(50):
                token = b.write(touch=[f"document:after{n}#viewer@user:bob"])
                fresh = ReadConsistency.at_least_as_fresh(token)
                assert b.check(f"document:after{n}", "view", "user:bob", consistency=fresh).allowed
        # A restarted node loads the database and honours the survivor's token.
        node_c = _node(tmp_path, database)
        try:
            with Client(node_c.address) as c:
                fresh = ReadConsistency.at_least_as_fresh(token)
                assert c.check("document:after49", "view", "user:bob", consistency=fresh).allowed
                assert c.check("document:k", "view", "user:ana", consistency=fresh).allowed
        finally:
            assert node_c.stop() == 0
    finally:
        node_a.stop()
        assert node_b.stop() == 0


def test_serve_and_migrate_refuse_postgres_without_a_uri(tmp_path: Path) -> None:
    for command in ("serve", "migrate"):
        done = subprocess.run(
            stonetown_command(command, "--datastore", "postgres"),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("STONETOWN_")},
        )
        assert done.returncode == 2
        assert "--datastore postgres needs --datastore-uri" in done.stderr
