"""authzed.api.v1.PermissionsService over a real server: answers, tokens, cursors, limits,
caveats, expiration, and errors with SpiceDB's codes and ErrorReasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from authzed.api.v1 import (
    CheckBulkPermissionsRequest,
    CheckBulkPermissionsRequestItem,
    CheckPermissionRequest,
    CheckPermissionResponse,
    Consistency,
    ContextualizedCaveat,
    Cursor,
    DeleteRelationshipsRequest,
    DeleteRelationshipsResponse,
    ExpandPermissionTreeRequest,
    LookupResourcesRequest,
    LookupSubjectsRequest,
    ObjectReference,
    Precondition,
    ReadRelationshipsRequest,
    Relationship,
    RelationshipFilter,
    RelationshipUpdate,
    SubjectReference,
    SyncClient,
    WriteRelationshipsRequest,
    WriteSchemaRequest,
    ZedToken,
)
from authzed.api.v1.permission_service_pb2 import (
    LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION,
    ExportBulkRelationshipsRequest,
    ImportBulkRelationshipsRequest,
)
from authzed_support import error_info
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from grpcutil import insecure_bearer_token_credentials

from stonetown import Client
from stonetown.api.pb import core as own_core
from stonetown.api.pb import permission as own_permission
from stonetown.client import ReadConsistency
from stonetown.core.errors import StonetownError
from stonetown.testing import TestingServer

HAS = CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
NO = CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION
CONDITIONAL = CheckPermissionResponse.PERMISSIONSHIP_CONDITIONAL_PERMISSION
FRESH = Consistency(fully_consistent=True)
TOUCH = RelationshipUpdate.Operation.OPERATION_TOUCH
CREATE = RelationshipUpdate.Operation.OPERATION_CREATE


def obj(text: str) -> ObjectReference:
    kind, _, oid = text.partition(":")
    return ObjectReference(object_type=kind, object_id=oid)


def subj(text: str) -> SubjectReference:
    ref, _, relation = text.partition("#")
    return SubjectReference(object=obj(ref), optional_relation=relation)


def rel(text: str, caveat: str | None = None, expires: datetime | None = None) -> Relationship:
    resource, _, rest = text.partition("#")
    relation, _, subject = rest.partition("@")
    message = Relationship(resource=obj(resource), relation=relation, subject=subj(subject))
    if caveat:
        message.optional_caveat.CopyFrom(ContextualizedCaveat(caveat_name=caveat))
    if expires:
        stamp = Timestamp()
        stamp.FromDatetime(expires)
        message.optional_expires_at.CopyFrom(stamp)
    return message


def day(value: object) -> Struct:
    context = Struct()
    context.update({"day": value})
    return context


def typed_caveat(uid: str) -> Relationship:
    """A caveated grant whose stored context has the wrong type for `day` (a string)."""
    grant = rel(f"document:{uid}#viewer@user:bad", "on_weekday")
    grant.optional_caveat.context.CopyFrom(day(5))
    return grant


def check_bad_context(client: SyncClient, resource: str) -> int:
    """Check a caveated grant on `resource` with a context whose `day` is not a string."""
    grant = rel(f"{resource}#viewer@user:cav", "on_weekday")
    client.WriteRelationships(
        WriteRelationshipsRequest(updates=[RelationshipUpdate(operation=TOUCH, relationship=grant)])
    )
    return check(client, resource, "view", "user:cav", context=day(5))


def write(client: SyncClient, *texts: str, op: int = TOUCH, **kwargs: object) -> ZedToken:
    updates = [RelationshipUpdate(operation=op, relationship=rel(t)) for t in texts]
    return client.WriteRelationships(WriteRelationshipsRequest(updates=updates, **kwargs)).written_at


def check(client: SyncClient, resource: str, permission: str, subject: str, **kwargs: object) -> int:
    kwargs.setdefault("consistency", FRESH)
    request = CheckPermissionRequest(
        resource=obj(resource), permission=permission, subject=subj(subject), **kwargs
    )
    return client.CheckPermission(request).permissionship


def failure(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        result = call()  # type: ignore[operator]
        if hasattr(result, "__iter__") and not hasattr(result, "ByteSize"):
            list(result)
    return caught.value


def test_check_tokens_and_the_four_consistency_modes(client: SyncClient, uid: str) -> None:
    token = write(client, f"document:{uid}#viewer@user:ana")
    assert check(client, f"document:{uid}", "view", "user:ana") == HAS
    assert check(client, f"document:{uid}", "view", "user:bob") == NO
    later = write(client, f"document:{uid}#banned@user:ana")
    at_first = Consistency(at_exact_snapshot=token)
    assert check(client, f"document:{uid}", "view", "user:ana", consistency=at_first) == HAS
    assert (
        check(client, f"document:{uid}", "view", "user:ana", consistency=Consistency(at_least_as_fresh=later))
        == NO
    )
    assert check(
        client, f"document:{uid}", "view", "user:ana", consistency=Consistency(minimize_latency=True)
    ) in (
        HAS,
        NO,
    )
    response = client.CheckPermission(
        CheckPermissionRequest(
            resource=obj(f"document:{uid}"), permission="view", subject=subj("user:ana"), consistency=FRESH
        )
    )
    assert response.checked_at.token


def test_tokens_are_shared_with_stonetown_v1(server, client: SyncClient, uid: str) -> None:
    token = write(client, f"document:{uid}#owner@user:ana")
    with Client(server.address, preshared_key="authzed-test-key") as own:
        result = own.check(
            f"document:{uid}", "edit", "user:ana", consistency=ReadConsistency.at_exact_snapshot(token.token)
        )
        assert result.allowed


def test_caveats_conditional_and_context(client: SyncClient, uid: str) -> None:
    client.WriteRelationships(
        WriteRelationshipsRequest(
            updates=[
                RelationshipUpdate(
                    operation=TOUCH, relationship=rel(f"document:{uid}#viewer@user:cat", "on_weekday")
                )
            ]
        )
    )
    response = client.CheckPermission(
        CheckPermissionRequest(
            resource=obj(f"document:{uid}"), permission="view", subject=subj("user:cat"), consistency=FRESH
        )
    )
    assert response.permissionship == CONDITIONAL
    assert list(response.partial_caveat_info.missing_required_context) == ["day"]
    context = Struct()
    context.update({"day": "mon"})
    assert check(client, f"document:{uid}", "view", "user:cat", context=context) == HAS
    context.update({"day": "sun"})
    assert check(client, f"document:{uid}", "view", "user:cat", context=context) == NO
    found = list(
        client.LookupResources(
            LookupResourcesRequest(
                resource_object_type="document",
                permission="view",
                subject=subj("user:cat"),
                consistency=FRESH,
            )
        )
    )
    mine = [r for r in found if r.resource_object_id == uid]
    assert mine and mine[0].permissionship == LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION


def test_expiration_and_wildcards_and_subject_sets(client: SyncClient, uid: str) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    future = datetime.now(UTC) + timedelta(days=1)
    updates = [
        RelationshipUpdate(operation=TOUCH, relationship=rel(f"document:{uid}#guest@user:old", expires=past)),
        RelationshipUpdate(
            operation=TOUCH, relationship=rel(f"document:{uid}#guest@user:new", expires=future)
        ),
        RelationshipUpdate(operation=TOUCH, relationship=rel(f"team:{uid}#member@user:tim")),
        RelationshipUpdate(operation=TOUCH, relationship=rel(f"document:{uid}#editor@team:{uid}#member")),
        RelationshipUpdate(operation=TOUCH, relationship=rel(f"document:{uid}w#viewer@user:*")),
    ]
    client.WriteRelationships(WriteRelationshipsRequest(updates=updates))
    assert check(client, f"document:{uid}", "view", "user:old") == NO
    assert check(client, f"document:{uid}", "view", "user:new") == HAS
    assert check(client, f"document:{uid}", "edit", "user:tim") == HAS
    assert check(client, f"document:{uid}w", "view", "user:anyone") == HAS
    read = list(
        client.ReadRelationships(
            ReadRelationshipsRequest(
                relationship_filter=RelationshipFilter(
                    resource_type="document", optional_resource_id=uid, optional_relation="guest"
                ),
                consistency=FRESH,
            )
        )
    )
    assert [r.relationship.subject.object.object_id for r in read] == ["new"]
    assert read[0].relationship.optional_expires_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    subjects = list(
        client.LookupSubjects(
            LookupSubjectsRequest(
                resource=obj(f"document:{uid}w"),
                permission="view",
                subject_object_type="user",
                consistency=FRESH,
            )
        )
    )
    assert [s.subject.subject_object_id for s in subjects] == ["*"]


def test_bulk_check_pairs_and_per_item_errors(client: SyncClient, uid: str) -> None:
    write(client, f"document:{uid}#owner@user:ana")
    items = [
        CheckBulkPermissionsRequestItem(
            resource=obj(f"document:{uid}"), permission="edit", subject=subj("user:ana")
        ),
        CheckBulkPermissionsRequestItem(
            resource=obj(f"document:{uid}"), permission="edit", subject=subj("user:bob")
        ),
        CheckBulkPermissionsRequestItem(
            resource=obj(f"nosuch:{uid}"), permission="edit", subject=subj("user:bob")
        ),
    ]
    response = client.CheckBulkPermissions(CheckBulkPermissionsRequest(items=items, consistency=FRESH))
    assert [p.item.permissionship for p in response.pairs[:2]] == [HAS, NO]
    assert response.pairs[2].WhichOneof("response") == "error"
    assert response.pairs[2].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]


def test_read_and_lookup_cursors_resume_where_they_stopped(client: SyncClient, uid: str) -> None:
    write(client, *(f"document:{uid}-{n:02d}#viewer@user:{uid}" for n in range(7)))
    flt = RelationshipFilter(resource_type="document", optional_resource_id_prefix=f"{uid}-")
    seen: list[str] = []
    cursor = None
    while True:
        page = list(
            client.ReadRelationships(
                ReadRelationshipsRequest(
                    relationship_filter=flt, optional_limit=3, optional_cursor=cursor, consistency=FRESH
                )
            )
        )
        seen += [r.relationship.resource.object_id for r in page]
        if len(page) < 3:
            break
        cursor = page[-1].after_result_cursor
    assert seen == [f"{uid}-{n:02d}" for n in range(7)]
    found: list[str] = []
    cursor = None
    while True:
        page = list(
            client.LookupResources(
                LookupResourcesRequest(
                    resource_object_type="document",
                    permission="view",
                    subject=subj(f"user:{uid}"),
                    optional_limit=2,
                    optional_cursor=cursor,
                    consistency=FRESH,
                )
            )
        )
        found += [r.resource_object_id for r in page if r.resource_object_id.startswith(f"{uid}-")]
        if len(page) < 2:
            break
        cursor = page[-1].after_result_cursor
    assert found == [f"{uid}-{n:02d}" for n in range(7)]
    exported = list(
        client.ExportBulkRelationships(
            ExportBulkRelationshipsRequest(
                optional_relationship_filter=flt, optional_limit=4, consistency=FRESH
            )
        )
    )
    assert [len(batch.relationships) for batch in exported] == [4, 3]


def test_delete_with_limit_is_all_or_nothing_unless_partial(client: SyncClient, uid: str) -> None:
    write(client, *(f"document:{uid}-{n}#viewer@user:ana" for n in range(5)))
    flt = RelationshipFilter(resource_type="document", optional_resource_id_prefix=f"{uid}-")
    error = failure(
        lambda: client.DeleteRelationships(
            DeleteRelationshipsRequest(relationship_filter=flt, optional_limit=2)
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "ERROR_REASON_TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE"
    partial = client.DeleteRelationships(
        DeleteRelationshipsRequest(
            relationship_filter=flt, optional_limit=2, optional_allow_partial_deletions=True
        )
    )
    assert partial.relationships_deleted_count == 2
    assert partial.deletion_progress == DeleteRelationshipsResponse.DELETION_PROGRESS_PARTIAL
    rest = client.DeleteRelationships(DeleteRelationshipsRequest(relationship_filter=flt))
    assert rest.relationships_deleted_count == 3
    assert rest.deletion_progress == DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE


def test_import_then_expand(client: SyncClient, uid: str) -> None:
    rels = [rel(f"document:{uid}#viewer@user:u{n}") for n in range(3)]
    loaded = client.ImportBulkRelationships(iter([ImportBulkRelationshipsRequest(relationships=rels)]))
    assert loaded.num_loaded == 3
    tree = client.ExpandPermissionTree(
        ExpandPermissionTreeRequest(resource=obj(f"document:{uid}"), permission="viewer", consistency=FRESH)
    ).tree_root
    assert sorted(s.object.object_id for s in tree.leaf.subjects) == ["u0", "u1", "u2"]


@pytest.mark.parametrize(
    ("call", "code", "reason"),
    [
        ("unknown_type", grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_UNKNOWN_DEFINITION"),
        (
            "unknown_permission",
            grpc.StatusCode.FAILED_PRECONDITION,
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
        ),
        ("write_to_permission", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_CANNOT_UPDATE_PERMISSION"),
        ("wrong_subject_type", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_SUBJECT_TYPE"),
        ("unknown_caveat", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_SUBJECT_TYPE"),
        (
            "precondition",
            grpc.StatusCode.FAILED_PRECONDITION,
            "ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE",
        ),
        ("recreate", grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP"),
        ("too_many_updates", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_TOO_MANY_UPDATES_IN_REQUEST"),
        ("too_big_limit", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT"),
        ("bad_cursor", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_CURSOR"),
        ("bad_id", grpc.StatusCode.INVALID_ARGUMENT, None),
        ("wildcard_subject", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_WILDCARD_NOT_ALLOWED"),
        ("context_type_write", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_CAVEAT_PARAMETER_TYPE_ERROR"),
        ("context_type_check", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_CAVEAT_PARAMETER_TYPE_ERROR"),
        ("filter_unknown_type", grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_UNKNOWN_DEFINITION"),
        (
            "filter_unknown_relation",
            grpc.StatusCode.FAILED_PRECONDITION,
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
        ),
        ("filter_empty", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FILTER"),
    ],
)
def test_errors_carry_spicedb_codes_and_reasons(
    client: SyncClient, uid: str, call: str, code, reason
) -> None:
    write(client, f"document:{uid}#owner@user:ana")
    calls = {
        "unknown_type": lambda: check(client, f"nosuch:{uid}", "view", "user:ana"),
        "unknown_permission": lambda: check(client, f"document:{uid}", "nosuch", "user:ana"),
        "write_to_permission": lambda: write(client, f"document:{uid}#view@user:ana"),
        "wrong_subject_type": lambda: write(client, f"document:{uid}#owner@team:{uid}"),
        "unknown_caveat": lambda: client.WriteRelationships(
            WriteRelationshipsRequest(
                updates=[
                    RelationshipUpdate(
                        operation=TOUCH, relationship=rel(f"document:{uid}#viewer@user:x", "nosuch")
                    )
                ]
            )
        ),
        "precondition": lambda: write(
            client,
            f"document:{uid}#viewer@user:x",
            optional_preconditions=[
                Precondition(
                    operation=Precondition.Operation.OPERATION_MUST_MATCH,
                    filter=RelationshipFilter(resource_type="document", optional_resource_id=f"{uid}-none"),
                )
            ],
        ),
        "recreate": lambda: write(client, f"document:{uid}#owner@user:ana", op=CREATE),
        "too_many_updates": lambda: write(client, *(f"document:{uid}#viewer@user:n{n}" for n in range(21))),
        "too_big_limit": lambda: client.ReadRelationships(
            ReadRelationshipsRequest(
                relationship_filter=RelationshipFilter(resource_type="document"), optional_limit=51
            )
        ),
        "bad_cursor": lambda: client.ReadRelationships(
            ReadRelationshipsRequest(
                relationship_filter=RelationshipFilter(resource_type="document"),
                optional_cursor=Cursor(token="bm90LWEtY3Vyc29y"),
            )
        ),
        "bad_id": lambda: check(client, "document:not valid!", "view", "user:ana"),
        "wildcard_subject": lambda: check(client, f"document:{uid}", "view", "user:*"),
        "context_type_write": lambda: client.WriteRelationships(
            WriteRelationshipsRequest(
                updates=[RelationshipUpdate(operation=TOUCH, relationship=typed_caveat(uid))]
            )
        ),
        "context_type_check": lambda: check_bad_context(client, f"document:{uid}c"),
        "filter_unknown_type": lambda: client.ReadRelationships(
            ReadRelationshipsRequest(relationship_filter=RelationshipFilter(resource_type="nosuch"))
        ),
        "filter_unknown_relation": lambda: client.DeleteRelationships(
            DeleteRelationshipsRequest(
                relationship_filter=RelationshipFilter(resource_type="document", optional_relation="nosuch")
            )
        ),
        "filter_empty": lambda: client.DeleteRelationships(
            DeleteRelationshipsRequest(relationship_filter=RelationshipFilter())
        ),
    }
    before = list(
        client.ReadRelationships(
            ReadRelationshipsRequest(
                relationship_filter=RelationshipFilter(resource_type="document", optional_resource_id=uid),
                consistency=FRESH,
            )
        )
    )
    error = failure(calls[call])
    assert error.code() == code, error.details()
    info = error_info(error)
    if reason is None:
        assert info is None
    else:
        assert info is not None and info.reason == reason and info.domain == "authzed.com"
    after = list(
        client.ReadRelationships(
            ReadRelationshipsRequest(
                relationship_filter=RelationshipFilter(resource_type="document", optional_resource_id=uid),
                consistency=FRESH,
            )
        )
    )
    assert after == [] or [a.relationship for a in after] == [b.relationship for b in before]


def _team_chain(client: SyncClient, prefix: str, length: int) -> None:
    """team:{prefix}0#member ⊃ … ⊃ team:{prefix}{length}#member ∋ user:deep."""
    links = [f"team:{prefix}{n}#member@team:{prefix}{n + 1}#member" for n in range(length)]
    for start in range(0, length, 20):
        write(client, *links[start : start + 20])
    write(client, f"team:{prefix}{length}#member@user:deep")


