"""What the sync and async clients share: connection settings, request building, response
parsing and the read-your-writes token. Only the transport differs between them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from stonetown.api import convert as cv
from stonetown.api.pb import core, permission, relationship, schema
from stonetown.api.trace import trace_from_proto
from stonetown.client.errors import from_item_error
from stonetown.client.notation import (
    CheckLike,
    FilterLike,
    ObjectLike,
    RelationshipLike,
    SubjectLike,
    to_check,
    to_filter,
    to_object,
    to_relationship,
    to_subject,
)
from stonetown.client.results import (
    CheckOutcome,
    ConsistencyMode,
    DeleteOutcome,
    ExpandOutcome,
    FoundResource,
    FoundSubject,
    ReadConsistency,
    SchemaOutcome,
    WatchEvent,
)
from stonetown.core.errors import InvalidArgument, StonetownError
from stonetown.core.relationship import Relationship, SubjectRef
from stonetown.engine.datastore import Precondition, Update, UpdateOp

ConsistencyLike = ReadConsistency | str | None
DEFAULT_ENDPOINT = "127.0.0.1:50051"
# LookupResources results asked per stream message (the server caps it at its page limit)
LOOKUP_RESULTS_PER_MESSAGE = 1000


def _consistency_message(choice: ReadConsistency) -> core.Consistency:
    if choice.mode is ConsistencyMode.FULLY_CONSISTENT:
        return core.Consistency(fully_consistent=True)
    if choice.mode is ConsistencyMode.MINIMIZE_LATENCY or not choice.token:
        return core.Consistency(minimize_latency=True)
    if choice.mode is ConsistencyMode.AT_LEAST_AS_FRESH:
        return core.Consistency(at_least_as_fresh=core.ZedToken(token=choice.token))
    return core.Consistency(at_exact_snapshot=core.ZedToken(token=choice.token))


def _missing(info: core.PartialCaveatInfo) -> tuple[str, ...]:
    return tuple(info.missing_required_context)


class ClientBase:
    """Settings and request/response handling common to Client and AsyncClient.

    ``read_your_writes``: remember the token of the last write (or schema write) and read
    at least as fresh as it whenever a call does not name a consistency. ``channel_options``:
    more grpc channel options, e.g. ``[("grpc.use_local_subchannel_pool", 1)]`` for a
    connection of its own (grpc otherwise shares one among a process's channels to an address).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        preshared_key: str | None = None,
        tls: bool = False,
        ca_cert: str | bytes | None = None,
        server_name: str | None = None,
        read_your_writes: bool = False,
        timeout: float | None = 30.0,
        max_message_bytes: int = 4 * 1024 * 1024,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.endpoint = endpoint
        self.read_your_writes = read_your_writes
        self.timeout = timeout
        self.last_write_token: str | None = None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"bearer {preshared_key}"),) if preshared_key else ()
        )
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *channel_options,
        ]
        if server_name:
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._credentials: grpc.ChannelCredentials | None = None
        if tls or ca_cert is not None:
            root = Path(ca_cert).read_bytes() if isinstance(ca_cert, str) else ca_cert
            self._credentials = grpc.ssl_channel_credentials(root_certificates=root)

    # ---------------------------------------------------------------- helpers

    def _consistency(self, consistency: ConsistencyLike) -> core.Consistency:
        if consistency is None:
            if self.read_your_writes and self.last_write_token:
                return _consistency_message(ReadConsistency.at_least_as_fresh(self.last_write_token))
            return core.Consistency(minimize_latency=True)
        if isinstance(consistency, str):
            try:
                mode = ConsistencyMode(consistency)
            except ValueError:
                raise InvalidArgument(
                    f"consistency {consistency!r}: expected minimize_latency or fully_consistent"
                ) from None
            if mode not in (ConsistencyMode.MINIMIZE_LATENCY, ConsistencyMode.FULLY_CONSISTENT):
                raise InvalidArgument(f"consistency {consistency!r} needs a token: use ReadConsistency")
            return _consistency_message(ReadConsistency(mode))
        return _consistency_message(consistency)

    def _remember(self, token: str) -> str:
        self.last_write_token = token
        return token

    @staticmethod
    def _contextual(contextual: Iterable[RelationshipLike]) -> list[core.Relationship]:
        return [cv.relationship_to_proto(to_relationship(item)) for item in contextual]

    # ---------------------------------------------------------------- requests

    def _check_request(
        self,
        resource: ObjectLike,
        permission_name: str | None,
        subject: SubjectLike | None,
        context: dict[str, Any] | None,
        contextual: Iterable[RelationshipLike],
        consistency: ConsistencyLike,
        with_tracing: bool = False,
    ) -> permission.CheckRequest:
        if permission_name is None and subject is None and isinstance(resource, str):
            item = to_check(resource, context)
        elif permission_name is None or subject is None:
            raise InvalidArgument("check needs a resource, a permission and a subject (or one tuple string)")
        else:
            item = to_check((resource, permission_name, subject), context)  # type: ignore[arg-type]
        return permission.CheckRequest(
            consistency=self._consistency(consistency),
            resource=cv.object_to_proto(item.resource),
            permission=item.permission,
            subject=cv.subject_to_proto(item.subject),
            context=cv.dict_to_struct(item.context),
            contextual_relationships=self._contextual(contextual),
            with_tracing=with_tracing,
        )

    def _check_bulk_request(
        self,
        checks: Iterable[CheckLike],
        contextual: Iterable[RelationshipLike],
        consistency: ConsistencyLike,
    ) -> permission.CheckBulkRequest:
        request = permission.CheckBulkRequest(
            consistency=self._consistency(consistency), contextual_relationships=self._contextual(contextual)
        )
        for check in checks:
            item = to_check(check)
            request.items.append(
                permission.CheckBulkRequestItem(
                    resource=cv.object_to_proto(item.resource),
                    permission=item.permission,
                    subject=cv.subject_to_proto(item.subject),
                    context=cv.dict_to_struct(item.context),
                )
            )
        return request

    def _expand_request(
        self, resource: ObjectLike, permission_name: str, recursive: bool, consistency: ConsistencyLike
    ) -> permission.ExpandRequest:
        return permission.ExpandRequest(
            consistency=self._consistency(consistency),
            resource=cv.object_to_proto(to_object(resource)),
            permission=permission_name,
            recursive=recursive,
        )

    def _lookup_resources_request(
        self,
        resource_type: str,
        permission_name: str,
        subject: SubjectLike,
        context: dict[str, Any] | None,
        contextual: Iterable[RelationshipLike],
        consistency: ConsistencyLike,
        limit: int,
        cursor: str | None,
    ) -> permission.LookupResourcesRequest:
        return permission.LookupResourcesRequest(
            consistency=self._consistency(consistency),
            resource_object_type=resource_type,
            permission=permission_name,
            subject=cv.subject_to_proto(to_subject(subject)),
            context=cv.dict_to_struct(context),
            contextual_relationships=self._contextual(contextual),
            optional_limit=limit,
            optional_cursor=core.Cursor(token=cursor) if cursor else None,
            optional_results_per_message=LOOKUP_RESULTS_PER_MESSAGE,
        )

    def _lookup_subjects_request(
        self,
        resource: ObjectLike,
        permission_name: str,
        subject_type: str,
        context: dict[str, Any] | None,
        contextual: Iterable[RelationshipLike],
        consistency: ConsistencyLike,
        limit: int,
        cursor: str | None,
    ) -> permission.LookupSubjectsRequest:
        subject_type, _, subject_relation = subject_type.partition("#")
        return permission.LookupSubjectsRequest(
            consistency=self._consistency(consistency),
            resource=cv.object_to_proto(to_object(resource)),
            permission=permission_name,
            subject_object_type=subject_type,
            optional_subject_relation=subject_relation,
            context=cv.dict_to_struct(context),
            contextual_relationships=self._contextual(contextual),
            optional_limit=limit,
            optional_cursor=core.Cursor(token=cursor) if cursor else None,
            optional_results_per_message=LOOKUP_RESULTS_PER_MESSAGE,
        )

    @staticmethod
    def _write_request(
        touch: Iterable[RelationshipLike],
        create: Iterable[RelationshipLike],
        delete: Iterable[RelationshipLike],
        preconditions: Sequence[Precondition],
    ) -> relationship.WriteRelationshipsRequest:
        updates = [
            *(Update(UpdateOp.CREATE, to_relationship(item)) for item in create),
            *(Update(UpdateOp.TOUCH, to_relationship(item)) for item in touch),
            *(Update(UpdateOp.DELETE, to_relationship(item)) for item in delete),
        ]
        return relationship.WriteRelationshipsRequest(
            updates=[cv.update_to_proto(update) for update in updates],
            optional_preconditions=[cv.precondition_to_proto(item) for item in preconditions],
        )

    @staticmethod
    def _import_requests(
        relationships: Iterable[RelationshipLike], chunk_size: int
    ) -> Iterator[relationship.ImportRelationshipsRequest]:
        """The messages of an import stream, `chunk_size` relationships each."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        chunk: list[core.Relationship] = []
        for item in relationships:
            chunk.append(cv.relationship_to_proto(to_relationship(item)))
            if len(chunk) >= chunk_size:
                yield relationship.ImportRelationshipsRequest(relationships=chunk)
                chunk = []
        if chunk:
            yield relationship.ImportRelationshipsRequest(relationships=chunk)

    def _read_request(
        self, filter: FilterLike | None, consistency: ConsistencyLike, limit: int, cursor: str | None
    ) -> relationship.ReadRelationshipsRequest:
        return relationship.ReadRelationshipsRequest(
            consistency=self._consistency(consistency),
            relationship_filter=cv.filter_to_proto(to_filter(filter)),
            optional_limit=limit,
            optional_cursor=core.Cursor(token=cursor) if cursor else None,
        )

    @staticmethod
    def _delete_request(
        filter: FilterLike, preconditions: Sequence[Precondition], limit: int
    ) -> relationship.DeleteRelationshipsRequest:
        return relationship.DeleteRelationshipsRequest(
            relationship_filter=cv.filter_to_proto(to_filter(filter)),
            optional_preconditions=[cv.precondition_to_proto(item) for item in preconditions],
            optional_limit=limit,
        )

    @staticmethod
    def _watch_request(resource_types: Sequence[str], after: str | None) -> relationship.WatchRequest:
        return relationship.WatchRequest(
            optional_object_types=list(resource_types),
            optional_start_cursor=core.ZedToken(token=after) if after else None,
        )

    # ---------------------------------------------------------------- responses

    @staticmethod
    def _check_outcome(response: permission.CheckResponse) -> CheckOutcome:
        return CheckOutcome(
            cv.permissionship_from_proto(response.permissionship),
            response.checked_at.token,
            _missing(response.partial_caveat_info),
            trace_from_proto(response.debug_trace) if response.HasField("debug_trace") else None,
        )

    @staticmethod
    def _check_bulk_outcomes(response: permission.CheckBulkResponse) -> list[CheckOutcome | StonetownError]:
        token = response.checked_at.token
        outcomes: list[CheckOutcome | StonetownError] = []
        for pair in response.pairs:
            if pair.WhichOneof("response") == "error":
                outcomes.append(from_item_error(pair.error.code, pair.error.message))
            else:
                outcomes.append(
                    CheckOutcome(
                        cv.permissionship_from_proto(pair.item.permissionship),
                        token,
                        _missing(pair.item.partial_caveat_info),
                    )
                )
        return outcomes

    @staticmethod
    def _expand_outcome(response: permission.ExpandResponse) -> ExpandOutcome:
        return ExpandOutcome(cv.expand_from_proto(response.tree_root), response.expanded_at.token)

    @staticmethod
    def _found_resources(response: permission.LookupResourcesResponse) -> list[FoundResource]:
        """Every result one stream message carries: its own, then its additional ones."""
        token = response.looked_up_at.token
        conditional = permission.PERMISSIONSHIP_CONDITIONAL_PERMISSION
        return [
            FoundResource(
                result.resource_object_id,
                result.permissionship == conditional,
                # only conditional results carry caveat info: skip the sub-message otherwise
                _missing(result.partial_caveat_info) if result.HasField("partial_caveat_info") else (),
                result.after_result_cursor.token,
                token,
            )
            for result in (response, *response.additional_results)
        ]

    @staticmethod
    def _found_subjects(response: permission.LookupSubjectsResponse) -> list[FoundSubject]:
        """Every result one stream message carries: its own, then its additional ones."""
        token = response.looked_up_at.token
        conditional = permission.PERMISSIONSHIP_CONDITIONAL_PERMISSION
        return [
            FoundSubject(
                SubjectRef(result.subject.object.object_type, result.subject.object.object_id,
                           result.subject.optional_relation),
                result.permissionship == conditional,
                _missing(result.partial_caveat_info) if result.HasField("partial_caveat_info") else (),
                tuple(result.excluded_subject_ids),
                result.after_result_cursor.token,
                token,
            )
            for result in (response, *response.additional_results)
        ]  # fmt: skip

    @staticmethod
    def _relationship(response: relationship.ReadRelationshipsResponse) -> Relationship:
        return cv.relationship_from_proto(response.relationship, True, "relationship")

    @staticmethod
    def _delete_outcome(response: relationship.DeleteRelationshipsResponse) -> DeleteOutcome:
        return DeleteOutcome(
            response.deleted_at.token,
            response.relationships_deleted_count,
            response.deletion_progress == relationship.DeleteRelationshipsResponse.DELETION_PROGRESS_PARTIAL,
        )

    @staticmethod
    def _watch_event(response: relationship.WatchResponse) -> WatchEvent:
        return WatchEvent(
            tuple(cv.change_from_proto(update) for update in response.updates),
            response.changes_through.token,
            response.schema_changed,
        )

    @staticmethod
    def _schema_outcome(response: schema.ReadSchemaResponse) -> SchemaOutcome:
        return SchemaOutcome(response.schema_text, response.read_at.token)
