"""`--request-timeout` bounds streaming RPCs too, the time spent sending included: a stream
that would outlast it is cut with DEADLINE_EXCEEDED and the server ends its work."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from grpc_harness import SCHEMA, ServerProcess

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.client.errors import RpcError

RELATIONSHIPS = 20_000  # a stream of these takes several seconds to send (see the report)


def test_a_stream_longer_than_the_request_timeout_is_cut(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        tmp_path, "--port", "0", "--datastore", "memory", "--schema", "schema.zed", "--request-timeout", "1"
    )
    try:
        with Client(proc.address, timeout=120) as client:
            token = client.import_relationships(
                f"document:big#viewer@user:u{n}" for n in range(RELATIONSHIPS)
            )
            fresh = ReadConsistency.at_least_as_fresh(token)
            received = 0
            start = time.monotonic()
            with pytest.raises(RpcError) as cut:
                for _ in client.read("document:big", consistency=fresh):
                    received += 1
            print(f"\n[stream deadline] {received} of {RELATIONSHIPS} in {time.monotonic() - start:.2f}s")
            assert cut.value.code == "DEADLINE_EXCEEDED"
            assert received < RELATIONSHIPS
            # the server itself ended the stream (its handler finished, its generator closed)
            assert re.search(
                r"method=/stonetown.v1.RelationshipService/ReadRelationships code=DEADLINE_EXCEEDED .*"
                r"the stream took longer than its deadline",
                proc.log(),
            ), proc.log()[-2000:]
            # and serves the next call
            assert client.check("document:big", "view", "user:u7", consistency=fresh).allowed
    finally:
        assert proc.stop() == 0
