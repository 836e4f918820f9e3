"""Availability of long streams against a real server (issue #18, items 5 and 6): a huge
lookup shares the event loop (health keeps answering), stops at its page and when its caller
goes away, pages resume from the cursor with the same answers; Expand of a huge set fails
at once naming its bound; Watch streams share one change feed, are bounded, and each gets
its own filtered changes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_harness import ServerProcess
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stonetown import Client
from stonetown.api.pb import core, permission, permission_grpc, relationship, relationship_grpc
from stonetown.core.errors import ResourceExhausted

SCHEMA = """
definition user {}

definition group {
    relation member: user | group#member
}

definition document {
    relation viewer: user | group#member
    relation banned: user
    permission view = viewer - banned
}
"""

MEMBERS = 400_000  # large enough that computing every answer takes a while, small enough to import fast
LIVENESS = 5.0  # seconds: far above a turn of the event loop, far below a whole lookup before the fix


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server holding group:big with MEMBERS members, viewer of document:d (one banned);
    at most 3 watch streams, Expand bounded at 1000 nodes and subjects."""
    workdir = tmp_path_factory.mktemp("streams")
    (workdir / "schema.zed").write_text(SCHEMA)
    server = ServerProcess(
        workdir, "--port", "0", "--datastore", str(workdir / "st.db"), "--schema", "schema.zed",
        "--max-watch-streams", "3", "--max-expand-size", "1000",
    )  # fmt: skip
    members = (f"group:big#member@user:u{i:06d}" for i in range(MEMBERS))
    extra = ["document:d#viewer@group:big#member", "document:d#banned@user:u000007"]
    with Client(server.address) as client:
        client.import_relationships([*members, *extra], chunk_size=5000)
    yield server
    server.stop()


def _own_channel(address: str) -> grpc.Channel:
    # its own connection: a blocked or busy call on the shared one must not delay this one
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def _lookup_request(limit: int, cursor: str | None = None) -> permission.LookupSubjectsRequest:
    request = permission.LookupSubjectsRequest(
        resource=core.ObjectReference(object_type="document", object_id="d"),
        permission="view",
        subject_object_type="user",
        optional_limit=limit,
        consistency=core.Consistency(fully_consistent=True),
    )
    if cursor is not None:
        request.optional_cursor.token = cursor
    return request


def _server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_health_answers_while_a_huge_lookup_computes(big: ServerProcess) -> None:
    """Before the first result of a lookup over every member, health answers again and again
    (the walk gives the event loop a turn every few milliseconds)."""
    answered: list[float] = []  # monotonic instants of health answers
    slowest = [0.0]
    stop = threading.Event()

    def probe() -> None:
        with _own_channel(big.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while not stop.is_set():
                started = time.monotonic()
                try:
                    health.Check(health_pb2.HealthCheckRequest(), timeout=LIVENESS)
                except grpc.RpcError:
                    slowest[0] = float("inf")
                    return
                answered.append(time.monotonic())
                slowest[0] = max(slowest[0], answered[-1] - started)
                time.sleep(0.005)

    with _own_channel(big.address) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=LIVENESS)
        stub = permission_grpc.PermissionServiceStub(channel)
        thread = threading.Thread(target=probe)
        thread.start()
        try:
            time.sleep(0.1)
            started = time.monotonic()
            stream = stub.LookupSubjects(_lookup_request(0), timeout=120)
            first = next(stream)
            first_at = time.monotonic()
            stream.cancel()
        finally:
            stop.set()
            thread.join()
    assert first.subject.object.object_id == "u000000"
    during = [at for at in answered if started < at < first_at]
    # a walk that takes a while must let health in; one that is already done has nothing to show
    took = first_at - started
    assert len(during) >= 2 or took < 0.3, f"health answered {len(during)} times in {took:.2f} s"
    assert slowest[0] < LIVENESS


