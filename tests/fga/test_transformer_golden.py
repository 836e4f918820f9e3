"""openfga/language's DSL↔JSON golden pairs: both forms compile to the same IR, and the
valid ones survive export → import unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stonetown.schema import ir
from stonetown.schema.fga import FgaValidationError, export_fga, import_fga
from stonetown.schema.fga.json_model import model_from_json
from stonetown.schema.fga.parser import parse_model
from stonetown.schema.fga.to_ir import model_to_ir

CORPUS = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "openfga" / "dsl-language-tests"
)
TRANSFORMER = CORPUS / "transformer"


def _pairs() -> list[Any]:
    if not TRANSFORMER.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason="corpus absent"))]
    return [pytest.param(p, id=p.name) for p in sorted(TRANSFORMER.iterdir()) if p.is_dir()]


def _normalised(schema: ir.Schema) -> tuple[dict[str, ir.Definition], dict[str, Any]]:
    # JSON keeps condition parameters in a map, so their order is not meaningful there.
    caveats = {
        name: (c.expression, sorted((p.name, p.type) for p in c.parameters))
        for name, c in schema.caveats.items()
    }
    return schema.definitions, caveats


@pytest.mark.parametrize("pair", _pairs())
def test_dsl_and_json_compile_alike(pair: Path) -> None:
    from_dsl = model_to_ir(parse_model((pair / "authorization-model.fga").read_text()))
    from_json = model_to_ir(model_from_json(json.loads((pair / "authorization-model.json").read_text())))
    assert _normalised(from_dsl) == _normalised(from_json)


@pytest.mark.parametrize("pair", _pairs())
def test_export_round_trip(pair: Path) -> None:
    text = (pair / "authorization-model.fga").read_text()
    try:
        schema = import_fga(text)
    except FgaValidationError:
        # A few golden pairs only exercise the transformer and are not valid models.
        assert pair.name.startswith(("14-", "15-"))
        return
    exported = export_fga(schema)
    assert import_fga(exported) == schema
    assert export_fga(import_fga(exported)) == exported
