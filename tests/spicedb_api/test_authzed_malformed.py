"""Malformed requests to the authzed methods the embedded SpiceDB cannot serve (so
tests/spicedb_diff cannot compare them): SchemaService reflection and diff, bulk import and
export, Watch and their Experimental twins. Each gets the code and ErrorReason SpiceDB v1.54's
source gives it (internal/services/v1: schema.go, relationships.go validateRelationshipsFilter,
watch.go, errors.go; protovalidate's request rules give INVALID_ARGUMENT without a reason),
and the store is the same afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from authzed.api.v1 import (
    ComputablePermissionsRequest,
    Consistency,
    Cursor,
    DependentRelationsRequest,
    DiffSchemaRequest,
    ObjectReference,
    ReadRelationshipsRequest,
    Relationship,
    RelationshipFilter,
    RelationshipUpdate,
    SubjectReference,
    SyncClient,
    WatchRequest,
    WriteRelationshipsRequest,
    ZedToken,
)
from authzed.api.v1 import experimental_service_pb2 as experimental
from authzed.api.v1 import permission_service_pb2 as permission
from authzed_support import error_info


def _rel(resource: str, relation: str, subject: str) -> Relationship:
    kind, _, oid = resource.partition(":")
    skind, _, sid = subject.partition(":")
    return Relationship(
        resource=ObjectReference(object_type=kind, object_id=oid),
        relation=relation,
        subject=SubjectReference(object=ObjectReference(object_type=skind, object_id=sid)),
    )


def _import(client: SyncClient, *rels: Relationship) -> Any:
    request = permission.ImportBulkRelationshipsRequest(relationships=rels)
    return client.ImportBulkRelationships(iter([request]))


def _experimental_import(client: SyncClient, *rels: Relationship) -> Any:
    request = experimental.BulkImportRelationshipsRequest(relationships=rels)
    return client.BulkImportRelationships(iter([request]))


def _first(stream: Any) -> Any:
    return next(iter(stream))


def _watch(client: SyncClient, *filters: RelationshipFilter) -> Any:
    return _first(client.Watch(WatchRequest(optional_relationship_filters=filters), timeout=10))


UNKNOWN_DEF = ("FAILED_PRECONDITION", "ERROR_REASON_UNKNOWN_DEFINITION")
UNKNOWN_REL = ("FAILED_PRECONDITION", "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION")
PLAIN_INVALID = ("INVALID_ARGUMENT", None)

# (name, call, (code, reason)): every call made with a client holding the key
CASES: list[tuple[str, Callable[[SyncClient], Any], tuple[str, str | None]]] = [
    (
        "computable_unknown_definition",
        lambda c: c.ComputablePermissions(
            ComputablePermissionsRequest(definition_name="nodef", relation_name="x1")
        ),
        UNKNOWN_DEF,
    ),
    (
        "computable_unknown_relation",
        lambda c: c.ComputablePermissions(
            ComputablePermissionsRequest(definition_name="document", relation_name="nope")
        ),
        UNKNOWN_REL,
    ),
    (
        "dependent_of_a_relation",  # NotAPermissionError
        lambda c: c.DependentRelations(
            DependentRelationsRequest(definition_name="document", permission_name="viewer")
        ),
        ("INVALID_ARGUMENT", "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION"),
    ),
    (
        "dependent_unknown_definition",
        lambda c: c.DependentRelations(
            DependentRelationsRequest(definition_name="nodef", permission_name="view")
        ),
        UNKNOWN_DEF,
    ),
    (
        "diff_unparsable",
        lambda c: c.DiffSchema(DiffSchemaRequest(comparison_schema="definition {")),
        ("INVALID_ARGUMENT", "ERROR_REASON_SCHEMA_PARSE_ERROR"),
    ),
    (
        "experimental_diff_unparsable",
        lambda c: c.ExperimentalDiffSchema(
            experimental.ExperimentalDiffSchemaRequest(comparison_schema="x {")
        ),
        ("INVALID_ARGUMENT", "ERROR_REASON_SCHEMA_PARSE_ERROR"),
    ),
    (
        "export_garbage_cursor",
        lambda c: list(
            c.ExportBulkRelationships(permission.ExportBulkRelationshipsRequest(optional_cursor=Cursor(token="x")))
        ),
        ("INVALID_ARGUMENT", "ERROR_REASON_INVALID_CURSOR"),
    ),
    (
        "export_oversized_limit",
        lambda c: list(
            c.ExportBulkRelationships(permission.ExportBulkRelationshipsRequest(optional_limit=4_294_967_295))
        ),
        ("INVALID_ARGUMENT", "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT"),
    ),
    (
        "export_unknown_type_filter",
        lambda c: list(
            c.ExportBulkRelationships(
                permission.ExportBulkRelationshipsRequest(
                    optional_relationship_filter=RelationshipFilter(resource_type="nodef")
                )
            )
        ),
        UNKNOWN_DEF,
    ),
    (
        "experimental_export_garbage_cursor",
        lambda c: list(
            c.BulkExportRelationships(experimental.BulkExportRelationshipsRequest(optional_cursor=Cursor(token="x")))
        ),
        ("INVALID_ARGUMENT", "ERROR_REASON_INVALID_CURSOR"),
    ),
    ("import_unknown_type", lambda c: _import(c, _rel("nodef:x", "viewer", "user:a")), UNKNOWN_DEF),
    ("import_bad_id", lambda c: _import(c, _rel("document:bad id", "viewer", "user:a")), PLAIN_INVALID),
    (
        "import_into_a_permission",
        lambda c: _import(c, _rel("document:x", "view", "user:a")),
        ("INVALID_ARGUMENT", "ERROR_REASON_CANNOT_UPDATE_PERMISSION"),
    ),
    (
        "import_good_then_bad",  # all or nothing: the good one is not written either
        lambda c: _import(c, _rel("document:mal1", "viewer", "user:a"), _rel("nodef:x", "viewer", "user:a")),
        UNKNOWN_DEF,
    ),
    (
        "experimental_import_unknown_type",
        lambda c: _experimental_import(c, _rel("nodef:x", "viewer", "user:a")),
        UNKNOWN_DEF,
    ),
    (
        "watch_garbage_start",
        lambda c: _first(c.Watch(WatchRequest(optional_start_cursor=ZedToken(token="garbage")), timeout=10)),
        PLAIN_INVALID,
    ),
    (
        "watch_types_and_filters",
        lambda c: _first(
            c.Watch(
                WatchRequest(
                    optional_object_types=["document"],
                    optional_relationship_filters=[RelationshipFilter(resource_type="document")],
                ),
                timeout=10,
            )
        ),
        PLAIN_INVALID,
    ),
    (
        "watch_empty_filter",
        lambda c: _watch(c, RelationshipFilter()),
        ("INVALID_ARGUMENT", "ERROR_REASON_INVALID_FILTER"),
    ),
    (
        "watch_unknown_type_filter",
        lambda c: _watch(c, RelationshipFilter(resource_type="nodef")),
        UNKNOWN_DEF,
    ),
    (
        "watch_unknown_relation_filter",
        lambda c: _watch(c, RelationshipFilter(resource_type="document", optional_relation="no1")),
        UNKNOWN_REL,
    ),
]


def _everything(client: SyncClient) -> list[str]:
    request = ReadRelationshipsRequest(
        relationship_filter=RelationshipFilter(resource_type="document"),
        consistency=Consistency(fully_consistent=True),
    )
    return sorted(str(r.relationship) for r in client.ReadRelationships(request))


@pytest.mark.parametrize(("name", "call", "expected"), CASES, ids=[case[0] for case in CASES])
def test_malformed_requests_get_spicedbs_code_and_reason_and_change_nothing(
    client: SyncClient, name: str, call: Callable[[SyncClient], Any], expected: tuple[str, str | None]
) -> None:
    before = _everything(client)
    with pytest.raises(grpc.RpcError) as caught:
        call(client)
    info = error_info(caught.value)
    assert (caught.value.code().name, info.reason if info else None) == expected, caught.value.details()
    assert _everything(client) == before


def test_unknown_watch_kinds_are_ignored_as_spicedb_does(client: SyncClient) -> None:
    """SpiceDB's request rules allow any WatchKind value and its watch ignores one it does not
    know (convertWatchKindToContent): the stream opens and streams the updates."""
    start = _written(client, "document:watch1")
    _written(client, "document:watch2")
    request = WatchRequest(optional_update_kinds=[9], optional_start_cursor=start)
    stream = client.Watch(request, timeout=10)
    first = _first(stream)
    stream.cancel()
    assert [u.relationship.resource.object_id for u in first.updates] == ["watch2"]


def _written(client: SyncClient, resource: str) -> ZedToken:
    """Write one relationship; the token it was written at."""
    touch = RelationshipUpdate.Operation.OPERATION_TOUCH
    update = RelationshipUpdate(operation=touch, relationship=_rel(resource, "viewer", "user:w"))
    return client.WriteRelationships(WriteRelationshipsRequest(updates=[update])).written_at
