"""The playground's document model and engine answers, without a browser: every validation file
of the SpiceDB corpus and of schema/ opens and saves back byte for byte; an edited document is
saved in a layout that reads back into the same sections; an OpenFGA store file opens converted
and its assertions pass; runner messages land on the right line of the right section."""

from __future__ import annotations

from pathlib import Path

import pytest

from stonetown.playground.document import SECTIONS, DocumentError, from_yaml
from stonetown.playground.workbench import Workbench, relationship_rows, schema_diagnostics

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "conformance"
FILES = sorted((ROOT / "schema").glob("*.yaml")) + sorted((SHARED / "spicedb").glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_files_round_trip_and_edits_read_back(path: Path) -> None:
    text = path.read_text()
    doc = from_yaml(text, path.name, path.parent)
    assert doc.to_yaml() == text
    for name in SECTIONS:
        comment = "# edited" if name in ("assertions", "validation") else "// edited"
        if comment.startswith("#") and not doc.sections()[name].strip():
            continue  # a YAML section holding only a comment is empty
        edited = doc.with_sections(**{name: doc.sections()[name] + f"\n{comment}\n"})
        again = from_yaml(edited.to_yaml(), path.name, path.parent)
        assert again.sections() == edited.sections(), name


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/conformance is absent")
async def test_an_openfga_store_file_opens_converted_and_passes() -> None:
    store = SHARED / "openfga" / "dsl-language-tests" / "stores" / "00-valid-model" / "store.fga.yaml"
    doc = from_yaml(store.read_text(), store.name, store.parent)
    assert doc.name == "store.yaml" and "definition organization" in doc.schema
    assert "organization:auth0#member@user:daniel" in doc.relationships
    bench = Workbench()
    try:
        result = await bench.run(doc)
    finally:
        await bench.close()
    assert result["load"] == [] and [a["passed"] for a in result["assertions"]] == [True]


async def test_messages_are_placed_on_their_section_line() -> None:
    doc = from_yaml("schema: |-\n  definition user {}\n  definition doc {\n    relation viewer: user\n  }\n")
    doc = doc.with_sections(
        relationships="doc:a#viewer@user:ana\ndoc:a#nosuch@user:bob",
        assertions="assertTrue:\n  - doc:a#viewer@user:ana\nassertFalse:\n  - doc:a#viewer@user:ana",
    )
    bench = Workbench()
    try:
        result = await bench.run(doc)
        assert [(p["section"], p["line"]) for p in result["load"]] == [("relationships", 2)]
        fixed = doc.with_sections(relationships="doc:a#viewer@user:ana")
        result = await bench.run(fixed)
        assert [(a["line"], a["passed"]) for a in result["assertions"]] == [(2, True), (4, False)]
        assert result["assertions"][1]["reason"] == "expected DENIED, got ALLOWED"
    finally:
        await bench.close()


def test_diagnostics_rows_and_refusals() -> None:
    errors = schema_diagnostics("definition user {}\ndefinition doc {\n  relation viewer: usr\n}")["errors"]
    assert [(e["line"], e["column"]) for e in errors] == [(3, 20)]
    model = "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [user]\n"
    fga = schema_diagnostics(model)
    assert fga["errors"] == [] and "definition doc" in fga["converted"]
    rows = relationship_rows("definition user {}", "user:a#x@user:b\nnot a relationship\n// comment")
    assert [row["line"] for row in rows] == [1, 2] and all(row["error"] for row in rows)
    with pytest.raises(DocumentError, match="not valid YAML"):
        from_yaml("schema: [unclosed")
    with pytest.raises(DocumentError, match="unknown section"):
        from_yaml("").with_sections(nosuch="x")
