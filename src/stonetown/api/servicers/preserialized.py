"""Streams that may send pre-serialized responses.

A large commit goes to every Watch stream that follows it: built once (see
:class:`stonetown.api.servicers.shared.SharedResponses`), it would still be serialized again
for each stream, on the event loop, by the method's response serializer. A method registered
through :class:`PreSerialized` also accepts ``bytes`` from its handler and sends them as they
are, so a response is serialized once for all the streams that send it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import grpc


def passing_bytes(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    """`serializer`, except that bytes (a response serialized already) pass through as they are."""

    def serialize(message: Any) -> bytes:
        if message.__class__ is bytes:
            return message  # type: ignore[no-any-return]
        assert serializer is not None
        return serializer(message)

    return serialize


def _pre_serialized(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if not handler.unary_stream:
        raise ValueError("only server-streaming methods send pre-serialized responses here")
    return grpc.unary_stream_rpc_method_handler(
        handler.unary_stream, handler.request_deserializer, passing_bytes(handler.response_serializer)
    )


class PreSerialized:
    """Stands in for `inner` (a server or registrar) while a service is registered: the
    server-streaming methods named in `methods` send bytes their handler yields unchanged."""

    def __init__(self, inner: Any, methods: Collection[str]) -> None:
        self._inner = inner
        self._methods = frozenset(methods)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Register `method_handlers` of `service_name`, the named methods passing bytes."""
        self._inner.add_registered_method_handlers(
            service_name,
            {
                name: _pre_serialized(handler) if name in self._methods else handler
                for name, handler in method_handlers.items()
            },
        )

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Register generic handlers whose named methods pass bytes."""
        self._inner.add_generic_rpc_handlers(
            tuple(_PreSerializedGeneric(handler, self._methods) for handler in generic_rpc_handlers)
        )


class _PreSerializedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, methods: frozenset[str]) -> None:
        self._inner = inner
        self._methods = methods

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        method = handler_call_details.method.rpartition("/")[2]  # type: ignore[attr-defined]
        if handler is None or method not in self._methods:
            return handler
        return _pre_serialized(handler)
