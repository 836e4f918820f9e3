"""The serving layer's request timeout, cancellation and per-call records, on a real grpc.aio
server in this process whose Check handler waits (or not) as each test needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client import REGISTRY

from stonetown.api.interceptor import ServingLayer
from stonetown.api.pb import core, permission, permission_grpc
from stonetown.core.errors import NotFound
from stonetown.engine.deadline import request_deadline

CHECK = "/stonetown.v1.PermissionService/Check"
Behaviour = Callable[[permission.CheckRequest], Awaitable[permission.CheckResponse]]


class _Servicer(permission_grpc.PermissionServiceServicer):
    def __init__(self) -> None:
        self.behaviour: Behaviour | None = None

    async def Check(
        self, request: permission.CheckRequest, context: aio.ServicerContext
    ) -> permission.CheckResponse:
        assert self.behaviour is not None
        return await self.behaviour(request)


@contextlib.asynccontextmanager
async def _serve(timeout: float) -> AsyncIterator[tuple[_Servicer, permission_grpc.PermissionServiceStub]]:
    server = aio.server()
    servicer = _Servicer()
    permission_grpc.add_PermissionServiceServicer_to_server(
        servicer, ServingLayer(None, timeout).registrar(server)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield servicer, permission_grpc.PermissionServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def served() -> AsyncIterator[tuple[_Servicer, permission_grpc.PermissionServiceStub]]:
    """A server with a 0.5 s request timeout and a stub to it."""
    async with _serve(0.5) as pair:
        yield pair


def _count(code: str) -> float:
    value = REGISTRY.get_sample_value("stonetown_grpc_requests_total", {"method": CHECK, "code": code})
    return value or 0.0


def _observed() -> float:
    value = REGISTRY.get_sample_value("stonetown_grpc_request_duration_seconds_count", {"method": CHECK})
    return value or 0.0


def _answer(token: str) -> permission.CheckResponse:
    return permission.CheckResponse(
        checked_at=core.ZedToken(token=token), permissionship=permission.PERMISSIONSHIP_HAS_PERMISSION
    )


async def test_a_handler_that_never_waits_is_answered_and_recorded(served: Any) -> None:
    servicer, stub = served
    deadlines: list[float | None] = []

    async def at_once(request: permission.CheckRequest) -> permission.CheckResponse:
        deadlines.append(request_deadline.get())
        return _answer(request.permission)

    servicer.behaviour = at_once
    ok, observed = _count("OK"), _observed()
    response = await stub.Check(permission.CheckRequest(permission="view"))
    assert response.checked_at.token == "view"
    assert _count("OK") == ok + 1 and _observed() == observed + 1
    assert deadlines[0] is not None  # the server's timeout is the engine's deadline


async def test_a_handler_that_waits_gets_what_it_waits_for(served: Any) -> None:
    """Results, a bare yield and an exception caught by the handler all reach it as with a
    plain `await`."""
    servicer, stub = served

    async def waits(request: permission.CheckRequest) -> permission.CheckResponse:
        loop = asyncio.get_running_loop()
        parts = []
        for n in range(3):
            future: asyncio.Future[str] = loop.create_future()
            loop.call_later(0.01, future.set_result, f"r{n}")
            parts.append(await future)
        await asyncio.sleep(0)
        failing: asyncio.Future[str] = loop.create_future()
        loop.call_soon(failing.set_exception, NotFound("caught"))
        try:
            await failing
        except NotFound as exc:
            parts.append(str(exc))
        await asyncio.sleep(0.05)
        return _answer("-".join(parts))

    servicer.behaviour = waits
    response = await stub.Check(permission.CheckRequest(permission="view"))
    assert response.checked_at.token == "r0-r1-r2-caught"


async def test_an_error_raised_after_waiting_is_mapped(served: Any) -> None:
    servicer, stub = served

    async def fails(request: permission.CheckRequest) -> permission.CheckResponse:
        await asyncio.sleep(0.01)
        raise NotFound("nothing here")

    servicer.behaviour = fails
    before = _count("NOT_FOUND")
    with pytest.raises(aio.AioRpcError) as failure:
        await stub.Check(permission.CheckRequest(permission="view"))
    assert failure.value.code() is grpc.StatusCode.NOT_FOUND
    assert failure.value.details() == "nothing here"
    assert _count("NOT_FOUND") == before + 1


async def test_the_request_timeout_cancels_the_work(served: Any, caplog: pytest.LogCaptureFixture) -> None:
    servicer, stub = served
    cancelled = asyncio.Event()

    async def too_slow(request: permission.CheckRequest) -> permission.CheckResponse:
        await asyncio.sleep(0.01)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return _answer("late")

    servicer.behaviour = too_slow
    before = _count("DEADLINE_EXCEEDED")
    with caplog.at_level(logging.INFO, logger="stonetown.api"):
        with pytest.raises(aio.AioRpcError) as failure:
            await stub.Check(permission.CheckRequest(permission="view"), timeout=20)
    assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "longer than 0.5s" in (failure.value.details() or "")
    assert cancelled.is_set()
    assert _count("DEADLINE_EXCEEDED") == before + 1
    records = [r for r in caplog.records if getattr(r, "code", None) == "DEADLINE_EXCEEDED"]
    assert records and records[-1].method == CHECK  # type: ignore[attr-defined]


async def test_the_timeout_counts_from_the_start_of_the_call(served: Any) -> None:
    """Time spent before the handler first waits counts against the timeout."""
    servicer, stub = served
    cancelled = asyncio.Event()

    async def busy_then_waits(request: permission.CheckRequest) -> permission.CheckResponse:
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.4
        while loop.time() < until:  # 0.4 s of the 0.5 s without waiting
            pass
        try:
            await asyncio.sleep(0.3)  # would end at 0.7 s
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return _answer("late")

    servicer.behaviour = busy_then_waits
    with pytest.raises(aio.AioRpcError) as failure:
        await stub.Check(permission.CheckRequest(permission="view"), timeout=20)
    assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert cancelled.is_set()


async def test_a_client_cancelling_cancels_the_work() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def waits_long(request: permission.CheckRequest) -> permission.CheckResponse:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return _answer("late")

    async with _serve(60.0) as (servicer, stub):
        servicer.behaviour = waits_long
        before = _count("CANCELLED")
        call = stub.Check(permission.CheckRequest(permission="view"))
        await asyncio.wait_for(started.wait(), 10)
        call.cancel()
        await asyncio.wait_for(cancelled.wait(), 10)
        for _ in range(500):  # recorded once the handler has unwound
            if _count("CANCELLED") == before + 1:
                break
            await asyncio.sleep(0.01)
        assert _count("CANCELLED") == before + 1


async def test_the_client_deadline_is_the_engine_deadline_when_sooner() -> None:
    seen: list[float] = []

    async def records(request: permission.CheckRequest) -> permission.CheckResponse:
        deadline = request_deadline.get()
        assert deadline is not None
        seen.append(deadline - asyncio.get_running_loop().time())
        return _answer("ok")

    async with _serve(30.0) as (servicer, stub):
        servicer.behaviour = records
        await stub.Check(permission.CheckRequest(permission="view"), timeout=10)
        await stub.Check(permission.CheckRequest(permission="view"), timeout=100)
    # the client's deadline (not the server's 30 s); gRPC may round a timeout up on the wire
    assert 0 < seen[0] < 15
    assert 20 < seen[1] <= 30  # the server's request timeout
