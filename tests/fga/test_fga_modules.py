"""openfga/language's modular-model corpus: `fga.mod` manifests and module files combined
into one model must give OpenFGA's model, or OpenFGA's errors (file, position, message)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stonetown.core.errors import InvalidArgument
from stonetown.schema import ir
from stonetown.schema.fga import (
    FgaModFileError,
    FgaModuleError,
    combine_fga_modules,
    import_fga,
    import_fga_json,
    import_fga_modules,
    parse_fga_mod,
)
from stonetown.schema.fga.json_model import model_from_json

CORPUS = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "openfga" / "dsl-language-tests"
)
MODULE_CASES = CORPUS / "transformer-module"


def _module_dirs() -> list[Any]:
    if not MODULE_CASES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason="corpus absent"))]
    return [pytest.param(p, id=p.name) for p in sorted(MODULE_CASES.iterdir()) if (p / "module").is_dir()]


def _mod_cases() -> list[Any]:
    path = CORPUS / "fga-mod-transformer-cases.yaml"
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason="corpus absent"))]
    cases = yaml.safe_load(path.read_text())
    return [pytest.param(case, id=f"{i:02d}-{case['name'][:50]}") for i, case in enumerate(cases)]


def _files(case: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((case / "module").iterdir())}


def _canonical(schema: ir.Schema) -> tuple[dict[str, ir.Definition], dict[str, Any]]:
    caveats = {
        name: (c.expression, sorted((p.name, p.type) for p in c.parameters))
        for name, c in schema.caveats.items()
    }
    return schema.definitions, caveats


@pytest.mark.parametrize("case", _module_dirs())
def test_module_case(case: Path) -> None:
    files = _files(case)
    errors_file = case / "expected_errors.json"
    if errors_file.exists():
        expected = json.loads(errors_file.read_text())
        with pytest.raises(FgaModuleError) as raised:
            import_fga_modules(files)
        assert isinstance(raised.value, InvalidArgument)
        got = raised.value.errors
        assert len(got) == len(expected), [str(e) for e in got]
        for error, want in zip(got, expected, strict=True):
            place = (error.file, error.line, error.column)
            assert place == (want["file"], want["line"]["start"] + 1, want["column"]["start"] + 1), error
            if want.get("type") == "syntax":
                continue  # ANTLR's wording is not reproduced
            assert error.message == want["msg"]
            assert error.end_column == want["column"]["end"] + 1, error
            category = (want.get("metadata") or {}).get("errorType")
            if category is not None:
                assert error.category == category
        return
    combined = combine_fga_modules(files)
    schema = import_fga_modules(files)
    want_json = json.loads((case / "authorization-model.json").read_text())
    assert _canonical(schema) == _canonical(import_fga_json(want_json))
    assert _canonical(schema) == _canonical(import_fga((case / "combined.fga").read_text()))
    assert list(combined.modules) == json.loads((case / "expected_modules.json").read_text())
    # Every relation and condition remembers the module it came from, as the JSON metadata does.
    from_json = model_from_json(want_json)
    origin = {(t.name, r.name): r.module for t in from_json.types for r in t.relations}
    assert {(t.name, r.name): r.module for t in combined.model.types for r in t.relations} == origin
    assert {c.name: c.module for c in combined.model.conditions} == {
        c.name: c.module for c in from_json.conditions
    }


def test_complex_module_json_lists_its_modules() -> None:
    path = MODULE_CASES / "06-complex-module"
    if not path.is_dir():
        pytest.skip("corpus absent")
    data = json.loads((path / "authorization-model.json").read_text())
    model = model_from_json(data)  # only the module metadata is exercised (a_check is unused)
    modules = {t.module for t in model.types} | {r.module for t in model.types for r in t.relations}
    modules |= {c.module for c in model.conditions}
    assert sorted(m for m in modules if m) == json.loads((path / "expected_modules.json").read_text())


@pytest.mark.parametrize("case", _mod_cases())
def test_fga_mod_case(case: dict[str, Any]) -> None:
    expected = case.get("expected_errors") or []
    if not expected:
        parsed = parse_fga_mod(case["modFile"])
        want = json.loads(case["json"])
        assert parsed.schema == want["schema"]["value"]
        assert [
            (item.path, item.span.line - 1, item.span.column - 1, item.span.end_column - 1)
            for item in parsed.contents
        ] == [
            (item["value"], item["line"]["start"], item["column"]["start"], item["column"]["end"])
            for item in want["contents"]["value"]
        ]
        return
    with pytest.raises(FgaModFileError) as raised:
        parse_fga_mod(case["modFile"])
    got = [(e.message, e.line - 1, e.column - 1, e.end_column - 1) for e in raised.value.errors]
    assert got == [(e["msg"], e["line"]["start"], e["column"]["start"], e["column"]["end"]) for e in expected]


EXTENDED_TWICE = {
    "core.fga": "module core\n\ntype user\n\ntype doc\n  relations\n    define owner: [user]\n",
    "a.fga": (
        "module a\n\nextend type doc\n  relations\n    define viewer: [user]\n\n"
        "extend type doc\n  relations\n    define editor: [user]\n"
    ),
}


def test_extending_a_type_twice_in_one_file_is_a_syntax_error() -> None:
    with pytest.raises(FgaModuleError) as raised:
        import_fga_modules(EXTENDED_TWICE)
    (error,) = raised.value.errors
    assert (error.file, error.line, error.message) == ("a.fga", 7, "'doc' is already extended in file.")


def test_duplicate_type_across_modules_is_reported_where_it_is_repeated() -> None:
    files = {
        "core.fga": "module core\n\ntype user\n",
        "other.fga": "module other\n\ntype team\n\ntype user\n",
    }
    with pytest.raises(FgaModuleError) as raised:
        import_fga_modules(files)
    (error,) = raised.value.errors
    assert (error.file, error.line, error.column, error.message) == (
        "other.fga",
        5,
        6,
        "duplicate type definition user",
    )


def test_extensions_from_several_files_merge_and_compile() -> None:
    files = {
        "core.fga": "module core\n\ntype user\n\ntype doc\n",
        "a.fga": "module a\n\nextend type doc\n  relations\n    define viewer: [user] or editor\n",
        "b.fga": "module b\n\nextend type doc\n  relations\n    define editor: [user]\n",
    }
    schema = import_fga_modules(files)
    single = import_fga(
        "model\n  schema 1.2\n\ntype user\n\ntype doc\n  relations\n"
        "    define viewer: [user] or editor\n    define editor: [user]\n"
    )
    assert schema == single
    assert combine_fga_modules(files).modules == ("a", "b", "core")


def test_fga_mod_orders_and_selects_the_files() -> None:
    files = {
        "team/doc.fga": "module doc\n\ntype doc\n  relations\n    define viewer: [user]\n",
        "core.fga": "module core\n\ntype user\n",
        "unlisted.fga": "module broken\n\ntype doc\n",
    }
    mod = "schema: '1.2'\ncontents:\n  - core.fga\n  - team/doc.fga\n"
    schema = import_fga_modules(files, mod)
    assert list(schema.definitions) == ["user", "doc"]
    with pytest.raises(FgaModuleError) as raised:
        import_fga_modules({"core.fga": files["core.fga"]}, mod)
    assert [(e.file, e.line, e.symbol) for e in raised.value.errors] == [("fga.mod", 4, "team/doc.fga")]


def test_json_model_with_several_modules_in_one_file_is_rejected() -> None:
    model = {
        "schema_version": "1.2",
        "type_definitions": [
            {"type": "user", "metadata": {"module": "a", "source_info": {"file": "x.fga"}}},
            {"type": "team", "metadata": {"module": "b", "source_info": {"file": "x.fga"}}},
            {"type": "org", "metadata": {"module": "b", "source_info": {"file": "y.fga"}}},
        ],
    }
    with pytest.raises(
        InvalidArgument, match=r"file x\.fga would contain multiple module definitions \(a, b\)"
    ):
        import_fga_json(model)
    model["type_definitions"][1]["metadata"]["source_info"]["file"] = "y.fga"  # type: ignore[index]
    import_fga_json(model)
