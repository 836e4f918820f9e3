"""SpiceDB's API (authzed.api.v1) served over Stonetown's engine, beside stonetown.v1.

Thin adapters: requests are read by the same conversion functions and answered by the same
PermissionSystem calls as stonetown.v1's (api/servicers/shared.py); these modules shape
SpiceDB's responses and report errors with SpiceDB's codes and ErrorReasons.
"""

from __future__ import annotations

from typing import Any

from stonetown.api.authzed.experimental import AuthzedExperimentalServicer
from stonetown.api.authzed.pb import (
    SERVICE_NAMES,
    experimental_grpc,
    permission_grpc,
    schema_grpc,
    watch_grpc,
)
from stonetown.api.authzed.permissions import AuthzedPermissionsServicer
from stonetown.api.authzed.schema import AuthzedSchemaServicer
from stonetown.api.authzed.watch import AuthzedWatchServicer
from stonetown.api.limits import Limits
from stonetown.engine.system import PermissionSystem

# Long-lived streams the request deadline does not apply to.
UNBOUNDED_METHODS = frozenset(
    {
        "/authzed.api.v1.WatchService/Watch",
        "/authzed.api.v1.PermissionsService/ImportBulkRelationships",
        "/authzed.api.v1.ExperimentalService/BulkImportRelationships",
    }
)


def add_authzed_services(server: Any, system: PermissionSystem, limits: Limits) -> None:
    """Register the four authzed.api.v1 services on `server` (a grpc server or the serving
    layer's registrar)."""
    permissions = AuthzedPermissionsServicer(system, limits)
    schemas = AuthzedSchemaServicer(system)
    permission_grpc.add_PermissionsServiceServicer_to_server(permissions, server)
    schema_grpc.add_SchemaServiceServicer_to_server(schemas, server)
    watch_grpc.add_WatchServiceServicer_to_server(AuthzedWatchServicer(system), server)
    experimental_grpc.add_ExperimentalServiceServicer_to_server(
        AuthzedExperimentalServicer(permissions, schemas), server
    )


__all__ = ["SERVICE_NAMES", "UNBOUNDED_METHODS", "add_authzed_services"]
