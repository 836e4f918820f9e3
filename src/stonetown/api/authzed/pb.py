"""Short names for the generated code of SpiceDB's API (the `authzed` package)."""

from __future__ import annotations

from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import debug_pb2 as debug
from authzed.api.v1 import error_reason_pb2 as error_reason
from authzed.api.v1 import experimental_service_pb2 as experimental
from authzed.api.v1 import experimental_service_pb2_grpc as experimental_grpc
from authzed.api.v1 import permission_service_pb2 as permission
from authzed.api.v1 import permission_service_pb2_grpc as permission_grpc
from authzed.api.v1 import schema_service_pb2 as schema
from authzed.api.v1 import schema_service_pb2_grpc as schema_grpc
from authzed.api.v1 import watch_service_pb2 as watch
from authzed.api.v1 import watch_service_pb2_grpc as watch_grpc

SERVICE_NAMES: tuple[str, ...] = (
    permission.DESCRIPTOR.services_by_name["PermissionsService"].full_name,
    schema.DESCRIPTOR.services_by_name["SchemaService"].full_name,
    watch.DESCRIPTOR.services_by_name["WatchService"].full_name,
    experimental.DESCRIPTOR.services_by_name["ExperimentalService"].full_name,
)

__all__ = [
    "SERVICE_NAMES",
    "core",
    "debug",
    "error_reason",
    "experimental",
    "experimental_grpc",
    "permission",
    "permission_grpc",
    "schema",
    "schema_grpc",
    "watch",
    "watch_grpc",
]
