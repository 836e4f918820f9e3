"""Short names for the generated protobuf modules (one place that knows their import path)."""

from __future__ import annotations

from stonetown.api.gen.stonetown.v1 import core_pb2 as core
from stonetown.api.gen.stonetown.v1 import permission_service_pb2 as permission
from stonetown.api.gen.stonetown.v1 import permission_service_pb2_grpc as permission_grpc
from stonetown.api.gen.stonetown.v1 import relationship_service_pb2 as relationship
from stonetown.api.gen.stonetown.v1 import relationship_service_pb2_grpc as relationship_grpc
from stonetown.api.gen.stonetown.v1 import schema_service_pb2 as schema
from stonetown.api.gen.stonetown.v1 import schema_service_pb2_grpc as schema_grpc

SERVICE_NAMES: tuple[str, ...] = (
    permission.DESCRIPTOR.services_by_name["PermissionService"].full_name,
    relationship.DESCRIPTOR.services_by_name["RelationshipService"].full_name,
    schema.DESCRIPTOR.services_by_name["SchemaService"].full_name,
)

__all__ = [
    "SERVICE_NAMES",
    "core",
    "permission",
    "permission_grpc",
    "relationship",
    "relationship_grpc",
    "schema",
    "schema_grpc",
]
