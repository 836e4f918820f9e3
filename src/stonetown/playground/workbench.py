"""The engine behind the playground page: every answer the page shows is computed here.

A :class:`Workbench` keeps one in-memory :class:`PermissionSystem` loaded with the document's
schema and relationships, rebuilt only when those two sections change, and answers the page's
questions with it: diagnostics and lint for the schema, per-line validation of relationships,
assertion and expected-relation runs, regenerated expected relations, Check with its
resolution tree (:mod:`stonetown.engine.explain`), lookups, and the pictures' data. Each
question's inputs are bounded (:data:`LIMITS`) and errors come back as messages with a place.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stonetown.core.errors import StonetownError
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.datastore import RelationshipFilter
from stonetown.engine.explain import granting_path
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency
from stonetown.playground.document import Document
from stonetown.schema import SchemaError, compile_schema, format_schema, ir
from stonetown.schema.lint import lint
from stonetown.stores.memory import MemoryDatastore
from stonetown.validation.files import ValidationFileError
from stonetown.validation.runner import (
    assertion_outcomes,
    check_expected,
    expanded_subjects,
    load_into,
    relationship_error,
    via_text,
)

LIMITS = {"relationships": 50_000, "lookup_results": 1_000, "graph_hops": 4, "graph_nodes": 300}
_FGA_MODEL = re.compile(r"\A\s*model\s*\n\s*schema\s+\d")


def is_fga_model(text: str) -> bool:
    """Whether schema text is an OpenFGA DSL model (`model` / `schema 1.1` at the top)."""
    return _FGA_MODEL.match(text) is not None


@dataclass(frozen=True, slots=True)
class Place:
    """A message at a section's line and column (1-based; column 0 when unknown)."""

    section: str
    line: int
    column: int
    message: str
    severity: str = "error"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"section": self.section, "line": self.line, "column": self.column,
                "message": self.message, "severity": self.severity}  # fmt: skip


def schema_diagnostics(text: str) -> dict[str, Any]:
    """Errors (or lint warnings) of schema text; OpenFGA DSL is converted and returned too."""
    converted = None
    if is_fga_model(text):
        from stonetown.schema.fga import import_fga

        try:
            converted = format_schema(import_fga(text))
        except SchemaError as exc:
            return _diagnosed([_place("schema", d) for d in exc.diagnostics], None)
        except StonetownError as exc:
            return _diagnosed([Place("schema", 1, 0, str(exc)).to_dict()], None)
        text = converted
    try:
        schema = compile_schema(text)
    except SchemaError as exc:
        return _diagnosed([_place("schema", d) for d in exc.diagnostics], converted)
    warnings = [_place("schema", d, "warning") for d in lint(schema)]
    return {"errors": [], "warnings": warnings, "converted": converted}


def _diagnosed(errors: list[dict[str, Any]], converted: str | None) -> dict[str, Any]:
    return {"errors": errors, "warnings": [], "converted": converted}


def format_text(text: str) -> str:
    """The schema in canonical layout (SchemaError when it does not compile)."""
    return format_schema(compile_schema(text))


def _place(section: str, diagnostic: Any, severity: str = "error") -> dict[str, Any]:
    return Place(section, diagnostic.line, diagnostic.column, diagnostic.message, severity).to_dict()


