"""The serving layer every RPC goes through (applied to the handlers once, not per call).

In order, for each call: authenticate (UNAUTHENTICATED before anything is read or written),
refuse requests that could not be decoded (INVALID_ARGUMENT instead of grpc's INTERNAL), admit
it within ``--max-concurrent-rpcs`` (RESOURCE_EXHAUSTED at once beyond it, never queued), run
the handler under the request deadline, map any exception to its status code (see
api/errors.py), then count the call, observe its latency and log one line.

Admission comes after authentication, so callers without the key cannot take the slots of
those with it; a call is admitted once its request has fully arrived, so a half-sent body
holds no slot. Health (open to all) has a budget of its own: its Watch streams are bounded
separately, and its Check never waits, so it is answered whatever the API load.

Doing all of it in one place means the status code recorded in metrics and logs is always
the one the caller got.

It is not a grpc.aio ServerInterceptor: an interceptor runs a chain of coroutines on every
call just to find the handler, which cost about a third of a trivial call's throughput.
Instead :meth:`ServingLayer.registrar` stands in for the server while the services are
registered (``add_XServicer_to_server(servicer, layer.registrar(server))``) and registers
each method's handler already wrapped, so a call costs only the wrapper's own work.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from types import CoroutineType
from typing import Any

import grpc
from grpc import aio

from stonetown.api.auth import is_authorized, requires_key
from stonetown.api.authzed import UNBOUNDED_METHODS as AUTHZED_UNBOUNDED_METHODS
from stonetown.api.errors import DeadlineExceeded, forget_frames, status_for
from stonetown.api.metrics import ok_recorder, record_rpc
from stonetown.core.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from stonetown.engine.deadline import request_deadline

log = logging.getLogger("stonetown.api")

# What an operation on a call the peer has closed raises: grpc's own class, which its public
# API does not name; recognised by its module and name (and its subclasses), without importing
# grpc's private extension module.
_TRANSPORT_ERROR = ("grpc._cython.cygrpc", "ExecuteBatchError")

# Long-lived streams the request deadline does not apply to (each holds an admission slot,
# so their number is bounded).
UNBOUNDED_METHODS = frozenset(
    {
        "/stonetown.v1.RelationshipService/Watch",
        "/grpc.health.v1.Health/Watch",
        "/stonetown.v1.RelationshipService/ImportRelationships",  # as long as the stream
    }
) | AUTHZED_UNBOUNDED_METHODS
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"


_UNAUTHENTICATED = "missing or wrong preshared key (expected metadata `authorization: bearer KEY`)"


class _Undecodable:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class Slots:
    """A budget of calls in flight at once; past it a call is refused at once (never queued)."""

    __slots__ = ("limit", "in_flight", "_refusal")

    def __init__(self, limit: int | None, what: str) -> None:
        self.limit = limit
        self.in_flight = 0
        self._refusal = f"too many concurrent {what}: the limit is {limit}"

    def enter(self) -> None:
        """Take a slot, or raise ResourceExhausted when none is free."""
        if self.limit is not None and self.in_flight >= self.limit:
            raise ResourceExhausted(self._refusal)
        self.in_flight += 1

    def leave(self) -> None:
        """Give back the slot taken by :meth:`enter`."""
        self.in_flight -= 1


class ServingLayer:
    """Authentication, decoding errors, admission, deadlines, error mapping, metrics and logs.

    `max_concurrent` bounds the calls that need the key (None: no bound); `max_health_watches`
    bounds the open health Watch streams, apart from them.
    """

    def __init__(
        self,
        preshared_key: str | None,
        request_timeout: float | None,
        *,
        max_concurrent: int | None = None,
        max_health_watches: int | None = None,
    ) -> None:
        self._key = preshared_key
        self._timeout = request_timeout
        self.slots = Slots(max_concurrent, "calls (--max-concurrent-rpcs)")
        self.health_slots = Slots(max_health_watches, "health Watch streams")

    def registrar(self, server: aio.Server) -> _Registrar:
        """An object to pass to ``add_XServicer_to_server`` instead of `server`: it registers
        the service's handlers on `server` wrapped by this layer."""
        return _Registrar(server, self)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """`handler` of the full method name `method`, wrapped (health is left as grpc
        implements it, open, no deadline, no metrics; only its Watch streams are bounded)."""
        if not requires_key(method):
            if method == HEALTH_WATCH and handler.unary_stream:
                return grpc.unary_stream_rpc_method_handler(
                    _bounded(handler.unary_stream, self.health_slots),
                    handler.request_deserializer,
                    handler.response_serializer,
                )
            return handler
        timeout = None if method in UNBOUNDED_METHODS else self._timeout
        deserializer = _tolerant(handler.request_deserializer) if not handler.request_streaming else None
        call = _Call(method, self._key, timeout, self.slots if self.slots.limit is not None else None)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                call.unary(handler.unary_unary), deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                call.stream(handler.unary_stream), deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                call.unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            call.stream(handler.stream_stream), handler.request_deserializer, handler.response_serializer
        )


