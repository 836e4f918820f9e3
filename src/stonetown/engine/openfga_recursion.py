"""Which relations OpenFGA resolves the cycles of with its flag-free recursive strategy (the
rest it flags as unresolved): read by Check when a schema came from OpenFGA (CheckRun._cycle,
cycle_race.py)."""

from __future__ import annotations

from stonetown.engine.reachability import evaluated_relations, reads_direct_only
from stonetown.schema import ir
from stonetown.schema.graphs import strongly_connected_components


def simple_recursive_relations(schema: ir.Schema) -> set[tuple[str, str]]:
    """Relations whose only way back to themselves is one plain recursive edge, every other
    operand assigned directly: a relation admitting its own subject set besides plain subjects
    (`member: user | group#member`), or a permission that is a union with one arrow to itself
    (`view = viewer + parent->view`). A cycle through such a relation alone is resolved
    exactly (it adds nothing); OpenFGA does the same for these shapes (its recursive strategy)
    and flags other cycles as unresolved. None in a model where a relation reaches itself
    through an intersection or exclusion operand: OpenFGA then resolves every cycle by
    dispatch and flags it (observed with `fga model test`, OpenFGA v1.22)."""
    graph: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            graph[(definition.name, relation.name)] = evaluated_relations(
                schema, definition.name, relation.rewrite
            )

    component = strongly_connected_components(graph)

    def reaches(start: set[tuple[str, str]], goal: tuple[str, str]) -> bool:
        # `start` holds edges out of `goal`: one leads back to it when both share a component
        return any(node == goal or component.get(node) == component[goal] for node in start)

    # OpenFGA does not use its flag-free recursive strategy at all in a model in which a
    # relation reaches itself through an intersection or exclusion operand (observed).
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            for operand in _set_operation_operands(relation.rewrite):
                if reaches(evaluated_relations(schema, key[0], operand), key):
                    return set()

    found: set[tuple[str, str]] = set()
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            rewrite = relation.rewrite
            if isinstance(rewrite, ir.This):
                # OpenFGA's recursive strategy also needs every other operand to be assigned
                # directly (weight 1): another subject set makes it dispatch, cycles flagged
                # (nor is it used for a relation admitting a wildcard: observed)
                others = {edge for edge in evaluated_relations(schema, key[0], rewrite) if edge != key}
                wildcard = any(a.wildcard for a in rewrite.allowed)
                if key in evaluated_relations(schema, key[0], rewrite) and not others and not wildcard:
                    found.add(key)
                continue
            children = list(rewrite.children) if isinstance(rewrite, ir.Union) else [rewrite]
            recursive = [
                c
                for c in children
                if isinstance(c, ir.TupleToUserset) and c.computed == key[1] and c.mode == "any"
            ]
            rest = [c for c in children if c not in recursive]
            if len(recursive) != 1:
                continue
            arrow_edges = evaluated_relations(schema, key[0], recursive[0]) - {key}
            rest_edges = (
                set().union(*(evaluated_relations(schema, key[0], c) for c in rest)) if rest else set()
            )
            if not reaches(arrow_edges | rest_edges, key) and all(
                reads_direct_only(schema, key[0], c) for c in rest
            ):
                found.add(key)
    return found


def _set_operation_operands(node: ir.Rewrite) -> list[ir.Rewrite]:
    """The operands of every intersection and exclusion within a rewrite."""
    if isinstance(node, ir.Intersection):
        return [*node.children, *(o for c in node.children for o in _set_operation_operands(c))]
    if isinstance(node, ir.Exclusion):
        children = [node.base, node.subtract]
        return [*children, *(o for c in children for o in _set_operation_operands(c))]
    if isinstance(node, ir.Union):
        return [o for c in node.children for o in _set_operation_operands(c)]
    return []
