"""Parsing and compiling valid schemas: precedence, arrows, subject types, caveats, docs, positions."""

from __future__ import annotations

import pytest

from stonetown.schema import ast, compile_schema, ir, parse_schema
from stonetown.schema.ir import ComputedUserset as CU
from stonetown.schema.ir import Exclusion, Intersection, Nil, TupleToUserset, Union

PRELUDE = (
    "definition user {}\ndefinition doc {\n relation aaa: user\n relation bbb: user\n relation ccc: user\n"
)
PRELUDE += " relation ddd: user\n relation parent: doc\n"


def rewrite_of(expression: str) -> ir.Rewrite:
    schema = compile_schema(PRELUDE + f" permission view = {expression}\n}}")
    relation = schema.relation("doc", "view")
    assert relation is not None and relation.is_permission
    return relation.rewrite


A, B, C, D = CU("aaa"), CU("bbb"), CU("ccc"), CU("ddd")

PRECEDENCE_CASES = [
    ("aaa", A),
    ("(aaa)", A),
    ("aaa + bbb + ccc", Union((A, B, C))),
    ("aaa & bbb & ccc", Intersection((A, B, C))),
    ("aaa - bbb - ccc", Exclusion(Exclusion(A, B), C)),
    ("aaa + bbb & ccc", Intersection((Union((A, B)), C))),
    ("aaa & bbb + ccc", Intersection((A, Union((B, C))))),
    ("aaa - bbb & ccc", Exclusion(A, Intersection((B, C)))),
    ("aaa & bbb - ccc", Exclusion(Intersection((A, B)), C)),
    ("aaa - bbb + ccc", Exclusion(A, Union((B, C)))),
    ("aaa + bbb - ccc + ddd", Exclusion(Union((A, B)), Union((C, D)))),
    ("aaa - (bbb - ccc)", Exclusion(A, Exclusion(B, C))),
    ("(aaa + bbb) & ccc", Intersection((Union((A, B)), C))),
    ("aaa + (bbb + ccc)", Union((A, B, C))),
    ("(aaa & bbb) & (ccc & ddd)", Intersection((A, B, C, D))),
    ("aaa + nil", Union((A, Nil()))),
    ("nil", Nil()),
    ("parent->aaa", TupleToUserset("parent", "aaa")),
    ("parent.any(aaa)", TupleToUserset("parent", "aaa", "any")),
    ("parent.all(aaa)", TupleToUserset("parent", "aaa", "all")),
    ("parent->aaa + bbb", Union((TupleToUserset("parent", "aaa"), B))),
    ("aaa - parent->bbb & ccc", Exclusion(A, Intersection((TupleToUserset("parent", "bbb"), C)))),
    ("((((aaa))))", A),
]


@pytest.mark.parametrize(("expression", "expected"), PRECEDENCE_CASES, ids=[c[0] for c in PRECEDENCE_CASES])
def test_precedence_and_flattening(expression: str, expected: ir.Rewrite) -> None:
    assert rewrite_of(expression) == expected


def test_arrow_any_equals_plain_arrow() -> None:
    assert rewrite_of("parent.any(aaa)") == rewrite_of("parent->aaa")
    assert rewrite_of("parent.all(aaa)") != rewrite_of("parent->aaa")


def test_subject_types() -> None:
    schema = compile_schema(
        "use expiration\n"
        "definition user {}\n"
        "definition group {\n relation member: user | group#member\n}\n"
        "caveat only_weekdays(day string) { day != 'sat' }\n"
        "definition doc {\n"
        " relation viewer: user | user:* | group#member | user with only_weekdays | user with expiration"
        " | user with only_weekdays and expiration\n"
        "}"
    )
    assert schema.uses_expiration
    viewer = schema.relation("doc", "viewer")
    assert viewer is not None and not viewer.is_permission
    assert viewer.allowed == (
        ir.AllowedSubject("user"),
        ir.AllowedSubject("user", wildcard=True),
        ir.AllowedSubject("group", relation="member"),
        ir.AllowedSubject("user", caveat="only_weekdays"),
        ir.AllowedSubject("user", expiration=True),
        ir.AllowedSubject("user", caveat="only_weekdays", expiration=True),
    )
    assert isinstance(viewer.rewrite, ir.This)
    assert [str(a) for a in viewer.allowed] == [
        "user",
        "user:*",
        "group#member",
        "user with only_weekdays",
        "user with expiration",
        "user with only_weekdays and expiration",
    ]


def test_prefixed_names_with_several_slashes() -> None:
    schema = compile_schema(
        "definition org/team_one/user {}\n"
        "caveat org/team_one/on_tuesday(day string) { day == 'tuesday' }\n"
        "definition org/docs/resource {\n"
        " relation viewer: org/team_one/user with org/team_one/on_tuesday\n"
        "}"
    )
    assert list(schema.definitions) == ["org/team_one/user", "org/docs/resource"]
    assert list(schema.caveats) == ["org/team_one/on_tuesday"]