class _Registrar:
    """Takes a service's handlers as a server would and registers them, wrapped, on the real
    server: both the per-method table grpc dispatches registered methods from and the generic
    handler it falls back to."""

    def __init__(self, server: aio.Server, layer: ServingLayer) -> None:
        self._server = server
        self._layer = layer

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Register `method_handlers` (by method name) of `service_name`, wrapped."""
        wrapped = {
            name: self._layer.wrap(handler, f"/{service_name}/{name}")
            for name, handler in method_handlers.items()
        }
        self._server.add_registered_method_handlers(service_name, wrapped)

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Register generic handlers whose method handlers are wrapped on first use."""
        self._server.add_generic_rpc_handlers(
            tuple(_WrappedGeneric(handler, self._layer) for handler in generic_rpc_handlers)
        )


class _WrappedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come wrapped (each wrapped once, then reused)."""

    def __init__(self, inner: grpc.GenericRpcHandler, layer: ServingLayer) -> None:
        self._inner = inner
        self._layer = layer
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The wrapped handler of the called method, or None when the inner one has none."""
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None  # not cached: unknown names must not grow the table
            wrapped = self._wrapped[method] = self._layer.wrap(handler, method)
        return wrapped


def _bounded(
    behavior: Callable[[Any, aio.ServicerContext], Any], slots: Slots
) -> Callable[[Any, aio.ServicerContext], Awaitable[None]]:
    """A streaming handler that runs `behavior` only while it holds one of `slots`."""

    async def handle(request: Any, context: aio.ServicerContext) -> None:
        try:
            slots.enter()
        except ResourceExhausted as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        try:
            await _send_all(behavior(request, context), context)
        finally:
            slots.leave()

    return handle


async def _send_all(responses: Any, context: aio.ServicerContext) -> None:
    """Send what a streaming handler produces: an async generator's items one by one, or
    nothing for a handler that writes its responses itself (a coroutine)."""
    if not inspect.isasyncgen(responses):
        await responses
        return
    try:
        async for item in responses:
            await context.write(item)
    finally:
        await responses.aclose()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's fault
            return _Undecodable(exc)

    return deserialize


