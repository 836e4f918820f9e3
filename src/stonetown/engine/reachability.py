"""What can reach what: the schema facts LookupResources and LookupSubjects walk by.

Computed once per schema (like OpenFGA's typesystem), never per request:
- which permissions of a type are granted, positively, by a relation of the same type;
- which permissions of other types reach a relation through an arrow, and over which
  tupleset relation;
- which permissions are *monotone* (built from relations, unions and `any` arrows only), so a
  candidate found by walking the graph backwards is certainly an answer and needs no check;
- which single edges are *positive*: a relation or arrow that a permission holds under unions
  only (never under an intersection, an exclusion or an `all` arrow), and which relations hold
  their stored relationships that way. A walk along positive edges over relationships without
  caveat or expiration proves membership, whether or not the permission is monotone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from stonetown.schema import ir

Node = TypeVar("Node", bound=Hashable)


@dataclass(frozen=True, slots=True)
class WalkPlan:
    """The reverse edges a LookupResources of one (type, permission) climbs: only those the
    permission depends on, each marked positive or not. Built once per query shape."""

    # (type, relation) -> ((permission of the same type, positive), ...), transitively: every
    # permission of the same object reached through computed usersets alone, positive when
    # some chain to it is made of positive edges only
    computed: dict[tuple[str, str], tuple[tuple[str, bool], ...]]
    # (subject type, computed relation) ->
    #     ((resource type, tupleset relation, permission, positive, subject relations), ...)
    arrows: dict[tuple[str, str], tuple[tuple[str, str, str, bool, tuple[str, ...]], ...]]
    # (subject type, subject relation or "", wildcard) -> {(resource type, relation): positive}
    holders: dict[tuple[str, str, bool], dict[tuple[str, str], bool]]
    # (type, relation) with arrows or holders above it: a node reached through `computed`
    # (whose own computed parents that entry already lists) is climbed from only if in here
    onward: frozenset[tuple[str, str]]
    # (type, relation) with any edge above it: a node reached otherwise is climbed from only
    # if in here
    climbable: frozenset[tuple[str, str]]


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
    # (type, relation, permission): `relation` is held by `permission` under unions only
    positive_computed: set[tuple[str, str, str]] = field(default_factory=set)
    # (resource type, tupleset relation, computed relation, permission): an `any` arrow under
    # unions only
    positive_arrows: set[tuple[str, str, str, str]] = field(default_factory=set)
    # (type, relation) whose own stored relationships grant it under unions only
    positive_this: set[tuple[str, str]] = field(default_factory=set)
    # (resource type, relation, subject type, subject relation or "", wildcard) stored shapes
    # the schema admits; relationships of other shapes are ignored by every query
    admits: set[tuple[str, str, str, str, bool]] = field(default_factory=set)
    schema: ir.Schema | None = None
    _relevant: dict[tuple[str, str], frozenset[tuple[str, str]]] = field(default_factory=dict)
    _plans: dict[tuple[str, str], WalkPlan] = field(default_factory=dict)

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
            schema = self.schema

            def evaluated(current: tuple[str, str]) -> set[tuple[str, str]]:
                relation = schema.relation(*current)
                if relation is None:
                    return set()
                return evaluated_relations(schema, current[0], relation.rewrite)

            found = self._relevant[key] = frozenset(reachable([key], evaluated))
        return found

    def plan_for(self, resource_type: str, permission: str) -> WalkPlan:
        """The edges a walk up to `resource_type#permission` climbs (cached per schema)."""
        key = (resource_type, permission)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        relevant = self.relevant_to(resource_type, permission)
        direct: dict[tuple[str, str], dict[str, bool]] = {}
        for (rtype, rel), perms in self.computed_parents.items():
            for perm in perms:
                if (rtype, perm) in relevant:
                    marks = direct.setdefault((rtype, rel), {})
                    marks[perm] = marks.get(perm, False) or (rtype, rel, perm) in self.positive_computed
        computed: dict[tuple[str, str], dict[str, bool]] = {}
        for (rtype, rel), firsts in direct.items():
            # every permission above `rel` through computed usersets; a permission is positive
            # once reached along positive edges only
            found: dict[str, bool] = {}
            todo = [(perm, positive) for perm, positive in firsts.items()]
            while todo:
                perm, positive = todo.pop()
                if perm in found and (found[perm] or not positive):
                    continue
                found[perm] = positive
                for above, edge in direct.get((rtype, perm), {}).items():
                    todo.append((above, positive and edge))
            found.pop(rel, None)  # a chain back to `rel` itself adds nothing
            if found:
                computed[(rtype, rel)] = found
        arrows: dict[tuple[str, str], dict[tuple[str, str, str], bool]] = {}
        for (stype, rel), parents in self.arrow_parents.items():
            for parent_type, tupleset, perm in parents:
                if (parent_type, perm) in relevant:
                    marks3 = arrows.setdefault((stype, rel), {})
                    positive = (parent_type, tupleset, rel, perm) in self.positive_arrows
                    marks3[(parent_type, tupleset, perm)] = (
                        marks3.get((parent_type, tupleset, perm), False) or positive
                    )
        holders: dict[tuple[str, str, bool], dict[tuple[str, str], bool]] = {}
        for rtype, rel, stype, srel, wildcard in self.admits:
            if (rtype, rel) in relevant:
                holders.setdefault((stype, srel, wildcard), {})[(rtype, rel)] = (
                    rtype,
                    rel,
                ) in self.positive_this
        plan = self._plans[key] = WalkPlan(
            computed={k: tuple(v.items()) for k, v in computed.items()},
            arrows={
                (stype, rel): tuple(
                    (
                        pt,
                        ts,
                        perm,
                        positive,
                        tuple(sorted(self.tupleset_subject_relations.get((pt, ts, stype), ()))),
                    )
                    for (pt, ts, perm), positive in marks.items()
                )
                for (stype, rel), marks in arrows.items()
            },
            holders=holders,
            onward=frozenset(arrows) | frozenset((stype, srel) for stype, srel, _ in holders),
            climbable=frozenset(arrows)
            | frozenset((stype, srel) for stype, srel, _ in holders)
            | frozenset(computed),
        )
        return plan

    def _collect(
        self, schema: ir.Schema, rtype: str, perm: str, node: ir.Rewrite, positive: bool = True
    ) -> None:
        # `positive`: every operator between `perm` and `node` is a union.
        if isinstance(node, ir.This):
            if positive:
                self.positive_this.add((rtype, perm))
        elif isinstance(node, ir.ComputedUserset):
            self.computed_parents[(rtype, node.relation)].append(perm)
            if positive:
                self.positive_computed.add((rtype, node.relation, perm))
        elif isinstance(node, ir.TupleToUserset):
            if positive and node.mode == "any":
                self.positive_arrows.add((rtype, node.tupleset, node.computed, perm))
            tupleset = schema.relation(rtype, node.tupleset)
            for allowed in tupleset.allowed if tupleset is not None else ():
                if allowed.wildcard:
                    continue
                self.arrow_parents[(allowed.type, node.computed)].append((rtype, node.tupleset, perm))
                relations = self.tupleset_subject_relations.setdefault(
                    (rtype, node.tupleset, allowed.type), set()
                )
                relations.add(allowed.relation or "")
        elif isinstance(node, ir.Union):
            for child in node.children:
                self._collect(schema, rtype, perm, child, positive)
        elif isinstance(node, ir.Intersection):
            for child in node.children:
                self._collect(schema, rtype, perm, child, False)
        elif isinstance(node, ir.Exclusion):
            self._collect(schema, rtype, perm, node.base, False)

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


def reachable(start: Iterable[Node], successors: Callable[[Node], Iterable[Node]]) -> Iterator[Node]:
    """Every node reachable from the nodes `start` along `successors`, `start` included, each
    once (depth first); a node's successors are asked for only when the next one is."""
    seen: set[Node] = set()
    todo = list(start)
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        yield current
        todo.extend(successors(current))


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


def reads_direct_only(
    schema: ir.Schema, rtype: str, node: ir.Rewrite, seen: frozenset[str] = frozenset()
) -> bool:
    """Whether a rewrite of `rtype` reads only directly assigned subjects (OpenFGA's weight 1):
    no subject set and no arrow, through the relations it computes too. `seen`: relations of
    `rtype` already being followed (a computed cycle among them reads nothing more).
    Iterative: a long chain of permissions costs no Python stack."""
    followed = set(seen)
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, ir.This):
            if any(a.relation is not None for a in current.allowed):
                return False
        elif isinstance(current, ir.ComputedUserset):
            target = schema.relation(rtype, current.relation)
            if target is None:
                return False
            if current.relation not in followed:
                followed.add(current.relation)
                todo.append(target.rewrite)
        elif isinstance(current, ir.Union | ir.Intersection):
            todo.extend(current.children)
        elif isinstance(current, ir.Exclusion):
            todo.extend((current.base, current.subtract))
        elif not isinstance(current, ir.Nil):
            return False
    return True
