"""`stonetown validate`: load validation files into an in-memory store and check every claim
with the real engine.

Exit codes: 0 when every assertion and validation block holds, 1 when any fails (or the
schema or a relationship is refused), 2 when a file cannot be read or is malformed.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from stonetown.core.errors import StonetownError
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.admission import admission_error
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.expand import SubjectSet, evaluate
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, ExpandNode, ExpandOp, Permissionship
from stonetown.fgatest.storefile import StoreFileError, is_store_file, run_store_file
from stonetown.schema import SchemaError, ir
from stonetown.stores.memory import MemoryDatastore
from stonetown.validation.files import Assertion, ValidationFile, ValidationFileError, read_validation_file

_EXPECTED = {
    "assertTrue": Permissionship.ALLOWED,
    "assertFalse": Permissionship.DENIED,
    "assertCaveated": Permissionship.CONDITIONAL,
}


@dataclass
class FileReport:
    """What validating one file found."""

    path: Path
    assertions: int = 0
    validations: int = 0
    failures: list[str] = field(default_factory=list)


def relationship_error(schema: ir.Schema, rel: Relationship) -> str | None:
    """Why a relationship cannot be written under `schema` (admission, then id syntax), or None."""
    error = admission_error(schema, rel)
    if error is None:
        try:
            rel.validate_syntax()
        except StonetownError as exc:
            error = str(exc)
    return error


async def load_into(system: PermissionSystem, parsed: ValidationFile) -> list[str]:
    """Write the file's schema and relationships into a started system; return failures."""
    try:
        await system.write_schema(parsed.schema)
    except SchemaError as exc:
        return [
            f"{parsed.path}:{parsed.schema_line + d.line - 1}:{d.column}: schema: {d.message}"
            for d in exc.diagnostics
        ]
    except StonetownError as exc:
        return [f"{parsed.path}:{parsed.schema_line}: schema: {exc}"]
    assert system.state is not None
    schema = system.state.schema
    failures: list[str] = []
    latest: dict[tuple[str, ...], Relationship] = {}
    for rel, line in parsed.relationships:
        error = relationship_error(schema, rel)
        if error is not None:
            failures.append(f"{parsed.path}:{line}: relationship {rel}: {error}")
        latest[rel.key] = rel
    if failures:
        return failures
    if latest:
        await system.write_relationships([Update(UpdateOp.TOUCH, rel) for rel in latest.values()])
    return []


@dataclass(frozen=True, slots=True)
class AssertionOutcome:
    """One assertion run against the engine: the answer it got, or the error it raised."""

    assertion: Assertion
    got: Permissionship | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """The engine answered what the assertion expects."""
        return self.error is None and self.got is _EXPECTED[self.assertion.kind]

    @property
    def reason(self) -> str:
        """Why it failed ("" when it passed)."""
        if self.error is not None:
            return self.error
        if self.passed:
            return ""
        expected = _EXPECTED[self.assertion.kind]
        assert self.got is not None
        return f"expected {expected.name}, got {self.got.name}"


async def assertion_outcomes(system: PermissionSystem, parsed: ValidationFile) -> list[AssertionOutcome]:
    """Every assertion of a file loaded into `system`, in file order."""
    consistency = Consistency.fully_consistent()
    out: list[AssertionOutcome] = []
    for assertion in parsed.assertions:
        rel = assertion.relationship
        try:
            result = await system.check(
                rel.resource, rel.relation, rel.subject, consistency, context=assertion.context
            )
        except StonetownError as exc:
            out.append(AssertionOutcome(assertion, error=str(exc)))
            continue
        out.append(AssertionOutcome(assertion, got=result.permissionship))
    return out


async def validate_parsed(parsed: ValidationFile, openfga_cycles: bool = False) -> FileReport:
    """Run every assertion and validation block of a parsed file (`openfga_cycles`: resolve
    cycles in the data as OpenFGA does, for files holding OpenFGA's answers)."""
    report = FileReport(parsed.path)
    system = PermissionSystem(MemoryDatastore(), openfga_cycles=openfga_cycles)
    await system.start()
    try:
        report.failures = await load_into(system, parsed)
        if report.failures:
            return report
        for outcome in await assertion_outcomes(system, parsed):
            report.assertions += 1
            assertion = outcome.assertion
            if outcome.error is not None:
                report.failures.append(
                    f"{parsed.path}:{assertion.line}: {assertion.kind} {assertion.text}: {outcome.error}"
                )
            elif not outcome.passed:
                where = f"{parsed.path}:{assertion.line}"
                report.failures.append(f"{where}: {assertion.kind} {assertion.text} failed: {outcome.reason}")
        for key, (line, expected_subjects) in parsed.validation.items():
            report.validations += 1
            report.failures.extend(await check_expected(system, parsed.path, key, line, expected_subjects))
    finally:
        await system.stop()
    return report


