"""Conversion between API messages and domain values, both ways.

Every `*_from_proto` function validates syntax and raises InvalidArgument whose message starts
with the path of the offending field (``updates[2].relationship.resource.object_type: ...``),
so a caller can tell exactly what to fix. Schema-level validity (does the type exist?) is the
engine's job. Tokens, consistency and cursors are :mod:`stonetown.api.tokens`'s.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from stonetown.api.pb import core, permission
from stonetown.core.errors import InvalidArgument
from stonetown.core.relationship import (
    MAX_OBJECT_ID_LENGTH,
    OBJECT_ID_RE,
    RELATION_NAME_RE,
    TYPE_NAME_RE,
    WILDCARD,
    ContextualizedCaveat,
    ObjectRef,
    Relationship,
    SubjectRef,
)
from stonetown.engine.check_cache import CheckKey
from stonetown.engine.datastore import (
    Change,
    ChangeOp,
    Precondition,
    PreconditionOp,
    RelationshipFilter,
    SubjectFilter,
    Update,
    UpdateOp,
)
from stonetown.engine.types import (
    CheckRequest,
    ExpandNode,
    ExpandOp,
    Permissionship,
)

MAX_CAVEAT_NAME_LENGTH = 128

# ---------------------------------------------------------------- field validation


# Type and relation names already found valid: requests keep naming the same few, and a set
# lookup is cheaper than the regular expression. Bounded, since the names come from callers.
_VALID_TYPES: set[str] = set()
_VALID_RELATIONS: set[str] = set()
_VALID_NAMES_LIMIT = 4096
_ID_MATCH = OBJECT_ID_RE.fullmatch


def _plain_id(value: str) -> bool:
    """Whether OBJECT_ID_RE matches `value` (1 to MAX_OBJECT_ID_LENGTH characters of its
    alphabet); ids of ASCII letters and digits alone, the usual ones, need no regex."""
    if value.isascii() and value.isalnum():  # non-empty, every character in the alphabet
        return len(value) <= MAX_OBJECT_ID_LENGTH
    return _ID_MATCH(value) is not None


def check_type_name(value: str, path: str) -> str:
    """Return `value` if it is a valid type name, else raise InvalidArgument naming `path`."""
    if value in _VALID_TYPES:
        return value
    if not value:
        raise InvalidArgument(f"{path}: required")
    if not TYPE_NAME_RE.fullmatch(value):
        raise InvalidArgument(f"{path}: {_short(value)} is not a valid type name")
    if len(_VALID_TYPES) < _VALID_NAMES_LIMIT:
        _VALID_TYPES.add(value)
    return value


def check_relation_name(value: str, path: str) -> str:
    """Return `value` if it is a valid relation/permission name, else raise InvalidArgument."""
    if value in _VALID_RELATIONS:
        return value
    if not value:
        raise InvalidArgument(f"{path}: required")
    if not RELATION_NAME_RE.fullmatch(value):
        raise InvalidArgument(f"{path}: {_short(value)} is not a valid relation or permission name")
    if len(_VALID_RELATIONS) < _VALID_NAMES_LIMIT:
        _VALID_RELATIONS.add(value)
    return value


def check_object_id(value: str, path: str, *, allow_wildcard: bool) -> str:
    """Return `value` if it is a valid object id (or `*` where allowed), else raise InvalidArgument."""
    if not value:
        raise InvalidArgument(f"{path}: required")
    if value == WILDCARD:
        if allow_wildcard:
            return value
        raise InvalidArgument(f"{path}: a wildcard is not allowed here")
    if len(value) > MAX_OBJECT_ID_LENGTH:
        raise InvalidArgument(f"{path}: {len(value)} characters long; the limit is {MAX_OBJECT_ID_LENGTH}")
    if not OBJECT_ID_RE.fullmatch(value):
        raise InvalidArgument(f"{path}: {_short(value)} may only contain letters, digits and / _ | - = +")
    return value


def _short(value: str, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# ---------------------------------------------------------------- objects, subjects, relationships


def object_from_proto(
    message: core.ObjectReference, has: bool, path: str, *, allow_wildcard: bool = False
) -> ObjectRef:
    """A validated object reference; its id may be `*` where `allow_wildcard` says so (as
    SpiceDB accepts it: LookupSubjects and bulk check items, where it matches nothing)."""
    if not has:
        raise InvalidArgument(f"{path}: required")
    return ObjectRef(
        check_type_name(message.object_type, f"{path}.object_type"),
        check_object_id(message.object_id, f"{path}.object_id", allow_wildcard=allow_wildcard),
    )


def check_key_from_proto(item: Any) -> CheckKey | None:
    """``(resource type, resource id, permission, (subject type, subject id, subject
    relation))`` of a CheckRequest or CheckBulkRequestItem, when every part of it is plainly
    valid (names validated before, ids matching the id syntax, no wildcard, no `...`); None
    otherwise. The caveat context is not looked at."""
    resource = item.resource
    subject = item.subject
    target = subject.object
    rtype, rid, name = resource.object_type, resource.object_id, item.permission
    stype, sid, srel = target.object_type, target.object_id, subject.optional_relation
    if (
        rtype in _VALID_TYPES
        and stype in _VALID_TYPES
        and name in _VALID_RELATIONS
        and (not srel or srel in _VALID_RELATIONS)
        and _plain_id(rid)
        and _plain_id(sid)
    ):
        return (rtype, rid, name, (stype, sid, srel))
    return None


def check_request_from_proto(item: Any) -> CheckRequest | None:
    """The check a CheckRequest or CheckBulkRequestItem asks for, when every part of it is
    plainly valid (see :func:`check_key_from_proto`); None otherwise, and the caller validates
    field by field, naming the field at fault. Both ways accept exactly the same requests:
    this is only the quick way for the common one."""
    key = check_key_from_proto(item)
    if key is None:
        return None
    rtype, rid, name, (stype, sid, srel) = key
    context = struct_to_dict(item.context, True) if item.HasField("context") else None
    return CheckRequest(ObjectRef(rtype, rid), name, SubjectRef(stype, sid, srel), context)


def object_to_proto(ref: ObjectRef, pb: Any = core) -> Any:
    """The message for an object reference (of `pb`: stonetown.v1's core module, or
    authzed.api.v1's, whose messages have the same fields)."""
    return pb.ObjectReference(object_type=ref.type, object_id=ref.id)


def subject_from_proto(message: core.SubjectReference, has: bool, path: str) -> SubjectRef:
    """A validated subject: object, subject set or wildcard (`...` means no relation)."""
    if not has:
        raise InvalidArgument(f"{path}: required")
    if not message.HasField("object"):
        raise InvalidArgument(f"{path}.object: required")
    subject_type = check_type_name(message.object.object_type, f"{path}.object.object_type")
    subject_id = check_object_id(message.object.object_id, f"{path}.object.object_id", allow_wildcard=True)
    relation = message.optional_relation
    if relation == "...":
        relation = ""
    if relation:
        check_relation_name(relation, f"{path}.optional_relation")
        if subject_id == WILDCARD:
            raise InvalidArgument(f"{path}.optional_relation: a wildcard subject cannot have a relation")
    return SubjectRef(subject_type, subject_id, relation)


def subject_to_proto(ref: SubjectRef, pb: Any = core) -> Any:
    """The message for a subject (of `pb`, as in :func:`object_to_proto`)."""
    return pb.SubjectReference(
        object=pb.ObjectReference(object_type=ref.type, object_id=ref.id), optional_relation=ref.relation
    )


def struct_to_dict(message: struct_pb2.Struct, has: bool) -> dict[str, Any] | None:
    """A caveat context as plain Python values; integral numbers come back as ints
    (protobuf's Struct only knows doubles)."""
    if not has:
        return None
    return _integral_to_int(json_format.MessageToDict(message))


def _integral_to_int(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_to_int(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_to_int(item) for item in value]
    return value


def dict_to_struct(value: dict[str, Any] | None, path: str = "context") -> struct_pb2.Struct | None:
    """A Struct message for a JSON-like dict (None stays None)."""
    if value is None:
        return None
    struct = struct_pb2.Struct()
    try:
        struct.update(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{path}: cannot be sent as a protobuf Struct: {exc}") from None
    return struct


def relationship_from_proto(message: core.Relationship, has: bool, path: str) -> Relationship:
    """A validated relationship."""
    if not has:
        raise InvalidArgument(f"{path}: required")
    resource = object_from_proto(message.resource, message.HasField("resource"), f"{path}.resource")
    relation = check_relation_name(message.relation, f"{path}.relation")
    subject = subject_from_proto(message.subject, message.HasField("subject"), f"{path}.subject")
    caveat: ContextualizedCaveat | None = None
    if message.HasField("optional_caveat"):
        name = message.optional_caveat.caveat_name
        if not name:
            raise InvalidArgument(f"{path}.optional_caveat.caveat_name: required")
        if len(name) > MAX_CAVEAT_NAME_LENGTH or not RELATION_NAME_RE.fullmatch(name):
            raise InvalidArgument(
                f"{path}.optional_caveat.caveat_name: {_short(name)} is not a valid caveat name"
            )
        context = struct_to_dict(message.optional_caveat.context, message.optional_caveat.HasField("context"))
        caveat = ContextualizedCaveat(name, context or {})
    expiration: datetime | None = None
    if message.HasField("optional_expires_at"):
        expiration = timestamp_from_proto(message.optional_expires_at, f"{path}.optional_expires_at")
    return Relationship(
        resource.type, resource.id, relation, subject.type, subject.id, subject.relation, caveat, expiration
    )


def relationship_from_proto_quick(message: core.Relationship) -> Relationship | None:
    """The relationship in `message` when every part of it is plainly valid (names validated
    before, ids matching the id syntax, no wildcard, no `...`, no caveat or expiration); None
    otherwise, and the caller uses :func:`relationship_from_proto`, which names the field at
    fault. Both accept exactly the same messages: this is only the quick way for bulk imports."""
    resource = message.resource
    target = message.subject.object
    rtype, rid, relation = resource.object_type, resource.object_id, message.relation
    stype, sid, srel = target.object_type, target.object_id, message.subject.optional_relation
    if (
        rtype in _VALID_TYPES
        and stype in _VALID_TYPES
        and relation in _VALID_RELATIONS
        and (not srel or srel in _VALID_RELATIONS)
        and OBJECT_ID_RE.fullmatch(rid)
        and OBJECT_ID_RE.fullmatch(sid)
        and not message.HasField("optional_caveat")
        and not message.HasField("optional_expires_at")
    ):
        return Relationship.shared(rtype, rid, relation, stype, sid, srel)
    return None


def relationship_to_proto(rel: Relationship, pb: Any = core) -> Any:
    """The message for a relationship (of `pb`, as in :func:`object_to_proto`)."""
    message = pb.Relationship(
        resource=pb.ObjectReference(object_type=rel.resource_type, object_id=rel.resource_id),
        relation=rel.relation,
        subject=subject_to_proto(rel.subject, pb),
    )
    if rel.caveat is not None:
        message.optional_caveat.caveat_name = rel.caveat.name
        if rel.caveat.context:
            message.optional_caveat.context.update(rel.caveat.context)
    if rel.expiration is not None:
        message.optional_expires_at.CopyFrom(timestamp_to_proto(rel.expiration))
    return message


def relationships_from_proto(messages: Any, path: str) -> list[Relationship]:
    """A validated list of relationships (a repeated field)."""
    return [relationship_from_proto(item, True, f"{path}[{index}]") for index, item in enumerate(messages)]


def timestamp_from_proto(message: timestamp_pb2.Timestamp, path: str) -> datetime:
    """An aware UTC datetime."""
    try:
        return message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"{path}: not a valid timestamp: {exc}") from None


def timestamp_to_proto(value: datetime) -> timestamp_pb2.Timestamp:
    """The message for an aware datetime."""
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value.astimezone(UTC))
    return message


# ---------------------------------------------------------------- filters, updates, preconditions

_UPDATE_OPS = {
    core.RelationshipUpdate.OPERATION_CREATE: UpdateOp.CREATE,
    core.RelationshipUpdate.OPERATION_TOUCH: UpdateOp.TOUCH,
    core.RelationshipUpdate.OPERATION_DELETE: UpdateOp.DELETE,
}
_UPDATE_OPS_BACK = {value: key for key, value in _UPDATE_OPS.items()}
_PRECONDITION_OPS = {
    core.Precondition.OPERATION_MUST_MATCH: PreconditionOp.MUST_MATCH,
    core.Precondition.OPERATION_MUST_NOT_MATCH: PreconditionOp.MUST_NOT_MATCH,
}
_PRECONDITION_OPS_BACK = {value: key for key, value in _PRECONDITION_OPS.items()}


def filter_from_proto(message: core.RelationshipFilter, has: bool, path: str) -> RelationshipFilter:
    """A validated relationship filter; empty fields match anything."""
    if not has:
        return RelationshipFilter()
    resource_type = message.resource_type or None
    if resource_type is not None:
        check_type_name(resource_type, f"{path}.resource_type")
    resource_id = message.optional_resource_id or None
    prefix = message.optional_resource_id_prefix or None
    if resource_id is not None and prefix is not None:
        raise InvalidArgument(
            f"{path}.optional_resource_id_prefix: cannot be combined with {path}.optional_resource_id"
        )
    if resource_id is not None:
        check_object_id(resource_id, f"{path}.optional_resource_id", allow_wildcard=False)
    if prefix is not None:
        # the id alphabet and length: a prefix outside them could match no id
        check_object_id(prefix, f"{path}.optional_resource_id_prefix", allow_wildcard=False)
    relation = message.optional_relation or None
    if relation is not None:
        check_relation_name(relation, f"{path}.optional_relation")
    subject: SubjectFilter | None = None
    if message.HasField("optional_subject_filter"):
        sub = message.optional_subject_filter
        sub_path = f"{path}.optional_subject_filter"
        subject_type = check_type_name(sub.subject_type, f"{sub_path}.subject_type")
        subject_id = sub.optional_subject_id or None
        if subject_id is not None:
            check_object_id(subject_id, f"{sub_path}.optional_subject_id", allow_wildcard=True)
        subject_relation: str | None = None
        if sub.HasField("optional_relation"):
            # a string in stonetown.v1, a RelationFilter message in authzed.api.v1
            given = sub.optional_relation
            given = given if isinstance(given, str) else given.relation
            subject_relation = "" if given == "..." else given
            if subject_relation:
                check_relation_name(subject_relation, f"{sub_path}.optional_relation")
        subject = SubjectFilter(subject_type, subject_id, subject_relation)
    return RelationshipFilter(resource_type, resource_id, prefix, relation, subject)


def filter_to_proto(flt: RelationshipFilter) -> core.RelationshipFilter:
    """The message for a relationship filter."""
    message = core.RelationshipFilter(
        resource_type=flt.resource_type or "",
        optional_resource_id=flt.resource_id or "",
        optional_resource_id_prefix=flt.resource_id_prefix or "",
        optional_relation=flt.relation or "",
    )
    if flt.subject is not None:
        message.optional_subject_filter.subject_type = flt.subject.type
        message.optional_subject_filter.optional_subject_id = flt.subject.id or ""
        if flt.subject.relation is not None:
            message.optional_subject_filter.optional_relation = flt.subject.relation
    return message


def update_from_proto(message: core.RelationshipUpdate, path: str) -> Update:
    """A validated relationship update."""
    op = _UPDATE_OPS.get(message.operation)
    if op is None:
        raise InvalidArgument(f"{path}.operation: must be CREATE, TOUCH or DELETE")
    return Update(
        op,
        relationship_from_proto(
            message.relationship, message.HasField("relationship"), f"{path}.relationship"
        ),
    )


def update_to_proto(update: Update, pb: Any = core) -> Any:
    """The message for a relationship update (of `pb`, as in :func:`object_to_proto`; both
    APIs number the operations alike)."""
    return pb.RelationshipUpdate(
        operation=_UPDATE_OPS_BACK[update.op], relationship=relationship_to_proto(update.relationship, pb)
    )


def change_to_proto(change: Change, pb: Any = core) -> Any:
    """A watch change as an update message (TOUCH or DELETE)."""
    op = UpdateOp.TOUCH if change.op is ChangeOp.TOUCH else UpdateOp.DELETE
    return update_to_proto(Update(op, change.relationship), pb)


def change_from_proto(message: core.RelationshipUpdate) -> Change:
    """A watch change from its update message."""
    op = ChangeOp.DELETE if message.operation == core.RelationshipUpdate.OPERATION_DELETE else ChangeOp.TOUCH
    return Change(op, relationship_from_proto(message.relationship, True, "relationship"))


def precondition_from_proto(message: core.Precondition, path: str) -> Precondition:
    """A validated precondition."""
    op = _PRECONDITION_OPS.get(message.operation)
    if op is None:
        raise InvalidArgument(f"{path}.operation: must be MUST_MATCH or MUST_NOT_MATCH")
    if not message.HasField("filter"):
        raise InvalidArgument(f"{path}.filter: required")
    return Precondition(op, filter_from_proto(message.filter, True, f"{path}.filter"))


def precondition_to_proto(precondition: Precondition) -> core.Precondition:
    """The message for a precondition."""
    return core.Precondition(
        operation=_PRECONDITION_OPS_BACK[precondition.op], filter=filter_to_proto(precondition.filter)
    )


# ---------------------------------------------------------------- permission results

_PERMISSIONSHIP = {
    Permissionship.DENIED: permission.PERMISSIONSHIP_NO_PERMISSION,
    Permissionship.ALLOWED: permission.PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.CONDITIONAL: permission.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}
_PERMISSIONSHIP_BACK = {value: key for key, value in _PERMISSIONSHIP.items()}


def permissionship_to_proto(value: Permissionship) -> int:
    """The enum value for a permissionship."""
    return _PERMISSIONSHIP[value]


def permissionship_from_proto(value: int) -> Permissionship:
    """The permissionship of an enum value (unspecified counts as denied)."""
    return _PERMISSIONSHIP_BACK.get(value, Permissionship.DENIED)


def lookup_permissionship(conditional: bool) -> int:
    """HAS_PERMISSION or CONDITIONAL_PERMISSION for a lookup result."""
    return (
        permission.PERMISSIONSHIP_CONDITIONAL_PERMISSION
        if conditional
        else permission.PERMISSIONSHIP_HAS_PERMISSION
    )


_EXPAND_OPS = {
    ExpandOp.UNION: permission.AlgebraicSubjectSet.OPERATION_UNION,
    ExpandOp.INTERSECTION: permission.AlgebraicSubjectSet.OPERATION_INTERSECTION,
    ExpandOp.EXCLUSION: permission.AlgebraicSubjectSet.OPERATION_EXCLUSION,
}
_EXPAND_OPS_BACK = {value: key for key, value in _EXPAND_OPS.items()}


def expand_to_proto(
    node: ExpandNode, tree: permission.PermissionRelationshipTree | None = None
) -> permission.PermissionRelationshipTree:
    """The message tree for an expand tree (filled into `tree` when given)."""
    if tree is None:
        tree = permission.PermissionRelationshipTree()
    tree.expanded_object.CopyFrom(object_to_proto(node.object))
    tree.expanded_relation = node.relation
    if node.op is not None:
        tree.intermediate.operation = _EXPAND_OPS[node.op]
        # built in place: copying a finished subtree in re-parses it, and protobuf refuses
        # to parse more than 100 nested messages (a tree 25 arrows deep)
        children = tree.intermediate.children
        for child in node.children:
            expand_to_proto(child, children.add())
    else:
        caveats = list(node.subject_caveats) + [None] * (len(node.subjects) - len(node.subject_caveats))
        tree.leaf.SetInParent()
        for subject, caveat in zip(node.subjects, caveats, strict=False):
            tree.leaf.subjects.append(
                permission.ExpandedSubject(subject=subject_to_proto(subject), caveat_name=caveat or "")
            )
    return tree


def expand_from_proto(tree: permission.PermissionRelationshipTree) -> ExpandNode:
    """The expand tree of a message tree (used by clients)."""
    node = ExpandNode(
        ObjectRef(tree.expanded_object.object_type, tree.expanded_object.object_id), tree.expanded_relation
    )
    if tree.WhichOneof("tree_type") == "intermediate":
        node.op = _EXPAND_OPS_BACK.get(tree.intermediate.operation, ExpandOp.UNION)
        node.children = [expand_from_proto(child) for child in tree.intermediate.children]
    else:
        for item in tree.leaf.subjects:
            node.subjects.append(
                SubjectRef(
                    item.subject.object.object_type,
                    item.subject.object.object_id,
                    item.subject.optional_relation,
                )
            )
            node.subject_caveats.append(item.caveat_name or None)
    return node

