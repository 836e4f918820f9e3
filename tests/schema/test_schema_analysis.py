"""analyze(): the reachability graph and the lint warnings."""

from __future__ import annotations

from stonetown.schema import compile_schema
from stonetown.schema.analysis import Analysis, analyze

SCHEMA = """
definition user {}
definition group {
  relation member: user | group#member
}
definition folder {
  relation viewer: user | user:*
  permission view = viewer
}
definition doc {
  relation parent: folder
  relation owner: group#member
  relation viewer: user
  relation unused_rel: user
  permission view = viewer + owner + parent->view + owner->member
  permission loop = loop + viewer
}
caveat unused_cav(abc int) { abc == 1 }
"""


def _edges(analysis: Analysis, source: tuple[str, str]) -> set[tuple[tuple[str, str], str]]:
    return {(v, data["kind"]) for _, v, data in analysis.graph.out_edges(source, data=True)}


def test_graph_edges() -> None:
    analysis = analyze(compile_schema(SCHEMA))
    assert _edges(analysis, ("group", "member")) == {
        (("user", "..."), "direct"),
        (("group", "member"), "direct"),
    }
    assert (("user", "*"), "direct") in _edges(analysis, ("folder", "viewer"))
    view = _edges(analysis, ("doc", "view"))
    assert (("doc", "viewer"), "computed") in view
    assert (("doc", "parent"), "tupleset") in view
    assert (("folder", "view"), "arrow") in view
    assert (("group", "member"), "arrow") in view
    arrow = [d for _, v, d in analysis.graph.out_edges(("doc", "view"), data=True) if v == ("folder", "view")]
    assert arrow[0]["via"] == "parent" and arrow[0]["mode"] == "any"


def test_reachability() -> None:
    analysis = analyze(compile_schema(SCHEMA))
    assert analysis.subject_types("doc", "view") == {"user"}
    assert ("user", "*") in analysis.reachable("doc", "view")
    assert analysis.reachable("nope", "nothing") == set()


def test_warnings() -> None:
    messages = [(w.line, w.message) for w in analyze(compile_schema(SCHEMA)).warnings]
    text = "\n".join(m for _, m in messages)
    assert 'Permission "loop" references itself' in text
    assert "relation `unused_rel` under definition `doc` is not used" in text
    assert "caveat `unused_cav` is not used by any relation" in text
    assert "Arrow `owner->member`" in text and "the subject relation will be ignored" in text
    assert (
        16,
        'Permission "loop" references itself, which will cause an error to be raised due to infinite '
        "recursion",
    ) in messages
    assert "relation `viewer` under definition `doc`" not in text


def test_indirect_computed_cycle_warns() -> None:
    schema = compile_schema(
        "definition user {}\ndefinition doc {\n relation viewer: user\n"
        " permission aaa = bbb + viewer\n permission bbb = aaa + viewer\n}"
    )
    warnings = analyze(schema).warnings
    assert any("`aaa`, `bbb` refer to each other in a cycle" in w.message for w in warnings)


def test_clean_schema_has_no_warnings() -> None:
    schema = compile_schema(
        "definition user {}\ndefinition doc {\n relation viewer: user\n permission view = viewer\n}"
    )
    assert analyze(schema).warnings == []
