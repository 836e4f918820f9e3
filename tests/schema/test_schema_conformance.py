"""Every schema in the shared SpiceDB conformance suite compiles, formats and round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stonetown.schema import analyze, compile_schema, format_schema, parse_schema

CONFORMANCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "spicedb"


def _schemas() -> list[tuple[str, str]]:
    if not CONFORMANCE_DIR.is_dir():
        return []
    found = []
    for path in sorted(CONFORMANCE_DIR.glob("*.yaml")):
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(document, dict) and isinstance(document.get("schema"), str):
                found.append((f"{path.stem}[{index}]", document["schema"]))
    return found


SCHEMAS = _schemas()


@pytest.fixture(params=SCHEMAS or [None], ids=[name for name, _ in SCHEMAS] or ["absent"])
def schema_text(request: pytest.FixtureRequest) -> str:
    if request.param is None:
        pytest.skip(f"conformance suite not found at {CONFORMANCE_DIR}")
    return request.param[1]


def test_suite_is_not_empty() -> None:
    if not CONFORMANCE_DIR.is_dir():
        pytest.skip(f"conformance suite not found at {CONFORMANCE_DIR}")
    assert len(SCHEMAS) >= 50


def test_compiles(schema_text: str) -> None:
    schema = compile_schema(schema_text)
    assert schema.definitions
    assert len(parse_schema(schema_text).items) >= len(schema.definitions) + len(schema.caveats)


def test_format_round_trip(schema_text: str) -> None:
    schema = compile_schema(schema_text)
    formatted = format_schema(schema)
    again = compile_schema(formatted)
    assert again == schema
    assert format_schema(again) == formatted


def test_analysis_runs(schema_text: str) -> None:
    schema = compile_schema(schema_text)
    analysis = analyze(schema)
    for definition in schema.definitions.values():
        for relation in definition.relations:
            assert (definition.name, relation) in analysis.graph
    for warning in analysis.warnings:
        assert warning.line >= 1 and warning.message
