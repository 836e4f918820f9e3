"""ImportRelationships bounds (issue #18 item 15): a cap on relationships per call with an
error naming it, health answering while a large import goes into the index, and a failed
import freeing its relationships."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_harness import SCHEMA, ServerProcess
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stonetown import Client
from stonetown.api import convert as cv
from stonetown.api.limits import Limits
from stonetown.api.pb import relationship
from stonetown.api.servicers.relationships import RelationshipServicer
from stonetown.client import ReadConsistency
from stonetown.core.errors import AlreadyExists, InvalidArgument
from stonetown.core.relationship import Relationship
from stonetown.engine.system import PermissionSystem
from stonetown.stores.sqlite import SqliteDatastore

FRESH = ReadConsistency.fully_consistent()
HEALTH_DEADLINE = 2.0  # a liveness bound, far above the 100 ms health answers within


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that takes at most 500 relationships per import."""
    workdir = tmp_path_factory.mktemp("capped")
    (workdir / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        workdir,
        "--port", "0", "--datastore", str(workdir / "st.db"), "--schema", "schema.zed",
        "--max-relationships-per-import", "500",
    )  # fmt: skip
    yield proc
    proc.stop()


def test_an_import_over_the_cap_is_refused_naming_it(capped: ServerProcess) -> None:
    with Client(capped.address) as client:
        too_many = [f"folder:cap{n}#viewer@user:u{n}" for n in range(501)]
        with pytest.raises(InvalidArgument, match=r"more than 500 .*--max-relationships-per-import"):
            client.import_relationships(too_many, chunk_size=100)
        assert list(client.read("folder", consistency=FRESH)) == []
        client.import_relationships(too_many[:500], chunk_size=100)
        assert len(list(client.read("folder", consistency=FRESH))) == 500


def test_health_answers_while_a_large_import_is_indexed(server: ServerProcess, uid: str) -> None:
    """Health is polled (each call on a deadline) for as long as a 150,000-relationship
    import runs; every poll must answer SERVING. The slowest answer is printed."""
    rels = [f"folder:{uid}f{n}#viewer@user:u{n % 5000}" for n in range(150_000)]
    done = threading.Event()
    slowest: list[float] = []
    failures: list[BaseException] = []

    def poll() -> None:
        # a connection of its own: the import's stream must not queue the polls behind it
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(server.address, options=options) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not done.is_set():
                start = time.perf_counter()
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_DEADLINE).status
                    assert status == health_pb2.HealthCheckResponse.SERVING
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    failures.append(exc)
                    return
                slowest.append(time.perf_counter() - start)
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        with Client(server.address, timeout=300) as client:
            token = client.import_relationships(rels, chunk_size=5000)
            at = ReadConsistency.at_least_as_fresh(token)
            assert client.check(f"folder:{uid}f149999", "viewer", "user:u4999", consistency=at).allowed
    finally:
        done.set()
        poller.join()
    assert not failures, failures
    assert len(slowest) > 1
    print(f"health during a 150k import: {len(slowest)} polls, slowest {max(slowest) * 1000:.0f} ms")


async def test_a_failed_import_frees_its_relationships(tmp_path: Path) -> None:
    """Once a failed ImportRelationships has answered, nothing refers to its relationships
    any more (the error's frames did, for as long as the error lived)."""
    system = PermissionSystem(SqliteDatastore(str(tmp_path / "s.db")), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        existing = Relationship.parse("folder:there#viewer@user:ana")
        await system.import_relationships([existing])
        messages = [
            relationship.ImportRelationshipsRequest(
                relationships=[
                    cv.relationship_to_proto(Relationship.parse(f"folder:n{n}#viewer@user:u{n}"))
                    for n in range(start, start + 1000)
                ]
            )
            for start in range(0, 5000, 1000)
        ]
        messages.append(relationship.ImportRelationshipsRequest(relationships=[cv.relationship_to_proto(existing)]))

        async def stream() -> AsyncIterator[relationship.ImportRelationshipsRequest]:
            for message in messages:
                yield message

        servicer = RelationshipServicer(system, Limits())
        try:
            await servicer.ImportRelationships(stream(), None)  # type: ignore[arg-type]
        except AlreadyExists as exc:
            error = exc  # kept alive, as a caller's error may be
        else:
            raise AssertionError("the import should have failed")
        await asyncio.sleep(0)
        gc.disable()  # only references count: a reference cycle would keep them alive too
        try:
            imported = [
                obj for obj in gc.get_objects() if isinstance(obj, Relationship) and obj.resource_id[0] == "n"
            ]
        finally:
            gc.enable()
        assert imported == [], f"{len(imported)} relationships of the failed import still referenced"
        assert "already exists" in str(error)
    finally:
        await system.stop()
