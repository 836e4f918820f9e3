"""authzed.api.v1 beside stonetown.v1: the key on every method (streams included), reflection
listing both APIs, SchemaService reflection and diff (and their Experimental twins), Watch."""

from __future__ import annotations

import threading

import grpc
import pytest
from authzed.api.v1 import (
    ComputablePermissionsRequest,
    DependentRelationsRequest,
    DiffSchemaRequest,
    ObjectReference,
    ReadSchemaRequest,
    ReflectSchemaRequest,
    Relationship,
    RelationshipFilter,
    RelationshipUpdate,
    SubjectReference,
    SyncClient,
    WatchRequest,
    WriteRelationshipsRequest,
    WriteSchemaRequest,
)
from authzed.api.v1 import experimental_service_pb2 as experimental
from authzed.api.v1.watch_service_pb2 import (
    WATCH_KIND_INCLUDE_CHECKPOINTS,
    WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES,
)
from authzed_support import KEY, error_info
from google.protobuf import message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpcutil import insecure_bearer_token_credentials

from stonetown.api.authzed.pb import SERVICE_NAMES, experimental_grpc, permission, schema, watch
from stonetown.api.authzed.pb import experimental as experimental_pb
from stonetown.testing import TestingServer


def _methods() -> list[tuple[str, object]]:
    found = []
    for module in (permission, schema, watch, experimental_pb):
        for service in module.DESCRIPTOR.services_by_name.values():
            found.extend((f"/{service.full_name}/{method.name}", method) for method in service.methods)
    return found


@pytest.mark.parametrize(("path", "method"), _methods(), ids=lambda value: str(value).rsplit("/", 1)[-1])
def test_every_authzed_method_needs_the_key(server, path: str, method) -> None:  # noqa: ANN001
    request_type = message_factory.GetMessageClass(method.input_type)
    with grpc.insecure_channel(server.address) as channel:
        for metadata in ((), (("authorization", "bearer wrong"),)):
            args = {"request_serializer": request_type.SerializeToString, "response_deserializer": bytes}
            with pytest.raises(grpc.RpcError) as caught:
                if method.client_streaming:
                    call = (channel.stream_stream if method.server_streaming else channel.stream_unary)(
                        path, **args
                    )
                    result = call(iter([request_type()]), metadata=metadata, timeout=10)
                else:
                    call = (channel.unary_stream if method.server_streaming else channel.unary_unary)(
                        path, **args
                    )
                    result = call(request_type(), metadata=metadata, timeout=10)
                if method.server_streaming:
                    list(result)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, path


def test_reflection_lists_both_apis(server) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = stub.ServerReflectionInfo(iter([request]), metadata=(("authorization", f"bearer {KEY}"),))
        names = {service.name for answer in answers for service in answer.list_services_response.service}
    assert set(SERVICE_NAMES) <= names
    assert "stonetown.v1.PermissionService" in names


REFLECTED = """\
/** a user */
definition user {}

definition group {
    relation member: user | group#member
}

caveat fresh(age int) {
    age < 10
}

definition doc {
    relation owner: user
    relation reader: user | user:* | group#member | user with fresh
    permission edit = owner
    permission view = reader + edit
}
"""