class _Call:
    """The wrappers of one method (built once, when the method is registered)."""

    def __init__(self, method: str, key: str | None, timeout: float | None, slots: Slots | None) -> None:
        self.method = method
        self.key = key
        self.timeout = timeout
        self.slots = slots

    def _deadline(self, context: aio.ServicerContext) -> float | None:
        """When the engine must give up: the sooner of the server's request timeout and the
        client's own deadline (as a `time.monotonic()` instant)."""
        remaining = context.time_remaining()
        timeout = self.timeout
        if remaining is None or (timeout is not None and timeout < remaining):
            remaining = timeout
        return None if remaining is None else time.monotonic() + remaining

    def _authenticate(self, request: Any, context: aio.ServicerContext) -> None:
        if self.key is not None and not is_authorized(context.invocation_metadata(), self.key):
            raise Unauthenticated(_UNAUTHENTICATED)
        if type(request) is _Undecodable:
            raise InvalidArgument(f"request: cannot be decoded ({type(request.error).__name__})")

    def _finish(self, start: float, code: grpc.StatusCode, details: str, exc: BaseException | None) -> None:
        elapsed = time.monotonic() - start  # `start` is a time.monotonic() instant
        record_rpc(self.method, code, elapsed)
        if code is grpc.StatusCode.OK:
            # Successful calls are the hot path: logged only at debug level.
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "rpc", extra={"method": self.method, "code": code.name, "ms": round(elapsed * 1000, 3)}
                )
            return
        fields = {"method": self.method, "code": code.name, "ms": round(elapsed * 1000, 3), "error": details}
        if code is grpc.StatusCode.INTERNAL and exc is not None:
            log.error("rpc", extra=fields, exc_info=exc)
        else:
            log.info("rpc", extra=fields)

    def unary(
        self, behavior: Callable[[Any, aio.ServicerContext], Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        """Wrap a handler that returns one response.

        The request timeout costs nothing for a handler that finishes without ever waiting
        (a cached Check): a timer could only fire while the handler waits, so the handler is
        started first and the timer armed, for what is left of the timeout, only if it does
        wait. The engine's own deadline checks (:data:`request_deadline`) cover the work it
        does without waiting, as before.
        """
        method, key, timeout, slots = self.method, self.key, self.timeout, self.slots
        record_ok = ok_recorder(method)
        clock = time.monotonic
        set_deadline = request_deadline.set

        async def handle(request: Any, context: aio.ServicerContext) -> Any:
            start = clock()
            # Each RPC runs in a task of its own, so this does not leak into other calls.
            remaining = context.time_remaining()
            if remaining is None or (timeout is not None and timeout < remaining):
                remaining = timeout
            set_deadline(None if remaining is None else start + remaining)
            admitted = False
            try:
                if key is not None and not is_authorized(context.invocation_metadata(), key):
                    raise Unauthenticated(_UNAUTHENTICATED)
                if type(request) is _Undecodable:
                    raise InvalidArgument(f"request: cannot be decoded ({type(request.error).__name__})")
                if slots is not None:
                    slots.enter()
                    admitted = True
                running = behavior(request, context)
                if timeout is None:
                    response = await running
                elif type(running) is not CoroutineType:
                    async with asyncio.timeout(timeout):
                        response = await running
                else:
                    try:
                        waiting_on = running.send(None)
                    except StopIteration as done:
                        response = done.value
                    else:
                        async with asyncio.timeout(timeout - (clock() - start)):
                            response = await _resume(running, waiting_on)
            except asyncio.CancelledError:
                self._finish(start, grpc.StatusCode.CANCELLED, "cancelled", None)
                raise
            except aio.AbortError:
                self._finish(start, context.code() or grpc.StatusCode.UNKNOWN, context.details() or "", None)
                raise
            except TimeoutError as exc:
                code, details, _ = status_for(DeadlineExceeded(f"the request took longer than {timeout}s"))
                self._finish(start, code, details, exc)
                forget_frames(exc)
            except Exception as exc:  # noqa: BLE001 - mapped to a status, never crashes the server
                code, details, _ = status_for(exc)
                self._finish(start, code, details, exc)
                forget_frames(exc)
            else:
                elapsed = clock() - start
                record_ok(elapsed)
                # Successful calls are the hot path: logged only at debug level.
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("rpc", extra={"method": method, "code": "OK", "ms": round(elapsed * 1000, 3)})
                return response
            finally:
                if admitted:
                    slots.leave()  # type: ignore[union-attr]
            # grpc keeps the AbortError, whose traceback holds this frame, in a reference cycle
            # with the call: what this frame refers to (the request, the handler's coroutine,
            # the future it waited on, e.g. an old revision's snapshot) would otherwise wait
            # for a full collector pass, which an idle server never runs
            request = running = waiting_on = None
            await context.abort(code, details)

        return handle

    def stream(
        self, behavior: Callable[[Any, aio.ServicerContext], Any]
    ) -> Callable[[Any, aio.ServicerContext], Awaitable[None]]:
        """Wrap a handler that streams responses.

        The deadline (the sooner of the request timeout and the client's deadline) covers the
        whole stream, the time spent sending included: the wrapper writes each response
        itself under one timer, so a stream to a slow reader, or one whose handler keeps
        finding results, is cut with DEADLINE_EXCEEDED and its generator closed, which stops
        its work.
        """

        async def handle(request: Any, context: aio.ServicerContext) -> None:
            start = time.monotonic()
            deadline = self._deadline(context)
            request_deadline.set(deadline)
            admitted = False
            try:
                self._authenticate(request, context)
                if self.slots is not None:
                    self.slots.enter()
                    admitted = True
                async with asyncio.timeout(None if deadline is None else deadline - time.monotonic()):
                    await _send_all(behavior(request, context), context)
            except asyncio.CancelledError:
                self._finish(start, grpc.StatusCode.CANCELLED, "cancelled", None)
                raise
            except aio.AbortError:
                self._finish(start, context.code() or grpc.StatusCode.UNKNOWN, context.details() or "", None)
                raise
            except TimeoutError as exc:
                bound = "?" if deadline is None else f"{deadline - start:.3g}"
                code, details, _ = status_for(
                    DeadlineExceeded(
                        f"the stream took longer than its deadline ({bound}s: the request timeout "
                        "or the client's deadline, whichever is sooner)"
                    )
                )
                self._finish(start, code, details, exc)
                forget_frames(exc)
            except Exception as exc:  # noqa: BLE001 - mapped to a status, never crashes the server
                if _caller_gone(context, exc):
                    # A write raced the cancellation: the caller left, nothing failed here.
                    self._finish(start, grpc.StatusCode.CANCELLED, "cancelled", None)
                    forget_frames(exc)
                    return
                code, details, _ = status_for(exc)
                self._finish(start, code, details, exc)
                forget_frames(exc)
            else:
                self._finish(start, grpc.StatusCode.OK, "", None)
                return
            finally:
                if admitted:
                    self.slots.leave()  # type: ignore[union-attr]
            request = None  # see unary(): the AbortError's traceback holds this frame
            await context.abort(code, details)

        return handle


def _caller_gone(context: aio.ServicerContext, exc: Exception) -> bool:
    """Whether `exc` only says the call is over from the caller's side: the client cancelled
    or went away while the stream was sending. grpc cancels the handler's task when it learns
    of the cancellation, but a write already under way fails first with the transport's own
    error (``ExecuteBatchError``, an INTERNAL otherwise), before the call is marked cancelled."""
    return context.cancelled() or is_transport_error(exc)


def is_transport_error(exc: BaseException) -> bool:
    """Whether `exc` is grpc's error for an operation on a call already over
    (``ExecuteBatchError``, or a subclass)."""
    return any((cls.__module__, cls.__name__) == _TRANSPORT_ERROR for cls in type(exc).__mro__)


@types.coroutine
def _resume(running: Coroutine[Any, Any, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    """Go on with `running`, a coroutine already started by hand that is waiting on
    `waiting_on`, exactly as ``await running`` would have: what the task sends or throws in
    (a result, a cancellation) goes to `running`, and its result is the result."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:
            running.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed over to the coroutine, as `await` does
            try:
                waiting_on = running.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = running.send(sent)
            except StopIteration as done:
                return done.value