def _depth_failure(error: grpc.RpcError) -> None:
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()  # as SpiceDB v1.54
    info = error_info(error)
    assert info is not None and info.reason == "ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED"
    assert info.metadata["maximum_depth_allowed"] == "50"


def test_max_depth_is_failed_precondition_with_its_reason(client: SyncClient, uid: str) -> None:
    _team_chain(client, uid, 60)
    _depth_failure(failure(lambda: check(client, f"team:{uid}0", "member", "user:deep")))


def test_lookups_fail_at_max_depth_where_check_does(server, client: SyncClient, uid: str) -> None:
    """A chain 50 subject sets deep: Check, LookupResources and LookupSubjects all fail with
    max depth (SpiceDB's lookups fail there too), through both APIs; 49 deep all answer."""
    _team_chain(client, f"{uid}s", 49)
    _team_chain(client, f"{uid}d", 50)
    resources = LookupResourcesRequest(
        resource_object_type="team", permission="member", subject=subj("user:deep"), consistency=FRESH
    )

    def subjects(team: str) -> LookupSubjectsRequest:
        return LookupSubjectsRequest(
            resource=obj(team), permission="member", subject_object_type="user", consistency=FRESH
        )

    assert check(client, f"team:{uid}s0", "member", "user:deep") == HAS
    assert [r.subject.subject_object_id for r in client.LookupSubjects(subjects(f"team:{uid}s0"))] == ["deep"]
    _depth_failure(failure(lambda: check(client, f"team:{uid}d0", "member", "user:deep")))
    _depth_failure(failure(lambda: client.LookupSubjects(subjects(f"team:{uid}d0"))))
    _depth_failure(failure(lambda: client.LookupResources(resources)))  # it reaches team:{uid}d0
    full = ReadConsistency.fully_consistent()
    with Client(server.address, preshared_key="authzed-test-key") as own:
        assert own.check(f"team:{uid}s0", "member", "user:deep", consistency=full).allowed
        for call in (
            lambda: own.check(f"team:{uid}d0", "member", "user:deep", consistency=full),
            lambda: list(own.lookup_subjects(f"team:{uid}d0", "member", "user", consistency=full)),
            lambda: list(own.lookup_resources("team", "member", "user:deep", consistency=full)),
        ):
            with pytest.raises(StonetownError) as caught:
                call()
            assert caught.value.code == "RESOURCE_EXHAUSTED" and "maximum depth of 50" in str(caught.value)


