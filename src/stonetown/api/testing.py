"""`stonetown serve-testing`: one isolated, empty in-memory store per bearer token.

Like `spicedb serve-testing`, for client test suites: each distinct `authorization: bearer
TOKEN` gets its own PermissionSystem over a fresh MemoryDatastore on first use (a call
without a token shares the store of the empty token), so suites running in parallel with
random tokens never see each other's data. The number of stores is bounded; past the bound
a new token gets RESOURCE_EXHAUSTED naming it.

The servicers are the ordinary ones, given a :class:`RoutedSystem`: every call is routed by
the handler wrapper :class:`RoutingRegistrar` installs, which sets the calling token's
system in a context variable before the servicer runs (each RPC runs in a task of its own).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from stonetown.api.auth import bearer_token
from stonetown.core.errors import ResourceExhausted
from stonetown.engine.system import PermissionSystem

DEFAULT_MAX_STORES = 1000

_current: contextvars.ContextVar[PermissionSystem] = contextvars.ContextVar("stonetown_testing_system")


class StoresPerToken:
    """The in-memory systems of serve-testing, by bearer token, created on first use."""

    def __init__(self, max_stores: int = DEFAULT_MAX_STORES, max_depth: int = 50) -> None:
        if max_stores < 1:
            raise ValueError("max_stores must be at least 1")
        self.max_stores = max_stores
        self.max_depth = max_depth
        self._systems: dict[str, PermissionSystem] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._systems)

    async def system_for(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> PermissionSystem:
        """The system of the call's bearer token (made, empty, on its first call)."""
        token = bearer_token(metadata) or ""
        system = self._systems.get(token)
        if system is not None:
            return system
        async with self._lock:
            system = self._systems.get(token)
            if system is None:
                if len(self._systems) >= self.max_stores:
                    raise ResourceExhausted(
                        f"serve-testing holds at most {self.max_stores} stores (one per bearer token) "
                        "and all are taken; restart it or raise --max-stores"
                    )
                from stonetown.stores.memory import MemoryDatastore

                # One process, one store each: writes advance the index themselves, so no poll;
                # test stores live shortly, so no garbage collection either.
                system = PermissionSystem(
                    MemoryDatastore(), max_depth=self.max_depth, poll_interval=None, gc_interval=None
                )
                await system.start()
                self._systems[token] = system
        return system

    async def stop(self) -> None:
        """Stop every system."""
        systems, self._systems = list(self._systems.values()), {}
        for system in systems:
            await system.stop()

    def registrar(self, inner: Any) -> RoutingRegistrar:
        """Stands in for `inner` (a server or registrar) while services are registered, so
        every handler first routes the call to its token's system."""
        return RoutingRegistrar(inner, self)


class RoutedSystem:
    """Stands in for a PermissionSystem: every attribute is that of the calling token's system."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_current.get(), name)


class RoutingRegistrar:
    """Registers a service's handlers on `inner`, each wrapped to route its call first."""

    def __init__(self, inner: Any, stores: StoresPerToken) -> None:
        self._inner = inner
        self._stores = stores

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Register `method_handlers` of `service_name`, wrapped."""
        self._inner.add_registered_method_handlers(
            service_name, {name: self._wrap(handler) for name, handler in method_handlers.items()}
        )

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Register generic handlers whose method handlers come wrapped."""
        self._inner.add_generic_rpc_handlers(
            tuple(_RoutedGeneric(handler, self._wrap) for handler in generic_rpc_handlers)
        )

    def _wrap(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        stores = self._stores

        def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
            async def handle(request: Any, context: aio.ServicerContext) -> Any:
                _current.set(await stores.system_for(context.invocation_metadata()))
                return await behavior(request, context)

            return handle

        def stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
            async def handle(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                _current.set(await stores.system_for(context.invocation_metadata()))
                async for item in behavior(request, context):
                    yield item

            return handle

        deserializer, serializer = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), deserializer, serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                stream(handler.unary_stream), deserializer, serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), deserializer, serializer)
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), deserializer, serializer)


class _RoutedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come wrapped."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Callable[..., grpc.RpcMethodHandler]) -> None:
        self._inner = inner
        self._wrap_handler = wrap

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The inner handler of the called method, wrapped (None when it has none)."""
        handler = self._inner.service(handler_call_details)
        return None if handler is None else self._wrap_handler(handler)
