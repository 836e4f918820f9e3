"""authzed.api.v1.SchemaService: ReadSchema, WriteSchema and the reflection calls."""

from __future__ import annotations

from typing import Any

from grpc import aio

from stonetown.api.authzed import convert as az
from stonetown.api.authzed import errors, reflection
from stonetown.api.authzed.errors import SpiceError
from stonetown.api.authzed.pb import schema, schema_grpc
from stonetown.core.errors import NotFound
from stonetown.engine.system import PermissionSystem
from stonetown.schema import SchemaError, compile_ast, compile_schema, ir, parse_schema

NO_SCHEMA = "No schema has been defined; please call WriteSchema to start"


def schema_error(text: str, exc: SchemaError) -> SpiceError:
    """SpiceDB's error for invalid schema text: INVALID_ARGUMENT / SCHEMA_PARSE_ERROR when
    it does not parse or compile, FAILED_PRECONDITION / SCHEMA_TYPE_ERROR when it compiles but
    does not type-check (a reference to an unknown relation, say); the position in metadata."""
    first = exc.diagnostics[0]
    position = {"start_line_number": str(first.line), "start_column_position": str(first.column)}
    try:
        _, compile_errors = compile_ast(parse_schema(text))
    except SchemaError:
        compile_errors = [first]
    if compile_errors:
        return SpiceError("INVALID_ARGUMENT", str(exc), "ERROR_REASON_SCHEMA_PARSE_ERROR", **position)
    return SpiceError("FAILED_PRECONDITION", str(exc), "ERROR_REASON_SCHEMA_TYPE_ERROR", **position)


class AuthzedSchemaServicer(schema_grpc.SchemaServiceServicer):
    """SpiceDB's SchemaService over one PermissionSystem."""

    def __init__(self, system: PermissionSystem) -> None:
        self.system = system

    async def current(self) -> tuple[ir.Schema, int, str]:
        """The schema in force (compiled), its revision and text; SpiceDB's NOT_FOUND before any."""
        try:
            stored = await self.system.read_schema()
        except NotFound:
            raise SpiceError("NOT_FOUND", NO_SCHEMA) from None
        return compile_schema(stored.text), stored.revision, stored.text

    @errors.unary
    async def ReadSchema(
        self, request: schema.ReadSchemaRequest, context: aio.ServicerContext
    ) -> schema.ReadSchemaResponse:
        """The schema text in force."""
        try:
            stored = await self.system.read_schema()
        except NotFound:
            raise SpiceError("NOT_FOUND", NO_SCHEMA) from None
        return schema.ReadSchemaResponse(schema_text=stored.text, read_at=az.token(stored.revision))

    @errors.unary
    async def WriteSchema(
        self, request: schema.WriteSchemaRequest, context: aio.ServicerContext
    ) -> schema.WriteSchemaResponse:
        """Check and store a schema; refused if it would orphan stored relationships."""
        if not request.schema.strip():
            raise SpiceError("INVALID_ARGUMENT", "schema: required (an empty schema is not supported)")
        try:
            revision = await self.system.write_schema(request.schema)
        except SchemaError as exc:
            raise schema_error(request.schema, exc) from None
        return schema.WriteSchemaResponse(written_at=az.token(revision))

    @errors.unary
    async def ReflectSchema(
        self, request: schema.ReflectSchemaRequest, context: aio.ServicerContext
    ) -> schema.ReflectSchemaResponse:
        """The schema in force as structured definitions and caveats."""
        compiled, revision, _ = await self.current()
        definitions, caveats = reflection.reflect(compiled, request.optional_filters)
        return schema.ReflectSchemaResponse(
            definitions=definitions, caveats=caveats, read_at=az.token(revision)
        )

    @errors.unary
    async def ComputablePermissions(
        self, request: schema.ComputablePermissionsRequest, context: aio.ServicerContext
    ) -> schema.ComputablePermissionsResponse:
        """The relations and permissions a relation (or an object type as subject) feeds."""
        compiled, revision, _ = await self.current()
        found = reflection.computable_permissions(
            compiled, request.definition_name, request.relation_name, request.optional_definition_name_filter
        )
        return schema.ComputablePermissionsResponse(permissions=found, read_at=az.token(revision))

    @errors.unary
    async def DependentRelations(
        self, request: schema.DependentRelationsRequest, context: aio.ServicerContext
    ) -> schema.DependentRelationsResponse:
        """The relations and permissions a permission reads."""
        compiled, revision, _ = await self.current()
        found = reflection.dependent_relations(compiled, request.definition_name, request.permission_name)
        return schema.DependentRelationsResponse(relations=found, read_at=az.token(revision))

    @errors.unary
    async def DiffSchema(
        self, request: schema.DiffSchemaRequest, context: aio.ServicerContext
    ) -> schema.DiffSchemaResponse:
        """What would change from the schema in force to the request's schema."""
        compiled, revision, _ = await self.current()
        try:
            comparison = compile_schema(request.comparison_schema)
        except SchemaError as exc:
            raise schema_error(request.comparison_schema, exc) from None
        return schema.DiffSchemaResponse(
            diffs=reflection.diff(compiled, comparison), read_at=az.token(revision)
        )


def experimental(response_type: Any, answer: Any) -> Any:
    """The Experimental* variant of a reflection response (same fields, another message)."""
    message = response_type()
    message.ParseFromString(answer.SerializeToString())
    return message
