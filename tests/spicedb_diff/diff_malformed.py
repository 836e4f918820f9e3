"""Malformed requests to every method the embedded SpiceDB serves (the Permissions calls,
WriteSchema and ReadSchema), each sent to both sides: the same status code and ErrorReason,
and nothing changed (every scenario ends by reading the whole store on both sides).

The methods the embedded library does not serve (reflection, diff, bulk import and export,
Watch, the experimental service) are held to SpiceDB's declared request rules in
tests/spicedb_api (test_authzed_validation.py, test_authzed_malformed.py).
"""

from __future__ import annotations

from typing import Any

import authzed.api.v1 as v1
from diff_requests import (
    TOUCH,
    Call,
    bulk,
    check,
    delete,
    expand,
    lookup_resources,
    lookup_subjects,
    obj,
    read,
    rel,
    schema,
    subj,
    with_cursor,
    write,
)
from diff_scenarios import SPICEDB_UNKNOWN_CONTEXT_TYPE, Scenario
from diff_schemas import CAVEATS, DOCS, DOCS_RELS

# SpiceDB v1.54 defect: an optional_cursor present with an empty token fails with INTERNAL
# ("cursor pointer was nil"); Stonetown reads it as no cursor.
SPICEDB_EMPTY_CURSOR = "SpiceDB v1.54 answers INTERNAL for an empty cursor"
_LONG_ID = "a" * 1025
_CAVEATED = 'doc:c1#viewer@user:ana[ip_allowed:{"allowed":["1.1.1.1"]}]'
_BAD_TOKEN = v1.ZedToken(token="not-a-zedtoken")


def _with(call: Call, known: str | None = None, **fields: Any) -> Call:
    """A copy of `call` with message fields replaced (a field set to None is cleared)."""
    request = type(call.request)()
    request.CopyFrom(call.request)
    for name, value in fields.items():
        if value is None:
            request.ClearField(name)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return Call(call.method, request, known or call.known)


def _everything() -> list[Call]:
    """Reads of every relationship, per resource type: what must not have changed."""
    return [read(resource_type=kind) for kind in ("doc", "folder", "group")]


def _checks() -> list[Call]:
    base = check("doc:d1", "view", "user:ana")
    return [
        _with(base, permission=""),
        _with(base, resource=None),
        _with(base, subject=None),
        _with(base, resource=obj("doc:" + _LONG_ID)),
        _with(base, resource=obj("doc:")),
        _with(base, subject=subj("user:ana#" + "r" * 65)),
        _with(base, subject=subj(":ana")),
        _with(base, consistency=v1.Consistency(at_least_as_fresh=_BAD_TOKEN)),
        _with(base, consistency=v1.Consistency(at_exact_snapshot=_BAD_TOKEN)),
        _with(base, consistency=v1.Consistency(at_least_as_fresh=v1.ZedToken())),
        check("doc:d1", "view", "user:ana", {"unknown": 1}),  # an unknown parameter is ignored
        check("doc:d1", "view", "user:ana", {"nested": {"deep": [1, {"x": None}]}}),
        bulk(),  # no items
        bulk(("doc:" + _LONG_ID, "view", "user:ana")),
        bulk(("doc:d1", "", "user:ana")),
        bulk(("doc:d1", "view", "nodef:ana"), ("doc:d1", "view", "user:ana")),
        _with(bulk(("doc:d1", "view", "user:ana")), consistency=v1.Consistency(at_exact_snapshot=_BAD_TOKEN)),
        _with(expand("doc:d1", "view"), resource=None),
        _with(expand("doc:d1", "view"), permission=""),
        expand("doc:" + _LONG_ID, "view"),
        expand("doc:d1", "Viewer"),
        _with(expand("doc:d1", "view"), consistency=v1.Consistency(at_least_as_fresh=_BAD_TOKEN)),
    ]


