"""Auth on every RPC, and overload: the admission limit, recovery, and client deadlines that
stop the server-side work.

Every RPC without the preshared key, or with a wrong one, is refused with UNAUTHENTICATED and
changes nothing. With ``--max-concurrent-rpcs``, calls beyond the limit are refused with
RESOURCE_EXHAUSTED (never queued past their deadline), and the server serves again once the
load drops. (TLS refusing plaintext is covered by tests/api/test_api_security.py.)
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import grpc
import pytest
from reliability_harness import SOAK_SCHEMA, retry_unavailable, start_server, wait_until
from test_hostile_input import _call, _valid_requests

from stonetown import Client
from stonetown.api.pb import schema
from stonetown.client import ReadConsistency
from stonetown.core.errors import ResourceExhausted

KEY = "reliability-key"
FRESH = ReadConsistency.fully_consistent()


def test_every_rpc_needs_the_key_and_a_refused_call_changes_nothing(tmp_path: Path) -> None:
    server = start_server(tmp_path, SOAK_SCHEMA, "--preshared-key", KEY)
    try:
        requests = _valid_requests()
        requests["WriteSchema"] = (
            "/stonetown.v1.SchemaService/WriteSchema",
            schema.WriteSchemaRequest(schema="definition user {}").SerializeToString(),
        )
        with Client(server.address, preshared_key=KEY) as good:
            good.write(touch=["doc:fz#owner@user:u2", "doc:d1#viewer@user:u1"])
            before = sorted(str(r) for r in good.read("doc", consistency=FRESH))
            head = good.check("doc:d1", "view", "user:u1", consistency=FRESH).token
        wrong = [
            (),
            (("authorization", f"bearer {KEY}x"),),
            (("authorization", f"Bearer {KEY[:-1]}"),),
            (("authorization", f"basic {KEY}"),),
            (("authorization", "bearer "),),
            (("authorization", KEY),),
            (("x-api-key", KEY),),
        ]
        identity = lambda raw: raw  # noqa: E731
        refused = 0
        with grpc.insecure_channel(server.address) as channel:
            for metadata in wrong:
                for name, (path, data) in requests.items():
                    if name in ("LookupResources", "LookupSubjects", "ReadRelationships", "Watch"):
                        stub = channel.unary_stream(
                            path, request_serializer=identity, response_deserializer=identity
                        )
                        with pytest.raises(grpc.RpcError) as failure:
                            list(stub(data, metadata=metadata, timeout=10))
                    else:
                        stub = channel.unary_unary(
                            path, request_serializer=identity, response_deserializer=identity
                        )
                        with pytest.raises(grpc.RpcError) as failure:
                            stub(data, metadata=metadata, timeout=10)
                    assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED, (name, metadata)
                    refused += 1
        print(f"\n[reliability] auth: refused={refused}")
        with Client(server.address, preshared_key=KEY) as good:
            assert sorted(str(r) for r in good.read("doc", consistency=FRESH)) == before
            assert good.check("doc:d1", "view", "user:u1", consistency=FRESH).token == head
            assert good.read_schema().text.strip() == SOAK_SCHEMA.strip()
    finally:
        server.stop()


def _open_watch(address: str, ready: threading.Event, calls: list[grpc.Future]) -> None:
    """Hold one Watch stream open (one admitted call) until it is cancelled.

    A stream that arrives while a probing Check holds the last slot is itself refused with
    RESOURCE_EXHAUSTED; it is opened again until it holds a slot, so the test does not depend
    on which call the server happened to see first.
    """
    # A connection of its own (no shared subchannel), up before the call is made.
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = channel.unary_stream(
        "/stonetown.v1.RelationshipService/Watch",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    slot = len(calls)
    calls.append(stub(b"", timeout=120))
    ready.set()
    try:
        while True:
            try:
                for _ in calls[slot]:
                    pass
                return
            except grpc.RpcError as exc:
                if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    return  # cancelled by the test, or the deadline: done
            time.sleep(0.05)
            calls[slot] = stub(b"", timeout=120)
    finally:
        channel.close()


def test_admission_limit_refuses_the_excess_and_recovers(tmp_path: Path) -> None:
    server = start_server(tmp_path, SOAK_SCHEMA, "--max-concurrent-rpcs", "2")
    calls: list[grpc.Future] = []
    threads: list[threading.Thread] = []
    try:
        with Client(server.address, timeout=30) as client:
            client.write(touch=["doc:d1#viewer@user:u1"])
            for _ in range(2):  # fill both slots with long-lived streams
                ready = threading.Event()
                thread = threading.Thread(
                    target=_open_watch, args=(server.address, ready, calls), daemon=True
                )
                thread.start()
                threads.append(thread)
                assert ready.wait(30)
            wait_until(lambda: _refused(client), 30, "the limit to bite")
            refusals = sum(_refused(client) for _ in range(20))
            assert refusals == 20  # every excess call is refused at once, none hangs
            calls[0].cancel()  # the load drops ...
            threads[0].join(30)
            wait_until(lambda: not _refused(client), 30, "a free slot")  # ... and the server serves again
            assert client.check("doc:d1", "view", "user:u1", consistency=FRESH).allowed
            calls[1].cancel()
            threads[1].join(30)
            results = [
                client.check("doc:d1", "view", "user:u1", consistency=FRESH).allowed for _ in range(20)
            ]
            assert all(results)
    finally:
        for call in calls:
            call.cancel()
        server.stop()


def _refused(client: Client) -> bool:
    try:
        retry_unavailable(lambda: client.check("doc:d1", "view", "user:u1", consistency=FRESH))
    except ResourceExhausted as exc:
        assert "oncurrent" in str(exc), exc
        return True
    return False


def test_a_client_deadline_stops_the_server_side_work(tmp_path: Path) -> None:
    server = start_server(tmp_path, SOAK_SCHEMA, "--max-concurrent-rpcs", "1")
    try:
        requests = _valid_requests()
        path, data = requests["Watch"]
        with grpc.insecure_channel(server.address) as channel:
            stub = channel.unary_stream(
                path, request_serializer=lambda r: r, response_deserializer=lambda r: r
            )
            with pytest.raises(grpc.RpcError) as failure:
                list(stub(data, timeout=1.0))
            assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # the abandoned stream was ended on the server (cancelled by grpc, or cut by the server
        # at the client's deadline) and its slot freed
        wait_until(
            lambda: re.search(
                r"method=/stonetown.v1.RelationshipService/Watch code=(CANCELLED|DEADLINE_EXCEEDED)",
                server.log(),
            ),
            30,
            "the server to end the abandoned Watch",
        )
        with Client(server.address, timeout=30) as client:
            wait_until(lambda: not _refused(client), 30, "the slot to be free")
        assert _call_ok(server.address)
    finally:
        server.stop()


def _call_ok(address: str) -> bool:
    requests = _valid_requests()
    path, data = requests["ReadSchema"]
    with grpc.insecure_channel(address) as channel:
        return _call(channel, "ReadSchema", path, data) is grpc.StatusCode.OK
