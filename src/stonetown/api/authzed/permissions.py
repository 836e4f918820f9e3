"""authzed.api.v1.PermissionsService over the same engine as stonetown.v1.

Requests are read and answered by the functions stonetown.v1's servicers use
(api/servicers/shared.py, api/convert.py); this module only shapes SpiceDB's responses,
applies SpiceDB's request rules (limits, partial deletes) and reports errors as SpiceDB does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from stonetown.api import convert as cv
from stonetown.api import tokens
from stonetown.api.authzed import convert as az
from stonetown.api.authzed import errors
from stonetown.api.authzed.errors import SpiceError
from stonetown.api.authzed.pb import core, permission, permission_grpc
from stonetown.api.limits import Limits
from stonetown.api.servicers import shared
from stonetown.core.errors import InvalidArgument, StonetownError
from stonetown.core.relationship import WILDCARD
from stonetown.engine.datastore import RelationshipFilter
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, CheckResult, Consistency

_Response = permission.CheckPermissionResponse
MUST_MATCH = permission.Precondition.Operation.OPERATION_MUST_MATCH
MUST_NOT_MATCH = permission.Precondition.Operation.OPERATION_MUST_NOT_MATCH
_DELETE = permission.DeleteRelationshipsResponse
_WILDCARD_SET = "a wildcard subject cannot have a relation"  # convert.subject_from_proto's words


def limit_of(requested: int, maximum: int) -> int | None:
    """The page size for an `optional_limit` (0: none), SpiceDB's error beyond the maximum."""
    if requested > maximum:
        raise SpiceError(
            "INVALID_ARGUMENT",
            f"provided limit {requested} is greater than maximum allowed of {maximum}",
            "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT",
            limit_provided=str(requested),
            maximum_limit_allowed=str(maximum),
        )
    return requested or None


def relationship_filter(system: PermissionSystem, message: Any, has: bool, path: str) -> RelationshipFilter:
    """A filter validated as SpiceDB validates one (its relationship calls and Watch):
    present, not empty, and naming only definitions and relations of the schema in force."""
    if not has:
        raise SpiceError("INVALID_ARGUMENT", f"{path}: required")
    if message.ByteSize() == 0:
        raise SpiceError(
            "INVALID_ARGUMENT",
            "the relationship filter provided is not valid: at least one field must be specified",
            "ERROR_REASON_INVALID_FILTER",
            filter="",
        )
    if message.optional_resource_id and message.optional_resource_id_prefix:
        raise SpiceError(
            "INVALID_ARGUMENT",
            "the relationship filter provided is not valid: "
            "resource_id and resource_id_prefix cannot be set at the same time",
            "ERROR_REASON_INVALID_FILTER",
            filter=str(message).strip(),
        )
    flt = cv.filter_from_proto(message, True, path)
    state = system.state
    named = [(flt.resource_type, flt.relation)]
    if flt.subject is not None:
        named.append((flt.subject.type, flt.subject.relation or None))
    for definition, relation in named:
        if not definition:
            continue
        found = state.schema.definitions.get(definition) if state is not None else None
        if found is None:
            raise errors.unknown_definition(definition)
        if relation and relation not in found.relations:
            raise errors.unknown_relation(definition, relation)
    return flt


