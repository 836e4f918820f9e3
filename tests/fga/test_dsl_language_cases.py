"""openfga/language's DSL syntax and semantic validation cases must get OpenFGA's verdict.

Syntax cases: valid ones import; invalid ones raise FgaSyntaxError whose first error is at
the line:column the corpus gives (messages are ANTLR's own and are not reproduced). Semantic
cases: the full error list must match (message, category, line, column span).

The corpus describes openfga/language's validator. A few models it calls valid are refused
by the OpenFGA server itself (fga CLI 0.8.2 / OpenFGA 1.22.0, `fga model test`); those are
accepted with ``server_rules=False`` and refused by default with the server's first message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stonetown.core.errors import InvalidArgument
from stonetown.schema.fga import FgaError, FgaSyntaxError, FgaValidationError, import_fga, import_fga_json

CORPUS = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "openfga" / "dsl-language-tests"
)


# Corpus model name → the error OpenFGA's server gives when the model is written.
SERVER_REFUSES = {
    "union does not require all child to have entry": (
        "the definition of relation 'action1' in object type 'doc' is invalid: "
        "an authorization model cannot contain a cycle"
    ),
    "union does not require all child to have entry even for intersection child": (
        "the definition of relation 'intersection1' in object type 'docs' is invalid: "
        "an authorization model cannot contain a cycle"
    ),
    "union does not require all child to have entry even for exclusion child": (
        "the definition of relation 'exclusion1' in object type 'docs' is invalid: "
        "an authorization model cannot contain a cycle"
    ),
}


def _import_valid(case: dict[str, Any]) -> None:
    """A model the language validator accepts: check the server's verdict as well."""
    import_fga(case["dsl"], server_rules=False)
    refusal = SERVER_REFUSES.get(case["name"])
    if refusal is None:
        import_fga(case["dsl"])
        return
    with pytest.raises(FgaValidationError) as raised:
        import_fga(case["dsl"])
    assert raised.value.errors[0].message == refusal
    assert raised.value.errors[0].category == "relation-cycle"


def _cases(name: str) -> list[Any]:
    path = CORPUS / name
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"corpus file {path} absent"))]
    cases = yaml.safe_load(path.read_text())
    return [pytest.param(case, id=f"{i:03d}-{case['name'][:60]}") for i, case in enumerate(cases)]


def _expected(case: dict[str, Any]) -> list[tuple[int, int, int, str, str | None]]:
    return [
        (
            error["line"]["start"] + 1,
            error["column"]["start"] + 1,
            error["column"]["end"] + 1,
            " ".join(error["msg"].split()),
            (error.get("metadata") or {}).get("errorType"),
        )
        for error in case.get("expected_errors") or []
    ]


@pytest.mark.parametrize("case", _cases("dsl-syntax-validation-cases.yaml"))
def test_syntax_case(case: dict[str, Any]) -> None:
    expected = _expected(case)
    if not expected:
        _import_valid(case)
        return
    with pytest.raises(FgaSyntaxError) as raised:
        import_fga(case["dsl"])
    first = raised.value.errors[0]
    assert (first.line, first.column) == expected[0][:2], raised.value.errors
    assert isinstance(raised.value, InvalidArgument)


@pytest.mark.parametrize("case", _cases("dsl-semantic-validation-cases.yaml"))
def test_semantic_case(case: dict[str, Any]) -> None:
    expected = _expected(case)
    if case.get("skip") and expected:
        pytest.skip("upstream marks this case skip: OpenFGA does not report these errors either")
    if not expected:
        _import_valid(case)
        return
    with pytest.raises(FgaValidationError) as raised:
        import_fga(case["dsl"])
    got = [(e.line, e.column, e.end_column, e.message, e.category) for e in raised.value.errors]
    assert [g[:4] for g in got] == [e[:4] for e in expected]
    for g, e in zip(got, expected, strict=True):
        if e[4] is not None:
            assert g[4] == e[4]


@pytest.mark.parametrize("case", _cases("json-validation-cases.yaml"))
def test_json_validation_case(case: dict[str, Any]) -> None:
    expected = [(m, t) for (_, _, _, m, t) in _expected_without_position(case)]
    model = json.loads(case["json"])
    if not expected:
        import_fga_json(model)
        return
    with pytest.raises(FgaError) as raised:
        import_fga_json(model)
    assert [(e.message, e.category) for e in raised.value.errors] == expected


def _expected_without_position(case: dict[str, Any]) -> list[tuple[int, int, int, str, str | None]]:
    return [
        (0, 0, 0, error["msg"], (error.get("metadata") or {}).get("errorType"))
        for error in case.get("expected_errors") or []
    ]


def test_server_refusals_name_corpus_models() -> None:
    """Every model listed as refused by the server is in the corpus (the list cannot go stale)."""
    if not (CORPUS / "dsl-syntax-validation-cases.yaml").exists():
        pytest.skip("corpus absent")
    names = {
        case["name"]
        for file in ("dsl-syntax-validation-cases.yaml", "dsl-semantic-validation-cases.yaml")
        for case in yaml.safe_load((CORPUS / file).read_text())
        if not case.get("expected_errors")
    }
    assert set(SERVER_REFUSES) <= names
