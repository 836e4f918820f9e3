"""PermissionService: Check, CheckBulk, Expand, LookupResources, LookupSubjects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from stonetown.api import convert as cv
from stonetown.api import tokens
from stonetown.api.limits import Limits
from stonetown.api.pb import core, permission, permission_grpc
from stonetown.api.servicers import shared
from stonetown.api.trace import trace_to_proto
from stonetown.core.errors import StonetownError
from stonetown.core.relationship import Relationship
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckResult, LookupResourceResult, LookupSubjectResult

_LOOKUP_RESOURCES_CURSOR = "lookup_resources"
_LOOKUP_SUBJECTS_CURSOR = "lookup_subjects"


def _partial(missing: tuple[str, ...]) -> core.PartialCaveatInfo | None:
    return core.PartialCaveatInfo(missing_required_context=list(missing)) if missing else None


def _resources_message(
    found: list[LookupResourceResult], revision: int
) -> permission.LookupResourcesResponse:
    """One stream message of LookupResources: the first of `found` in its own fields, the
    others (if any) in additional_results, each with its cursor."""
    cursors = tokens.encode_cursors(_LOOKUP_RESOURCES_CURSOR, [result.resource_id for result in found])
    first = found[0]
    message = permission.LookupResourcesResponse(
        looked_up_at=tokens.token_to_proto(revision),
        resource_object_id=first.resource_id,
        permissionship=cv.lookup_permissionship(first.conditional),
        partial_caveat_info=_partial(first.missing_parameters),
        after_result_cursor=core.Cursor(token=cursors[0]),
    )
    add, kind = message.additional_results.add, cv.lookup_permissionship  # filled in place: not copied
    for result, cursor in zip(found[1:], cursors[1:], strict=True):
        item = add(resource_object_id=result.resource_id, permissionship=kind(result.conditional))
        if result.missing_parameters:
            item.partial_caveat_info.missing_required_context.extend(result.missing_parameters)
        item.after_result_cursor.token = cursor
    return message


def _subjects_message(found: list[LookupSubjectResult], revision: int) -> permission.LookupSubjectsResponse:
    """One stream message of LookupSubjects, laid out as :func:`_resources_message`'s."""
    cursors = tokens.encode_cursors(_LOOKUP_SUBJECTS_CURSOR, [result.subject.id for result in found])
    first = found[0]
    message = permission.LookupSubjectsResponse(
        looked_up_at=tokens.token_to_proto(revision),
        subject=cv.subject_to_proto(first.subject),
        permissionship=cv.lookup_permissionship(first.conditional),
        partial_caveat_info=_partial(first.missing_parameters),
        excluded_subject_ids=first.excluded,
        after_result_cursor=core.Cursor(token=cursors[0]),
    )
    add, kind = message.additional_results.add, cv.lookup_permissionship
    for result, cursor in zip(found[1:], cursors[1:], strict=True):
        item = add(permissionship=kind(result.conditional), excluded_subject_ids=result.excluded)
        subject = result.subject
        item.subject.object.object_type = subject.type
        item.subject.object.object_id = subject.id
        item.subject.optional_relation = subject.relation
        if result.missing_parameters:
            item.partial_caveat_info.missing_required_context.extend(result.missing_parameters)
        item.after_result_cursor.token = cursor
    return message


