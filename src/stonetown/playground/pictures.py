"""The schema as a picture's data: definitions with their relations and permissions, and the
edges between them (subject types, computed references, arrows), from the schema analysis.

The page only draws what this returns: boxes per definition in the order given, one row per
relation, and an edge per entry; which permissions a relation feeds is the edge list read
backwards (``feeds``).
"""

from __future__ import annotations

from typing import Any

from stonetown.schema import compile_schema, ir
from stonetown.schema.analysis import ELLIPSIS, WILDCARD, analyze
from stonetown.schema.formatter import format_rewrite


def schema_picture(text: str) -> dict[str, Any]:
    """Definitions, rows and edges of a schema (SchemaError when it does not compile)."""
    schema = compile_schema(text)
    graph = analyze(schema).graph
    definitions = [
        {
            "name": definition.name,
            "line": definition.pos.line,
            "rows": [_row(relation) for relation in definition.relations.values()],
        }
        for definition in schema.definitions.values()
    ]
    edges = []
    feeds: dict[str, set[str]] = {}
    for source, target, data in graph.edges(data=True):
        kind = data["kind"]
        label = ""
        if kind == "direct":
            label = " ".join(
                part for part in (f"with {data['caveat']}" if data.get("caveat") else "",
                                  "expiring" if data.get("expiration") else "") if part
            )  # fmt: skip
        edges.append({"from": _id(source), "to": _id(target), "kind": kind, "label": label})
        if target[1] not in (ELLIPSIS, WILDCARD):
            feeds.setdefault(_id(target), set()).add(_id(source))
    return {
        "definitions": definitions,
        "edges": edges,
        "feeds": {row: sorted(users) for row, users in feeds.items()},
    }


def _row(relation: ir.Relation) -> dict[str, Any]:
    if relation.is_permission:
        expression = format_rewrite(relation.rewrite)
    else:
        expression = " | ".join(str(allowed) for allowed in relation.allowed)
    return {
        "name": relation.name,
        "kind": "permission" if relation.is_permission else "relation",
        "expression": expression,
        "line": relation.pos.line,
    }


def _id(node: tuple[str, str]) -> str:
    type_name, relation = node
    if relation == ELLIPSIS:
        return type_name
    if relation == WILDCARD:
        return f"{type_name}:*"
    return f"{type_name}#{relation}"
