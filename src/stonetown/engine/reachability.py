"""What can reach what: the schema facts LookupResources and LookupSubjects walk by.

Computed once per schema (like OpenFGA's typesystem), never per request:
- which permissions of a type are granted, positively, by a relation of the same type;
- which permissions of other types reach a relation through an arrow, and over which
  tupleset relation;
- which permissions are *monotone* (built from relations, unions and `any` arrows only), so a
  candidate found by walking the graph backwards is certainly an answer and needs no check.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from stonetown.schema import ir


@dataclass
class Reachability:
    """Reverse edges of the schema, for walking from a subject up to the resources it reaches."""

    # (type, relation) -> permissions of the same type containing it positively
    computed_parents: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    # (subject type, computed relation) -> (resource type, tupleset relation, permission)
    arrow_parents: dict[tuple[str, str], list[tuple[str, str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # (type, tupleset relation) -> subject relations that tupleset admits per subject type
    tupleset_subject_relations: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    monotone: set[tuple[str, str]] = field(default_factory=set)
    # (resource type, relation, subject type, subject relation or "", wildcard) stored shapes
    # the schema admits; relationships of other shapes are ignored by every query
    admits: set[tuple[str, str, str, str, bool]] = field(default_factory=set)
    schema: ir.Schema | None = None
    _relevant: dict[tuple[str, str], frozenset[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def of(cls, schema: ir.Schema) -> Reachability:
        """Compute the reverse edges of `schema`."""
        facts = cls(schema=schema)
        for definition in schema.definitions.values():
            for relation in definition.relations.values():
                facts._collect(schema, definition.name, relation.name, relation.rewrite)
                for allowed in relation.allowed:
                    facts.admits.add(
                        (
                            definition.name,
                            relation.name,
                            allowed.type,
                            allowed.relation or "",
                            allowed.wildcard,
                        )
                    )
        facts._find_monotone(schema)
        return facts

    def relevant_to(self, resource_type: str, permission: str) -> frozenset[tuple[str, str]]:
        """Every (type, relation) that `resource_type#permission` depends on, itself included:
        a walk up from a subject need not climb anywhere else."""
        key = (resource_type, permission)
        found = self._relevant.get(key)
        if found is None:
            assert self.schema is not None
            seen: set[tuple[str, str]] = set()
            todo = [key]
            while todo:
                current = todo.pop()
                if current in seen:
                    continue
                seen.add(current)
                relation = self.schema.relation(*current)
                if relation is not None:
                    todo.extend(evaluated_relations(self.schema, current[0], relation.rewrite))
            found = self._relevant[key] = frozenset(seen)
        return found

    def _collect(self, schema: ir.Schema, rtype: str, perm: str, node: ir.Rewrite) -> None:
        if isinstance(node, ir.ComputedUserset):
            self.computed_parents[(rtype, node.relation)].append(perm)
        elif isinstance(node, ir.TupleToUserset):
            tupleset = schema.relation(rtype, node.tupleset)
            for allowed in tupleset.allowed if tupleset is not None else ():
                if allowed.wildcard:
                    continue
                self.arrow_parents[(allowed.type, node.computed)].append((rtype, node.tupleset, perm))
                relations = self.tupleset_subject_relations.setdefault(
                    (rtype, node.tupleset, allowed.type), set()
                )
                relations.add(allowed.relation or "")
        elif isinstance(node, ir.Union | ir.Intersection):
            for child in node.children:
                self._collect(schema, rtype, perm, child)
        elif isinstance(node, ir.Exclusion):
            self._collect(schema, rtype, perm, node.base)

    def _find_monotone(self, schema: ir.Schema) -> None:
        # Greatest fixpoint: assume every relation monotone, drop those that use a
        # non-monotone construct or reach a non-monotone relation.
        candidates = {(d.name, r.name) for d in schema.definitions.values() for r in d.relations.values()}
        changed = True
        while changed:
            changed = False
            for rtype, rel in list(candidates):
                relation = schema.relation(rtype, rel)
                assert relation is not None
                if not self._is_monotone(schema, rtype, relation.rewrite, candidates):
                    candidates.discard((rtype, rel))
                    changed = True
        self.monotone = candidates

    def _is_monotone(
        self, schema: ir.Schema, rtype: str, node: ir.Rewrite, candidates: set[tuple[str, str]]
    ) -> bool:
        if isinstance(node, ir.This):
            return all(
                a.caveat is None
                and not a.expiration
                and (a.relation is None or (a.type, a.relation) in candidates)
                for a in node.allowed
            )
        if isinstance(node, ir.Nil):
            return True
        if isinstance(node, ir.ComputedUserset):
            return (rtype, node.relation) in candidates
        if isinstance(node, ir.TupleToUserset):
            if node.mode != "any":
                return False
            tupleset = schema.relation(rtype, node.tupleset)
            if tupleset is None:
                return False
            return all(
                a.caveat is None
                and not a.expiration
                and (schema.relation(a.type, node.computed) is None or (a.type, node.computed) in candidates)
                for a in tupleset.allowed
            )
        if isinstance(node, ir.Union):
            return all(self._is_monotone(schema, rtype, c, candidates) for c in node.children)
        return False


def evaluated_relations(schema: ir.Schema, rtype: str, node: ir.Rewrite) -> set[tuple[str, str]]:
    """The (type, relation) pairs a rewrite evaluates directly (subject sets, computed
    usersets, arrow targets)."""
    if isinstance(node, ir.This):
        return {(a.type, a.relation) for a in node.allowed if a.relation is not None}
    if isinstance(node, ir.ComputedUserset):
        return {(rtype, node.relation)}
    if isinstance(node, ir.TupleToUserset):
        tupleset = schema.relation(rtype, node.tupleset)
        return {
            (a.type, node.computed)
            for a in (tupleset.allowed if tupleset else ())
            if schema.relation(a.type, node.computed) is not None
        }
    if isinstance(node, ir.Union | ir.Intersection):
        return set().union(*(evaluated_relations(schema, rtype, c) for c in node.children))
    if isinstance(node, ir.Exclusion):
        return evaluated_relations(schema, rtype, node.base) | evaluated_relations(
            schema, rtype, node.subtract
        )
    return set()
