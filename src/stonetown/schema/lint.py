"""Lint for schema authors: what is legal but almost surely a mistake, with the line it is at.

On top of :func:`stonetown.schema.analysis.analyze`'s warnings (unused relations and caveats;
subject types no relationship can reach, i.e. definitions without relations that no relation
admits; computed cycles; arrows over subject relations):

* a permission that can never be granted, whatever relationships are written (every way to
  it ends in ``nil``, an intersection with such an operand, or an arrow whose targets cannot
  grant the permission it names);
* an exclusion whose subtracted side can be granted through a wildcard (``- banned`` where
  ``banned`` admits ``user:*``): one wildcard relationship then excludes every subject.
"""

from __future__ import annotations

from stonetown.schema import ir
from stonetown.schema.analysis import WILDCARD, analyze
from stonetown.schema.diagnostics import Diagnostic, sort_diagnostics


def lint(schema: ir.Schema) -> list[Diagnostic]:
    """Every lint warning of a (checked) schema, in source order."""
    analysis = analyze(schema)
    warnings = list(analysis.warnings)
    warnings += _never_granted(schema)
    warnings += _wildcard_exclusions(schema, analysis)
    return sort_diagnostics(warnings)


def grantable(schema: ir.Schema) -> set[tuple[str, str]]:
    """The (type, relation) pairs some set of relationships can grant (least fixpoint)."""
    found: set[tuple[str, str]] = set()
    changed = True
    while changed:
        changed = False
        for definition in schema.definitions.values():
            for relation in definition.relations.values():
                key = (definition.name, relation.name)
                if key not in found and _can_grant(schema, definition.name, relation.rewrite, found):
                    found.add(key)
                    changed = True
    return found


def _can_grant(schema: ir.Schema, type_name: str, rewrite: ir.Rewrite, found: set[tuple[str, str]]) -> bool:
    # iterative over the expression: an explicit stack of (node, children-done) frames
    results: dict[int, bool] = {}
    stack: list[tuple[ir.Rewrite, bool]] = [(rewrite, False)]
    while stack:
        node, done = stack.pop()
        if isinstance(node, ir.Union | ir.Intersection) and not done:
            stack.append((node, True))
            stack.extend((child, False) for child in node.children)
            continue
        if isinstance(node, ir.Exclusion) and not done:
            stack.append((node, True))
            stack.append((node.base, False))
            continue
        results[id(node)] = _value(schema, type_name, node, found, results)
    return results[id(rewrite)]


def _value(
    schema: ir.Schema, type_name: str, node: ir.Rewrite, found: set[tuple[str, str]], results: dict[int, bool]
) -> bool:
    if isinstance(node, ir.This):
        return bool(node.allowed)
    if isinstance(node, ir.Nil):
        return False
    if isinstance(node, ir.ComputedUserset):
        return (type_name, node.relation) in found
    if isinstance(node, ir.TupleToUserset):
        tupleset = schema.relation(type_name, node.tupleset)
        targets = {allowed.type for allowed in tupleset.allowed} if tupleset is not None else set()
        return any((target, node.computed) in found for target in targets)
    if isinstance(node, ir.Union):
        return any(results[id(child)] for child in node.children)
    if isinstance(node, ir.Intersection):
        return all(results[id(child)] for child in node.children)
    if isinstance(node, ir.Exclusion):
        return results[id(node.base)]
    return False


def _never_granted(schema: ir.Schema) -> list[Diagnostic]:
    found = grantable(schema)
    return [
        Diagnostic.at(
            relation.pos,
            f"permission `{relation.name}` under definition `{definition.name}` can never be granted: "
            "no relationships can satisfy it",
        )
        for definition in schema.definitions.values()
        for relation in definition.relations.values()
        if relation.is_permission and (definition.name, relation.name) not in found
    ]


def _wildcard_exclusions(schema: ir.Schema, analysis: object) -> list[Diagnostic]:
    warnings: list[Diagnostic] = []
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            for node in _exclusions(relation.rewrite):
                for name in _names(node.subtract):
                    reach = analysis.reachable(definition.name, name)  # type: ignore[attr-defined]
                    wild = {t for t, r in reach if r == WILDCARD}
                    if wild:
                        types = ", ".join(f"`{t}:*`" for t in sorted(wild))
                        warnings.append(
                            Diagnostic.at(
                                node.pos,
                                f"`{relation.name}` excludes `{name}`, which can hold {types}: one wildcard "
                                "relationship there excludes every subject of that type",
                            )
                        )
    return warnings


def _exclusions(rewrite: ir.Rewrite) -> list[ir.Exclusion]:
    out: list[ir.Exclusion] = []
    stack = [rewrite]
    while stack:
        node = stack.pop()
        if isinstance(node, ir.Exclusion):
            out.append(node)
            stack.extend((node.base, node.subtract))
        elif isinstance(node, ir.Union | ir.Intersection):
            stack.extend(node.children)
    return out


def _names(rewrite: ir.Rewrite) -> list[str]:
    """The relations of the same object an expression names directly (not through arrows)."""
    out: list[str] = []
    stack = [rewrite]
    while stack:
        node = stack.pop()
        if isinstance(node, ir.ComputedUserset):
            out.append(node.relation)
        elif isinstance(node, ir.Exclusion):
            stack.extend((node.base, node.subtract))
        elif isinstance(node, ir.Union | ir.Intersection):
            stack.extend(node.children)
    return out
