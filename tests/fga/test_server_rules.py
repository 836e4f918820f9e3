"""The OpenFGA server's own model checks (entry points and cycles, pkg/typesystem), which
openfga/language's validator does not make: models it refuses are refused with its message,
at the offending relation's name.

Every expected message below was produced by the real OpenFGA (fga CLI 0.8.2 embedding
OpenFGA 1.22.0, `fga model test`); the random models come from the differential generator.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stonetown.schema.fga import FgaValidationError, import_fga

HEADER = "model\n  schema 1.1\ntype user\ntype doc\n  relations\n"
CYCLE = "an authorization model cannot contain a cycle"
CATEGORIES = {
    CYCLE: "relation-cycle",
    "no entrypoints defined": "relation-no-entry-point",
    "potential loop": "relation-no-entry-point",
    "invalid userset rewrite definition": "invalid-userset-rewrite",
}
MESSAGE = re.compile(r"^the definition of relation '([^']+)' in object type '([^']+)' is invalid: (.+)$")


def _refusals() -> list[Any]:
    cases = yaml.safe_load((Path(__file__).parent / "server_refusals.yaml").read_text())
    return [pytest.param(case, id=case["name"].replace(" ", "-")) for case in cases]


def _define_position(text: str, type_name: str, relation: str) -> tuple[int, int]:
    """1-based line and column of ``relation``'s name in ``type_name``'s block."""
    lines = text.splitlines()
    start = lines.index(f"type {type_name}")
    for number in range(start + 1, len(lines)):
        line = lines[number]
        if line.startswith("type "):
            break
        match = re.match(rf"^\s+define ({re.escape(relation)})\s*:", line)
        if match:
            return number + 1, match.start(1) + 1
    raise AssertionError(f"no define {relation} in type {type_name}")


def _assert_refused(text: str, expected: str) -> None:
    import_fga(text, server_rules=False)  # the language validator alone accepts it
    with pytest.raises(FgaValidationError) as raised:
        import_fga(text)
    first = raised.value.errors[0]
    assert first.message == expected
    match = MESSAGE.match(expected)
    assert match is not None
    relation, type_name, cause = match.groups()
    assert first.category == CATEGORIES[cause]
    assert (first.line, first.column) == _define_position(text, type_name, relation)
    assert first.symbol == relation


@pytest.mark.parametrize("case", _refusals())
def test_random_model_refused_like_openfga(case: dict[str, Any]) -> None:
    _assert_refused(case["model"], case["error"])


def test_refusals_cover_every_cause() -> None:
    causes = set()
    for case in _refusals():
        match = MESSAGE.match(case.values[0]["error"])
        assert match is not None
        causes.add(match.group(3))
    assert causes == {CYCLE, "no entrypoints defined", "potential loop"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "    define owner: [user] or editor\n    define editor: owner\n",
            f"the definition of relation 'editor' in object type 'doc' is invalid: {CYCLE}",
            id="cycle-through-union",
        ),
        pytest.param(
            "    define owner: [user]\n    define editor: owner but not viewer\n"
            "    define viewer: [user] or editor\n",
            f"the definition of relation 'editor' in object type 'doc' is invalid: {CYCLE}",
            id="cycle-through-exclusion",
        ),
        pytest.param(
            "    define r0: [user]\n    define r1: [user]\n    define p: r0 or (r1 and p)\n",
            "the definition of relation 'p' in object type 'doc' is invalid: "
            "invalid userset rewrite definition",
            id="self-reference-below-top-level",
        ),
    ],
)
def test_cycles_of_computed_usersets_are_refused(body: str, expected: str) -> None:
    _assert_refused(HEADER + body, expected)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("    define parent: [doc]\n    define viewer: [user] or viewer from parent\n", id="ttu"),
        pytest.param("    define member: [user, doc#member]\n", id="userset"),
        pytest.param(
            "    define r0: [user]\n    define r1: [user]\n    define p: r1 or ((r0 or r0) or r1)\n",
            id="nested-duplicate-operands",
        ),
    ],
)
def test_recursion_through_data_is_accepted(body: str) -> None:
    """OpenFGA accepts these: recursion through relationships is no cycle, and a repeated
    operand below the top level of a definition is no duplicate."""
    assert import_fga(HEADER + body).definitions


def test_native_schema_language_keeps_spicedb_semantics() -> None:
    """The cycle rule is OpenFGA's: the same shape in our own schema language still compiles."""
    from stonetown.schema import compile_schema

    schema = compile_schema(
        "definition user {}\n"
        "definition doc {\n  relation owner: user\n  permission admin = owner + editor\n"
        "  permission editor = admin\n}\n"
    )
    assert "editor" in schema.definitions["doc"].relations
