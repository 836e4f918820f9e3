"""Admission and connection bounds against a real server: callers without the key cannot take
the slots of those with it, health is never starved, and connections that never finish their
handshake, stall half-way through a request or sit idle are closed after a bounded time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_harness import SCHEMA, ServerProcess
from grpc_health.v1 import health_pb2, health_pb2_grpc
from raw_http2 import half_sent_call, idle_connection, preface_less, seconds_until_closed

from stonetown import Client
from stonetown.client import ReadConsistency
from stonetown.core.errors import ResourceExhausted

KEY = "admission-key"
SLOTS = 2
FRESH = ReadConsistency.fully_consistent()
WATCH = "/stonetown.v1.RelationshipService/Watch"
CHECK = "/stonetown.v1.PermissionService/CheckPermission"
# a liveness bound, far above the real figures (see the report), not a performance threshold
ANSWER_DEADLINE = 10.0
CLOSE_BOUND = 30.0


def _own_channel(address: str) -> grpc.Channel:
    """A channel with a connection of its own (Python gRPC shares one per address otherwise)."""
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    grpc.channel_ready_future(channel).result(timeout=30)
    return channel


def _health_serving(address: str) -> bool:
    with _own_channel(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=ANSWER_DEADLINE
        )
        return response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server with the key and a small admission limit."""
    (tmp_path / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        tmp_path,
        "--port", "0", "--datastore", "memory", "--schema", "schema.zed",
        "--preshared-key", KEY, "--max-concurrent-rpcs", str(SLOTS),
    )  # fmt: skip
    yield proc
    proc.stop()


def test_callers_without_the_key_take_no_slot_and_health_is_never_starved(keyed: ServerProcess) -> None:
    address = keyed.address
    channels: list[grpc.Channel] = []
    streams: list[grpc.Future] = []
    sockets = []
    try:
        # the lock-out attack: more unauthenticated health Watch streams than there are slots,
        # unauthenticated API Watch streams and half-sent request bodies
        for _ in range(SLOTS + 2):
            channel = _own_channel(address)
            channels.append(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=120)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING  # open and held
            streams.append(watch)
            api_watch = channel.unary_stream(WATCH, request_serializer=bytes, response_deserializer=bytes)
            with pytest.raises(grpc.RpcError) as refused:
                next(api_watch(b"", timeout=ANSWER_DEADLINE))
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            sockets.append(half_sent_call(address, CHECK))
        assert _health_serving(address)
        with Client(address, preshared_key=KEY, timeout=ANSWER_DEADLINE) as client:
            client.write(touch=["document:adm#viewer@user:ana"])
            for _ in range(10):
                assert client.check("document:adm", "view", "user:ana", consistency=FRESH).allowed

            # the slots are for callers with the key: when those fill them, the excess is
            # refused at once, and health still answers
            held = []
            for _ in range(SLOTS):
                channel = _own_channel(address)
                channels.append(channel)
                watch = channel.unary_stream(WATCH, request_serializer=bytes, response_deserializer=bytes)
                held.append(watch(b"", metadata=[("authorization", f"bearer {KEY}")], timeout=120))
            streams.extend(held)
            with pytest.raises(ResourceExhausted, match="concurrent"):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # until both Watch streams are admitted
                    client.check("document:adm", "view", "user:ana", consistency=FRESH)
            assert _health_serving(address)
            held[0].cancel()
            for _ in range(200):  # the freed slot serves again
                try:
                    assert client.check("document:adm", "view", "user:ana", consistency=FRESH).allowed
                    break
                except ResourceExhausted:
                    continue
            else:
                raise AssertionError("the slot freed by a cancelled Watch was not given back")
    finally:
        for stream in streams:
            stream.cancel()
        for channel in channels:
            channel.close()
        for sock in sockets:
            sock.close()


def test_health_watch_streams_have_a_bound_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(tmp_path, "--port", "0", "--datastore", "memory", "--schema", "schema.zed")
    bound = 100  # ConnectionLimits.max_health_watches
    streams = []
    try:
        with _own_channel(proc.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(bound):
                stream = stub.Watch(health_pb2.HealthCheckRequest(), timeout=120)
                assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
                streams.append(stream)
            with pytest.raises(grpc.RpcError) as refused:
                next(stub.Watch(health_pb2.HealthCheckRequest(), timeout=ANSWER_DEADLINE))
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "health Watch" in (refused.value.details() or "")
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=ANSWER_DEADLINE).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
            streams.pop().cancel()
            for _ in range(200):
                try:
                    next(stub.Watch(health_pb2.HealthCheckRequest(), timeout=ANSWER_DEADLINE))
                    break
                except grpc.RpcError as exc:
                    assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            else:
                raise AssertionError("the slot of a cancelled health Watch was not given back")
            for stream in streams:
                stream.cancel()
    finally:
        proc.stop()


def test_preface_less_half_sent_and_idle_connections_are_closed(tmp_path: Path) -> None:
    (tmp_path / "schema.zed").write_text(SCHEMA)
    proc = ServerProcess(
        tmp_path,
        "--port", "0", "--datastore", "memory", "--schema", "schema.zed",
        "--handshake-timeout", "1", "--keepalive-interval", "1", "--keepalive-timeout", "1",
        "--idle-timeout", "2",
    )  # fmt: skip
    try:
        address = proc.address
        silent, stalled = preface_less(address), half_sent_call(address, CHECK)
        idle = idle_connection(address)
        with Client(address, timeout=ANSWER_DEADLINE) as client:
            client.write(touch=["document:conn#viewer@user:ana"])
            lived = {name: seconds_until_closed(sock, CLOSE_BOUND) for name, sock in
                     (("preface-less", silent), ("half-sent", stalled), ("idle", idle))}  # fmt: skip
            print(f"\n[admission] connections closed after (s): {lived}")
            assert all(seconds is not None for seconds in lived.values()), lived
            # a well-behaved client whose idle connection was closed just connects again
            assert client.check("document:conn", "view", "user:ana", consistency=FRESH).allowed
        for sock in (silent, stalled, idle):
            sock.close()
    finally:
        proc.stop()
