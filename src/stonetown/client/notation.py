"""Turn what callers pass (tuple-notation strings or typed objects) into domain values."""

from __future__ import annotations

import re
from collections.abc import Sequence

from stonetown.core.errors import InvalidArgument
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.datastore import RelationshipFilter, SubjectFilter
from stonetown.engine.types import CheckRequest

ObjectLike = str | ObjectRef
SubjectLike = str | SubjectRef | ObjectRef
RelationshipLike = str | Relationship
CheckLike = str | CheckRequest | Sequence[str]
FilterLike = str | RelationshipFilter

_FILTER_RE = re.compile(
    r"""^(?P<rtype>[^:#@\s]+)?(?::(?P<rid>[^#@\s]+))?(?:\#(?P<rel>[^@\s]+))?
        (?:@(?P<stype>[^:#@\s]+)(?::(?P<sid>[^#@\s]+))?(?:\#(?P<srel>[^@\s]+))?)?$""",
    re.VERBOSE,
)


def to_object(value: ObjectLike) -> ObjectRef:
    """`document:readme` or an ObjectRef."""
    return value if isinstance(value, ObjectRef) else ObjectRef.parse(value)


def to_subject(value: SubjectLike) -> SubjectRef:
    """`user:ana`, `team:x#member`, `user:*`, a SubjectRef or an ObjectRef."""
    if isinstance(value, SubjectRef):
        return value
    if isinstance(value, ObjectRef):
        return SubjectRef(value.type, value.id)
    return SubjectRef.parse(value)


def to_relationship(value: RelationshipLike) -> Relationship:
    """`document:readme#viewer@user:ana[...]` or a Relationship."""
    return value if isinstance(value, Relationship) else Relationship.parse(value)


def to_check(value: CheckLike, context: dict | None = None) -> CheckRequest:
    """`resource#permission@subject`, a (resource, permission, subject) triple or a CheckRequest."""
    if isinstance(value, CheckRequest):
        return value
    if isinstance(value, str):
        rel = Relationship.parse(value)
        return CheckRequest(rel.resource, rel.relation, rel.subject, context)
    if len(value) != 3:
        raise InvalidArgument(f"check {value!r}: expected (resource, permission, subject)")
    resource, permission, subject = value
    return CheckRequest(to_object(resource), permission, to_subject(subject), context)


def parse_filter(text: str) -> RelationshipFilter:
    """A filter in tuple-like notation; every part is optional:
    `document`, `document:readme`, `document:read*` (id prefix), `document#viewer`,
    `document:readme#viewer@user`, `@user:ana`, `document@team:x#member`."""
    match = _FILTER_RE.match(text.strip())
    if match is None or not text.strip():
        raise InvalidArgument(
            f"filter {text!r} is not of the form [type[:id]][#relation][@type[:id][#relation]]"
        )
    rid = match["rid"]
    resource_id, prefix = (None, rid[:-1]) if rid and rid.endswith("*") and rid != "*" else (rid, None)
    subject: SubjectFilter | None = None
    if match["stype"]:
        srel = match["srel"]
        subject = SubjectFilter(match["stype"], match["sid"], "" if srel == "..." else srel)
    return RelationshipFilter(match["rtype"], resource_id, prefix, match["rel"], subject)


def to_filter(value: FilterLike | None) -> RelationshipFilter:
    """A RelationshipFilter, from a filter or its notation (None: match everything)."""
    if value is None:
        return RelationshipFilter()
    return value if isinstance(value, RelationshipFilter) else parse_filter(value)