def test_cancelled_lookup_stops_consuming_cpu(big: ServerProcess) -> None:
    """A caller that goes away mid-walk stops the walk: the server idles right after."""
    with _own_channel(big.address) as channel:
        stub = permission_grpc.PermissionServiceStub(channel)
        stream = stub.LookupSubjects(_lookup_request(0), timeout=120)
        time.sleep(0.3)  # the walk is under way
        stream.cancel()
        time.sleep(0.3)  # the cancellation reaches the server
        before = _server_cpu(big.process.pid)
        time.sleep(2.0)
        used = _server_cpu(big.process.pid) - before
    # the whole walk (every member checked) costs several seconds of CPU; an idle server ~0
    assert used < 1.0, f"the server used {used:.2f} s of CPU in the 2 s after the call ended"


def test_pages_resume_from_the_cursor_and_add_up(big: ServerProcess) -> None:
    """Pages of 1000 follow on from each other's cursor; their union is the unpaged answer
    around the start (no duplicate, no miss), the banned member excluded."""
    with Client(big.address) as client:
        pages: list[list[str]] = []
        cursor = None
        for _ in range(3):
            page = list(client.lookup_subjects("document:d", "view", "user", limit=1000, cursor=cursor))
            pages.append([found.subject.id for found in page])
            cursor = page[-1].cursor
        tokens = {found.token for found in page}
    paged = [sid for page in pages for sid in page]
    expected = [f"u{i:06d}" for i in range(3001) if i != 7]
    assert paged == expected
    assert len(tokens) == 1


def test_expand_of_a_huge_set_fails_at_once_naming_the_bound(big: ServerProcess) -> None:
    with Client(big.address) as client:
        with pytest.raises(ResourceExhausted) as caught:
            client.expand("group:big", "member")
        assert "--max-expand-size" in str(caught.value) and "1000" in str(caught.value)
        # a shallow tree naming the group as a subject set is small
        shallow = client.expand("document:d", "view")
    base, banned = shallow.tree.children
    assert [str(s) for s in base.subjects] == ["group:big#member"]
    assert [str(s) for s in banned.subjects] == ["user:u000007"]


def _watch(channel: grpc.Channel, types: list[str], after: str) -> grpc.Future:
    stub = relationship_grpc.RelationshipServiceStub(channel)
    request = relationship.WatchRequest(optional_object_types=types)
    request.optional_start_cursor.token = after
    return stub.Watch(request, timeout=60)


def _ids(event: relationship.WatchResponse) -> list[str]:
    return [
        f"{u.relationship.resource.object_type}:{u.relationship.resource.object_id}" for u in event.updates
    ]


def test_watch_streams_share_the_feed_are_filtered_and_bounded(big: ServerProcess) -> None:
    """Three watchers (the bound) each get exactly the changes of their types, in order; a
    fourth is refused naming the bound; once one closes, a new one is admitted."""
    with _own_channel(big.address) as channel, Client(big.address) as client:
        start = client.write(touch=["document:w0#viewer@user:ana"])
        streams = [
            _watch(channel, [], start),
            _watch(channel, ["document"], start),
            _watch(channel, ["group"], start),
        ]
        client.write(touch=["document:w1#viewer@user:ana", "group:w1#member@user:ana"])
        # every stream has its first event: all three are open
        assert [_ids(next(stream)) for stream in streams] == [
            ["document:w1", "group:w1"],
            ["document:w1"],
            ["group:w1"],
        ]
        with pytest.raises(grpc.RpcError) as caught:
            next(_watch(channel, [], start))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-watch-streams 3" in (caught.value.details() or "")
        client.write(touch=["group:w2#member@user:ana"])
        client.write(touch=["document:w3#viewer@user:ana"])
        assert [_ids(next(streams[0])) for _ in range(2)] == [["group:w2"], ["document:w3"]]
        assert _ids(next(streams[1])) == ["document:w3"]
        assert _ids(next(streams[2])) == ["group:w2"]
        streams[1].cancel()
        mark = client.write(touch=["group:w4#member@user:ana"])
        client.write(touch=["document:w4#viewer@user:ana"])
        deadline = time.monotonic() + 10
        while True:  # the server notices the closed stream shortly after
            fourth = _watch(channel, ["document"], mark)
            try:
                event = next(fourth)
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the closed stream was never released"
                time.sleep(0.1)
        assert _ids(event) == ["document:w4"]
        for stream in [*streams, fourth]:
            stream.cancel()
