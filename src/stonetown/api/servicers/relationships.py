"""RelationshipService: WriteRelationships, ReadRelationships, DeleteRelationships, Watch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from grpc import aio

from stonetown.api import convert as cv
from stonetown.api import tokens
from stonetown.api.limits import Limits
from stonetown.api.pb import core, relationship, relationship_grpc
from stonetown.api.servicers import shared
from stonetown.core.errors import InvalidArgument
from stonetown.engine.datastore import RevisionChanges
from stonetown.engine.system import PermissionSystem


class RelationshipServicer(relationship_grpc.RelationshipServiceServicer):
    """Relationship storage over one PermissionSystem."""

    def __init__(self, system: PermissionSystem, limits: Limits) -> None:
        self.system = system
        self.limits = limits
        self._watch_responses = shared.SharedResponses()

    async def WriteRelationships(
        self, request: relationship.WriteRelationshipsRequest, context: aio.ServicerContext
    ) -> relationship.WriteRelationshipsResponse:
        """Apply updates atomically, if every precondition holds."""
        updates, preconditions = shared.write_request(request, self.limits)
        revision = await self.system.write_relationships(updates, preconditions)
        return relationship.WriteRelationshipsResponse(written_at=tokens.token_to_proto(revision))

    async def ImportRelationships(
        self, request_iterator: Any, context: aio.ServicerContext
    ) -> relationship.ImportRelationshipsResponse:
        """Create every streamed relationship in one atomic write (all or nothing), at most
        ``max_relationships_per_import`` of them."""
        limit = self.limits.max_relationships_per_import
        count, revision = await shared.import_stream(self.system, request_iterator, limit)
        return relationship.ImportRelationshipsResponse(
            num_loaded=count, written_at=tokens.token_to_proto(revision)
        )

    async def ReadRelationships(
        self, request: relationship.ReadRelationshipsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[relationship.ReadRelationshipsResponse]:
        """Relationships matching the filter, in key order, from the cursor on.

        Without a limit every match is streamed, read page by page at one exact revision.
        """
        flt = cv.filter_from_proto(
            request.relationship_filter, request.HasField("relationship_filter"), "relationship_filter"
        )
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        limit = self.limits.page_size("optional_limit", request.optional_limit)
        after = shared.read_cursor(request.optional_cursor, request.HasField("optional_cursor"))
        pages = shared.read_pages(self.system, self.limits, flt, consistency, after, limit)
        async for rels, revision in pages:
            token = tokens.token_to_proto(revision)
            for rel in rels:
                yield relationship.ReadRelationshipsResponse(
                    read_at=token,
                    relationship=cv.relationship_to_proto(rel),
                    after_result_cursor=core.Cursor(token=shared.read_cursor_after(rel)),
                )

    async def DeleteRelationships(
        self, request: relationship.DeleteRelationshipsRequest, context: aio.ServicerContext
    ) -> relationship.DeleteRelationshipsResponse:
        """Delete every relationship matching the filter (at most the limit) atomically."""
        if not request.HasField("relationship_filter") or request.relationship_filter.ByteSize() == 0:
            raise InvalidArgument("relationship_filter: required (refusing to delete every relationship)")
        flt = cv.filter_from_proto(request.relationship_filter, True, "relationship_filter")
        preconditions = shared.preconditions_from(request.optional_preconditions, self.limits)
        result = await self.system.delete_relationships(flt, preconditions, request.optional_limit or None)
        progress = (
            relationship.DeleteRelationshipsResponse.DELETION_PROGRESS_PARTIAL
            if result.limit_reached
            else relationship.DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE
        )
        return relationship.DeleteRelationshipsResponse(
            deleted_at=tokens.token_to_proto(result.revision),
            relationships_deleted_count=result.deleted,
            deletion_progress=progress,
        )

    async def Watch(
        self, request: relationship.WatchRequest, context: aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Every change after the start token (or from now on), as it commits. Each response
        is built and serialized once for all the streams asking the same, and sent as bytes
        (the method is registered through :class:`.preserialized.PreSerialized`)."""
        types, after = await shared.watch_start(self.system, request)
        asked = tuple(sorted(types))
        async for changes in self.system.watch(after, types):
            key = (changes.revision, asked)
            build = partial(_watch_response, changes)
            response = await self._watch_responses.get(key, build, len(changes.changes))
            del changes, build  # a slow reader holds its response's bytes, not the commit's objects
            yield response


def _watch_response(changes: RevisionChanges) -> bytes:
    return relationship.WatchResponse(
        updates=[cv.change_to_proto(change) for change in changes.changes],
        changes_through=tokens.token_to_proto(changes.revision),
        schema_changed=changes.schema_changed,
        committed_at=cv.timestamp_to_proto(changes.timestamp),
    ).SerializeToString()
