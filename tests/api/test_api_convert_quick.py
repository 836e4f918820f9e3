"""The quick conversion of Check and CheckBulk items accepts exactly what the field-by-field
validation accepts, and gives the same check."""

from __future__ import annotations

import pytest

from stonetown.api import convert as cv
from stonetown.api import tokens
from stonetown.api.pb import core, permission
from stonetown.core.errors import InvalidArgument
from stonetown.engine.types import CheckRequest, Consistency


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
    _item("document", "x" * 1024, "view", "user", "Ana2"),
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
    _item("document", "readme", "view", "user", "x" * 1025),
    _item("document", "readme", "view", "user", "ana\u00b2"),  # letters and digits, not ASCII
    _item("document", "\u0661\u0662", "view", "user", "ana"),
    _item("document", "caf\u00e9", "view", "user", "ana"),
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
    assert cv.check_request_from_proto(VALID[3]) == _slow(VALID[3])
    for item in VALID[:4]:
        expected = _slow(item)
        key = cv.check_key_from_proto(item)
        subject = expected.subject
        assert key == (
            expected.resource.type,
            expected.resource.id,
            expected.permission,
            (subject.type, subject.id, subject.relation),
        )
    assert cv.check_request_from_proto(VALID[4]) is None
    assert cv.check_request_from_proto(VALID[5]) is None
    for item in INVALID:
        with pytest.raises(InvalidArgument):
            _slow(item)
        assert cv.check_request_from_proto(item) is None, item
        assert cv.check_key_from_proto(item) is None, item


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


def test_consistency_choices() -> None:
    token = tokens.token_to_proto(5)
    assert tokens.consistency_from_proto(core.Consistency(), False) == Consistency.minimize_latency()
    assert tokens.consistency_from_proto(core.Consistency(), True) == Consistency.minimize_latency()
    for choice, expected in [
        (core.Consistency(minimize_latency=True), Consistency.minimize_latency()),
        (core.Consistency(minimize_latency=False), Consistency.minimize_latency()),
        (core.Consistency(fully_consistent=True), Consistency.fully_consistent()),
        (core.Consistency(fully_consistent=False), Consistency.fully_consistent()),
        (core.Consistency(at_least_as_fresh=token), Consistency.at_least_as_fresh(5)),
        (core.Consistency(at_exact_snapshot=token), Consistency.at_exact_snapshot(5)),
    ]:
        assert tokens.consistency_from_proto(choice, True) == expected, choice
    with pytest.raises(InvalidArgument, match=r"consistency\.at_least_as_fresh\.token"):
        tokens.consistency_from_proto(core.Consistency(at_least_as_fresh=core.ZedToken()), True)


def test_cursors_written_in_bulk_are_the_cursors_written_one_at_a_time() -> None:
    values = ["doc1", "*", "a/b|c=d+e-f_g", 'quote"d', "back\\slash", "é", "tab\t", "\x7f", "~!#[]{} ", ""]
    for kind in ("lookup_resources", "lookup_subjects", "k"):
        cursors = tokens.encode_cursors(kind, values)
        assert cursors == [tokens.encode_cursor(kind, [value]) for value in values]
        assert [tokens.decode_cursor(c, kind, 1, "optional_cursor") for c in cursors] == [[v] for v in values]