def test_with_tracing_returns_the_checks_debug_trace(client: SyncClient, uid: str) -> None:
    write(client, f"document:{uid}#owner@user:ana")
    response = client.CheckPermission(
        CheckPermissionRequest(
            resource=obj(f"document:{uid}"), permission="edit", subject=subj("user:ana"),
            consistency=FRESH, with_tracing=True,
        )
    )  # fmt: skip
    trace = response.debug_trace.check
    assert response.permissionship == HAS and trace.result == HAS
    asked = (trace.resource.object_id, trace.permission, trace.subject.object.object_id)
    assert asked == (uid, "edit", "ana")
    assert trace.permission_type == trace.PERMISSION_TYPE_PERMISSION
    # the sub-problems walk down to the relation that granted it
    below = [(t.permission, t.result) for t in trace.sub_problems.traces]
    assert ("owner", HAS) in below
    assert "definition document" in response.debug_trace.schema_used
    bulk = client.CheckBulkPermissions(
        CheckBulkPermissionsRequest(
            items=[CheckBulkPermissionsRequestItem(resource=obj(f"document:{uid}"), permission="owner",
                                                   subject=subj("user:bob"))],
            consistency=FRESH, with_tracing=True,
        )
    )  # fmt: skip
    item = bulk.pairs[0].item
    assert item.permissionship == NO and item.debug_trace.check.result == NO
    assert item.debug_trace.check.permission_type == item.debug_trace.check.PERMISSION_TYPE_RELATION


