"""Rendering results as text for people or as JSON for programs."""

from __future__ import annotations

import json
import sys
from typing import Any

from stonetown.client.results import CheckOutcome, FoundResource, FoundSubject, WatchEvent
from stonetown.core.relationship import Relationship
from stonetown.engine.types import ExpandNode


def emit_json(value: Any) -> None:
    """Print one JSON document on one line."""
    print(json.dumps(value, sort_keys=True, default=str))
    sys.stdout.flush()


def check_json(outcome: CheckOutcome) -> dict[str, Any]:
    """A check answer as JSON."""
    return {
        "permissionship": outcome.permissionship.value,
        "allowed": outcome.allowed,
        "missing_parameters": list(outcome.missing_parameters),
        "token": outcome.token,
    }


def check_text(outcome: CheckOutcome) -> str:
    """`allowed`, `denied` or `conditional (missing: a, b)`."""
    if outcome.conditional:
        return f"conditional (missing: {', '.join(outcome.missing_parameters)})"
    return outcome.permissionship.value


def relationship_json(rel: Relationship) -> dict[str, Any]:
    """A relationship as JSON: its notation and its parts."""
    return {
        "relationship": str(rel),
        "resource": str(rel.resource),
        "relation": rel.relation,
        "subject": str(rel.subject),
        "caveat": None if rel.caveat is None else {"name": rel.caveat.name, "context": rel.caveat.context},
        "expiration": None if rel.expiration is None else rel.expiration.isoformat(),
    }


def expand_json(node: ExpandNode) -> dict[str, Any]:
    """An expand tree as nested JSON."""
    result: dict[str, Any] = {"object": str(node.object), "relation": node.relation}
    if node.op is not None:
        result["op"] = node.op.value
        result["children"] = [expand_json(child) for child in node.children]
    else:
        caveats = list(node.subject_caveats) + [None] * (len(node.subjects) - len(node.subject_caveats))
        result["subjects"] = [
            {"subject": str(subject), "caveat": caveat}
            for subject, caveat in zip(node.subjects, caveats, strict=False)
        ]
    return result


def expand_text(node: ExpandNode, indent: int = 0) -> list[str]:
    """An expand tree as indented lines, one node or subject per line."""
    pad = "  " * indent
    head = f"{pad}{node.object}#{node.relation}"
    if node.op is not None:
        lines = [f"{head} ({node.op.value})"]
        for child in node.children:
            lines.extend(expand_text(child, indent + 1))
        return lines
    lines = [head]
    caveats = list(node.subject_caveats) + [None] * (len(node.subjects) - len(node.subject_caveats))
    for subject, caveat in zip(node.subjects, caveats, strict=False):
        lines.append(f"{pad}  - {subject}" + (f" [{caveat}]" if caveat else ""))
    return lines


def resource_json(found: FoundResource) -> dict[str, Any]:
    """A LookupResources result as JSON."""
    return {
        "resource_id": found.resource_id,
        "conditional": found.conditional,
        "missing_parameters": list(found.missing_parameters),
        "cursor": found.cursor,
        "token": found.token,
    }


def subject_json(found: FoundSubject) -> dict[str, Any]:
    """A LookupSubjects result as JSON."""
    return {
        "subject": str(found.subject),
        "conditional": found.conditional,
        "missing_parameters": list(found.missing_parameters),
        "excluded": list(found.excluded),
        "cursor": found.cursor,
        "token": found.token,
    }


def subject_text(found: FoundSubject) -> str:
    """`user:ana`, `user:* (except user:bob)`, `user:eve (conditional)`."""
    text = str(found.subject)
    if found.excluded:
        text += " (except " + ", ".join(f"{found.subject.type}:{sid}" for sid in found.excluded) + ")"
    if found.conditional:
        text += " (conditional)"
    return text


def watch_json(event: WatchEvent) -> dict[str, Any]:
    """A watch event as JSON."""
    return {
        "token": event.token,
        "schema_changed": event.schema_changed,
        "changes": [
            {"op": change.op.value, "relationship": str(change.relationship)} for change in event.changes
        ],
    }


def watch_text(event: WatchEvent) -> list[str]:
    """One line per change, then the token."""
    lines = [f"{change.op.value.upper()} {change.relationship}" for change in event.changes]
    if event.schema_changed:
        lines.append("SCHEMA changed")
    lines.append(f"# token {event.token}")
    return lines
