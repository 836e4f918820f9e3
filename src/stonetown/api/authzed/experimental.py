"""authzed.api.v1.ExperimentalService: the bulk calls and the Experimental reflection calls,
answered by the non-experimental servicers (the messages are wire-compatible copies).

The relationship counters (ExperimentalRegister/Count/UnregisterRelationshipCounter) answer
UNIMPLEMENTED (an explicit status, not a server error).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from stonetown.api.authzed import errors
from stonetown.api.authzed.errors import SpiceError
from stonetown.api.authzed.pb import experimental, experimental_grpc, schema
from stonetown.api.authzed.permissions import AuthzedPermissionsServicer
from stonetown.api.authzed.schema import AuthzedSchemaServicer

_NO_COUNTERS = "relationship counters are not supported by Stonetown: its stores keep no counters"


def _as(message_type: Any, message: Any) -> Any:
    """`message` re-read as `message_type` (same field names and numbers)."""
    return message_type.FromString(message.SerializeToString())


class AuthzedExperimentalServicer(experimental_grpc.ExperimentalServiceServicer):
    """SpiceDB's ExperimentalService over the PermissionsService and SchemaService servicers."""

    def __init__(self, permissions: AuthzedPermissionsServicer, schemas: AuthzedSchemaServicer) -> None:
        self.permissions = permissions
        self.schemas = schemas

    async def BulkImportRelationships(
        self, request_iterator: Any, context: aio.ServicerContext
    ) -> experimental.BulkImportRelationshipsResponse:
        """Create every streamed relationship in one atomic write (all or nothing)."""
        count = await self.permissions.imported(request_iterator, context)
        return experimental.BulkImportRelationshipsResponse(num_loaded=count)

    @errors.streaming
    async def BulkExportRelationships(
        self, request: experimental.BulkExportRelationshipsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[experimental.BulkExportRelationshipsResponse]:
        """Every relationship (or those matching the filter), a page per message."""
        async for message in self.permissions.export(request, experimental.BulkExportRelationshipsResponse):
            yield message

    @errors.unary
    async def BulkCheckPermission(
        self, request: experimental.BulkCheckPermissionRequest, context: aio.ServicerContext
    ) -> experimental.BulkCheckPermissionResponse:
        """Many checks at one revision (CheckBulkPermissions' older name)."""
        return await self.permissions.check_bulk(request, experimental.BulkCheckPermissionResponse)

    async def ExperimentalReflectSchema(self, request: Any, context: aio.ServicerContext) -> Any:
        """ReflectSchema."""
        answer = await self.schemas.ReflectSchema(_as(schema.ReflectSchemaRequest, request), context)
        return _as(experimental.ExperimentalReflectSchemaResponse, answer)

    async def ExperimentalComputablePermissions(self, request: Any, context: aio.ServicerContext) -> Any:
        """ComputablePermissions."""
        answer = await self.schemas.ComputablePermissions(
            _as(schema.ComputablePermissionsRequest, request), context
        )
        return _as(experimental.ExperimentalComputablePermissionsResponse, answer)

    async def ExperimentalDependentRelations(self, request: Any, context: aio.ServicerContext) -> Any:
        """DependentRelations."""
        answer = await self.schemas.DependentRelations(
            _as(schema.DependentRelationsRequest, request), context
        )
        return _as(experimental.ExperimentalDependentRelationsResponse, answer)

    async def ExperimentalDiffSchema(self, request: Any, context: aio.ServicerContext) -> Any:
        """DiffSchema."""
        answer = await self.schemas.DiffSchema(_as(schema.DiffSchemaRequest, request), context)
        return _as(experimental.ExperimentalDiffSchemaResponse, answer)

    @errors.unary
    async def ExperimentalRegisterRelationshipCounter(
        self, request: Any, context: aio.ServicerContext
    ) -> Any:
        """Not supported: UNIMPLEMENTED."""
        raise SpiceError("UNIMPLEMENTED", _NO_COUNTERS)

    @errors.unary
    async def ExperimentalCountRelationships(self, request: Any, context: aio.ServicerContext) -> Any:
        """Not supported: UNIMPLEMENTED."""
        raise SpiceError("UNIMPLEMENTED", _NO_COUNTERS)

    @errors.unary
    async def ExperimentalUnregisterRelationshipCounter(
        self, request: Any, context: aio.ServicerContext
    ) -> Any:
        """Not supported: UNIMPLEMENTED."""
        raise SpiceError("UNIMPLEMENTED", _NO_COUNTERS)