class PermissionServicer(permission_grpc.PermissionServiceServicer):
    """Permission queries over one PermissionSystem."""

    def __init__(self, system: PermissionSystem, limits: Limits) -> None:
        self.system = system
        self.limits = limits
        # Check responses without caveat details, by (revision, permissionship value): nearly
        # every answer is one of two messages. Never changed once made, so they are shared.
        self._check_responses: dict[tuple[int, str], permission.CheckResponse] = {}

    def _contextual(self, messages: Any) -> list[Relationship]:
        self.limits.check_count(
            "contextual_relationships",
            len(messages),
            self.limits.max_contextual_relationships,
            "relationships",
        )
        return cv.relationships_from_proto(messages, "contextual_relationships")

    async def Check(
        self, request: permission.CheckRequest, context: aio.ServicerContext
    ) -> permission.CheckResponse:
        """Does the subject have the permission on the resource? With `with_tracing`, the
        response also carries the resolution tree (engine/explain.py)."""
        contextual = (
            self._contextual(request.contextual_relationships) if request.contextual_relationships else ()
        )
        if request.with_tracing:
            tree, result = await shared.explained_check(self.system, request, contextual)
            response = permission.CheckResponse()
            response.CopyFrom(self._check_response(result))
            response.debug_trace.CopyFrom(trace_to_proto(tree))
            return response
        result = await shared.check(self.system, request, contextual)
        return self._check_response(result)

    def _check_response(self, result: CheckResult) -> permission.CheckResponse:
        if result.missing_parameters:
            response = permission.CheckResponse(
                checked_at=tokens.token_to_proto(result.revision),
                permissionship=cv.permissionship_to_proto(result.permissionship),
            )
            response.partial_caveat_info.missing_required_context.extend(result.missing_parameters)
            return response
        key = (result.revision, result.permissionship._value_)  # hashing the member is slower
        response = self._check_responses.get(key)
        if response is None:
            if len(self._check_responses) >= 8:
                self._check_responses.clear()  # older revisions are rarely asked for again
            response = self._check_responses[key] = permission.CheckResponse(
                checked_at=tokens.token_to_proto(result.revision),
                permissionship=cv.permissionship_to_proto(result.permissionship),
            )
        return response

    async def CheckBulk(
        self, request: permission.CheckBulkRequest, context: aio.ServicerContext
    ) -> permission.CheckBulkResponse:
        """Many checks at one revision; an item that is malformed or fails gets its own error."""
        self.limits.check_count("items", len(request.items), self.limits.max_checks_per_bulk, "checks")
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        contextual = (
            self._contextual(request.contextual_relationships) if request.contextual_relationships else ()
        )
        parsed = shared.parse_check_items(request.items)
        revision, outcomes = await shared.check_bulk(self.system, parsed, consistency, contextual)
        response = permission.CheckBulkResponse(checked_at=tokens.token_to_proto(revision))
        for item, answer in zip(request.items, outcomes, strict=True):
            pair = response.pairs.add()
            pair.request.CopyFrom(item)
            if isinstance(answer, CheckResult):
                pair.item.permissionship = cv.permissionship_to_proto(answer.permissionship)
                if answer.missing_parameters:
                    pair.item.partial_caveat_info.missing_required_context.extend(answer.missing_parameters)
            else:
                code = answer.code if isinstance(answer, StonetownError) else "INTERNAL"
                pair.error.code = code
                pair.error.message = (
                    str(answer) if isinstance(answer, StonetownError) else type(answer).__name__
                )
        return response

    async def Expand(
        self, request: permission.ExpandRequest, context: aio.ServicerContext
    ) -> permission.ExpandResponse:
        """The userset tree of a permission on a resource."""
        resource = cv.object_from_proto(request.resource, request.HasField("resource"), "resource")
        name = cv.check_relation_name(request.permission, "permission")
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        tree, revision = await self.system.expand(resource, name, consistency, recursive=request.recursive)
        response = permission.ExpandResponse(expanded_at=tokens.token_to_proto(revision))
        cv.expand_to_proto(tree, response.tree_root)  # in place: see expand_to_proto
        return response

    async def LookupResources(
        self, request: permission.LookupResourcesRequest, context: aio.ServicerContext
    ) -> AsyncIterator[permission.LookupResourcesResponse]:
        """Resources of a type on which the subject has the permission, sorted by id."""
        resource_type = cv.check_type_name(request.resource_object_type, "resource_object_type")
        name = cv.check_relation_name(request.permission, "permission")
        subject = cv.subject_from_proto(request.subject, request.HasField("subject"), "subject")
        consistency = tokens.consistency_from_proto(request.consistency, request.HasField("consistency"))
        caveat_context = cv.struct_to_dict(request.context, request.HasField("context"))
        contextual = self._contextual(request.contextual_relationships)
        limit = self.limits.page_size("optional_limit", request.optional_limit)
        cursor = tokens.cursor_from_proto(
            request.optional_cursor,
            request.HasField("optional_cursor"),
            _LOOKUP_RESOURCES_CURSOR,
            1,
            "optional_cursor",
        )
        results = self.system.lookup_resource_batches(
            resource_type,
            name,
            subject,
            consistency,
            caveat_context,
            contextual,
            after=cursor[0] if cursor else None,
            limit=limit,
        )
        # Several results per message when asked: one stream message costs far more in grpc
        # than one more entry of a repeated field.
        per_message = max(1, min(request.optional_results_per_message, self.limits.max_page_size))
        async for found, revision in shared.regrouped(results, per_message):
            yield _resources_message(found, revision)

    async def LookupSubjects(
        self, request: permission.LookupSubjectsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[permission.LookupSubjectsResponse]:
        """Subjects of a type that have the permission on the resource, sorted by id."""
        query = shared.subjects_query(request)
        contextual = self._contextual(request.contextual_relationships)
        limit = self.limits.page_size("optional_limit", request.optional_limit)
        cursor = tokens.cursor_from_proto(
            request.optional_cursor,
            request.HasField("optional_cursor"),
            _LOOKUP_SUBJECTS_CURSOR,
            1,
            "optional_cursor",
        )
        results = self.system.lookup_subject_batches(
            query.resource,
            query.permission,
            query.subject_type,
            query.subject_relation,
            query.consistency,
            query.context,
            contextual,
            after=cursor[0] if cursor else None,
            limit=limit,
        )
        per_message = max(1, min(request.optional_results_per_message, self.limits.max_page_size))
        async for found, revision in shared.regrouped(results, per_message):
            yield _subjects_message(found, revision)
