"""Schema analysis: the reachability graph and lint warnings. Not on a hot path.

The graph has one node per (type, relation); `(user, "...")` stands for plain `user` objects
and `(user, "*")` for the `user:*` wildcard. Each edge goes from a relation or permission to
what it can be satisfied by, with a ``kind``:

* ``direct``: a relation admits that subject type (attributes ``caveat``, ``expiration``);
* ``computed``: a permission refers to another relation of the same object;
* ``tupleset``: a permission walks an arrow over that relation;
* ``arrow``: the arrow's target on one subject type of the tupleset (attributes ``via``, ``mode``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import networkx as nx

from stonetown.schema import ir
from stonetown.schema.checker import walk_rewrite
from stonetown.schema.diagnostics import Diagnostic, sort_diagnostics

ELLIPSIS = "..."
WILDCARD = "*"

Node = tuple[str, str]


@dataclass
class Analysis:
    """The reachability graph of a schema and the warnings found in it."""

    graph: nx.MultiDiGraph
    warnings: list[Diagnostic] = field(default_factory=list)

    def reachable(self, type_name: str, relation: str) -> set[Node]:
        """Every (type, relation) whose members can hold `type#relation` (``tupleset`` edges skipped)."""
        node = (type_name, relation)
        if node not in self.graph:
            return set()
        holders = nx.subgraph_view(
            self.graph, filter_edge=lambda u, v, k: self.graph.edges[u, v, k]["kind"] != "tupleset"
        )
        return set(nx.descendants(holders, node))

    def subject_types(self, type_name: str, relation: str) -> set[str]:
        """Object types whose plain objects (or wildcard) can end up holding `type#relation`."""
        return {t for t, r in self.reachable(type_name, relation) if r in (ELLIPSIS, WILDCARD)}


def analyze(schema: ir.Schema) -> Analysis:
    """Build the reachability graph of a (type-checked) schema and lint it."""
    graph = _build_graph(schema)
    warnings: list[Diagnostic] = []
    warnings += _self_references(schema)
    warnings += _computed_cycles(schema, graph)
    warnings += _arrows_over_subject_relations(schema)
    warnings += _arrows_to_missing_relations(schema)
    warnings += _unused_relations(schema, graph)
    warnings += _unused_definitions_and_caveats(schema)
    return Analysis(graph, sort_diagnostics(warnings))


def _build_graph(schema: ir.Schema) -> nx.MultiDiGraph:
    graph = nx.MultiDiGraph()
    for definition in schema.definitions.values():
        graph.add_node((definition.name, ELLIPSIS), kind="object")
        for relation in definition.relations.values():
            graph.add_node(
                (definition.name, relation.name), kind="permission" if relation.is_permission else "relation"
            )
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            source = (definition.name, relation.name)
            if not relation.is_permission:
                for allowed in relation.allowed:
                    target = (allowed.type, WILDCARD if allowed.wildcard else allowed.relation or ELLIPSIS)
                    graph.add_edge(
                        source, target, kind="direct", caveat=allowed.caveat, expiration=allowed.expiration
                    )
                continue
            for node in walk_rewrite(relation.rewrite):
                if isinstance(node, ir.ComputedUserset):
                    graph.add_edge(source, (definition.name, node.relation), kind="computed")
                elif isinstance(node, ir.TupleToUserset):
                    graph.add_edge(source, (definition.name, node.tupleset), kind="tupleset")
                    tupleset = definition.relations.get(node.tupleset)
                    if tupleset is None:
                        continue
                    for subject_type in dict.fromkeys(a.type for a in tupleset.allowed):
                        if schema.relation(subject_type, node.computed) is not None:
                            graph.add_edge(
                                source,
                                (subject_type, node.computed),
                                kind="arrow",
                                via=node.tupleset,
                                mode=node.mode,
                            )
    return graph


def _self_references(schema: ir.Schema) -> list[Diagnostic]:
    warnings = []
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            for node in walk_rewrite(relation.rewrite):
                if isinstance(node, ir.ComputedUserset) and node.relation == relation.name:
                    warnings.append(
                        Diagnostic.at(
                            node.pos,
                            f'Permission "{relation.name}" references itself, which will cause an error '
                            "to be raised due to infinite recursion",
                        )
                    )
    return warnings


def _computed_cycles(schema: ir.Schema, graph: nx.MultiDiGraph) -> list[Diagnostic]:
    """Permissions that reach each other through same-object references only (no arrow)."""
    computed = nx.DiGraph()
    computed.add_edges_from(
        (u, v) for u, v, kind in graph.edges(data="kind") if kind == "computed" and u != v
    )
    warnings = []
    for component in nx.strongly_connected_components(computed):
        if len(component) < 2:
            continue
        type_name = next(iter(component))[0]
        names = sorted(relation for _, relation in component)
        relations = [schema.definitions[type_name].relations[name] for name in names]
        first = min(relations, key=lambda r: (r.pos.line, r.pos.column))
        warnings.append(
            Diagnostic.at(
                first.pos,
                f"under definition `{type_name}`, permissions {', '.join(f'`{n}`' for n in names)} refer to "
                "each other in a cycle without an arrow, which will cause an error to be raised due to "
                "infinite recursion",
            )
        )
    return warnings


def _arrows(schema: ir.Schema) -> Iterator[tuple[ir.Relation, ir.TupleToUserset, ir.Relation]]:
    """Every arrow of the schema: (the relation it is under, the arrow, its tupleset relation)."""
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            for node in walk_rewrite(relation.rewrite):
                if isinstance(node, ir.TupleToUserset):
                    tupleset = definition.relations.get(node.tupleset)
                    if tupleset is not None:
                        yield relation, node, tupleset


def _arrows_over_subject_relations(schema: ir.Schema) -> list[Diagnostic]:
    warnings = []
    for relation, node, tupleset in _arrows(schema):
        for allowed in tupleset.allowed:
            if allowed.relation is not None:
                warnings.append(
                    Diagnostic.at(
                        node.pos,
                        f"Arrow `{node.tupleset}->{node.computed}` under permission "
                        f'"{relation.name}" references relation "{node.tupleset}" that has relation '
                        f'"{allowed.relation}" on subject "{allowed.type}": '
                        "*the subject relation will be ignored for the arrow*",
                    )
                )
                break
    return warnings


def _arrows_to_missing_relations(schema: ir.Schema) -> list[Diagnostic]:
    """Arrows whose relation exists on none of the tupleset's subject types: legal (SpiceDB
    accepts them), and they grant nothing."""
    warnings = []
    for relation, node, tupleset in _arrows(schema):
        targets = [schema.definitions.get(allowed.type) for allowed in tupleset.allowed]
        if any(target is None or node.computed in target.relations for target in targets):
            continue
        arrow = (
            f"{node.tupleset}->{node.computed}"
            if node.mode == "any"
            else f"{node.tupleset}.all({node.computed})"
        )
        warnings.append(
            Diagnostic.at(
                node.pos,
                f'Arrow `{arrow}` under permission "{relation.name}" references relation/permission '
                f'"{node.computed}" that does not exist on any subject types of relation "{node.tupleset}"',
            )
        )
    return warnings


def _unused_relations(schema: ir.Schema, graph: nx.MultiDiGraph) -> list[Diagnostic]:
    """Relations nothing reads, in definitions that do have permissions."""
    warnings = []
    for definition in schema.definitions.values():
        if not any(r.is_permission for r in definition.relations.values()):
            continue
        for relation in definition.relations.values():
            node = (definition.name, relation.name)
            if relation.is_permission or graph.in_degree(node) > 0:
                continue
            warnings.append(
                Diagnostic.at(
                    relation.pos,
                    f"relation `{relation.name}` under definition `{definition.name}` is not used by any "
                    "permission or subject type",
                )
            )
    return warnings


def _unused_definitions_and_caveats(schema: ir.Schema) -> list[Diagnostic]:
    used_types: set[str] = set()
    used_caveats: set[str] = set()
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            for allowed in relation.allowed:
                used_types.add(allowed.type)
                if allowed.caveat is not None:
                    used_caveats.add(allowed.caveat)
    warnings = []
    for definition in schema.definitions.values():
        if not definition.relations and definition.name not in used_types:
            warnings.append(
                Diagnostic.at(
                    definition.pos,
                    f"definition `{definition.name}` has no relations and is not used as a subject type",
                )
            )
    for caveat in schema.caveats.values():
        if caveat.name not in used_caveats:
            warnings.append(Diagnostic.at(caveat.pos, f"caveat `{caveat.name}` is not used by any relation"))
    return warnings
