"""Building authzed.api.v1 requests for the scenarios from short texts.

`doc:d1#viewer@user:u1[cav:{"x":1}][expiration:2001-01-01T00:00:00Z]` is a relationship,
`user:u1` or `group:g1#member` a subject. Every read asks fully consistent: SpiceDB's
minimize_latency may read a revision a few seconds old.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import authzed.api.v1 as v1
from authzed.api.v1 import permission_service_pb2 as permission
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

FULL = v1.Consistency(fully_consistent=True)
TOUCH = v1.RelationshipUpdate.Operation.OPERATION_TOUCH
CREATE = v1.RelationshipUpdate.Operation.OPERATION_CREATE
DELETE = v1.RelationshipUpdate.Operation.OPERATION_DELETE
MUST_MATCH = v1.Precondition.Operation.OPERATION_MUST_MATCH
MUST_NOT_MATCH = v1.Precondition.Operation.OPERATION_MUST_NOT_MATCH
_JSON = json.JSONDecoder()
_SUFFIX_HEAD = re.compile(r"\[(\w+)(:?)")
_REL = re.compile(r"^([^:]+):([^#]+)#([^@]+)@([^\[]+)(.*)$")


@dataclass
class Call:
    """One request sent to both sides. `pages`: follow the cursor with the request's limit
    until a short page; `cursor_from`: first make that call and send this one with the
    last cursor it answered (each side its own); `known`: why the answers are not compared
    (a SpiceDB defect or a documented difference), in which case both still run."""

    method: str
    request: Any
    known: str | None = None
    pages: bool = False
    cursor_from: Call | None = None


def struct(values: dict[str, Any] | None) -> Struct | None:
    """A protobuf Struct (None for None)."""
    if values is None:
        return None
    result = Struct()
    result.update(values)
    return result


def obj(text: str) -> v1.ObjectReference:
    """`type:id`."""
    kind, _, ident = text.partition(":")
    return v1.ObjectReference(object_type=kind, object_id=ident)


def subj(text: str) -> v1.SubjectReference:
    """`type:id` or `type:id#relation`."""
    ref, _, relation = text.partition("#")
    return v1.SubjectReference(object=obj(ref), optional_relation=relation)


def rel(text: str) -> v1.Relationship:
    """A relationship from `res:id#rel@sub:id[#rel]` with optional `[caveat:{json}]` and
    `[expiration:RFC3339]` suffixes."""
    found = _REL.match(text)
    assert found, text
    kind, ident, relation, subject, suffix = found.groups()
    result = v1.Relationship(resource=obj(f"{kind}:{ident}"), relation=relation, subject=subj(subject))
    while suffix:
        head = _SUFFIX_HEAD.match(suffix)
        assert head, text
        name, suffix = head.group(1), suffix[head.end() :]
        if name == "expiration":
            stamp = Timestamp()
            stamp.FromJsonString(suffix[: suffix.index("]")])
            result.optional_expires_at.CopyFrom(stamp)
            suffix = suffix[suffix.index("]") :]
        else:  # a caveat, with its context as JSON (which may hold brackets) when a colon follows
            context, end = _JSON.raw_decode(suffix) if head.group(2) else (None, 0)
            result.optional_caveat.CopyFrom(
                v1.ContextualizedCaveat(caveat_name=name, context=struct(context))
            )
            suffix = suffix[end:]
        assert suffix.startswith("]"), text
        suffix = suffix[1:]
    return result


def schema(text: str, known: str | None = None) -> Call:
    """WriteSchema."""
    return Call("WriteSchema", v1.WriteSchemaRequest(schema=text), known)


def write(
    *texts: str, op: int = TOUCH, preconditions: tuple[v1.Precondition, ...] = (), known: str | None = None
) -> Call:
    """WriteRelationships with one operation for all the relationships."""
    updates = [v1.RelationshipUpdate(operation=op, relationship=rel(text)) for text in texts]
    return Call(
        "WriteRelationships",
        v1.WriteRelationshipsRequest(updates=updates, optional_preconditions=preconditions),
        known,
    )


def rfilter(
    resource_type: str = "",
    resource_id: str = "",
    relation: str = "",
    subject: str | None = None,
    prefix: str = "",
) -> v1.RelationshipFilter:
    """A RelationshipFilter; `subject` is `type`, `type:id`, `type:id#rel` or `type#rel`."""
    result = v1.RelationshipFilter(
        resource_type=resource_type, optional_resource_id=resource_id, optional_relation=relation,
        optional_resource_id_prefix=prefix,
    )  # fmt: skip
    if subject is not None:
        head, has_relation, relation_name = subject.partition("#")
        kind, _, ident = head.partition(":")
        result.optional_subject_filter.subject_type = kind
        result.optional_subject_filter.optional_subject_id = ident
        if has_relation:
            result.optional_subject_filter.optional_relation.relation = (
                "" if relation_name == "..." else relation_name
            )
    return result


def precondition(op: int, **filter_args: Any) -> v1.Precondition:
    """A precondition over a filter (see rfilter)."""
    return v1.Precondition(operation=op, filter=rfilter(**filter_args))


def check(
    resource: str, name: str, subject: str, context: dict[str, Any] | None = None, known: str | None = None
) -> Call:
    """CheckPermission."""
    request = v1.CheckPermissionRequest(
        consistency=FULL,
        resource=obj(resource),
        permission=name,
        subject=subj(subject),
        context=struct(context),
    )
    return Call("CheckPermission", request, known)


def bulk(
    *items: tuple[str, str, str], context: dict[str, Any] | None = None, known: str | None = None
) -> Call:
    """CheckBulkPermissions of (resource, permission, subject) items."""
    request = v1.CheckBulkPermissionsRequest(
        consistency=FULL,
        items=[
            v1.CheckBulkPermissionsRequestItem(
                resource=obj(r), permission=p, subject=subj(s), context=struct(context)
            )
            for r, p, s in items
        ],
    )
    return Call("CheckBulkPermissions", request, known)


def lookup_resources(
    kind: str, name: str, subject: str, context: dict[str, Any] | None = None, limit: int = 0,
    pages: bool = False, known: str | None = None,
) -> Call:  # fmt: skip
    """LookupResources."""
    request = v1.LookupResourcesRequest(
        consistency=FULL, resource_object_type=kind, permission=name, subject=subj(subject),
        context=struct(context), optional_limit=limit,
    )  # fmt: skip
    return Call("LookupResources", request, known, pages)


def lookup_subjects(
    resource: str,
    name: str,
    subject_type: str,
    context: dict[str, Any] | None = None,
    known: str | None = None,
) -> Call:
    """LookupSubjects; `subject_type` may be `type#relation`."""
    kind, _, relation = subject_type.partition("#")
    request = v1.LookupSubjectsRequest(
        consistency=FULL, resource=obj(resource), permission=name, subject_object_type=kind,
        optional_subject_relation=relation, context=struct(context),
    )  # fmt: skip
    return Call("LookupSubjects", request, known)


def every(
    resources: Sequence[str],
    names: Sequence[str],
    subjects: Sequence[str],
    contexts: Sequence[dict[str, Any] | None] = (None,),
) -> list[Call]:
    """The three questions about every combination: CheckPermission of each resource, name,
    subject and context; LookupResources of each resource type, name, subject and context;
    LookupSubjects of each resource, name, subject type and context (in that order)."""
    kinds = list(dict.fromkeys(resource.split(":")[0] for resource in resources))
    subject_types = list(dict.fromkeys(subject.split(":")[0] for subject in subjects))
    return [
        *(check(r, n, s, c) for r in resources for n in names for s in subjects for c in contexts),
        *(lookup_resources(k, n, s, c) for k in kinds for n in names for s in subjects for c in contexts),
        *(
            lookup_subjects(r, n, t, c)
            for r in resources
            for n in names
            for t in subject_types
            for c in contexts
        ),
    ]


def read(limit: int = 0, pages: bool = False, **filter_args: Any) -> Call:
    """ReadRelationships over a filter (see rfilter)."""
    request = v1.ReadRelationshipsRequest(
        consistency=FULL, relationship_filter=rfilter(**filter_args), optional_limit=limit
    )
    return Call("ReadRelationships", request, pages=pages)


def delete(
    limit: int = 0, partial: bool = False, preconditions: tuple[v1.Precondition, ...] = (), **filter_args: Any
) -> Call:
    """DeleteRelationships over a filter (see rfilter)."""
    request = v1.DeleteRelationshipsRequest(
        relationship_filter=rfilter(**filter_args), optional_limit=limit,
        optional_allow_partial_deletions=partial, optional_preconditions=preconditions,
    )  # fmt: skip
    return Call("DeleteRelationships", request)


def expand(resource: str, name: str, known: str | None = None) -> Call:
    """ExpandPermissionTree."""
    return Call(
        "ExpandPermissionTree",
        v1.ExpandPermissionTreeRequest(consistency=FULL, resource=obj(resource), permission=name),
        known,
    )


def with_cursor(request: Any, cursor: Any) -> Any:
    """A copy of a paged request continuing after `cursor`."""
    again = type(request)()
    again.CopyFrom(request)
    again.optional_cursor.CopyFrom(cursor)
    return again


__all__ = ["CREATE", "DELETE", "MUST_MATCH", "MUST_NOT_MATCH", "TOUCH", "Call", "permission"]