def test_expand_answers_trees_deeper_than_python_protobuf_parses() -> None:
    """A folder chain 47 arrows deep expands to a tree of ~190 nested messages: both APIs
    answer it (built in place; copying subtrees re-parses them, which protobuf refuses past
    100 levels). Python clients cannot parse it either, so the raw bytes are checked."""
    chain_schema = (
        "definition user {}\n\ndefinition folder {\n    relation parent: folder\n"
        "    relation viewer: user\n    permission view = viewer + parent->view\n}\n"
    )
    with TestingServer() as testing:
        token = "deep-expand"
        client = SyncClient(testing.address, insecure_bearer_token_credentials(token))
        client.WriteSchema(WriteSchemaRequest(schema=chain_schema))
        write(client, *(f"folder:f{n}#parent@folder:f{n + 1}" for n in range(47)), "folder:f47#viewer@user:v")
        with grpc.insecure_channel(testing.address) as channel:

            def raw(path: str, request: object) -> bytes:
                call = channel.unary_unary(path, response_deserializer=bytes)
                bearer = (("authorization", f"Bearer {token}"),)
                return call(request.SerializeToString(), metadata=bearer, timeout=30)  # type: ignore[attr-defined]

            authzed_raw = raw(
                "/authzed.api.v1.PermissionsService/ExpandPermissionTree",
                ExpandPermissionTreeRequest(resource=obj("folder:f0"), permission="view", consistency=FRESH),
            )
            own_raw = raw(
                "/stonetown.v1.PermissionService/Expand",
                own_permission.ExpandRequest(
                    resource=own_core.ObjectReference(object_type="folder", object_id="f0"), permission="view"
                ),
            )
    for raw in (authzed_raw, own_raw):
        assert b"f46" in raw and b"user" in raw  # the deepest folder and the leaf's subject