def test_reflect_dependent_computable_and_diff() -> None:
    with TestingServer() as testing:
        client = SyncClient(testing.address, insecure_bearer_token_credentials("reflect"))
        with pytest.raises(grpc.RpcError) as caught:
            client.ReadSchema(ReadSchemaRequest())
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        client.WriteSchema(WriteSchemaRequest(schema=REFLECTED))
        reflected = client.ReflectSchema(ReflectSchemaRequest())
        definitions = {d.name: d for d in reflected.definitions}
        assert set(definitions) == {"user", "group", "doc"}
        assert definitions["user"].comment
        doc = definitions["doc"]
        assert [r.name for r in doc.relations] == ["owner", "reader"]
        assert [p.name for p in doc.permissions] == ["edit", "view"]
        reader = doc.relations[1]
        kinds = [
            (
                t.subject_definition_name,
                t.is_public_wildcard,
                t.optional_relation_name,
                t.optional_caveat_name,
            )
            for t in reader.subject_types
        ]
        assert kinds == [
            ("user", False, "", ""),
            ("user", True, "", ""),
            ("group", False, "member", ""),
            ("user", False, "", "fresh"),
        ]
        assert [(c.name, [p.name for p in c.parameters]) for c in reflected.caveats] == [("fresh", ["age"])]

        dependent = client.DependentRelations(
            DependentRelationsRequest(definition_name="doc", permission_name="view")
        )
        assert [(r.definition_name, r.relation_name, r.is_permission) for r in dependent.relations] == [
            ("doc", "edit", True),
            ("doc", "owner", False),
            ("doc", "reader", False),
            ("group", "member", False),
        ]
        computable = client.ComputablePermissions(
            ComputablePermissionsRequest(definition_name="doc", relation_name="owner")
        )
        assert [(r.definition_name, r.relation_name) for r in computable.permissions] == [
            ("doc", "edit"),
            ("doc", "view"),
        ]
        with pytest.raises(grpc.RpcError) as caught:
            client.DependentRelations(
                DependentRelationsRequest(definition_name="doc", permission_name="owner")
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        changed = REFLECTED.replace("permission view = reader + edit", "permission view = reader")
        changed = changed.replace("definition user {}", "definition user {}\n\ndefinition team {}")
        diffs = client.DiffSchema(DiffSchemaRequest(comparison_schema=changed)).diffs
        assert sorted(d.WhichOneof("diff") for d in diffs) == ["definition_added", "permission_expr_changed"]

        metadata = (("authorization", "bearer reflect"),)
        with grpc.insecure_channel(testing.address) as channel:
            stub = experimental_grpc.ExperimentalServiceStub(channel)
            twin = stub.ExperimentalReflectSchema(
                experimental.ExperimentalReflectSchemaRequest(), metadata=metadata
            )
            twin_diff = stub.ExperimentalDiffSchema(
                experimental.ExperimentalDiffSchemaRequest(comparison_schema=changed), metadata=metadata
            )
        assert twin.SerializeToString() == reflected.SerializeToString()
        assert len(twin_diff.diffs) == 2

        with pytest.raises(grpc.RpcError) as caught:
            client.WriteSchema(WriteSchemaRequest(schema="definition doc { relation owner: nosuch }"))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(caught.value).reason == "ERROR_REASON_SCHEMA_TYPE_ERROR"
        with pytest.raises(grpc.RpcError) as caught:
            client.WriteSchema(WriteSchemaRequest(schema="definition doc {"))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == "ERROR_REASON_SCHEMA_PARSE_ERROR"


def _touch(resource: str, relation: str, subject: str) -> RelationshipUpdate:
    rtype, _, rid = resource.partition(":")
    stype, _, sid = subject.partition(":")
    return RelationshipUpdate(
        operation=RelationshipUpdate.Operation.OPERATION_TOUCH,
        relationship=Relationship(
            resource=ObjectReference(object_type=rtype, object_id=rid),
            relation=relation,
            subject=SubjectReference(object=ObjectReference(object_type=stype, object_id=sid)),
        ),
    )


def test_watch_filters_start_cursor_and_checkpoints(client: SyncClient, uid: str) -> None:
    start = client.WriteRelationships(
        WriteRelationshipsRequest(updates=[_touch(f"folder:{uid}", "viewer", "user:first")])
    ).written_at
    client.WriteRelationships(
        WriteRelationshipsRequest(updates=[_touch(f"document:{uid}", "owner", "user:ana")])
    )
    client.WriteRelationships(
        WriteRelationshipsRequest(updates=[_touch(f"document:{uid}", "viewer", "user:bob")])
    )
    request = WatchRequest(
        optional_start_cursor=start,
        optional_relationship_filters=[
            RelationshipFilter(resource_type="document", optional_resource_id=uid, optional_relation="viewer")
        ],
        optional_update_kinds=[WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES, WATCH_KIND_INCLUDE_CHECKPOINTS],
    )
    stream = client.Watch(request, timeout=20)
    received = []
    closer = threading.Timer(10, stream.cancel)
    closer.start()
    try:
        for response in stream:
            received.append(response)
            if any(u.relationship.subject.object.object_id == "bob" for u in response.updates):
                break
    finally:
        closer.cancel()
        stream.cancel()
    updates = [u for r in received for u in r.updates]
    assert [(u.relationship.relation, u.relationship.subject.object.object_id) for u in updates] == [
        ("viewer", "bob")
    ]
    assert any(r.is_checkpoint and not r.updates for r in received)  # the owner write, filtered out
    with pytest.raises(grpc.RpcError) as caught:
        list(
            client.Watch(
                WatchRequest(
                    optional_object_types=["document"],
                    optional_relationship_filters=[RelationshipFilter(resource_type="x")],
                )
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metrics_and_health_cover_the_authzed_api(tmp_path) -> None:  # noqa: ANN001
    import re
    import urllib.request

    from grpc_harness import ServerProcess
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    proc = ServerProcess(tmp_path, "--port", "0", "--datastore", "memory", "--metrics-addr", "127.0.0.1:0")
    try:
        metrics_address = re.search(r"event=metrics address=(\S+)", proc.log())
        assert metrics_address is not None
        client = SyncClient(proc.address, insecure_bearer_token_credentials("unused"))
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                client.ReadSchema(ReadSchemaRequest())
        with grpc.insecure_channel(proc.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in SERVICE_NAMES:
                answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with urllib.request.urlopen(f"http://{metrics_address.group(1)}/metrics", timeout=10) as response:
            text = response.read().decode()
        method = 'method="/authzed.api.v1.SchemaService/ReadSchema"'
        assert f'stonetown_grpc_requests_total{{code="NOT_FOUND",{method}}} 2.0' in text
    finally:
        assert proc.stop() == 0


def test_relationship_counters_are_unimplemented(server) -> None:  # noqa: ANN001
    metadata = (("authorization", f"bearer {KEY}"),)
    with grpc.insecure_channel(server.address) as channel:
        stub = experimental_grpc.ExperimentalServiceStub(channel)
        for call, request in (
            (
                stub.ExperimentalRegisterRelationshipCounter,
                experimental.ExperimentalRegisterRelationshipCounterRequest,
            ),
            (stub.ExperimentalCountRelationships, experimental.ExperimentalCountRelationshipsRequest),
            (
                stub.ExperimentalUnregisterRelationshipCounter,
                experimental.ExperimentalUnregisterRelationshipCounterRequest,
            ),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(request(name="c"), metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "counters" in caught.value.details()
