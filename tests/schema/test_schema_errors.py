"""Invalid schemas: each rule gives SpiceDB's message at the exact line and column."""

from __future__ import annotations

import pytest

from stonetown.core.errors import InvalidArgument
from stonetown.schema import Diagnostic, SchemaError, compile_schema, parse_schema

USER = "definition user {}\n"

# (id, schema text, line, column, message substring)
CASES: list[tuple[str, str, int, int, str]] = [
    # ---- references ----
    (
        "unknown-subject-type",
        USER + "definition document {\n  relation viewer: usr\n}",
        3,
        20,
        "could not lookup definition `usr` for relation `viewer`: object definition `usr` not found",
    ),
    (
        "unknown-computed-relation",
        USER + "definition document {\n  relation viewer: user\n  permission view = viewr\n}",
        4,
        21,
        "relation/permission `viewr` not found under definition `document`",
    ),
    (
        "unknown-subject-relation",
        USER + "definition doc {\n relation viewer: user#foo\n}",
        3,
        19,
        "relation/permission `foo` not found under definition `user`",
    ),
    (
        "unknown-caveat",
        USER + "definition doc {\n relation viewer: user | user with nocaveat\n}",
        3,
        26,
        "could not lookup caveat `nocaveat` for relation `viewer`: caveat `nocaveat` not found",
    ),
    (
        "unknown-tupleset",
        USER + "definition doc {\n relation viewer: user\n permission view = nothere->view\n}",
        4,
        20,
        "relation/permission `nothere` not found under definition `doc`",
    ),
    # ---- duplicates ----
    ("duplicate-definition", USER + "definition user {}", 2, 12, "found name reused between multiple"),
    (
        "caveat-and-definition-share-name",
        "caveat user(abc int) { abc == 1 }\n" + USER,
        2,
        12,
        "found name reused between multiple definitions and/or caveats: user",
    ),
    (
        "duplicate-caveat",
        "caveat cav(abc int) { abc == 1 }\ncaveat cav(abc int) { abc == 2 }",
        2,
        8,
        "found name reused between multiple definitions and/or caveats: cav",
    ),
    (
        "duplicate-relation",
        USER + "definition doc {\n relation viewer: user\n relation viewer: user\n}",
        4,
        11,
        "found duplicate relation/permission name `viewer` under definition `doc`",
    ),
    (
        "permission-named-like-relation",
        USER + "definition doc {\n relation viewer: user\n permission viewer = viewer\n}",
        4,
        13,
        "found duplicate relation/permission name `viewer` under definition `doc`",
    ),
    (
        "duplicate-parameter",
        "caveat cav(abc int, abc string) { abc == 1 }",
        1,
        21,
        "duplicate parameter `abc` defined on caveat `cav`",
    ),
    (
        "duplicate-allowed-subject",
        USER + "definition doc {\n relation viewer: user | user\n}",
        3,
        26,
        "found duplicate allowed subject type `user` on relation `viewer` under definition `doc`",
    ),
    # ---- arrows and wildcards ----
    (
        "permission-left-of-arrow",
        USER + "definition doc {\n relation viewer: user\n permission view = viewer\n"
        " permission other = view->foo\n}",
        5,
        21,
        "under permission `other` under definition `doc`: permissions cannot be used on the left hand "
        "side of an arrow (found `view`)",
    ),
    (
        "wildcard-left-of-arrow",
        USER + "definition doc {\n relation viewer: user:*\n permission other = viewer->foo\n}",
        4,
        21,
        "for arrow under permission `other`: relation `doc#viewer` includes wildcard type `user` via "
        "relation `doc#viewer`: wildcard relations cannot be used on the left side of arrows",
    ),
    (
        "wildcard-left-of-arrow-through-subject-set",
        USER + "definition group {\n relation member: user:*\n permission view = member\n}\n"
        "definition doc {\n relation parent: doc#owner\n relation owner: group#member\n"
        " permission view = parent->view\n}",
        9,
        20,
        "relation `doc#parent` includes wildcard type `user` via relation `group#member`",
    ),
    (
        "transitive-wildcard",
        USER + "definition group {\n relation member: user:*\n}\n"
        "definition doc {\n relation viewer: group#member\n}",
        6,
        19,
        "for relation `viewer`: relation/permission `group#member` includes wildcard type `user` via "
        "relation `group#member`: wildcard relations cannot be transitively included",
    ),
    # ---- cycles ----
    (
        "permission-alias-cycle",
        USER + "definition doc {\n relation viewer: user\n permission aaa = bbb\n permission bbb = aaa\n}",
        4,
        2,
        "under definition `doc`, there exists a cycle in permissions: aaa, bbb",
    ),
    (
        "permission-alias-self",
        USER + "definition doc {\n permission aaa = aaa\n}",
        3,
        2,
        "there exists a cycle in permissions: aaa",
    ),
    # ---- identifiers ----
    (
        "uppercase-definition",
        "definition User {}",
        1,
        12,
        "invalid definition name `User`: value does not match",
    ),
    ("short-definition", "definition ab {}", 1, 12, "invalid definition name `ab`"),
    ("bad-prefix", "definition Docs/document {}", 1, 12, "invalid definition name `Docs/document`"),
    ("trailing-underscore", "definition user_ {}", 1, 12, "invalid definition name `user_`"),
    (
        "short-relation",
        USER + "definition doc {\n relation v: user\n}",
        3,
        11,
        "invalid relation name `v`: value does not match regex pattern ^[a-z][a-z0-9_]{1,62}[a-z0-9]$",
    ),
    (
        "short-permission",
        USER + "definition doc {\n permission pp = nil\n}",
        3,
        13,
        "invalid permission name `pp`",
    ),
    (
        "short-computed-name",
        USER + "definition doc {\n permission view = vv\n}",
        3,
        20,
        "invalid relation/permission name `vv`",
    ),
    ("unicode-definition", "definition dökument {}", 1, 12, "invalid definition name `dökument`"),
    ("invalid-caveat-name", "caveat Cav(abc int) { abc }", 1, 8, "invalid caveat name `Cav`"),
    # ---- caveats and flags ----
    (
        "expiration-without-use",
        USER + "definition doc {\n relation viewer: user with expiration\n}",
        3,
        29,
        "expiration flag is not enabled; add `use expiration` to top of file",
    ),
    (
        "caveat-and-expiration-without-use",
        "caveat cav(abc int) { abc == 1 }\n"
        + USER
        + "definition doc {\n relation viewer: user with cav and expiration\n}",
        4,
        37,
        "expiration flag is not enabled",
    ),
    ("unknown-use-flag", "use frobnicate", 1, 5, "unknown use flag `frobnicate`"),
    ("duplicate-use-flag", "use expiration\nuse expiration", 2, 1, "found duplicate use flag: expiration"),
    (
        "unknown-parameter-type",
        "caveat cav(abc foo) { abc == 1 }",
        1,
        16,
        "invalid type for caveat parameter `abc` on caveat `cav`: unknown type `foo`",
    ),
    ("unknown-list-element-type", "caveat cav(abc list<foo>) { abc }", 1, 21, "unknown type `foo`"),
    ("list-without-argument", "caveat cav(abc list) { abc }", 1, 16, "type `list` requires 1 type argument"),
    (
        "scalar-with-argument",
        "caveat cav(abc int<string>) { abc }",
        1,
        16,
        "type `int` does not take type arguments",
    ),
    ("no-parameters", "caveat cav() { true }", 1, 8, "caveat `cav` must have at least one parameter defined"),
    ("empty-expression", "caveat cav(abc int) {  }", 1, 24, "caveat `cav` has an empty expression"),
    # ---- syntax ----
    (
        "missing-colon",
        "definition doc {\n relation viewer user\n}",
        2,
        18,
        "expected `:` after relation name",
    ),
    ("missing-brace", "definition doc {\n", 2, 1, "definition `doc` opened at 1:1 is missing its `}`"),
    (
        "nested-arrow",
        "definition doc { permission view = aaa->bbb->ccc }",
        1,
        44,
        "nested arrows are not supported",
    ),
    (
        "unknown-arrow-function",
        "definition doc { permission view = aaa.foo(bbb) }",
        1,
        40,
        "unknown arrow function `foo`",
    ),
    (
        "dangling-operator",
        "definition doc {\n permission view = aaa +\n}",
        3,
        1,
        "expected a relation, permission",
    ),
    ("bad-wildcard", "definition doc {\n relation viewer: user:foo\n}", 2, 24, "expected `*` after `user:`"),
    (
        "bad-trait",
        "definition doc {\n relation viewer: user with cav and foo\n}",
        2,
        37,
        "expected `expiration`",
    ),
    ("bad-character", "definition doc { $ }", 1, 18, "unexpected character '$'"),
    ("nul-byte", "\x00", 1, 1, "unexpected character '\\x00'"),
    ("unterminated-comment", USER + "/* never closed", 2, 1, "unterminated comment"),
    ("unterminated-caveat", "caveat cav(abc int) { abc == '}' ", 1, 21, "caveat `cav` expression is missing"),
    (
        "garbage-top-level",
        "relation viewer: user",
        1,
        1,
        "expected `definition`, `caveat` or `use`, found `relation`",
    ),
    (
        "junk-after-permission",
        "definition doc { permission view = aaa bbb }",
        1,
        40,
        "unexpected `bbb` after permission",
    ),
    (
        "parenthesis-unclosed",
        "definition doc { permission view = (aaa }",
        1,
        41,
        "expected `)` to close the `(` at 1:36",
    ),
    (
        "member-outside-braces",
        "definition doc {\ndefinition user {}",
        2,
        1,
        "expected `}` to close the definition",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_schema(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        compile_schema(text)
    matching = [d for d in caught.value.diagnostics if message in d.message]
    assert matching, f"no diagnostic contains {message!r}: {caught.value}"
    assert (matching[0].line, matching[0].column) == (line, column), str(caught.value)
    assert f"{line}:{column}: " in str(caught.value)


def test_schema_error_is_invalid_argument_and_lists_every_diagnostic() -> None:
    text = USER + (
        "definition doc {\n"
        " relation viewer: usr\n"
        " relation editor: user with nocaveat\n"
        " permission view = viewr + editor\n"
        "}"
    )
    with pytest.raises(InvalidArgument) as caught:
        compile_schema(text)
    error = caught.value
    assert isinstance(error, SchemaError)
    assert [(d.line, d.column) for d in error.diagnostics] == [(3, 19), (4, 19), (5, 20)]
    lines = str(error).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("3:19: could not lookup definition `usr`")
    assert lines[1].startswith("4:19: could not lookup caveat `nocaveat`")
    assert lines[2] == "5:20: relation/permission `viewr` not found under definition `doc`"


def test_several_syntax_errors_reported_at_once() -> None:
    text = "definition doc {\n relation viewer user\n permission view = +\n relation ok_one: doc\n}\nbogus"
    with pytest.raises(SchemaError) as caught:
        parse_schema(text)
    positions = [(d.line, d.column) for d in caught.value.diagnostics]
    assert positions == [(2, 18), (3, 20), (6, 1)]


def test_error_count_is_capped() -> None:
    text = "definition doc {\n" + "relation xx\n" * 500 + "}"
    with pytest.raises(SchemaError) as caught:
        parse_schema(text)
    assert 10 < len(caught.value.diagnostics) <= 60
    assert "too many errors" in caught.value.diagnostics[-1].message


def test_diagnostic_str() -> None:
    assert str(Diagnostic(3, 7, "boom")) == "3:7: boom"
    assert Diagnostic(3, 7, "boom").pos.line == 3


def test_compile_errors_stop_before_type_checking() -> None:
    # The duplicate is a declaration error; the unknown type would be a type error.
    text = USER + "definition doc {\n relation viewer: usr\n relation viewer: user\n}"
    with pytest.raises(SchemaError) as caught:
        compile_schema(text)
    assert len(caught.value.diagnostics) == 1
    assert "duplicate relation/permission name" in caught.value.diagnostics[0].message