class AuthzedPermissionsServicer(permission_grpc.PermissionsServiceServicer):
    """SpiceDB's PermissionsService over one PermissionSystem."""

    def __init__(self, system: PermissionSystem, limits: Limits) -> None:
        self.system = system
        self.limits = limits
        # Responses without caveat details by (revision, permissionship value), as stonetown.v1
        # keeps them: never changed once made, so shared.
        self._check_responses: dict[tuple[int, str], permission.CheckPermissionResponse] = {}

    # ---- checks -------------------------------------------------------------------------

    async def CheckPermission(
        self, request: permission.CheckPermissionRequest, context: aio.ServicerContext
    ) -> permission.CheckPermissionResponse:
        """Does the subject have the permission on the resource?"""
        started = time.monotonic()
        try:
            az.refuse_ellipsis(request.subject, "subject")
            if not request.permission:
                raise self._no_such_permission(request.resource, request.HasField("resource"))
            result = await shared.check(self.system, request)
            if request.with_tracing:
                response = self._fresh_response(result)
                response.debug_trace.CopyFrom(await self._trace(request, result, started))
                return response
        except StonetownError as exc:
            await errors.abort(context, exc)
            raise
        if result.missing_parameters:
            return self._fresh_response(result)
        key = (result.revision, result.permissionship._value_)
        response = self._check_responses.get(key)
        if response is None:
            if len(self._check_responses) >= 8:
                self._check_responses.clear()
            response = self._check_responses[key] = self._fresh_response(result)
        return response

    def _no_such_permission(self, resource: Any, has: bool, path: str = "resource") -> SpiceError:
        """SpiceDB's error for an empty permission (its protos allow one): the resource's
        definition has no such relation or permission (or the definition is unknown)."""
        kind = cv.object_from_proto(resource, has, path).type
        state = self.system.state
        if state is None or kind not in state.schema.definitions:
            return errors.unknown_definition(kind)
        return errors.unknown_relation(kind, "")

    @staticmethod
    def _fresh_response(result: CheckResult) -> permission.CheckPermissionResponse:
        response = _Response(
            checked_at=az.token(result.revision),
            permissionship=az.CHECK_PERMISSIONSHIP[result.permissionship],
        )
        if result.missing_parameters:
            response.partial_caveat_info.missing_required_context.extend(result.missing_parameters)
        return response

    async def _trace(self, request: Any, result: CheckResult, started: float) -> Any:
        """The check's resolution tree as SpiceDB's debug information (at the answer's revision)."""
        resource = cv.object_from_proto(request.resource, True, "resource")
        who = cv.subject_from_proto(request.subject, True, "subject")
        context = cv.struct_to_dict(request.context, request.HasField("context"))
        asked = CheckRequest(resource, request.permission, who, context)
        return await self._explained(asked, result, started)

    async def _explained(self, asked: CheckRequest, result: CheckResult, started: float) -> Any:
        at = Consistency.at_exact_snapshot(result.revision)
        question = (asked.resource, asked.permission, asked.subject, at, asked.context)
        tree, _answer = await self.system.explain(*question)
        stored = await self.system.read_schema()
        return az.debug_trace(tree, asked.subject, stored.text, asked.context, started)

    async def CheckBulkPermissions(
        self, request: permission.CheckBulkPermissionsRequest, context: aio.ServicerContext
    ) -> permission.CheckBulkPermissionsResponse:
        """Many checks at one revision; an item that fails gets its own google.rpc.Status."""
        try:
            return await self.check_bulk(request, permission.CheckBulkPermissionsResponse)
        except StonetownError as exc:
            await errors.abort(context, exc)
            raise

    async def check_bulk(self, request: Any, response_type: Any) -> Any:
        """CheckBulkPermissions and the experimental BulkCheckPermission (same fields)."""
        count, maximum = len(request.items), self.limits.max_checks_per_bulk
        if count > maximum:
            raise SpiceError(
                "INVALID_ARGUMENT",
                f"check count of {count} is greater than maximum allowed of {maximum}",
                "ERROR_REASON_UNSPECIFIED",
                check_count=str(count),
                maximum_checks_allowed=str(maximum),
            )
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        for index, item in enumerate(request.items):
            az.refuse_ellipsis(item.subject, f"items[{index}].subject")
        parsed = shared.parse_check_items(request.items)
        for index, (item, outcome) in enumerate(zip(request.items, parsed, strict=True)):
            if isinstance(outcome, StonetownError):
                if not item.permission:  # not malformed for SpiceDB: that item's own error
                    path = f"items[{index}].resource"
                    parsed[index] = self._no_such_permission(item.resource, item.HasField("resource"), path)
                    continue
                if item.subject.object.object_id == WILDCARD and str(outcome).endswith(_WILDCARD_SET):
                    # `doc:*#rel`: SpiceDB's validation lets it through and the item fails alone
                    parsed[index] = InvalidArgument(
                        f"items[{index}].subject: cannot check a wildcard subject "
                        f"({item.subject.object.object_type}:*#{item.subject.optional_relation})"
                    )
                    continue
                raise outcome  # a malformed item fails the request, as SpiceDB's validation does
        revision, outcomes = await shared.check_bulk(self.system, parsed, consistency)
        response = response_type(checked_at=az.token(revision))
        traced = getattr(request, "with_tracing", False)
        for item, asked, answer in zip(request.items, parsed, outcomes, strict=True):
            pair = response.pairs.add()
            pair.request.CopyFrom(item)
            if isinstance(answer, CheckResult):
                pair.item.permissionship = az.CHECK_PERMISSIONSHIP[answer.permissionship]
                if answer.missing_parameters:
                    pair.item.partial_caveat_info.missing_required_context.extend(answer.missing_parameters)
                if traced and isinstance(asked, CheckRequest):
                    pair.item.debug_trace.CopyFrom(await self._explained(asked, answer, time.monotonic()))
            else:
                pair.error.CopyFrom(errors.rpc_status(answer))
        return response

    @errors.unary
    async def ExpandPermissionTree(
        self, request: permission.ExpandPermissionTreeRequest, context: aio.ServicerContext
    ) -> permission.ExpandPermissionTreeResponse:
        """The userset tree of a permission on a resource, one level deep (as SpiceDB's)."""
        resource = cv.object_from_proto(request.resource, request.HasField("resource"), "resource")
        if not request.permission:
            raise self._no_such_permission(request.resource, True)
        name = cv.check_relation_name(request.permission, "permission")
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        tree, revision = await self.system.expand(resource, name, consistency)
        response = permission.ExpandPermissionTreeResponse(expanded_at=az.token(revision))
        az.fill_expand_tree(response.tree_root, tree)
        return response

    # ---- lookups ------------------------------------------------------------------------

    @errors.streaming
    async def LookupResources(
        self, request: permission.LookupResourcesRequest, context: aio.ServicerContext
    ) -> AsyncIterator[permission.LookupResourcesResponse]:
        """Resources of a type on which the subject has the permission, sorted by id."""
        resource_type = cv.check_type_name(request.resource_object_type, "resource_object_type")
        name = cv.check_relation_name(request.permission, "permission")
        az.refuse_ellipsis(request.subject, "subject")
        who = cv.subject_from_proto(request.subject, request.HasField("subject"), "subject")
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        caveat_context = cv.struct_to_dict(request.context, request.HasField("context"))
        limit = limit_of(request.optional_limit, self.limits.max_page_size)
        kind = az.cursor_kind(az.LOOKUP_RESOURCES_CURSOR, request)
        after = az.lookup_cursor(request.optional_cursor, request.HasField("optional_cursor"), kind)
        found = self.system.lookup_resource_batches(
            resource_type, name, who, consistency, caveat_context, after=after, limit=limit
        )
        async for results, revision in found:  # one message per result (SpiceDB's API)
            token = az.token(revision)
            cursors = tokens.encode_cursors(kind, [result.resource_id for result in results])
            for result, cursor in zip(results, cursors, strict=True):
                yield permission.LookupResourcesResponse(
                    looked_up_at=token,
                    resource_object_id=result.resource_id,
                    permissionship=az.lookup_permissionship(result.conditional),
                    partial_caveat_info=az.partial(result.missing_parameters),
                    after_result_cursor=core.Cursor(token=cursor),
                )

    @errors.streaming
    async def LookupSubjects(
        self, request: permission.LookupSubjectsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[permission.LookupSubjectsResponse]:
        """Subjects of a type that have the permission on the resource, sorted by id."""
        query = shared.subjects_query(request)
        if request.optional_concrete_limit:
            # SpiceDB answers the same (and ignores optional_cursor): every subject is streamed.
            raise SpiceError("UNIMPLEMENTED", "concrete limit is not yet supported")
        # as SpiceDB: any value but EXCLUDE_WILDCARDS (an unknown one included) includes them
        without_wildcard = (
            request.wildcard_option == permission.LookupSubjectsRequest.WILDCARD_OPTION_EXCLUDE_WILDCARDS
        )
        found = self.system.lookup_subject_batches(
            query.resource,
            query.permission,
            query.subject_type,
            query.subject_relation,
            query.consistency,
            query.context,
        )
        resolved = permission.ResolvedSubject
        async for results, revision in found:  # one message per result (SpiceDB's API)
            token = az.token(revision)
            for result in results:
                if without_wildcard and result.subject.is_wildcard:
                    continue
                sid, kind = result.subject.id, az.lookup_permissionship(result.conditional)
                info = az.partial(result.missing_parameters)
                yield permission.LookupSubjectsResponse(
                    looked_up_at=token,
                    subject_object_id=sid,
                    excluded_subject_ids=result.excluded,
                    permissionship=kind,
                    partial_caveat_info=info,
                    subject=resolved(subject_object_id=sid, permissionship=kind, partial_caveat_info=info),
                    excluded_subjects=[
                        resolved(subject_object_id=excluded, permissionship=az.HAS)
                        for excluded in result.excluded
                    ],
                )

    # ---- relationships ------------------------------------------------------------------

    def relationship_filter(self, message: Any, has: bool, path: str) -> RelationshipFilter:
        """A filter validated as SpiceDB validates one (see :func:`relationship_filter`)."""
        return relationship_filter(self.system, message, has, path)

    @errors.unary
    async def WriteRelationships(
        self, request: permission.WriteRelationshipsRequest, context: aio.ServicerContext
    ) -> permission.WriteRelationshipsResponse:
        """Apply updates atomically, if every precondition holds."""
        maximum = self.limits.max_updates_per_write
        if len(request.updates) > maximum:
            raise SpiceError(
                "INVALID_ARGUMENT",
                f"too many updates ({len(request.updates)}) for WriteRelationships call "
                f"(maximum: {maximum}); consider using ImportBulkRelationships API instead",
                "ERROR_REASON_TOO_MANY_UPDATES_IN_REQUEST",
                update_count=str(len(request.updates)),
                maximum_updates_allowed=str(maximum),
            )
        self._check_preconditions(request.optional_preconditions)
        if not request.updates and not request.optional_preconditions:
            # SpiceDB's protos allow an empty write: it changes nothing
            return permission.WriteRelationshipsResponse(
                written_at=az.token(await self.system.store.head_revision())
            )
        self._check_precondition_filters(request.optional_preconditions)
        for index, update in enumerate(request.updates):
            az.refuse_ellipsis(update.relationship.subject, f"updates[{index}].relationship.subject")
        updates, preconditions = shared.write_request(request, self.limits)
        revision = await self.system.write_relationships(updates, preconditions)
        return permission.WriteRelationshipsResponse(written_at=az.token(revision))

    def _check_precondition_filters(self, messages: Any) -> None:
        """Preconditions validated as SpiceDB validates them: the operation first (its request
        validation), then the filter as any filter."""
        for index, item in enumerate(messages):
            if item.operation not in (MUST_MATCH, MUST_NOT_MATCH):
                raise SpiceError(
                    "INVALID_ARGUMENT",
                    f"validation error: optional_preconditions[{index}].operation: must not be in list [0]",
                )
            path = f"optional_preconditions[{index}].filter"
            self.relationship_filter(item.filter, item.HasField("filter"), path)

    def _check_preconditions(self, messages: Any) -> None:
        maximum = self.limits.max_updates_per_write
        if len(messages) > maximum:
            raise SpiceError(
                "INVALID_ARGUMENT",
                f"precondition count of {len(messages)} is greater than maximum allowed of {maximum}",
                "ERROR_REASON_TOO_MANY_PRECONDITIONS_IN_REQUEST",
                precondition_count=str(len(messages)),
                maximum_updates_allowed=str(maximum),
            )

    @errors.unary
    async def DeleteRelationships(
        self, request: permission.DeleteRelationshipsRequest, context: aio.ServicerContext
    ) -> permission.DeleteRelationshipsResponse:
        """Delete what matches the filter atomically. With a limit and without
        allow_partial_deletions, more matches than the limit fail the call and delete nothing."""
        flt = self.relationship_filter(
            request.relationship_filter, request.HasField("relationship_filter"), "relationship_filter"
        )
        self._check_preconditions(request.optional_preconditions)
        self._check_precondition_filters(request.optional_preconditions)
        preconditions = shared.preconditions_from(request.optional_preconditions, self.limits)
        limit = limit_of(request.optional_limit, self.limits.max_page_size)
        if limit is not None and not request.optional_allow_partial_deletions:
            await self._refuse_partial(flt, limit, request.relationship_filter)
        result = await self.system.delete_relationships(flt, preconditions, limit)
        return permission.DeleteRelationshipsResponse(
            deleted_at=az.token(result.revision),
            relationships_deleted_count=result.deleted,
            # SpiceDB's datastores report the limit reached as soon as `limit` were deleted,
            # whether or not more matched
            deletion_progress=(
                _DELETE.DELETION_PROGRESS_PARTIAL
                if result.limit_reached or (limit is not None and result.deleted >= limit)
                else _DELETE.DELETION_PROGRESS_COMPLETE
            ),
        )

    async def _refuse_partial(self, flt: RelationshipFilter, limit: int, message: Any) -> None:
        """SpiceDB's error when more than `limit` relationships match a delete that must not
        be partial."""
        page = await self.system.read_relationships(flt, Consistency.fully_consistent(), limit=limit + 1)
        if len(page.relationships) <= limit:
            return
        metadata = {"limit": str(limit), "filter_resource_type": message.resource_type}
        if message.optional_resource_id:
            metadata["filter_resource_id"] = message.optional_resource_id
        if message.optional_relation:
            metadata["filter_relation"] = message.optional_relation
        raise SpiceError(
            "INVALID_ARGUMENT",
            f"found more than {limit} relationships to be deleted and partial deletion was not requested",
            "ERROR_REASON_TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE",
            **metadata,
        )

    @errors.streaming
    async def ReadRelationships(
        self, request: permission.ReadRelationshipsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[permission.ReadRelationshipsResponse]:
        """Relationships matching the filter, in key order, from the cursor on."""
        flt = self.relationship_filter(
            request.relationship_filter, request.HasField("relationship_filter"), "relationship_filter"
        )
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        limit = limit_of(request.optional_limit, self.limits.max_page_size)
        kind = az.cursor_kind(shared.READ_CURSOR, request)
        after = shared.read_cursor(
            request.optional_cursor, request.HasField("optional_cursor"), "optional_cursor", kind
        )
        async for rels, revision in shared.read_pages(
            self.system, self.limits, flt, consistency, after, limit
        ):
            read_at = az.token(revision)
            for rel in rels:
                yield permission.ReadRelationshipsResponse(
                    read_at=read_at,
                    relationship=az.relationship(rel),
                    after_result_cursor=core.Cursor(token=shared.read_cursor_after(rel, kind)),
                )

    async def ImportBulkRelationships(
        self, request_iterator: Any, context: aio.ServicerContext
    ) -> permission.ImportBulkRelationshipsResponse:
        """Create every streamed relationship in one atomic write (all or nothing)."""
        count = await self.imported(request_iterator, context)
        return permission.ImportBulkRelationshipsResponse(num_loaded=count)

    async def imported(self, request_iterator: Any, context: aio.ServicerContext) -> int:
        """How many relationships an import stream created (ImportBulkRelationships and the
        experimental BulkImportRelationships); a failure aborts the call with SpiceDB's error."""
        try:
            count, _ = await shared.import_stream(
                self.system, request_iterator, self.limits.max_relationships_per_import
            )
        except StonetownError as exc:
            await errors.abort(context, exc)
            raise
        return count

    @errors.streaming
    async def ExportBulkRelationships(
        self, request: permission.ExportBulkRelationshipsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[permission.ExportBulkRelationshipsResponse]:
        """Every relationship (or those matching the filter), a page per message, resumable."""
        async for message in self.export(request, permission.ExportBulkRelationshipsResponse):
            yield message

    async def export(self, request: Any, response_type: Any) -> AsyncIterator[Any]:
        """ExportBulkRelationships and the experimental BulkExportRelationships (same fields)."""
        flt = RelationshipFilter()
        if request.HasField("optional_relationship_filter"):
            flt = self.relationship_filter(
                request.optional_relationship_filter, True, "optional_relationship_filter"
            )
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        page = limit_of(request.optional_limit, self.limits.max_page_size) or self.limits.max_page_size
        after = shared.read_cursor(request.optional_cursor, request.HasField("optional_cursor"))
        limits = Limits(max_page_size=page)
        async for rels, _ in shared.read_pages(self.system, limits, flt, consistency, after, None):
            if rels:
                yield response_type(
                    relationships=[az.relationship(rel) for rel in rels],
                    after_result_cursor=core.Cursor(token=shared.read_cursor_after(rels[-1])),
                )
