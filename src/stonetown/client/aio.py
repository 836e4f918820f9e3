"""`stonetown.AsyncClient`: the asyncio client, with the same methods as Client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import grpc
from grpc import aio

from stonetown.api.pb import permission_grpc, relationship_grpc, schema, schema_grpc
from stonetown.client.base import DEFAULT_ENDPOINT, ClientBase, ConsistencyLike
from stonetown.client.errors import from_grpc
from stonetown.client.notation import CheckLike, FilterLike, ObjectLike, RelationshipLike, SubjectLike
from stonetown.client.results import (
    CheckOutcome,
    DeleteOutcome,
    ExpandOutcome,
    FoundResource,
    FoundSubject,
    ReadPage,
    SchemaOutcome,
    WatchEvent,
)
from stonetown.core.errors import StonetownError
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import Precondition


class AsyncClient(ClientBase):
    """An asyncio Stonetown client over one gRPC channel. Use `async with` or await
    :meth:`close`. Errors are raised as stonetown.core.errors classes."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, **options: Any) -> None:
        super().__init__(endpoint, **options)
        if self._credentials is not None:
            self._channel = aio.secure_channel(endpoint, self._credentials, options=self._options)
        else:
            self._channel = aio.insecure_channel(endpoint, options=self._options)
        self._permissions = permission_grpc.PermissionServiceStub(self._channel)
        self._relationships = relationship_grpc.RelationshipServiceStub(self._channel)
        self._schema = schema_grpc.SchemaServiceStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def _unary(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise from_grpc(exc) from exc

    async def _stream(self, method: Any, request: Any, *, timeout: float | None) -> AsyncIterator[Any]:
        call = method(request, metadata=self._metadata, timeout=timeout)
        try:
            async for response in call:
                yield response
        except grpc.RpcError as exc:
            raise from_grpc(exc) from exc
        finally:
            call.cancel()

    # ---------------------------------------------------------------- permissions

    async def check(
        self,
        resource: ObjectLike,
        permission: str | None = None,
        subject: SubjectLike | None = None,
        *,
        context: dict[str, Any] | None = None,
        contextual: Iterable[RelationshipLike] = (),
        consistency: ConsistencyLike = None,
        explain: bool = False,
    ) -> CheckOutcome:
        """Does `subject` have `permission` on `resource`? Also `check("doc:a#view@user:ana")`.
        With `explain`, the outcome's ``trace`` holds the resolution tree (why)."""
        request = self._check_request(
            resource, permission, subject, context, contextual, consistency, with_tracing=explain
        )
        return self._check_outcome(await self._unary(self._permissions.Check, request))

    async def check_bulk(
        self,
        checks: Iterable[CheckLike],
        *,
        contextual: Iterable[RelationshipLike] = (),
        consistency: ConsistencyLike = None,
    ) -> list[CheckOutcome | StonetownError]:
        """Many checks at one revision; a failed item is returned as its exception."""
        request = self._check_bulk_request(checks, contextual, consistency)
        return self._check_bulk_outcomes(await self._unary(self._permissions.CheckBulk, request))

    async def expand(
        self,
        resource: ObjectLike,
        permission: str,
        *,
        recursive: bool = False,
        consistency: ConsistencyLike = None,
    ) -> ExpandOutcome:
        """The userset tree of `permission` on `resource`."""
        request = self._expand_request(resource, permission, recursive, consistency)
        return self._expand_outcome(await self._unary(self._permissions.Expand, request))

    async def lookup_resources(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectLike,
        *,
        context: dict[str, Any] | None = None,
        contextual: Iterable[RelationshipLike] = (),
        consistency: ConsistencyLike = None,
        limit: int = 0,
        cursor: str | None = None,
    ) -> AsyncIterator[FoundResource]:
        """Resources of `resource_type` on which `subject` has `permission`, by id."""
        request = self._lookup_resources_request(
            resource_type, permission, subject, context, contextual, consistency, limit, cursor
        )
        async for response in self._stream(self._permissions.LookupResources, request, timeout=self.timeout):
            for found in self._found_resources(response):
                yield found

    async def lookup_subjects(
        self,
        resource: ObjectLike,
        permission: str,
        subject_type: str,
        *,
        context: dict[str, Any] | None = None,
        contextual: Iterable[RelationshipLike] = (),
        consistency: ConsistencyLike = None,
        limit: int = 0,
        cursor: str | None = None,
    ) -> AsyncIterator[FoundSubject]:
        """Subjects of `subject_type` (`team#member` for subject sets) with `permission` on `resource`."""
        request = self._lookup_subjects_request(
            resource, permission, subject_type, context, contextual, consistency, limit, cursor
        )
        async for response in self._stream(self._permissions.LookupSubjects, request, timeout=self.timeout):
            for found in self._found_subjects(response):
                yield found

    # ---------------------------------------------------------------- relationships

    async def write(
        self,
        *,
        touch: Iterable[RelationshipLike] = (),
        create: Iterable[RelationshipLike] = (),
        delete: Iterable[RelationshipLike] = (),
        preconditions: Sequence[Precondition] = (),
    ) -> str:
        """Apply the updates atomically; return the token of the new revision."""
        request = self._write_request(touch, create, delete, preconditions)
        response = await self._unary(self._relationships.WriteRelationships, request)
        return self._remember(response.written_at.token)

    async def import_relationships(
        self, relationships: Iterable[RelationshipLike], *, chunk_size: int = 1000
    ) -> str:
        """Create every relationship in one atomic write (fails, writing nothing, if any is
        stored or refused), streamed in messages of `chunk_size`; the new revision's token."""
        try:
            response = await self._relationships.ImportRelationships(
                self._import_requests(relationships, chunk_size), metadata=self._metadata, timeout=None
            )
        except grpc.RpcError as exc:
            raise from_grpc(exc) from exc
        return self._remember(response.written_at.token)

    async def delete(
        self, filter: FilterLike, *, preconditions: Sequence[Precondition] = (), limit: int = 0
    ) -> DeleteOutcome:
        """Delete every relationship matching `filter` (at most `limit`, 0 = all) atomically."""
        request = self._delete_request(filter, preconditions, limit)
        outcome = self._delete_outcome(await self._unary(self._relationships.DeleteRelationships, request))
        self._remember(outcome.token)
        return outcome

    async def read(
        self, filter: FilterLike | None = None, *, consistency: ConsistencyLike = None, limit: int = 0
    ) -> AsyncIterator[Relationship]:
        """Relationships matching `filter`, streamed (all of them unless `limit`)."""
        request = self._read_request(filter, consistency, limit, None)
        async for response in self._stream(self._relationships.ReadRelationships, request, timeout=None):
            yield self._relationship(response)

    async def read_page(
        self,
        filter: FilterLike | None = None,
        *,
        limit: int,
        cursor: str | None = None,
        consistency: ConsistencyLike = None,
    ) -> ReadPage:
        """One page of at most `limit` relationships after `cursor`."""
        request = self._read_request(filter, consistency, limit, cursor)
        rels: list[Relationship] = []
        last_cursor, token = "", ""
        async for response in self._stream(
            self._relationships.ReadRelationships, request, timeout=self.timeout
        ):
            rels.append(self._relationship(response))
            last_cursor, token = response.after_result_cursor.token, response.read_at.token
        return ReadPage(rels, last_cursor, token)

    async def watch(
        self, resource_types: Sequence[str] = (), *, after: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Changes after the token `after` (default: from now on), as they commit. Endless."""
        request = self._watch_request(resource_types, after)
        async for response in self._stream(self._relationships.Watch, request, timeout=None):
            yield self._watch_event(response)

    # ---------------------------------------------------------------- schema

    async def write_schema(self, text: str) -> str:
        """Store a schema; return the token of the new revision."""
        response = await self._unary(self._schema.WriteSchema, schema.WriteSchemaRequest(schema=text))
        return self._remember(response.written_at.token)

    async def read_schema(self) -> SchemaOutcome:
        """The schema in force."""
        return self._schema_outcome(await self._unary(self._schema.ReadSchema, schema.ReadSchemaRequest()))