def test_caveat_parameters_and_raw_expression() -> None:
    text = (
        "caveat tricky(tags list<string>, limits map<int>, nested list<map<any>>, ip ipaddress, "
        "at timestamp, span duration, raw bytes, ratio double, count uint, ok bool, anything any) {\n"
        "  {'a': \"}\"}['a'] == '}' && tags.all(t, t != \"{\") // a } in a comment\n"
        "}\n"
        "definition user {}"
    )
    schema = compile_schema(text)
    caveat = schema.caveats["tricky"]
    assert [(p.name, p.type) for p in caveat.parameters][:3] == [
        ("tags", "list<string>"),
        ("limits", "map<int>"),
        ("nested", "list<map<any>>"),
    ]
    assert caveat.expression == "{'a': \"}\"}['a'] == '}' && tags.all(t, t != \"{\") // a } in a comment"
    assert (caveat.pos.line, caveat.pos.column) == (1, 1)
    assert (caveat.expression_pos.line, caveat.expression_pos.column) == (2, 3)
    assert list(schema.definitions) == ["user"]


def test_doc_comments_are_attached_and_kept() -> None:
    text = (
        "/** a user */\n"
        "definition user {}\n"
        "// a plain comment is not documentation\n"
        "/**\n * the document\n * type\n */\n"
        "definition doc {\n"
        "  /** who can view */\n"
        "  relation viewer: user\n"
        "  /* plain block comment */\n"
        "  relation editor: user\n"
        "  /** first */\n"
        "  /** second */\n"
        "  permission view = viewer + editor\n"
        "}\n"
        "/** a caveat */\n"
        "caveat cav(abc int) { abc > 1 }"
    )
    schema = compile_schema(text)
    assert schema.definitions["user"].doc == "a user"
    doc = schema.definitions["doc"]
    assert doc.doc == "the document\ntype"
    assert doc.relations["viewer"].doc == "who can view"
    assert doc.relations["editor"].doc is None
    assert doc.relations["view"].doc == "first\nsecond"
    assert schema.caveats["cav"].doc == "a caveat"


def test_positions_are_recorded() -> None:
    schema = compile_schema(PRELUDE + " permission view = aaa + parent->bbb\n}")
    doc = schema.definitions["doc"]
    assert (doc.pos.line, doc.pos.column) == (2, 1)
    assert (doc.relations["aaa"].pos.line, doc.relations["aaa"].pos.column) == (3, 2)
    allowed = doc.relations["aaa"].allowed[0]
    assert (allowed.pos.line, allowed.pos.column) == (3, 16)
    view = doc.relations["view"]
    assert isinstance(view.rewrite, Union)
    arrow = view.rewrite.children[1]
    assert isinstance(arrow, TupleToUserset)
    assert (arrow.pos.line, arrow.pos.column) == (8, 26)


def test_relations_keep_source_order_and_comparison_ignores_positions() -> None:
    first = compile_schema("definition user {}\n" + PRELUDE[len("definition user {}\n") :] + "}")
    second = compile_schema("\n\n  definition user {}\n" + PRELUDE[len("definition user {}\n") :] + "}")
    assert list(first.definitions["doc"].relations) == ["aaa", "bbb", "ccc", "ddd", "parent"]
    assert first == second


def test_parse_schema_gives_ast_with_positions() -> None:
    tree = parse_schema("use expiration\ndefinition doc {\n permission view = aaa - bbb - ccc\n}")
    use, definition = tree.items
    assert isinstance(use, ast.UseDecl) and use.flag.value == "expiration"
    assert isinstance(definition, ast.DefinitionDecl)
    permission = definition.members[0]
    assert isinstance(permission, ast.PermissionDecl)
    expression = permission.expression
    assert isinstance(expression, ast.OperatorExpr)
    assert expression.operator == "-"
    assert [o.name.value for o in expression.operands if isinstance(o, ast.IdentifierExpr)] == [
        "aaa",
        "bbb",
        "ccc",
    ]
    assert (expression.line, expression.column) == (3, 20)


def test_keywords_are_contextual() -> None:
    schema = compile_schema(
        "definition container {\n relation viewer: container\n permission view = viewer\n}\n"
        "definition resource {\n relation with_container: container\n"
        " permission entitled = with_container->view\n}"
    )
    assert schema.relation("resource", "entitled") is not None


def test_semicolons_and_empty_input() -> None:
    schema = compile_schema(
        "definition user {}; definition doc { relation viewer: user; permission view = viewer; }"
    )
    assert list(schema.definitions["doc"].relations) == ["viewer", "view"]
    assert compile_schema("") == ir.Schema({}, {})
    assert compile_schema("  // only a comment\n/* and a block */\n") == ir.Schema({}, {})


def test_arrow_over_subject_set_type_finds_target() -> None:
    schema = compile_schema(
        "definition user {}\ndefinition group {\n relation member: user\n}\n"
        "definition doc {\n relation owner: group#member\n permission view = owner->member\n}"
    )
    assert schema.relation("doc", "view") is not None
