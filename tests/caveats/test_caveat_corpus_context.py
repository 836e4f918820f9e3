"""Under each request context the SpiceDB caveat files assert with, every query must agree
with Check: CheckBulk, LookupResources and LookupSubjects (non-conditional answers exactly,
conditional answers as conditional)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from stonetown.core.relationship import ObjectRef, SubjectRef
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, CheckResult, Consistency, Permissionship
from stonetown.stores.memory import MemoryDatastore
from stonetown.validation.files import read_validation_file
from stonetown.validation.runner import load_into

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "spicedb"
_CAVEAT_RE = re.compile(r"^\s*caveat\s+\S+\s*\(", re.MULTILINE)
FILES = (
    sorted(p for p in CORPUS.glob("*.yaml") if _CAVEAT_RE.search(p.read_text())) if CORPUS.is_dir() else []
)
FRESH = Consistency.fully_consistent()


def _state(result: CheckResult) -> tuple[Permissionship, tuple[str, ...]]:
    return result.permissionship, result.missing_parameters


def test_caveat_files_present() -> None:
    if not CORPUS.is_dir():
        pytest.skip("../shared/conformance/spicedb is not present")
    assert len(FILES) >= 15


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_queries_agree_with_check_under_each_context(path: Path) -> None:
    parsed = read_validation_file(path)
    contexts: list[dict[str, Any] | None] = [None]
    for assertion in parsed.assertions:
        if assertion.context and assertion.context not in contexts:
            contexts.append(assertion.context)
    system = PermissionSystem(MemoryDatastore())
    await system.start()
    try:
        assert await load_into(system, parsed) == []
        assert system.state is not None
        schema = system.state.schema
        objects = {rel.resource for rel, _ in parsed.relationships} | {
            ObjectRef(rel.subject_type, rel.subject_id)
            for rel, _ in parsed.relationships
            if rel.subject_id != "*"
        }
        subjects = {SubjectRef(o.type, o.id) for o in objects}
        problems: list[str] = []
        for context in contexts:
            label = json.dumps(context)
            for obj in sorted(objects, key=str):
                for permission in schema.definitions[obj.type].relations:
                    ordered = sorted(subjects, key=str)
                    answers = {s: await system.check(obj, permission, s, FRESH, context) for s in ordered}
                    bulk = await system.check_bulk(
                        [CheckRequest(obj, permission, s, context) for s in ordered], FRESH
                    )
                    for subject, item in zip(ordered, bulk, strict=True):
                        assert isinstance(item, CheckResult)
                        if _state(item) != _state(answers[subject]):
                            problems.append(f"{label} CheckBulk {obj}#{permission}@{subject}")
                    for stype in sorted({s.type for s in ordered}):
                        listed = {
                            r.subject.id: (r.conditional, r.missing_parameters, r.excluded)
                            async for r, _ in system.lookup_subjects(
                                obj, permission, stype, "", FRESH, context
                            )
                        }
                        wildcard = listed.get("*")
                        for subject in (s for s in ordered if s.type == stype):
                            answer = answers[subject].permissionship
                            if subject.id in listed:
                                got = (
                                    Permissionship.CONDITIONAL
                                    if listed[subject.id][0]
                                    else Permissionship.ALLOWED
                                )
                            elif wildcard is not None and not wildcard[0] and subject.id not in wildcard[2]:
                                got = Permissionship.ALLOWED
                            elif wildcard is not None and wildcard[0] and subject.id not in wildcard[2]:
                                got = Permissionship.CONDITIONAL
                            else:
                                got = Permissionship.DENIED
                            if got != answer:
                                problems.append(
                                    f"{label} LookupSubjects {obj}#{permission}@{subject}: {got} != {answer}"
                                )
            for rtype in sorted({o.type for o in objects}):
                for permission in schema.definitions[rtype].relations:
                    for subject in sorted(subjects, key=str):
                        found = {
                            r.resource_id: r.conditional
                            async for r, _ in system.lookup_resources(
                                rtype, permission, subject, FRESH, context
                            )
                        }
                        for obj in (o for o in objects if o.type == rtype):
                            answer = (
                                await system.check(obj, permission, subject, FRESH, context)
                            ).permissionship
                            got = (
                                Permissionship.DENIED
                                if obj.id not in found
                                else Permissionship.CONDITIONAL
                                if found[obj.id]
                                else Permissionship.ALLOWED
                            )
                            if got != answer:
                                problems.append(
                                    f"{label} LookupResources {obj}#{permission}@{subject}: {got} != {answer}"
                                )
        assert problems == []
    finally:
        await system.stop()
