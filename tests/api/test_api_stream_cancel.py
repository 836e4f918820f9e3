"""A caller that leaves a server stream (cancels a Watch or a LookupSubjects, or its process
goes away) is recorded as CANCELLED, in the log and in /metrics, never as INTERNAL: a write
already under way when the cancellation arrives fails with grpc's transport error, which the
serving layer (api/interceptor.py) used to count as a server failure (issue #18)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_harness import OWN_CONNECTION, ServerProcess
from test_api_streams import SCHEMA

from stonetown import Client
from stonetown.api.interceptor import is_transport_error
from stonetown.api.pb import core, permission, permission_grpc, relationship, relationship_grpc

WATCH = "/stonetown.v1.RelationshipService/Watch"
LOOKUP = "/stonetown.v1.PermissionService/LookupSubjects"
HELD = 20  # Watch streams never read: the server's writes to them wait on flow control
READ = 5  # Watch streams read from a thread until cancelled
WAIT = 30.0  # liveness bound for the server to notice every cancellation

# A client process that opens streams, reads one answer of each, then dies without a word.
_VANISHING_CLIENT = """
import os, sys
import grpc
from stonetown.api.interceptor import is_transport_error
from stonetown.api.pb import core, permission, permission_grpc, relationship, relationship_grpc
# no window growth (BDP probing): the lookup's 5,000 answers cannot all be sent before the
# process dies, so the server is still streaming them when it goes (else it could finish: OK)
channel = grpc.insecure_channel(sys.argv[1], options=[("grpc.http2.bdp_probe", 0)])
watch = relationship_grpc.RelationshipServiceStub(channel).Watch(relationship.WatchRequest())
lookup = permission_grpc.PermissionServiceStub(channel).LookupSubjects(permission.LookupSubjectsRequest(
    resource=core.ObjectReference(object_type="document", object_id="d"), permission="view",
    subject_object_type="user", consistency=core.Consistency(fully_consistent=True)))
next(lookup)
print("reading", flush=True)
sys.stdin.readline()  # the test commits, so the watch has something to send
os._exit(0)
"""


def _lookup(stub: permission_grpc.PermissionServiceStub) -> grpc.Call:
    return stub.LookupSubjects(
        permission.LookupSubjectsRequest(
            resource=core.ObjectReference(object_type="document", object_id="d"),
            permission="view",
            subject_object_type="user",
            consistency=core.Consistency(fully_consistent=True),
        )
    )


def _codes(log: str, method: str) -> list[str]:
    return re.findall(rf"event=rpc method={re.escape(method)} code=(\w+)", log)


def test_cancelled_and_abandoned_streams_are_recorded_cancelled(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    server = ServerProcess(
        tmp_path, "--port", "0", "--datastore", str(tmp_path / "st.db"), "--schema", "schema.zed",
        "--metrics-addr", "127.0.0.1:0",
    )  # fmt: skip
    try:
        with Client(server.address) as client:
            members = [f"group:big#member@user:u{i:05d}" for i in range(5000)]
            client.import_relationships([*members, "document:d#viewer@group:big#member"])
            channel = grpc.insecure_channel(server.address, options=OWN_CONNECTION)
            watches = relationship_grpc.RelationshipServiceStub(channel)
            held = [watches.Watch(relationship.WatchRequest()) for _ in range(HELD)]
            read = [watches.Watch(relationship.WatchRequest()) for _ in range(READ)]
            lookups = permission_grpc.PermissionServiceStub(channel)
            vanishing = subprocess.Popen(
                [sys.executable, "-c", _VANISHING_CLIENT, server.address],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert vanishing.stdout is not None and vanishing.stdin is not None
            assert vanishing.stdout.readline().strip() == "reading"
            for batch in range(4):  # large commits: every stream has responses being written
                client.write(touch=[f"document:w{batch}-{i}#viewer@user:a" for i in range(1000)])
            for stream in read:
                assert next(stream).updates
            page = _lookup(lookups)
            assert next(page).subject.object.object_type == "user"
            vanishing.stdin.write("go\n")
            vanishing.stdin.flush()
            vanishing.wait(timeout=WAIT)
            client.write(touch=["document:last#viewer@user:a"])
            for stream in [*held, *read, page]:
                stream.cancel()
            channel.close()
        expected_watches, expected_lookups = HELD + READ + 1, 2
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            log = server.log()
            if len(_codes(log, WATCH)) >= expected_watches and len(_codes(log, LOOKUP)) >= expected_lookups:
                break
            time.sleep(0.2)
        log = server.log()
        assert _codes(log, WATCH) == ["CANCELLED"] * expected_watches, log[-3000:]
        assert _codes(log, LOOKUP) == ["CANCELLED"] * expected_lookups, log[-3000:]
        assert "code=INTERNAL" not in log and "Traceback" not in log
        found = re.search(r"event=metrics address=(\S+)", log)
        assert found is not None
        with urllib.request.urlopen(f"http://{found.group(1)}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        cancelled = 'stonetown_grpc_requests_total{{code="CANCELLED",method="{}"}} {}'
        assert cancelled.format(WATCH, float(expected_watches)) in metrics
        assert cancelled.format(LOOKUP, float(expected_lookups)) in metrics
        assert 'code="INTERNAL"' not in metrics
    finally:
        assert server.stop() == 0


def test_grpc_transport_error_is_recognised_without_its_private_module() -> None:
    """The serving layer names grpc's transport error by module and name (it does not import
    grpc's private extension): this fails if grpc moves or renames the class."""
    from grpc._cython import cygrpc

    assert is_transport_error(cygrpc.ExecuteBatchError("the call is over"))
    assert not is_transport_error(cygrpc.BaseError())
    assert not is_transport_error(RuntimeError("ExecuteBatchError"))
