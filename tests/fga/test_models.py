"""Every model of OpenFGA's matrix tests imports, round-trips through export, and every tuple
of those tests maps onto a stored relation that admits its subject."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stonetown.schema import ir
from stonetown.schema.fga import export_fga, fga_visible_relation, fga_write_relation, import_fga

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "openfga"


def _stages() -> list[Any]:
    params = []
    for name in ("consolidated_1_1_tests.yaml", "abac_tests.yaml"):
        path = CORPUS / name
        if not path.exists():
            params.append(pytest.param(None, marks=pytest.mark.skip(reason=f"corpus file {path} absent")))
            continue
        for test in yaml.safe_load(path.read_text())["tests"]:
            for index, stage in enumerate(test["stages"]):
                if "model" in stage:
                    params.append(pytest.param(stage, id=f"{name.split('_')[0]}-{test['name']}-{index}"))
    return params


STAGES = _stages()


def _admits(relation: ir.Relation, subject: str, condition: str | None) -> bool:
    subject_type, _, rest = subject.partition(":")
    subject_id, _, subject_relation = rest.partition("#")
    for allowed in relation.allowed:
        if allowed.type != subject_type or allowed.caveat != condition:
            continue
        if subject_id == "*":
            if allowed.wildcard:
                return True
        elif subject_relation:
            if allowed.relation == subject_relation:
                return True
        elif allowed.relation is None and not allowed.wildcard:
            return True
    return False


@pytest.mark.parametrize("stage", STAGES)
def test_model_imports_and_round_trips(stage: dict[str, Any]) -> None:
    schema = import_fga(stage["model"])
    assert schema.definitions
    assert import_fga(export_fga(schema)) == schema


@pytest.mark.parametrize("stage", STAGES)
def test_tuples_map_to_admitting_relation(stage: dict[str, Any]) -> None:
    schema = import_fga(stage["model"])
    for tuple_ in stage.get("tuples") or []:
        object_type = tuple_["object"].split(":", 1)[0]
        stored = fga_write_relation(schema, object_type, tuple_["relation"])
        relation = schema.relation(object_type, stored)
        assert relation is not None and not relation.is_permission
        condition = (tuple_.get("condition") or {}).get("name")
        assert _admits(relation, tuple_["user"], condition), (tuple_, relation.allowed)
        assert fga_visible_relation(schema, object_type, stored) == tuple_["relation"]


def test_corpus_exercises_split_definitions() -> None:
    if not (CORPUS / "consolidated_1_1_tests.yaml").exists():
        pytest.skip("corpus absent")
    split = 0
    for param in STAGES:
        schema = import_fga(param.values[0]["model"])
        split += sum(name.endswith("__direct") for d in schema.definitions.values() for name in d.relations)
    assert split > 20
