"""Check resolution trees (engine/explain.py) to and from the API's CheckTrace message."""

from __future__ import annotations

from typing import Any

from stonetown.api.convert import permissionship_from_proto, permissionship_to_proto
from stonetown.api.pb import permission
from stonetown.engine.explain import SKIPPED, ExplainNode


def trace_to_proto(node: ExplainNode) -> permission.CheckTrace:
    """A resolution tree (engine/explain.py) as the API's CheckTrace (built without recursion);
    a skipped node (not evaluated) has no value: PERMISSIONSHIP_UNSPECIFIED (read back as
    DENIED, its value by convention in the tree)."""
    root = permission.CheckTrace()
    stack = [(node, root)]
    while stack:
        source, target = stack.pop()
        target.kind, target.label, target.reason = source.kind, source.label, source.reason
        if source.kind == SKIPPED:
            target.result = permission.PERMISSIONSHIP_UNSPECIFIED
        else:
            target.result = permissionship_to_proto(source.result)
        target.line, target.column = source.line, source.column
        target.missing_required_context.extend(source.missing)
        stack.extend((child, target.children.add()) for child in source.children)
    return root


def trace_from_proto(trace: permission.CheckTrace) -> dict[str, Any]:
    """A CheckTrace as the plain data ExplainNode.to_dict gives (for clients and the CLI)."""
    root: dict[str, Any] = {}
    stack = [(trace, root)]
    while stack:
        source, target = stack.pop()
        target.update(
            kind=source.kind, label=source.label, result=permissionship_from_proto(source.result).name,
            reason=source.reason, line=source.line, column=source.column,
            missing=list(source.missing_required_context), children=[],
        )  # fmt: skip
        for child in source.children:
            target["children"].append({})
            stack.append((child, target["children"][-1]))
    return root
