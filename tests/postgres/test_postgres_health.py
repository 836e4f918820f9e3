"""Health follows PostgreSQL (issue #18 item 9): a node reports NOT_SERVING while its database
server is down, and SERVING again, with writes accepted, once it is back. Runs on a cluster
of its own (stopping the shared one would disturb the other tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgcluster import MISSING, PgCluster, find_bin_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from grpc_harness import SCHEMA, ServerProcess  # noqa: E402
from test_store_health_server import NOT_SERVING, SERVING, health, wait_for_health  # noqa: E402

from stonetown import Client  # noqa: E402
from stonetown.client import ReadConsistency  # noqa: E402
from stonetown.core.errors import Unavailable  # noqa: E402


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A throwaway cluster for this test only."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(MISSING)
    cluster = PgCluster(bin_dir)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_health_follows_postgres_down_and_back(own_cluster: PgCluster, tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    uri = own_cluster.new_database()
    node = ServerProcess(
        tmp_path, "--port", "0", "--datastore", "postgres", "--datastore-uri", uri, "--schema", "schema.zed"
    )
    try:
        with Client(node.address, timeout=30) as client:
            client.write(touch=["document:a#viewer@user:ana"])
            assert health(node.address) == SERVING
            own_cluster.pause()
            print(f"NOT_SERVING {wait_for_health(node.address, NOT_SERVING) * 1000:.0f} ms after the stop")
            with pytest.raises(Unavailable):
                client.write(touch=["document:b#viewer@user:ana"])
            own_cluster.resume()
            print(f"SERVING {wait_for_health(node.address, SERVING) * 1000:.0f} ms after the restart")
            token = client.write(touch=["document:c#viewer@user:ana"])
            at = ReadConsistency.at_least_as_fresh(token)
            assert client.check("document:c", "view", "user:ana", consistency=at).allowed
    finally:
        node.stop()
