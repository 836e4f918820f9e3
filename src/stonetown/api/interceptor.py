"""The serving layer every RPC goes through (applied to the handlers once, not per call).

In order, for each call: authenticate (UNAUTHENTICATED before anything is read or written),
refuse requests that could not be decoded (INVALID_ARGUMENT instead of grpc's INTERNAL), run
the handler under the request deadline, map any exception to its status code (see
api/errors.py), then count the call, observe its latency and log one line.

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
import logging
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Sequence
from types import CoroutineType
from typing import Any

import grpc
from grpc import aio

from stonetown.api.auth import is_authorized, requires_key
from stonetown.api.authzed import UNBOUNDED_METHODS as AUTHZED_UNBOUNDED_METHODS
from stonetown.api.errors import DeadlineExceeded, status_for
from stonetown.api.metrics import ok_recorder, record_rpc
from stonetown.core.errors import InvalidArgument, Unauthenticated
from stonetown.engine.deadline import request_deadline

log = logging.getLogger("stonetown.api")

# Long-lived streams the request deadline does not apply to.
UNBOUNDED_METHODS = frozenset(
    {
        "/stonetown.v1.RelationshipService/Watch",
        "/grpc.health.v1.Health/Watch",
        "/stonetown.v1.RelationshipService/ImportRelationships",  # as long as the stream
    }
) | AUTHZED_UNBOUNDED_METHODS


_UNAUTHENTICATED = "missing or wrong preshared key (expected metadata `authorization: bearer KEY`)"


class _Undecodable:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class ServingLayer:
    """Authentication, decoding errors, deadlines, error mapping, metrics and logs."""

    def __init__(self, preshared_key: str | None, request_timeout: float | None) -> None:
        self._key = preshared_key
        self._timeout = request_timeout

    def registrar(self, server: aio.Server) -> _Registrar:
        """An object to pass to ``add_XServicer_to_server`` instead of `server`: it registers
        the service's handlers on `server` wrapped by this layer."""
        return _Registrar(server, self)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """`handler` of the full method name `method`, wrapped (health checks are left exactly
        as grpc implements them: open, no deadline, no metrics)."""
        if not requires_key(method):
            return handler
        timeout = None if method in UNBOUNDED_METHODS else self._timeout
        deserializer = _tolerant(handler.request_deserializer) if not handler.request_streaming else None
        call = _Call(method, self._key, timeout)
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

    def __init__(self, method: str, key: str | None, timeout: float | None) -> None:
        self.method = method
        self.key = key
        self.timeout = timeout

    def _deadline(self, context: aio.ServicerContext) -> float | None:
        """When the engine must give up: the sooner of the server's request timeout and the
        client's own deadline (as a `time.monotonic()` instant)."""
        remaining = context.time_remaining()
        timeout = self.timeout
        if remaining is None or (timeout is not None and timeout < remaining):
            remaining = timeout
        return None if remaining is None else time.monotonic() + remaining

    def _admit(self, request: Any, context: aio.ServicerContext) -> None:
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
        method, key, timeout = self.method, self.key, self.timeout
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
            try:
                if key is not None and not is_authorized(context.invocation_metadata(), key):
                    raise Unauthenticated(_UNAUTHENTICATED)
                if type(request) is _Undecodable:
                    raise InvalidArgument(f"request: cannot be decoded ({type(request.error).__name__})")
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
            except Exception as exc:  # noqa: BLE001 - mapped to a status, never crashes the server
                code, details, _ = status_for(exc)
                self._finish(start, code, details, exc)
            else:
                elapsed = clock() - start
                record_ok(elapsed)
                # Successful calls are the hot path: logged only at debug level.
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("rpc", extra={"method": method, "code": "OK", "ms": round(elapsed * 1000, 3)})
                return response
            await context.abort(code, details)

        return handle

    def stream(
        self, behavior: Callable[[Any, aio.ServicerContext], AsyncIterator[Any]]
    ) -> Callable[..., Any]:
        """Wrap a handler that streams responses; the deadline covers the whole stream."""

        async def handle(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            start = time.monotonic()
            loop = asyncio.get_running_loop()
            deadline = None if self.timeout is None else loop.time() + self.timeout
            responses: AsyncIterator[Any] | None = None
            request_deadline.set(self._deadline(context))
            try:
                self._admit(request, context)
                responses = aiter(behavior(request, context))
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            item = await anext(responses)
                    except StopAsyncIteration:
                        break
                    yield item
            except asyncio.CancelledError:
                self._finish(start, grpc.StatusCode.CANCELLED, "cancelled", None)
                raise
            except aio.AbortError:
                self._finish(start, context.code() or grpc.StatusCode.UNKNOWN, context.details() or "", None)
                raise
            except GeneratorExit:
                self._finish(start, grpc.StatusCode.CANCELLED, "stream closed", None)
                raise
            except TimeoutError as exc:
                code, details, _ = status_for(
                    DeadlineExceeded(f"the request took longer than {self.timeout}s")
                )
                self._finish(start, code, details, exc)
            except Exception as exc:  # noqa: BLE001 - mapped to a status, never crashes the server
                code, details, _ = status_for(exc)
                self._finish(start, code, details, exc)
            else:
                self._finish(start, grpc.StatusCode.OK, "", None)
                return
            finally:
                if responses is not None and hasattr(responses, "aclose"):
                    await responses.aclose()
            await context.abort(code, details)

        return handle


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