async def check_expected(
    system: PermissionSystem, path: Path, key: str, line: int, expected: list
) -> list[str]:
    """Failures of one expected-relations block (`validation:` key) against a recursive Expand."""
    obj_text, _, relation = key.partition("#")
    try:
        tree, _revision = await system.expand(
            ObjectRef.parse(obj_text), relation, Consistency.fully_consistent(), recursive=True
        )
    except StonetownError as exc:
        return [f"{path}:{line}: validation {key}: {exc}"]
    actual = expanded_subjects(tree)
    wanted = {item.subject: item.via for item in expected}
    failures: list[str] = []
    for subject in sorted(wanted.keys() - actual.keys()):
        failures.append(f"{path}:{line}: validation {key}: expected subject [{subject}] was not found")
    for subject in sorted(actual.keys() - wanted.keys()):
        failures.append(
            f"{path}:{line}: validation {key}: unexpected subject [{subject}] is {via_text(actual[subject])}"
        )
    for subject in sorted(actual.keys() & wanted.keys()):
        if actual[subject] != wanted[subject]:
            failures.append(
                f"{path}:{line}: validation {key}: [{subject}] is {via_text(actual[subject])}, "
                f"expected {via_text(wanted[subject])}"
            )
    return failures


def via_text(onrs: frozenset[str]) -> str:
    return "/".join(f"<{onr}>" for onr in sorted(onrs))


def expanded_subjects(tree: ExpandNode) -> dict[str, frozenset[str]]:
    """The subjects a recursive expand tree grants, as `zed validate` writes them, each with
    the relations (`type:id#relation`) it is found under on the branches that grant it (a
    subject stored under one operand of an intersection it does not pass is not listed there)."""
    caveats: dict[SubjectRef, str] = {}
    granted, paths = _granted_paths(tree, caveats)
    out: dict[str, frozenset[str]] = {}
    for subject in granted.concrete:
        text = str(subject) + (f"[{caveats[subject]}]" if subject in caveats else "")
        out[text] = frozenset(paths.get(subject, ()))
    for stype, excluded in granted.wildcards.items():
        text = f"{stype}:*"
        if excluded:
            text += " - {" + ", ".join(f"{stype}:{i}" for i in sorted(excluded)) + "}"
        out[text] = frozenset(paths.get(SubjectRef(stype, "*"), ()))
    return out


def _granted_paths(
    node: ExpandNode, caveats: dict[SubjectRef, str]
) -> tuple[SubjectSet, dict[SubjectRef, set[str]]]:
    """What a (sub)tree grants, and where each granted subject is stored on granting branches."""
    if node.op is None:
        here = f"{node.object}#{node.relation}"
        for position, subject in enumerate(node.subjects):
            caveat = node.subject_caveats[position] if position < len(node.subject_caveats) else None
            if caveat:
                caveats[subject] = caveat
        return evaluate(node), {subject: {here} for subject in node.subjects}
    parts = [_granted_paths(child, caveats) for child in node.children]
    if not parts:
        return SubjectSet(), {}
    granted = parts[0][0]
    for child, _paths in parts[1:]:
        if node.op is ExpandOp.UNION:
            granted = granted.union(child)
        elif node.op is ExpandOp.INTERSECTION:
            granted = granted.intersect(child)
        else:
            granted = granted.subtract(child)
    paths: dict[SubjectRef, set[str]] = {}
    for _set, child_paths in parts if node.op is not ExpandOp.EXCLUSION else parts[:1]:
        for subject, where in child_paths.items():
            if _holds(granted, subject):
                paths.setdefault(subject, set()).update(where)
    return granted, paths


def _holds(granted: SubjectSet, subject: SubjectRef) -> bool:
    if subject.id == "*" and not subject.relation:
        return subject.type in granted.wildcards
    return subject in granted.concrete or granted.contains(subject)


def _fga_store_report(name: str) -> FileReport:
    """Run an OpenFGA store test file (`.fga.yaml`) with OpenFGA semantics."""
    fga = run_store_file(name)
    return FileReport(fga.path, fga.assertions, 0, fga.failures)


def validate_files(paths: list[str], out: TextIO, openfga_cycles: bool = False) -> int:
    """Validate each file, print failures and a summary to `out`; return the exit code.
    `openfga_cycles`: see validate_parsed."""
    code = 0
    files = assertions = validations = failed = 0
    for name in paths:
        try:
            if is_store_file(name):
                report = _fga_store_report(name)
            else:
                report = asyncio.run(validate_parsed(read_validation_file(name), openfga_cycles))
        except (ValidationFileError, StoreFileError) as exc:
            print(f"error: {exc}", file=out)
            code = 2
            continue
        files += 1
        assertions += report.assertions
        validations += report.validations
        for failure in report.failures:
            print(failure, file=out)
        if report.failures:
            failed += 1
            code = max(code, 1)
    verdict = "all passed" if code == 0 else f"{failed} file(s) failed" if code == 1 else "errors"
    print(
        f"validated {files} file(s): {assertions} assertion(s), {validations} validation block(s): {verdict}",
        file=out,
    )
    return code


def main(paths: list[str], openfga_cycles: bool = False) -> int:
    """Entry point for `stonetown validate [--openfga-cycles] FILE...`."""
    if not paths:
        print("usage: stonetown validate FILE...", file=sys.stderr)
        return 2
    return validate_files(paths, sys.stdout, openfga_cycles)
