"""The floor: a grpc.aio server whose PermissionService answers every call with a constant.

Same service, same message shapes (requests are decoded and responses encoded with the real
generated classes), same server options and, with ``--interceptor``, the same serving
layer (api/interceptor.py: auth, errors, metrics, logs) as `stonetown serve`; only the engine
is missing. The ratio of Stonetown's
throughput to this server's is what the engine and API code cost on top of gRPC itself.

Run: ``python -m benchmarks floor --port 50600 [--workers 2] [--interceptor]``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import AsyncIterator

from grpc import aio

from stonetown.api.interceptor import ServingLayer
from stonetown.api.limits import Limits
from stonetown.api.pb import core, permission, permission_grpc, relationship, relationship_grpc

_TOKEN = core.ZedToken(token="floor")


class FloorServicer(permission_grpc.PermissionServiceServicer):
    """Constant answers: allowed for Check and every CheckBulk item, nothing to look up."""

    async def Check(
        self, request: permission.CheckRequest, context: aio.ServicerContext
    ) -> permission.CheckResponse:
        """Always HAS_PERMISSION."""
        return permission.CheckResponse(
            checked_at=_TOKEN, permissionship=permission.PERMISSIONSHIP_HAS_PERMISSION
        )

    async def CheckBulk(
        self, request: permission.CheckBulkRequest, context: aio.ServicerContext
    ) -> permission.CheckBulkResponse:
        """Every item HAS_PERMISSION, echoing the request items as the real server does."""
        response = permission.CheckBulkResponse(checked_at=_TOKEN)
        for item in request.items:
            pair = response.pairs.add()
            pair.request.CopyFrom(item)
            pair.item.permissionship = permission.PERMISSIONSHIP_HAS_PERMISSION
        return response

    async def LookupResources(
        self, request: permission.LookupResourcesRequest, context: aio.ServicerContext
    ) -> AsyncIterator[permission.LookupResourcesResponse]:
        """No results."""
        for _ in ():
            yield permission.LookupResourcesResponse()


class FloorRelationshipServicer(relationship_grpc.RelationshipServiceServicer):
    """WriteRelationships acknowledged at once with a constant token (nothing is stored)."""

    async def WriteRelationships(
        self, request: relationship.WriteRelationshipsRequest, context: aio.ServicerContext
    ) -> relationship.WriteRelationshipsResponse:
        """The constant token."""
        return relationship.WriteRelationshipsResponse(written_at=_TOKEN)


async def serve_floor(host: str, port: int, *, interceptor: bool, reuse_port: bool) -> None:
    """Serve until SIGTERM/SIGINT."""
    limits = Limits()
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    served = ServingLayer(None, limits.request_timeout).registrar(server) if interceptor else server
    permission_grpc.add_PermissionServiceServicer_to_server(FloorServicer(), served)
    relationship_grpc.add_RelationshipServiceServicer_to_server(FloorRelationshipServicer(), served)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"floor: cannot listen on {host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1)


def _worker(host: str, port: int, interceptor: bool) -> None:
    asyncio.run(serve_floor(host, port, interceptor=interceptor, reuse_port=True))


def main(host: str, port: int, workers: int, interceptor: bool) -> int:
    """Run the floor server with `workers` processes on one port (SO_REUSEPORT)."""
    if workers == 1:
        asyncio.run(serve_floor(host, port, interceptor=interceptor, reuse_port=False))
        return 0
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker, args=(host, port, interceptor)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    stopping = asyncio.Event()

    def stop(signum: int, _frame: object) -> None:
        for proc in procs:
            proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.join()
    del stopping
    return 0
