"""The gRPC health status, kept in step with the store.

The health service answers from memory (grpc_health's servicer), so it stays fast whatever
the store does; this task sets it from the engine's background store probe: NOT_SERVING for
every service while the store is unreachable, full, corrupt or gone (the reason is logged),
SERVING again once a probe finds it well.
"""

from __future__ import annotations

import logging

from grpc_health.v1 import health, health_pb2

from stonetown.api.authzed import SERVICE_NAMES as AUTHZED_SERVICE_NAMES
from stonetown.api.pb import SERVICE_NAMES
from stonetown.engine.system import PermissionSystem

log = logging.getLogger("stonetown.server")


async def set_all(servicer: health.aio.HealthServicer, status: int) -> None:
    """Set `status` for the server as a whole and for every service of both APIs."""
    for name in ("", *SERVICE_NAMES, *AUTHZED_SERVICE_NAMES):
        await servicer.set(name, status)


async def follow_store_health(system: PermissionSystem, servicer: health.aio.HealthServicer) -> None:
    """Run until cancelled: mirror the store's health (see the module docstring)."""
    healthy = True
    async for problem in system.store_health():
        if problem is None:
            if not healthy:
                log.warning("the store serves again; health is SERVING")
            healthy = True
            await set_all(servicer, health_pb2.HealthCheckResponse.SERVING)
        else:
            log.error("the store cannot serve; health is NOT_SERVING", extra={"reason": problem})
            healthy = False
            await set_all(servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
