"""SchemaService: WriteSchema, ReadSchema."""

from __future__ import annotations

from grpc import aio

from stonetown.api import tokens
from stonetown.api.pb import schema, schema_grpc
from stonetown.core.errors import InvalidArgument
from stonetown.engine.system import PermissionSystem


class SchemaServicer(schema_grpc.SchemaServiceServicer):
    """The schema in force, over one PermissionSystem."""

    def __init__(self, system: PermissionSystem) -> None:
        self.system = system

    async def WriteSchema(
        self, request: schema.WriteSchemaRequest, context: aio.ServicerContext
    ) -> schema.WriteSchemaResponse:
        """Check and store a schema."""
        if not request.schema.strip():
            raise InvalidArgument("schema: required")
        try:
            revision = await self.system.write_schema(request.schema)
        except InvalidArgument as exc:
            raise InvalidArgument(f"schema: {exc}") from exc
        return schema.WriteSchemaResponse(written_at=tokens.token_to_proto(revision))

    async def ReadSchema(
        self, request: schema.ReadSchemaRequest, context: aio.ServicerContext
    ) -> schema.ReadSchemaResponse:
        """The schema in force and the revision that wrote it (NOT_FOUND before any)."""
        stored = await self.system.read_schema()
        read_at = tokens.token_to_proto(stored.revision)
        return schema.ReadSchemaResponse(schema_text=stored.text, read_at=read_at)
