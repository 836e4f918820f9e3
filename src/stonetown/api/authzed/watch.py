"""authzed.api.v1.WatchService: relationship changes as they commit, filtered by object type
or by relationship filters, from a start token on, with schema updates and checkpoints when
asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from grpc import aio

from stonetown.api import convert as cv
from stonetown.api.authzed import convert as az
from stonetown.api.authzed import errors
from stonetown.api.authzed.errors import SpiceError
from stonetown.api.authzed.pb import core, watch, watch_grpc
from stonetown.api.authzed.permissions import relationship_filter
from stonetown.api.servicers import shared
from stonetown.engine.datastore import RevisionChanges
from stonetown.engine.system import PermissionSystem

_KINDS = (
    watch.WATCH_KIND_UNSPECIFIED,
    watch.WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES,
    watch.WATCH_KIND_INCLUDE_SCHEMA_UPDATES,
    watch.WATCH_KIND_INCLUDE_CHECKPOINTS,
)


class AuthzedWatchServicer(watch_grpc.WatchServiceServicer):
    """SpiceDB's WatchService over one PermissionSystem."""

    def __init__(self, system: PermissionSystem) -> None:
        self.system = system
        self._responses = shared.SharedResponses()

    @errors.streaming
    async def Watch(
        self, request: watch.WatchRequest, context: aio.ServicerContext
    ) -> AsyncIterator[watch.WatchResponse]:
        """Every change after the start token (or from now on), as it commits."""
        types, after = await shared.watch_start(self.system, request)
        filters = [
            relationship_filter(self.system, item, True, f"optional_relationship_filters[{index}]")
            for index, item in enumerate(request.optional_relationship_filters)
        ]
        if types and filters:
            raise SpiceError("INVALID_ARGUMENT", "cannot specify both object types and relationship filters")
        # as SpiceDB (convertWatchKindToContent): a kind it does not know is ignored
        kinds = {kind for kind in request.optional_update_kinds if kind in _KINDS} or {
            watch.WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES
        }
        relationships = watch.WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES in kinds or (
            watch.WATCH_KIND_UNSPECIFIED in kinds
        )
        schemas = watch.WATCH_KIND_INCLUDE_SCHEMA_UPDATES in kinds
        checkpoints = watch.WATCH_KIND_INCLUDE_CHECKPOINTS in kinds
        asked = (tuple(sorted(types)), relationships, schemas, checkpoints)
        async for batch in self.system.watch(after, types, every_revision=schemas or checkpoints):
            if filters:
                response = _response(batch, filters, relationships, schemas, checkpoints)
            else:  # the same for every stream asking the same: built once (SharedResponses)
                key = (batch.revision, asked)
                build = partial(_response, batch, filters, relationships, schemas, checkpoints)
                response = await self._responses.get(key, build, len(batch.changes))
                del build
            del batch  # a slow reader holds its response, not the commit's objects
            if response is not None:
                yield response


def _response(
    batch: RevisionChanges, filters: list[Any], relationships: bool, schemas: bool, checkpoints: bool
) -> watch.WatchResponse | None:
    """What a stream asking for these kinds (and relationship filters) is sent for `batch`."""
    changes = batch.changes
    if filters:
        changes = tuple(c for c in changes if any(f.matches(c.relationship) for f in filters))
    updates = [cv.change_to_proto(change, core) for change in changes] if relationships else []
    schema_updated = schemas and batch.schema_changed
    if updates or schema_updated:
        return watch.WatchResponse(
            updates=updates, changes_through=az.token(batch.revision), schema_updated=schema_updated
        )
    if checkpoints:
        return watch.WatchResponse(changes_through=az.token(batch.revision), is_checkpoint=True)
    return None
