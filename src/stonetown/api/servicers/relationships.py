"""RelationshipService: WriteRelationships, ReadRelationships, DeleteRelationships, Watch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from stonetown.api import convert as cv
from stonetown.api.errors import forget_frames
from stonetown.api.limits import Limits
from stonetown.api.pb import core, relationship, relationship_grpc
from stonetown.core.errors import InvalidArgument
from stonetown.core.relationship import Relationship, validate_type_name
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency

_READ_CURSOR = "read_relationships"
_KEY_LENGTH = 6  # Relationship.key


class RelationshipServicer(relationship_grpc.RelationshipServiceServicer):
    """Relationship storage over one PermissionSystem."""

    def __init__(self, system: PermissionSystem, limits: Limits) -> None:
        self.system = system
        self.limits = limits

    async def WriteRelationships(
        self, request: relationship.WriteRelationshipsRequest, context: aio.ServicerContext
    ) -> relationship.WriteRelationshipsResponse:
        """Apply updates atomically, if every precondition holds."""
        count = len(request.updates) + len(request.optional_preconditions)
        if count == 0:
            raise InvalidArgument("updates: at least one update or precondition is required")
        self.limits.check_count(
            "updates", count, self.limits.max_updates_per_write, "updates and preconditions"
        )
        updates = [
            cv.update_from_proto(item, f"updates[{index}]") for index, item in enumerate(request.updates)
        ]
        preconditions = [
            cv.precondition_from_proto(item, f"optional_preconditions[{index}]")
            for index, item in enumerate(request.optional_preconditions)
        ]
        revision = await self.system.write_relationships(updates, preconditions)
        return relationship.WriteRelationshipsResponse(written_at=cv.token_to_proto(revision))

    async def ImportRelationships(
        self, request_iterator: Any, context: aio.ServicerContext
    ) -> relationship.ImportRelationshipsResponse:
        """Create every streamed relationship in one atomic write (all or nothing), at most
        ``max_relationships_per_import`` of them."""
        rels: list[Relationship] = []
        limit = self.limits.max_relationships_per_import
        try:
            async for request in request_iterator:
                if len(rels) + len(request.relationships) > limit:
                    raise InvalidArgument(
                        f"relationships: more than {limit} relationships in one ImportRelationships "
                        "call (the limit, --max-relationships-per-import): split the import into "
                        "several calls"
                    )
                for item in request.relationships:
                    rel = cv.relationship_from_proto_quick(item)
                    if rel is None:
                        rel = cv.relationship_from_proto(item, True, f"relationships[{len(rels)}]")
                    rels.append(rel)
            if not rels:
                raise InvalidArgument("relationships: at least one relationship is required")
            revision = await self.system.import_relationships(rels)
        except BaseException as exc:
            # A failed import frees its relationships now: the error's traceback (and the
            # store's, chained to it) holds frames that refer to them, and can live on in a
            # reference cycle until the next full collection.
            rels.clear()
            forget_frames(exc)
            raise
        return relationship.ImportRelationshipsResponse(
            num_loaded=len(rels), written_at=cv.token_to_proto(revision)
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
        consistency = cv.consistency_from_proto(request.consistency, request.HasField("consistency"))
        limit = self.limits.page_size("optional_limit", request.optional_limit)
        cursor = cv.cursor_from_proto(
            request.optional_cursor,
            request.HasField("optional_cursor"),
            _READ_CURSOR,
            _KEY_LENGTH,
            "optional_cursor",
        )
        after = tuple(cursor) if cursor else None
        remaining = limit
        while remaining is None or remaining > 0:
            page_size = (
                self.limits.max_page_size if remaining is None else min(remaining, self.limits.max_page_size)
            )
            page = await self.system.read_relationships(flt, consistency, after=after, limit=page_size)
            consistency = Consistency.at_exact_snapshot(page.revision)
            token = cv.token_to_proto(page.revision)
            for rel in page.relationships:
                yield relationship.ReadRelationshipsResponse(
                    read_at=token,
                    relationship=cv.relationship_to_proto(rel),
                    after_result_cursor=core.Cursor(token=cv.encode_cursor(_READ_CURSOR, list(rel.key))),
                )
            if remaining is not None:
                remaining -= len(page.relationships)
            if len(page.relationships) < page_size:
                return
            after = page.relationships[-1].key

    async def DeleteRelationships(
        self, request: relationship.DeleteRelationshipsRequest, context: aio.ServicerContext
    ) -> relationship.DeleteRelationshipsResponse:
        """Delete every relationship matching the filter (at most the limit) atomically."""
        if not request.HasField("relationship_filter") or request.relationship_filter.ByteSize() == 0:
            raise InvalidArgument("relationship_filter: required (refusing to delete every relationship)")
        flt = cv.filter_from_proto(request.relationship_filter, True, "relationship_filter")
        self.limits.check_count(
            "optional_preconditions",
            len(request.optional_preconditions),
            self.limits.max_updates_per_write,
            "preconditions",
        )
        preconditions = [
            cv.precondition_from_proto(item, f"optional_preconditions[{index}]")
            for index, item in enumerate(request.optional_preconditions)
        ]
        result = await self.system.delete_relationships(flt, preconditions, request.optional_limit or None)
        progress = (
            relationship.DeleteRelationshipsResponse.DELETION_PROGRESS_PARTIAL
            if result.limit_reached
            else relationship.DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE
        )
        return relationship.DeleteRelationshipsResponse(
            deleted_at=cv.token_to_proto(result.revision),
            relationships_deleted_count=result.deleted,
            deletion_progress=progress,
        )

    async def Watch(
        self, request: relationship.WatchRequest, context: aio.ServicerContext
    ) -> AsyncIterator[relationship.WatchResponse]:
        """Every change after the start token (or from now on), as it commits."""
        types = list(request.optional_object_types)
        for index, name in enumerate(types):
            try:
                validate_type_name(name, "type")
            except InvalidArgument as exc:
                raise InvalidArgument(f"optional_object_types[{index}]: {exc}") from None
        if request.HasField("optional_start_cursor"):
            after = cv.token_from_proto(request.optional_start_cursor, "optional_start_cursor")
        else:
            after = await self.system.store.head_revision()
        async for changes in self.system.watch(after, types):
            yield relationship.WatchResponse(
                updates=[cv.change_to_proto(change) for change in changes.changes],
                changes_through=cv.token_to_proto(changes.revision),
                schema_changed=changes.schema_changed,
                committed_at=cv.timestamp_to_proto(changes.timestamp),
            )
