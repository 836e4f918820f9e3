"""format_schema: canonical text, minimal parentheses, docs kept, parse → format → parse identical."""

from __future__ import annotations

import pytest

from stonetown.schema import compile_schema, format_schema, ir
from stonetown.schema.formatter import format_doc, format_rewrite

EXAMPLES = {
    "everything": (
        "use expiration\n"
        "/** users */ definition user {}\n"
        "caveat cav(abc int, tags list<string>) {\n  abc > 1 &&\n    'x' in tags\n}\n"
        "definition group { relation member: user | group#member with cav and expiration }\n"
        "/**\n * doc\n *\n *   indented\n */\n"
        "definition doc {\n"
        " /** ** starts with stars */ relation viewer: user | user:* with cav | group#member\n"
        " relation parent: doc\n"
        " relation banned: user\n"
        " permission view = (viewer + parent->view) - banned & parent.all(view) - nil\n"
        " permission edit = viewer - (banned - viewer) + (viewer & banned)\n"
        "}\n"
    ),
    "empty": "",
    "only-caveat": "caveat cav(abc int) { abc == 1 }",
}

CANONICAL = """use expiration

/** users */
definition user {}

caveat cav(abc int) {
\tabc == 1
}

definition doc {
\t/** who */
\trelation viewer: user | user with cav and expiration
\trelation parent: doc
\tpermission view = viewer & viewer - viewer + parent->view & viewer
}
"""


@pytest.mark.parametrize("text", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_round_trip(text: str) -> None:
    schema = compile_schema(text)
    formatted = format_schema(schema)
    assert compile_schema(formatted) == schema
    assert format_schema(compile_schema(formatted)) == formatted


def test_canonical_text_is_stable() -> None:
    messy = (
        "use expiration\n/** users */\ndefinition user{}\n"
        "caveat cav(abc int){abc == 1}\n"
        "definition doc{\n/** who */ relation viewer:user|user with cav and expiration\n"
        "relation parent: doc\n"
        "permission view=((viewer&viewer))-(viewer+((parent->view)))&viewer}"
    )
    assert format_schema(compile_schema(messy)) == CANONICAL
    assert format_schema(compile_schema(CANONICAL)) == CANONICAL


def test_docs_survive_round_trip() -> None:
    schema = compile_schema(EXAMPLES["everything"])
    again = compile_schema(format_schema(schema))
    assert again.definitions["user"].doc == "users"
    assert again.definitions["doc"].doc == "doc\n\n  indented"
    assert again.definitions["doc"].relations["viewer"].doc == "* starts with stars"


@pytest.mark.parametrize(
    ("rewrite", "text"),
    [
        (
            ir.Union((ir.ComputedUserset("aaa"), ir.Intersection((ir.ComputedUserset("bbb"), ir.Nil())))),
            "aaa + (bbb & nil)",
        ),
        (
            ir.Intersection((ir.Union((ir.ComputedUserset("aaa"), ir.ComputedUserset("bbb"))), ir.Nil())),
            "aaa + bbb & nil",
        ),
        (ir.Exclusion(ir.Exclusion(ir.ComputedUserset("aaa"), ir.Nil()), ir.Nil()), "aaa - nil - nil"),
        (ir.Exclusion(ir.ComputedUserset("aaa"), ir.Exclusion(ir.Nil(), ir.Nil())), "aaa - (nil - nil)"),
        (ir.Intersection((ir.Exclusion(ir.Nil(), ir.Nil()), ir.Nil())), "(nil - nil) & nil"),
        (ir.TupleToUserset("parent", "view", "all"), "parent.all(view)"),
        (ir.TupleToUserset("parent", "view"), "parent->view"),
    ],
)
def test_minimal_parentheses(rewrite: ir.Rewrite, text: str) -> None:
    assert format_rewrite(rewrite) == text


def test_doc_formats() -> None:
    assert format_doc(None) == ""
    assert format_doc("one line") == "/** one line */\n"
    assert format_doc("two\nlines", "\t") == "\t/**\n\t * two\n\t * lines\n\t */\n"
    assert format_doc("bad */ end") == "/** bad * / end */\n"


def test_hand_built_schema_without_positions_formats() -> None:
    schema = ir.Schema(
        {"user": ir.Definition("user", {})},
        {"cav": ir.Caveat("cav", (ir.CaveatParameter("abc", "int"),), "abc == 1")},
    )
    text = format_schema(schema)
    assert text.index("definition user") < text.index("caveat cav")
    assert compile_schema(text) == schema
