"""Request validation as SpiceDB's protos declare it: every request that SpiceDB's own
validation rules (protovalidate over the `authzed` package's descriptors) refuse, the server
refuses with INVALID_ARGUMENT, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import protovalidate
import pytest
from authzed.api.v1 import (
    CheckPermissionRequest,
    Consistency,
    ContextualizedCaveat,
    LookupResourcesRequest,
    ObjectReference,
    ReadRelationshipsRequest,
    Relationship,
    RelationshipFilter,
    RelationshipUpdate,
    SubjectFilter,
    SubjectReference,
    SyncClient,
    WriteRelationshipsRequest,
)

BAD_IDS = ["", "has space", "semi;colon", "ü", "a" * 1025, "at@sign", "hash#tag", "dot.dot"]
BAD_TYPES = ["", "A", "x", "1abc", "doc-ument", "a" * 129, "Document", "doc/"]
BAD_RELATIONS = ["x", "Viewer", "1view", "vi-ew", "a" * 65]


def _obj(kind: str = "document", oid: str = "d1") -> ObjectReference:
    return ObjectReference(object_type=kind, object_id=oid)


def _subj(kind: str = "user", oid: str = "ana", relation: str = "") -> SubjectReference:
    return SubjectReference(object=_obj(kind, oid), optional_relation=relation)


def _write(rel: Relationship) -> WriteRelationshipsRequest:
    return WriteRelationshipsRequest(
        updates=[RelationshipUpdate(operation=RelationshipUpdate.Operation.OPERATION_TOUCH, relationship=rel)]
    )


def _cases() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for bad in BAD_IDS:
        cases.append(
            ("check", CheckPermissionRequest(resource=_obj(oid=bad), permission="view", subject=_subj()))
        )
        cases.append(
            ("check", CheckPermissionRequest(resource=_obj(), permission="view", subject=_subj(oid=bad)))
        )
        cases.append(
            ("write", _write(Relationship(resource=_obj(oid=bad), relation="viewer", subject=_subj())))
        )
        if bad:  # an empty prefix is no prefix
            cases.append(
                ("read", ReadRelationshipsRequest(relationship_filter=RelationshipFilter(
                    resource_type="document", optional_resource_id_prefix=bad)))
            )  # fmt: skip
    for bad in BAD_TYPES:
        cases.append(
            ("check", CheckPermissionRequest(resource=_obj(kind=bad), permission="view", subject=_subj()))
        )
        cases.append(
            ("lookup", LookupResourcesRequest(resource_object_type=bad, permission="view", subject=_subj()))
        )
        cases.append(
            ("read", ReadRelationshipsRequest(relationship_filter=RelationshipFilter(
                resource_type="document", optional_subject_filter=SubjectFilter(subject_type=bad))))
        )  # fmt: skip
    for bad in BAD_RELATIONS:
        cases.append(("check", CheckPermissionRequest(resource=_obj(), permission=bad, subject=_subj())))
        cases.append(("write", _write(Relationship(resource=_obj(), relation=bad, subject=_subj()))))
    cases.append(("check", CheckPermissionRequest(resource=_obj(), permission="view")))
    cases.append(("check", CheckPermissionRequest(permission="view", subject=_subj())))
    cases.append(
        ("write", _write(Relationship(resource=_obj(), relation="viewer", subject=_subj(),
                                      optional_caveat=ContextualizedCaveat(caveat_name=""))))
    )  # fmt: skip
    return cases


CASES = _cases()


def _send(client: SyncClient, kind: str, request: Any) -> Callable[[], Any]:
    return {
        "check": lambda: client.CheckPermission(request),
        "write": lambda: client.WriteRelationships(request),
        "read": lambda: list(client.ReadRelationships(request)),
        "lookup": lambda: list(client.LookupResources(request)),
    }[kind]


def test_cases_are_refused_by_spicedbs_own_rules() -> None:
    for _, request in CASES:
        with pytest.raises(protovalidate.ValidationError):
            protovalidate.validate(request)


def test_the_server_refuses_what_spicedbs_rules_refuse(client: SyncClient) -> None:
    def stored() -> list[Any]:
        return list(client.ReadRelationships(ReadRelationshipsRequest(
            relationship_filter=RelationshipFilter(resource_type="document"),
            consistency=Consistency(fully_consistent=True))))  # fmt: skip

    before = stored()
    for kind, request in CASES:
        with pytest.raises(grpc.RpcError) as caught:
            _send(client, kind, request)()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (
            kind,
            request,
            caught.value.details(),
        )
    assert stored() == before
