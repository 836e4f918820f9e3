"""Large commits fanned out to many Watch streams, against a real server (issue #18).

Each Watch response is built and serialized once and sent as the same bytes to every stream
asking the same (api/servicers/preserialized.py); 100 streams used to convert, then serialize,
each 5,000-change commit once per stream on the event loop. Here 40 streams on their own
connection follow three imports of 3,000 relationships while health is probed on another:
every stream receives every commit whole and right (parsed by the client's own protobuf
classes), and health answers throughout, before a generous liveness deadline.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
from grpc_harness import OWN_CONNECTION
from grpc_health.v1 import health_pb2, health_pb2_grpc
from reliability_harness import SOAK_SCHEMA, start_server

from stonetown import Client
from stonetown.api.pb import relationship, relationship_grpc
from stonetown.core.revision import decode_token

STREAMS = 40
COMMITS = 3
PER_COMMIT = 3000
LIVENESS_DEADLINE = 10.0  # seconds for one health answer: a liveness bound, not a figure


def _follow(channel: grpc.Channel, got: list[tuple[int, tuple[str, ...]]], ready: threading.Barrier) -> None:
    stub = relationship_grpc.RelationshipServiceStub(channel)
    call = stub.Watch(relationship.WatchRequest(optional_object_types=["doc"]), timeout=120)
    ready.wait()
    try:
        for response in call:
            ids = tuple(sorted(update.relationship.subject.object.object_id for update in response.updates))
            got.append((decode_token(response.changes_through.token), ids))
            if len(got) == COMMITS:
                return
    finally:
        call.cancel()


def _probe(address: str, stop: threading.Event, latencies: list[float], failures: list[str]) -> None:
    with grpc.insecure_channel(address, options=OWN_CONNECTION) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=LIVENESS_DEADLINE)
                latencies.append(time.perf_counter() - started)
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    failures.append(f"status {reply.status}")
            except grpc.RpcError as exc:
                failures.append(exc.code().name)  # type: ignore[attr-defined]
            stop.wait(0.05)


def test_large_commits_reach_many_watch_streams_whole_while_health_answers(tmp_path: Path) -> None:
    server = start_server(tmp_path, SOAK_SCHEMA)
    streams = grpc.insecure_channel(server.address, options=OWN_CONNECTION)
    stop = threading.Event()
    latencies: list[float] = []
    failures: list[str] = []
    prober = threading.Thread(target=_probe, args=(server.address, stop, latencies, failures), daemon=True)
    try:
        got: list[list[tuple[int, tuple[str, ...]]]] = [[] for _ in range(STREAMS)]
        ready = threading.Barrier(STREAMS + 1)
        followers = [
            threading.Thread(target=_follow, args=(streams, received, ready), daemon=True) for received in got
        ]
        for thread in followers:
            thread.start()
        ready.wait(timeout=60)
        time.sleep(0.5)  # the streams are registered with the change feed
        prober.start()
        revisions = []
        with Client(server.address, timeout=60) as client:
            for commit in range(COMMITS):
                rels = [f"doc:c{commit}#viewer@user:u{commit}x{i}" for i in range(PER_COMMIT)]
                revisions.append(decode_token(client.import_relationships(rels)))
        for thread in followers:
            thread.join(timeout=120)
        stop.set()
        prober.join(timeout=30)
        expected = [
            (revision, tuple(sorted(f"u{commit}x{i}" for i in range(PER_COMMIT))))
            for commit, revision in enumerate(revisions)
        ]
        for n, received in enumerate(got):
            assert received == expected, f"stream {n}: {[(r, len(ids)) for r, ids in received]}"
        assert latencies and not failures, failures[:10]
        print(
            f"\n[reliability] {STREAMS} Watch streams x {COMMITS} commits of {PER_COMMIT}: "
            f"{len(latencies)} health probes, max {max(latencies) * 1000:.0f} ms"
        )
    finally:
        stop.set()
        streams.close()
        server.stop()
