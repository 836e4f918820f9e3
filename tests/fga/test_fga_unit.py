"""Focused behaviour of the OpenFGA importer/exporter that the corpus does not pin down."""

from __future__ import annotations

import pytest

from stonetown.core.errors import InvalidArgument
from stonetown.schema import ir
from stonetown.schema.fga import (
    FgaSyntaxError,
    FgaValidationError,
    export_fga,
    fga_visible_relation,
    fga_write_relation,
    import_fga,
)

HEADER = "model\n  schema 1.1\ntype user\n"


def test_mixed_definition_is_split_into_hidden_relation_and_permission() -> None:
    schema = import_fga(
        HEADER + "type doc\n  relations\n    define editor: [user]\n    define viewer: [user] or editor\n"
    )
    relations = schema.definitions["doc"].relations
    assert list(relations) == ["editor", "viewer__direct", "viewer"]
    assert relations["viewer__direct"] == ir.Relation(
        "viewer__direct", ir.This((ir.AllowedSubject("user"),)), is_permission=False
    )
    assert relations["viewer"].rewrite == ir.Union(
        (ir.ComputedUserset("viewer__direct"), ir.ComputedUserset("editor"))
    )
    assert relations["viewer"].is_permission
    assert fga_write_relation(schema, "doc", "viewer") == "viewer__direct"
    assert fga_write_relation(schema, "doc", "editor") == "editor"
    assert fga_visible_relation(schema, "doc", "viewer__direct") == "viewer"
    assert fga_visible_relation(schema, "doc", "editor") == "editor"


def test_write_relation_rejects_computed_and_unknown_relations() -> None:
    schema = import_fga(
        HEADER + "type doc\n  relations\n    define editor: [user]\n    define can_view: editor\n"
    )
    with pytest.raises(InvalidArgument, match="not directly assignable"):
        fga_write_relation(schema, "doc", "can_view")
    with pytest.raises(InvalidArgument, match="not defined"):
        fga_write_relation(schema, "doc", "nope")


def test_from_and_but_not_map_to_arrow_and_exclusion() -> None:
    schema = import_fga(
        HEADER + "type folder\n  relations\n    define viewer: [user]\n"
        "type doc\n  relations\n    define parent: [folder]\n    define blocked: [user]\n"
        "    define viewer: viewer from parent but not blocked\n"
    )
    assert schema.relation("doc", "viewer").rewrite == ir.Exclusion(
        ir.TupleToUserset("parent", "viewer", "any"), ir.ComputedUserset("blocked")
    )


def test_conditions_become_caveats_with_spicedb_type_names() -> None:
    text = (
        HEADER + "type doc\n  relations\n    define viewer: [user with c, user:* with c]\n"
        "condition c(ips: list<ipaddress>, attrs: map<string>, at: timestamp) {\n"
        '  attrs["x"] == "}" && ips.size() > 0\n}\n'
    )
    schema = import_fga(text)
    caveat = schema.caveats["c"]
    assert [(p.name, p.type) for p in caveat.parameters] == [
        ("ips", "list<ipaddress>"),
        ("attrs", "map<string>"),
        ("at", "timestamp"),
    ]
    assert caveat.expression == 'attrs["x"] == "}" && ips.size() > 0'
    assert caveat.expression_pos == ir.Position(8, 3)
    assert schema.relation("doc", "viewer").allowed == (
        ir.AllowedSubject("user", caveat="c"),
        ir.AllowedSubject("user", wildcard=True, caveat="c"),
    )


def test_positions_are_one_based() -> None:
    schema = import_fga(HEADER + "type doc\n  relations\n    define viewer: [user]\n")
    assert schema.definitions["doc"].pos == ir.Position(4, 6)
    assert schema.relation("doc", "viewer").pos == ir.Position(6, 12)


def test_hidden_name_conflict_is_refused() -> None:
    with pytest.raises(FgaValidationError) as raised:
        import_fga(
            HEADER + "type doc\n  relations\n    define viewer: [user]\n    define viewer__direct: [user]\n"
        )
    assert raised.value.errors[0].category == "hidden-relation-conflict"
    assert (raised.value.errors[0].line, raised.value.errors[0].column) == (7, 12)


def test_syntax_error_reports_position_and_category() -> None:
    with pytest.raises(FgaSyntaxError) as raised:
        import_fga(HEADER + "type doc\n  relations\n    define viewer: [user] or editor and owner\n")
    error = raised.value.errors[0]
    assert (error.line, error.column, error.category) == (6, 36, "syntax-error")


def _schema(*definitions: ir.Definition, caveats: dict[str, ir.Caveat] | None = None) -> ir.Schema:
    return ir.Schema({d.name: d for d in definitions}, caveats or {})


