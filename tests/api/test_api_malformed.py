"""Malformed input of every kind: the store is unchanged and the server still answers."""

from __future__ import annotations

import random

import grpc
from grpc_harness import ServerProcess

from stonetown import Client
from stonetown.api.pb import core, permission, relationship, schema
from stonetown.client import ReadConsistency

FRESH = ReadConsistency.fully_consistent()
METHODS = [
    "/stonetown.v1.PermissionService/Check",
    "/stonetown.v1.PermissionService/CheckBulk",
    "/stonetown.v1.PermissionService/Expand",
    "/stonetown.v1.PermissionService/LookupResources",
    "/stonetown.v1.PermissionService/LookupSubjects",
    "/stonetown.v1.RelationshipService/WriteRelationships",
    "/stonetown.v1.RelationshipService/ReadRelationships",
    "/stonetown.v1.RelationshipService/DeleteRelationships",
    "/stonetown.v1.SchemaService/WriteSchema",
    "/stonetown.v1.SchemaService/ReadSchema",
]
STREAMING = {"LookupResources", "LookupSubjects", "ReadRelationships"}


def _ref(object_type: str, object_id: str) -> core.ObjectReference:
    return core.ObjectReference(object_type=object_type, object_id=object_id)


def _rel(rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str = "") -> core.Relationship:
    return core.Relationship(
        resource=_ref(rtype, rid),
        relation=relation,
        subject=core.SubjectReference(object=_ref(stype, sid), optional_relation=srel),
    )


def _bad_messages() -> list[tuple[str, bytes]]:
    huge = "x" * 200_000
    touch = core.RelationshipUpdate.OPERATION_TOUCH
    writes = [
        relationship.WriteRelationshipsRequest(updates=[core.RelationshipUpdate(operation=touch)]),
        relationship.WriteRelationshipsRequest(
            updates=[core.RelationshipUpdate(relationship=_rel("document", "m", "viewer", "user", "a"))]
        ),
        relationship.WriteRelationshipsRequest(
            updates=[
                core.RelationshipUpdate(
                    operation=touch, relationship=_rel("document", huge, "viewer", "user", "a")
                )
            ]
        ),
        relationship.WriteRelationshipsRequest(
            updates=[
                core.RelationshipUpdate(
                    operation=touch, relationship=_rel("nosuch", "m", "viewer", "user", "a")
                )
            ]
        ),
        relationship.WriteRelationshipsRequest(
            updates=[
                core.RelationshipUpdate(
                    operation=touch, relationship=_rel("document", "m", "nosuch", "user", "a")
                )
            ]
        ),
        relationship.WriteRelationshipsRequest(
            updates=[
                core.RelationshipUpdate(
                    operation=touch, relationship=_rel("document", "m", "viewer", "user", "*", "member")
                )
            ]
        ),
        relationship.WriteRelationshipsRequest(
            updates=[
                core.RelationshipUpdate(
                    operation=touch, relationship=_rel("document", "", "viewer", "user", "a")
                )
            ]
        ),
        relationship.WriteRelationshipsRequest(
            updates=[
                core.RelationshipUpdate(
                    operation=touch, relationship=_rel("document", "m\u00e9", "viewer", "user", "a")
                )
            ]
        ),
        relationship.WriteRelationshipsRequest(
            updates=[
                core.RelationshipUpdate(
                    operation=touch, relationship=_rel("document", "m", "viewer", "user", "a")
                )
            ],
            optional_preconditions=[core.Precondition(operation=core.Precondition.OPERATION_MUST_MATCH)],
        ),
    ]
    messages: list[tuple[str, bytes]] = [("WriteRelationships", m.SerializeToString()) for m in writes]
    messages += [
        ("DeleteRelationships", relationship.DeleteRelationshipsRequest().SerializeToString()),
        (
            "DeleteRelationships",
            relationship.DeleteRelationshipsRequest(
                relationship_filter=core.RelationshipFilter(resource_type="Bad!")
            ).SerializeToString(),
        ),
        ("WriteSchema", schema.WriteSchemaRequest(schema="").SerializeToString()),
        ("WriteSchema", schema.WriteSchemaRequest(schema="definition " + huge).SerializeToString()),
        ("WriteSchema", schema.WriteSchemaRequest(schema="definition user {}").SerializeToString()),
        (
            "Check",
            permission.CheckRequest(
                resource=_ref("document", "m"),
                permission="nosuch",
                subject=core.SubjectReference(object=_ref("user", "a")),
            ).SerializeToString(),
        ),
        (
            "Check",
            permission.CheckRequest(resource=_ref("document", "m"), permission="view").SerializeToString(),
        ),
        (
            "LookupResources",
            permission.LookupResourcesRequest(
                resource_object_type="document",
                permission="view",
                subject=core.SubjectReference(object=_ref("user", "a")),
                optional_cursor=core.Cursor(token="garbage"),
            ).SerializeToString(),
        ),
        (
            "ReadRelationships",
            relationship.ReadRelationshipsRequest(optional_limit=10**9).SerializeToString(),
        ),
        (
            "ReadRelationships",
            relationship.ReadRelationshipsRequest(
                consistency=core.Consistency(at_exact_snapshot=core.ZedToken(token="!!"))
            ).SerializeToString(),
        ),
        # The right bytes sent to the wrong method.
        (
            "WriteRelationships",
            permission.CheckRequest(resource=_ref("document", "m"), permission="view").SerializeToString(),
        ),
        (
            "WriteSchema",
            relationship.WriteRelationshipsRequest(
                updates=[core.RelationshipUpdate(operation=touch)]
            ).SerializeToString(),
        ),
    ]
    return messages


def _call(channel: grpc.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    name = method.rsplit("/", 1)[1]
    try:
        if name in STREAMING:
            list(channel.unary_stream(method)(payload, timeout=30))
        else:
            channel.unary_unary(method)(payload, timeout=30)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _snapshot(client: Client) -> tuple[list[str], str, str]:
    rels = sorted(str(r) for r in client.read(consistency=FRESH))
    head = client.check("document:probe", "view", "user:probe", consistency=FRESH).token
    return rels, client.read_schema().text, head


def test_malformed_input_sweep(server: ServerProcess, client: Client) -> None:
    client.write(touch=["document:m#viewer@user:keep", "team:m#member@user:keep"])
    before = _snapshot(client)
    rng = random.Random(20240607)
    codes: dict[str, set[grpc.StatusCode]] = {}
    with grpc.insecure_channel(server.address) as channel:
        for method in METHODS:
            for size in (0, 1, 7, 64, 4096):
                for _ in range(4):
                    payload = bytes(rng.randrange(256) for _ in range(size))
                    codes.setdefault(method, set()).add(_call(channel, method, payload))
        for name, payload in _bad_messages():
            method = next(m for m in METHODS if m.endswith("/" + name))
            code = _call(channel, method, payload)
            assert code not in (grpc.StatusCode.OK, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                name,
                code,
            )
        # A filter naming an unknown type matches nothing: the engine may accept or refuse it.
        unknown = relationship.DeleteRelationshipsRequest(
            relationship_filter=core.RelationshipFilter(resource_type="nosuch")
        )
        code = _call(channel, METHODS[7], unknown.SerializeToString())
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    for method, seen in codes.items():
        assert grpc.StatusCode.INTERNAL not in seen and grpc.StatusCode.UNKNOWN not in seen, (method, seen)
    assert _snapshot(client) == before
    assert client.check("document:m", "view", "user:keep", consistency=FRESH).allowed
    assert "level=error" not in server.log()