def _lookups() -> list[Call]:
    resources = lookup_resources("doc", "view", "user:ana")
    subjects = lookup_subjects("doc:d1", "view", "user")
    paged = lookup_resources("doc", "view", "user:ana", limit=2)
    return [
        _with(resources, resource_object_type=""),
        _with(resources, resource_object_type="Doc"),
        _with(resources, permission=""),
        _with(resources, subject=None),
        _with(resources, subject=subj("user:" + _LONG_ID)),
        _with(resources, optional_limit=4_294_967_295),
        _with(resources, optional_cursor=v1.Cursor(token=""), known=SPICEDB_EMPTY_CURSOR),
        Call("LookupResources", with_cursor(paged.request, v1.Cursor(token="!" * 40))),
        _with(resources, consistency=v1.Consistency(at_exact_snapshot=_BAD_TOKEN)),
        _with(subjects, subject_object_type=""),
        _with(subjects, subject_object_type="user#member"),
        _with(subjects, optional_subject_relation="Member"),
        _with(subjects, resource=None),
        _with(subjects, resource=obj("doc:bad id")),
        _with(subjects, permission="x"),
        _with(subjects, wildcard_option=7),
        _with(subjects, optional_concrete_limit=5),
        _with(subjects, consistency=v1.Consistency(at_least_as_fresh=_BAD_TOKEN)),
    ]


def _relationships() -> list[Call]:
    one = write("doc:x#viewer@user:ana")
    update = one.request.updates[0]
    unspecified = v1.RelationshipUpdate(relationship=update.relationship)
    no_relationship = v1.RelationshipUpdate(operation=TOUCH)
    empty_caveat = v1.RelationshipUpdate(operation=TOUCH, relationship=rel("doc:x#viewer@user:ana[nameless]"))
    empty_caveat.relationship.optional_caveat.caveat_name = ""
    return [
        Call("WriteRelationships", v1.WriteRelationshipsRequest(updates=[unspecified])),
        Call("WriteRelationships", v1.WriteRelationshipsRequest(updates=[no_relationship])),
        Call("WriteRelationships", v1.WriteRelationshipsRequest(updates=[empty_caveat])),
        write('doc:x#viewer@user:ana[ip_allowed:{"allowed":"1.1.1.1"}]', known=SPICEDB_UNKNOWN_CONTEXT_TYPE),
        write("doc:x#viewer@user:" + _LONG_ID),
        write("doc:x#viewer@user:ana#..."),
        Call(
            "WriteRelationships",
            v1.WriteRelationshipsRequest(
                updates=[update], optional_preconditions=[v1.Precondition(filter=v1.RelationshipFilter())]
            ),
        ),
        Call(
            "WriteRelationships",
            v1.WriteRelationshipsRequest(
                updates=[update],
                optional_preconditions=[
                    v1.Precondition(
                        operation=v1.Precondition.Operation.OPERATION_MUST_MATCH,
                        filter=v1.RelationshipFilter(resource_type="Doc"),
                    )
                ],
            ),
        ),
        Call("DeleteRelationships", v1.DeleteRelationshipsRequest()),
        delete(resource_type="Doc"),
        delete(resource_type="doc", relation="x"),
        delete(resource_type="doc", resource_id=_LONG_ID),
        delete(resource_type="doc", limit=4_294_967_295),
        delete(resource_type="doc", subject="user:ana#Member"),
        _with(read(resource_type="doc"), relationship_filter=None),
        _with(read(resource_type="doc"), optional_limit=4_294_967_295),
        read(resource_type="doc", relation="Viewer"),
        read(resource_type="doc", resource_id=_LONG_ID),
        read(resource_type="doc", subject="user:" + _LONG_ID),
        _with(read(resource_type="doc"), consistency=v1.Consistency(at_exact_snapshot=_BAD_TOKEN)),
    ]


def _schemas() -> list[Call]:
    return [
        schema("definition user {}\ndefinition doc {\n relation viewer: user with nothing\n}"),
        schema("caveat c(x nosuchtype) {\n x\n}\ndefinition user {}"),
        schema("definition user {}\n" * 2),
        schema("definition " + "a" * 200 + " {}"),
        schema("definition user {}\ndefinition doc {\n permission p = p\n}"),
        Call("ReadSchema", v1.ReadSchemaRequest()),
    ]


MALFORMED: list[Scenario] = [
    Scenario("malformed_checks_and_expand", [schema(DOCS), write(*DOCS_RELS), *_checks(), *_everything()]),
    Scenario("malformed_lookups", [schema(DOCS), write(*DOCS_RELS), *_lookups(), *_everything()]),
    Scenario(
        "malformed_relationship_calls",
        [schema(CAVEATS), write(_CAVEATED), *_relationships(), read(resource_type="doc")],
    ),
    Scenario("malformed_schemas", [schema(DOCS), write(*DOCS_RELS), *_schemas(), *_everything()]),
]