USER = ir.Definition("user", {})


def _doc(*relations: ir.Relation) -> ir.Definition:
    return ir.Definition("docs/document", {r.name: r for r in relations})


def _rel(name: str, *subjects: ir.AllowedSubject) -> ir.Relation:
    return ir.Relation(name, ir.This(subjects), is_permission=False)


def _perm(name: str, rewrite: ir.Rewrite) -> ir.Relation:
    return ir.Relation(name, rewrite, is_permission=True)


def test_export_prefixed_types_and_round_trip() -> None:
    schema = _schema(
        USER,
        _doc(
            _rel("owner", ir.AllowedSubject("user")),
            _rel("reader", ir.AllowedSubject("user"), ir.AllowedSubject("docs/document", relation="owner")),
            _perm("view", ir.Union((ir.ComputedUserset("owner"), ir.ComputedUserset("reader")))),
        ),
    )
    text = export_fga(schema)
    assert "type docs/document\n" in text
    assert "    define reader: [user, docs/document#owner]\n" in text
    assert import_fga(text) == schema


def test_export_reports_openfga_duplicate_operands() -> None:
    schema = _schema(
        USER,
        _doc(
            _rel("owner", ir.AllowedSubject("user")),
            _perm("view", ir.Union((ir.ComputedUserset("owner"), ir.ComputedUserset("owner")))),
        ),
    )
    with pytest.raises(InvalidArgument, match="duplicated-error"):
        export_fga(schema)


def test_export_folds_hidden_relation_and_hoists_it_in_unions() -> None:
    schema = _schema(
        USER,
        _doc(
            _rel("editor", ir.AllowedSubject("user")),
            _rel("viewer__direct", ir.AllowedSubject("user", wildcard=True)),
            _perm("viewer", ir.Union((ir.ComputedUserset("editor"), ir.ComputedUserset("viewer__direct")))),
        ),
    )
    text = export_fga(schema)
    assert "    define viewer: [user:*] or editor\n" in text
    assert "viewer__direct" not in text
    assert fga_write_relation(import_fga(text), "docs/document", "viewer") == "viewer__direct"


@pytest.mark.parametrize(
    ("rewrite", "message"),
    [
        (ir.Nil(), "nil"),
        (ir.TupleToUserset("parent", "owner", "all"), r"\.all\(\)"),
    ],
)
def test_export_refuses_unmappable_rewrites(rewrite: ir.Rewrite, message: str) -> None:
    schema = _schema(USER, _doc(_rel("owner", ir.AllowedSubject("user")), _perm("view", rewrite)))
    with pytest.raises(InvalidArgument, match=message):
        export_fga(schema)


def test_export_refuses_expiration_bytes_and_unused_caveats() -> None:
    expiring = _schema(USER, _doc(_rel("owner", ir.AllowedSubject("user", expiration=True))))
    with pytest.raises(InvalidArgument, match="expiration"):
        export_fga(expiring)
    caveat = ir.Caveat("c", (ir.CaveatParameter("b", "bytes"),), "b == b''")
    with_bytes = _schema(
        USER, _doc(_rel("owner", ir.AllowedSubject("user", caveat="c"))), caveats={"c": caveat}
    )
    with pytest.raises(InvalidArgument, match="bytes"):
        export_fga(with_bytes)
    unused = _schema(USER, _doc(_rel("owner", ir.AllowedSubject("user"))), caveats={"c": caveat})
    with pytest.raises(InvalidArgument, match="not used"):
        export_fga(unused)


def test_export_refuses_hidden_relation_used_on_its_own() -> None:
    schema = _schema(
        USER,
        _doc(
            _rel("editor", ir.AllowedSubject("user")),
            _rel("viewer__direct", ir.AllowedSubject("user")),
            _perm("viewer", ir.Union((ir.ComputedUserset("viewer__direct"), ir.ComputedUserset("editor")))),
            _perm("audit", ir.ComputedUserset("viewer__direct")),
        ),
    )
    with pytest.raises(InvalidArgument, match="used on its own"):
        export_fga(schema)


def test_export_refuses_models_openfga_would_reject() -> None:
    looping = _schema(USER, _doc(_perm("a", ir.ComputedUserset("b")), _perm("b", ir.ComputedUserset("a"))))
    with pytest.raises(InvalidArgument, match="relation-no-entry-point"):
        export_fga(looping)


def test_keywords_accepted_as_names_round_trip() -> None:
    text = (
        HEADER
        + "type model\n  relations\n    define type: [user]\n    define schema: type or type from extend\n"
    )
    text += "    define extend: [model]\n"
    schema = import_fga(text)
    assert import_fga(export_fga(schema)) == schema
