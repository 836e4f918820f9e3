"""The quick conversion of Check and CheckBulk items accepts exactly what the field-by-field
validation accepts, and gives the same check."""

from __future__ import annotations

import pytest

from stonetown.api import convert as cv
from stonetown.api.pb import core, permission
from stonetown.core.errors import InvalidArgument
from stonetown.engine.types import CheckRequest


def _item(
    rtype: str, rid: str, perm: str, stype: str, sid: str, srel: str = ""
) -> permission.CheckBulkRequestItem:
    return permission.CheckBulkRequestItem(
        resource=core.ObjectReference(object_type=rtype, object_id=rid),
        permission=perm,
        subject=core.SubjectReference(
            object=core.ObjectReference(object_type=stype, object_id=sid), optional_relation=srel
        ),
    )


def _slow(item: permission.CheckBulkRequestItem) -> CheckRequest:
    return CheckRequest(
        cv.object_from_proto(item.resource, item.HasField("resource"), "resource"),
        cv.check_relation_name(item.permission, "permission"),
        cv.subject_from_proto(item.subject, item.HasField("subject"), "subject"),
        cv.struct_to_dict(item.context, item.HasField("context")),
    )


VALID = [
    _item("document", "readme", "view", "user", "ana"),
    _item("document", "a/b_c|d-e=f+g", "view", "team", "eng", "member"),
    _item("org/document", "x", "view", "user", "b"),
    _item("document", "readme", "view", "user", "*"),  # wildcard: only the slow way
    _item("document", "readme", "view", "team", "eng", "..."),  # `...`: only the slow way
]
INVALID = [
    _item("", "readme", "view", "user", "ana"),
    _item("document", "", "view", "user", "ana"),
    _item("document", "read me", "view", "user", "ana"),
    _item("document", "readme", "view", "user", "ana\n"),  # ids match whole: no final newline
    _item("document", "readme", "", "user", "ana"),
    _item("document", "readme", "View", "user", "ana"),
    _item("document", "readme", "view", "user", ""),
    _item("document", "*", "view", "user", "ana"),
    _item("document", "readme", "view", "user", "*", "member"),
    _item("document", "x" * 1025, "view", "user", "ana"),
    _item("Document", "readme", "view", "user", "ana"),
    permission.CheckBulkRequestItem(permission="view"),
]


def test_quick_way_agrees_with_field_by_field_validation() -> None:
    for item in VALID:
        expected = _slow(item)  # also what makes the names known to the quick way
        quick = cv.check_request_from_proto(item)
        assert quick is None or quick == expected, item
    assert cv.check_request_from_proto(VALID[0]) == _slow(VALID[0])
    assert cv.check_request_from_proto(VALID[1]) == _slow(VALID[1])
    assert cv.check_request_from_proto(VALID[3]) is None
    assert cv.check_request_from_proto(VALID[4]) is None
    for item in INVALID:
        with pytest.raises(InvalidArgument):
            _slow(item)
        assert cv.check_request_from_proto(item) is None, item


def test_quick_way_keeps_the_caveat_context() -> None:
    item = _item("document", "readme", "view", "user", "ana")
    item.context.update({"day": "mon", "n": 3})
    _slow(item)
    quick = cv.check_request_from_proto(item)
    assert quick is not None and quick.context == {"day": "mon", "n": 3}
    request = permission.CheckRequest(
        resource=item.resource, permission="view", subject=item.subject, context=item.context
    )
    assert cv.check_request_from_proto(request) == quick