def relationship_rows(schema_text: str, relationships: str) -> list[dict[str, Any]]:
    """The relationships section as grid rows, each validated against the schema (only for
    its syntax while the schema itself does not compile)."""
    try:
        schema: ir.Schema | None = compile_schema(schema_text)
    except SchemaError:
        schema = None
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(relationships.splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("//"):
            continue
        if len(rows) >= LIMITS["relationships"]:
            limit = LIMITS["relationships"]
            rows.append({"line": number, "text": text, "error": f"more than {limit} relationships"})
            break
        try:
            rel = Relationship.parse(text)
        except StonetownError as exc:
            rows.append({"line": number, "text": text, "error": str(exc)})
            continue
        error = relationship_error(schema, rel) if schema is not None else None
        rows.append({"line": number, "text": text, "error": error, **_columns(rel)})
    return rows


def _columns(rel: Relationship) -> dict[str, Any]:
    return {
        "resource": f"{rel.resource_type}:{rel.resource_id}",
        "relation": rel.relation,
        "subject": str(rel.subject),
        "caveat": rel.caveat.name if rel.caveat else "",
        "context": dict(rel.caveat.context) if rel.caveat else {},
        "expiration": rel.expiration.strftime("%Y-%m-%dT%H:%M:%SZ") if rel.expiration else "",
    }


class Workbench:
    """One loaded engine per (schema, relationships); see the module doc."""

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._system: PermissionSystem | None = None
        self._load_failures: list[str] = []
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """Stop the loaded engine."""
        if self._system is not None:
            await self._system.stop()
            self._system = None

    async def _loaded(self, doc: Document) -> tuple[PermissionSystem, list[Place]]:
        """The engine holding the document's schema and relationships, and what refused to load."""
        key = (doc.schema, doc.relationships)
        async with self._lock:
            if key != self._key or self._system is None:
                await self.close()
                system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
                await system.start()
                bare = Document(schema=doc.schema, relationships=doc.relationships, name=doc.name)
                try:
                    self._load_failures = await load_into(system, bare.parsed())
                except ValidationFileError as exc:
                    self._load_failures = [str(exc)]
                self._system, self._key = system, key
            return self._system, self._placed(doc, self._load_failures)

    @staticmethod
    def _placed(doc: Document, failures: list[str]) -> list[Place]:
        """Runner messages (`file:line[:col]: text`) placed back in their section's lines."""
        starts = doc.section_lines() if failures else {}
        ordered = sorted(starts.items(), key=lambda item: item[1])
        out: list[Place] = []
        for failure in failures:
            head, _, message = failure.partition(": ")
            parts = head.split(":")
            numbers = [int(p) for p in parts[1:] if p.isdigit()]
            if not numbers:
                out.append(Place("schema", 0, 0, failure))
                continue
            line, column = numbers[0], numbers[1] if len(numbers) > 1 else 0
            section = "schema"
            for name, start in ordered:
                if line >= start:
                    section = name
            out.append(Place(section, line - starts.get(section, 1) + 1, column, message))
        return out

    async def run(self, doc: Document) -> dict[str, Any]:
        """Load, then run every assertion and expected-relations block; each marked per line."""
        system, failures = await self._loaded(doc)
        result: dict[str, Any] = {"load": [f.to_dict() for f in failures], "assertions": [], "validation": []}
        if failures:
            return result
        try:
            parsed = doc.parsed()
        except ValidationFileError as exc:
            result["load"] = [p.to_dict() for p in self._placed(doc, [str(exc)])]
            return result
        starts = doc.section_lines()
        for outcome in await assertion_outcomes(system, parsed):
            assertion = outcome.assertion
            result["assertions"].append({
                "line": assertion.line - starts.get("assertions", 1) + 1, "kind": assertion.kind,
                "text": assertion.text, "passed": outcome.passed, "reason": outcome.reason,
                "got": outcome.got.name if outcome.got else None,
            })  # fmt: skip
        for key, (line, expected) in parsed.validation.items():
            problems = await check_expected(system, Path(doc.name), key, line, expected)
            result["validation"].append({
                "line": line - starts.get("validation", 1) + 1, "key": key, "passed": not problems,
                "reasons": [p.split(f"validation {key}: ", 1)[-1] for p in problems],
            })  # fmt: skip
        return result

    async def regenerate(self, doc: Document) -> str:
        """The expected-relations section as the engine computes it, for the keys the section
        lists, or for every permission of every resource in the relationships when empty."""
        system, failures = await self._loaded(doc)
        if failures:
            raise StonetownError("fix the load errors first: " + failures[0].message)
        keys = list(yaml.safe_load(doc.validation) or {}) if doc.validation.strip() else []
        if not keys:
            keys = await self._every_permission_key(system)
        out: dict[str, list[str]] = {}
        for key in keys:
            obj_text, _, relation = str(key).partition("#")
            tree, _revision = await system.expand(
                ObjectRef.parse(obj_text), relation, Consistency.fully_consistent(), recursive=True
            )
            subjects = expanded_subjects(tree)
            out[str(key)] = [f"[{subject}] is {via_text(subjects[subject])}" for subject in sorted(subjects)]
        return yaml.safe_dump(out, sort_keys=False, width=1000, allow_unicode=True).strip()

    @staticmethod
    async def _every_permission_key(system: PermissionSystem) -> list[str]:
        assert system.state is not None
        read = await system.read_relationships(RelationshipFilter(), Consistency.fully_consistent())
        objects = sorted({(r.resource_type, r.resource_id) for r in read.relationships})
        keys = []
        for rtype, rid in objects:
            definition = system.state.schema.definitions[rtype]
            names = [rel.name for rel in definition.relations.values() if rel.is_permission]
            keys += [f"{rtype}:{rid}#{name}" for name in names]
        return keys

    async def check(
        self, doc: Document, resource: str, permission: str, subject: str, context: dict[str, Any] | None
    ) -> dict[str, Any]:
        """A Check with its resolution tree and, for a grant, the path of relationships."""
        system, failures = await self._loaded(doc)
        if failures:
            raise StonetownError("fix the load errors first: " + failures[0].message)
        tree, answer = await system.explain(
            ObjectRef.parse(resource), permission, SubjectRef.parse(subject), Consistency.fully_consistent(),
            context=context,
        )  # fmt: skip
        data = tree.to_dict()
        return {
            "result": answer.permissionship.name,
            "missing": list(answer.missing_parameters),
            "path": granting_path(data),
            "tree": data,
        }

    async def lookups(self, doc: Document, kind: str, **args: str) -> list[str]:
        """LookupResources (``type``, ``permission``, ``subject``) or LookupSubjects
        (``resource``, ``permission``, ``subject_type``) as a bounded list of answers."""
        system, failures = await self._loaded(doc)
        if failures:
            raise StonetownError("fix the load errors first: " + failures[0].message)
        consistency, limit = Consistency.fully_consistent(), LIMITS["lookup_results"]
        found: list[str] = []
        if kind == "resources":
            stream = system.lookup_resources(
                args["type"], args["permission"], SubjectRef.parse(args["subject"]), consistency, limit=limit
            )
            async for item, _revision in stream:
                suffix = " (conditional)" if item.conditional else ""
                found.append(f"{args['type']}:{item.resource_id}{suffix}")
        else:
            stype, _, srel = args["subject_type"].partition("#")
            subjects = system.lookup_subjects(
                ObjectRef.parse(args["resource"]), args["permission"], stype, srel, consistency, limit=limit
            )
            async for subject, _revision in subjects:
                text = str(subject.subject)
                if subject.excluded:
                    text += " - {" + ", ".join(subject.excluded) + "}"
                found.append(text + (" (conditional)" if subject.conditional else ""))
        return found

    async def neighbourhood(self, doc: Document, center: str, hops: int) -> dict[str, Any]:
        """The relationships within `hops` of one object (both directions), bounded in size."""
        system, failures = await self._loaded(doc)
        if failures:
            raise StonetownError("fix the load errors first: " + failures[0].message)
        hops = max(1, min(hops, LIMITS["graph_hops"]))
        read = await system.read_relationships(RelationshipFilter(), Consistency.fully_consistent())
        touching: dict[str, list[Relationship]] = {}
        for rel in read.relationships:
            resource = f"{rel.resource_type}:{rel.resource_id}"
            subject = f"{rel.subject_type}:{rel.subject_id}"
            touching.setdefault(resource, []).append(rel)
            touching.setdefault(subject, []).append(rel)
        seen, frontier, edges = {center: 0}, [center], {}
        for depth in range(1, hops + 1):
            following: list[str] = []
            for node in frontier:
                for rel in touching.get(node, ()):
                    edges[str(rel)] = rel
                    ends = (f"{rel.resource_type}:{rel.resource_id}", f"{rel.subject_type}:{rel.subject_id}")
                    for end in ends:
                        if end not in seen and len(seen) < LIMITS["graph_nodes"]:
                            seen[end] = depth
                            following.append(end)
            frontier = following
        return {
            "nodes": [{"id": node, "hops": depth} for node, depth in seen.items()],
            "edges": [
                {"from": f"{r.subject_type}:{r.subject_id}", "to": f"{r.resource_type}:{r.resource_id}",
                 "label": r.relation + (f"@#{r.subject_relation}" if r.subject_relation else "")}
                for r in edges.values()
                if f"{r.subject_type}:{r.subject_id}" in seen and f"{r.resource_type}:{r.resource_id}" in seen
            ],  # fmt: skip
            "truncated": len(seen) >= LIMITS["graph_nodes"],
        }
