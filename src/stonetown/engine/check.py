"""Check: does a subject hold a permission on a resource?

The schema is compiled once into one closure per (type, relation); a check walks them over
an index. Within one run, identical sub-problems are answered once (memo), cycles in the data
terminate (a sub-problem already on the stack contributes nothing), and a depth limit turns
runaway recursion into ResourceExhausted. Results are three-valued (see conditions.py).

Depth errors are deferred inside unions: another branch may still grant, and a grant found by
any branch is a true grant however deep the other branches go.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from stonetown.core.errors import ResourceExhausted
from stonetown.engine.conditions import UNKNOWN, CaveatLeaf, Result, all_of, any_of, negate
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import RelationshipIndex, RelMeta
from stonetown.engine.reachability import evaluated_relations
from stonetown.schema import ir

Subject = tuple[str, str, str]  # (type, id, relation or "")
EvalFn = Callable[["CheckRun", str, Subject, int], Result]

_MISSING = object()


class DepthExceeded(ResourceExhausted):
    """The walk went deeper than the configured limit."""


class CompiledSchema:
    """A schema turned into evaluation closures, one per (type, relation or permission)."""

    def __init__(self, schema: ir.Schema) -> None:
        self.schema = schema
        self.functions: dict[tuple[str, str], EvalFn] = {}
        self.allowed_tupleset: dict[tuple[str, str], tuple[frozenset[str], frozenset[tuple[str, str]]]] = {}
        for definition in schema.definitions.values():
            for relation in definition.relations.values():
                if not relation.is_permission:
                    self.allowed_tupleset[(definition.name, relation.name)] = _allowed_sets(relation.allowed)[
                        ::2
                    ]
        self.inlinable = _inlinable_targets(schema)
        for definition in schema.definitions.values():
            for relation in definition.relations.values():
                self.functions[(definition.name, relation.name)] = self._compile(
                    definition.name, relation.name, relation.rewrite
                )
        self.simple_recursive = simple_recursive_relations(schema)

    def _cost(self, rtype: str, node: ir.Rewrite) -> int:
        """A rough rank of how much work evaluating `node` takes (0 = one dict lookup)."""
        if isinstance(node, ir.This | ir.Nil):
            return 0
        if isinstance(node, ir.ComputedUserset):
            target = self.schema.relation(rtype, node.relation)
            if target is not None and isinstance(target.rewrite, ir.This):
                return 1 if all(a.relation is None for a in target.allowed) else 2
            return 3
        if isinstance(node, ir.TupleToUserset):
            return 4
        return 5

    def _compile(self, rtype: str, rel: str, node: ir.Rewrite) -> EvalFn:
        if isinstance(node, ir.This):
            return _compile_this(rtype, rel, node)
        if isinstance(node, ir.ComputedUserset):
            target = node.relation
            if (rtype, target) in self.inlinable:
                # Same object, no cycle possible through computed usersets alone: call the
                # target's closure directly, skipping the memo and cycle bookkeeping.
                functions, key = self.functions, (rtype, target)

                def computed_inline(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
                    if subj[2] == target and subj[1] == rid and subj[0] == rtype:
                        return True  # a subject set is a member of itself
                    return functions[key](run, rid, subj, depth)

                return computed_inline

            def computed(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
                return run.dispatch(rtype, rid, target, subj, depth)

            return computed
        if isinstance(node, ir.TupleToUserset):
            allowed = self.allowed_tupleset.get((rtype, node.tupleset), (frozenset(), frozenset()))
            return _compile_arrow(rtype, node, allowed)
        if isinstance(node, ir.Union | ir.Intersection):
            # Cheapest operands first: a direct lookup often decides a union (True) or an
            # intersection (False) before any walk. The answer does not depend on the order.
            ordered = sorted(node.children, key=lambda child: self._cost(rtype, child))
            compiled = tuple(self._compile(rtype, rel, c) for c in ordered)
            return _compile_union(compiled) if isinstance(node, ir.Union) else _compile_intersection(compiled)
        if isinstance(node, ir.Exclusion):
            return _compile_exclusion(
                self._compile(rtype, rel, node.base), self._compile(rtype, rel, node.subtract)
            )
        return _nil


def _computed_targets(node: ir.Rewrite) -> set[str]:
    """Relations of the same object a rewrite refers to by name."""
    if isinstance(node, ir.ComputedUserset):
        return {node.relation}
    if isinstance(node, ir.Union | ir.Intersection):
        return set().union(*(_computed_targets(c) for c in node.children))
    if isinstance(node, ir.Exclusion):
        return _computed_targets(node.base) | _computed_targets(node.subtract)
    return set()


def _inlinable_targets(schema: ir.Schema) -> set[tuple[str, str]]:
    """(type, relation) pairs that no chain of computed usersets leads back to, so a computed
    userset naming them can be evaluated inline without risking endless recursion."""
    found: set[tuple[str, str]] = set()
    for definition in schema.definitions.values():
        graph = {name: _computed_targets(r.rewrite) for name, r in definition.relations.items()}
        for name in graph:
            seen: set[str] = set()
            todo = list(graph[name])
            cyclic = False
            while todo:
                current = todo.pop()
                if current == name:
                    cyclic = True
                    break
                if current in seen:
                    continue
                seen.add(current)
                todo.extend(graph.get(current, ()))
            if not cyclic and name in definition.relations:
                found.add((definition.name, name))
    return found


def simple_recursive_relations(schema: ir.Schema) -> set[tuple[str, str]]:
    """Relations whose only way back to themselves is one plain recursive edge: a relation
    admitting its own subject set (`member: user | group#member`), or a permission that is a
    union with one arrow to itself (`view = viewer + parent->view`). A cycle through such a
    relation alone is resolved exactly (it adds nothing); OpenFGA does the same for these
    shapes and reports other cycles as unresolved."""
    graph: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            graph[(definition.name, relation.name)] = evaluated_relations(
                schema, definition.name, relation.rewrite
            )

    def reaches(start: set[tuple[str, str]], goal: tuple[str, str]) -> bool:
        seen: set[tuple[str, str]] = set()
        todo = list(start)
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node in seen:
                continue
            seen.add(node)
            todo.extend(graph.get(node, ()))
        return False

    found: set[tuple[str, str]] = set()
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            rewrite = relation.rewrite
            if isinstance(rewrite, ir.This):
                others = {edge for edge in evaluated_relations(schema, key[0], rewrite) if edge != key}
                if key in evaluated_relations(schema, key[0], rewrite) and not reaches(others, key):
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
            if not reaches(arrow_edges | rest_edges, key):
                found.add(key)
    return found


def _allowed_sets(
    allowed: tuple[ir.AllowedSubject, ...],
) -> tuple[frozenset[str], frozenset[str], frozenset[tuple[str, str]]]:
    """(object types, wildcard types, (type, relation) subject sets) a relation admits."""
    objects = frozenset(a.type for a in allowed if a.relation is None and not a.wildcard)
    wildcards = frozenset(a.type for a in allowed if a.wildcard)
    usersets = frozenset((a.type, a.relation) for a in allowed if a.relation is not None)
    return objects, wildcards, usersets


def _nil(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
    return False


def _compile_this(rtype: str, rel: str, node: ir.This) -> EvalFn:
    object_types, wildcard_types, userset_types = _allowed_sets(node.allowed)

    def this(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        key = (rtype, rid, rel)
        stype, sid, srel = subj
        result: Result = False
        if not srel:
            bucket = run.objects.get(key)
            if bucket is not None:
                if stype in object_types:
                    meta = bucket.get((stype, sid), _MISSING)
                    if meta is None:
                        return True
                    if meta is not _MISSING:
                        result = run.meta_result(meta)  # type: ignore[arg-type]
                        if result is True:
                            return True
                if stype in wildcard_types:
                    meta = bucket.get((stype, "*"), _MISSING)
                    if meta is None:
                        return True
                    if meta is not _MISSING:
                        result = any_of(result, run.meta_result(meta))  # type: ignore[arg-type]
                        if result is True:
                            return True
        if userset_types:
            ubucket = run.usersets.get(key)
            if ubucket:
                deferred: DepthExceeded | None = None
                for (ustype, usid, usrel), meta in ubucket.items():
                    if (ustype, usrel) not in userset_types:
                        continue
                    edge: Result = True
                    if meta is not None:
                        edge = run.meta_result(meta)
                        if edge is False:
                            continue
                    try:
                        found = run.dispatch(ustype, usid, usrel, subj, depth)
                    except DepthExceeded as exc:
                        deferred = exc
                        continue
                    if edge is not True:
                        found = all_of(edge, found)
                    if found is True:
                        return True
                    result = any_of(result, found)
                if deferred is not None:
                    raise deferred
        return result

    return this


def _compile_arrow(
    rtype: str, node: ir.TupleToUserset, allowed: tuple[frozenset[str], frozenset[tuple[str, str]]]
) -> EvalFn:
    tupleset, computed, every = node.tupleset, node.computed, node.mode == "all"
    object_types, userset_types = allowed

    def targets(run: CheckRun, rid: str) -> list[tuple[str, str, RelMeta | None]]:
        key = (rtype, rid, tupleset)
        found: list[tuple[str, str, RelMeta | None]] = []
        bucket = run.objects.get(key)
        if bucket:
            found.extend(
                (st, sid, meta) for (st, sid), meta in bucket.items() if st in object_types and sid != "*"
            )
        ubucket = run.usersets.get(key)
        if ubucket:
            found.extend(
                (st, sid, meta) for (st, sid, srel), meta in ubucket.items() if (st, srel) in userset_types
            )
        return found

    def arrow_any(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = False
        deferred: DepthExceeded | None = None
        for st, sid, meta in targets(run, rid):
            edge: Result = True
            if meta is not None:
                edge = run.meta_result(meta)
                if edge is False:
                    continue
            try:
                found = run.dispatch(st, sid, computed, subj, depth)
            except DepthExceeded as exc:
                deferred = exc
                continue
            if edge is not True:
                found = all_of(edge, found)
            if found is True:
                return True
            result = any_of(result, found)
        if deferred is not None:
            raise deferred
        return result

    def arrow_all(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = True
        seen = False
        for st, sid, meta in targets(run, rid):
            edge: Result = True
            if meta is not None:
                edge = run.meta_result(meta)
                if edge is False:
                    continue
            seen = True
            found = run.dispatch(st, sid, computed, subj, depth)
            result = all_of(result, all_of(edge, found))
            if result is False:
                return False
        return result if seen else False

    return arrow_all if every else arrow_any


def _compile_union(children: tuple[EvalFn, ...]) -> EvalFn:
    def union(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = False
        deferred: DepthExceeded | None = None
        for child in children:
            try:
                found = child(run, rid, subj, depth)
            except DepthExceeded as exc:
                deferred = exc
                continue
            if found is True:
                return True
            if found is not False:
                result = any_of(result, found)
        if deferred is not None:
            raise deferred
        return result

    return union


def _compile_intersection(children: tuple[EvalFn, ...]) -> EvalFn:
    def intersection(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = True
        for child in children:
            found = child(run, rid, subj, depth)
            if found is False:
                return False
            result = all_of(result, found)
        return result

    return intersection


def _compile_exclusion(base: EvalFn, subtract: EvalFn) -> EvalFn:
    def exclusion(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        granted = base(run, rid, subj, depth)
        if granted is False or granted is UNKNOWN:
            return granted
        return all_of(granted, negate(subtract(run, rid, subj, depth)))

    return exclusion


class CheckRun:
    """The state of one evaluation (one Check, or one CheckBulk sharing its memo)."""

    __slots__ = (
        "functions",
        "simple_recursive",
        "objects",
        "usersets",
        "memo",
        "stack",
        "cut",
        "max_depth",
        "now",
        "volatile",
        "deadline",
        "budget",
    )

    def __init__(self, compiled: CompiledSchema, index: RelationshipIndex, max_depth: int) -> None:
        self.functions = compiled.functions
        self.simple_recursive = compiled.simple_recursive
        self.objects = index.objects
        self.usersets = index.usersets
        self.memo: dict[tuple[str, str, str, Subject], Result] = {}
        # sub-problems being evaluated, outermost first (a dict keeps insertion order)
        self.stack: dict[tuple[str, str, str, Subject], None] = {}
        self.cut = False
        self.max_depth = max_depth
        self.now = time.time()
        # set once a caveat or an expiration took part: the answer may change without a write
        self.volatile = False
        self.deadline = request_deadline.get()
        self.budget = CHECK_EVERY  # dispatches left before the next look at the deadline

    def _cycle(self, key: tuple[str, str, str, Subject], rtype: str, rel: str) -> Result:
        """The value of a sub-problem met again while it is being evaluated.

        A cycle through one simply recursive relation only (group A member of B member of A,
        folder A parent of B parent of A) adds nothing to that relation: False, exactly. Any
        other cycle is UNKNOWN: False in unions and intersections, never a grant under an
        exclusion. This is how OpenFGA resolves the same cycles.
        """
        if (rtype, rel) not in self.simple_recursive:
            return UNKNOWN
        inside = False
        for frame in self.stack:
            if inside and (frame[0] != rtype or frame[2] != rel):
                return UNKNOWN
            inside = inside or frame == key
        return False

    def meta_result(self, meta: RelMeta) -> Result:
        """What one relationship's caveat and expiration contribute: False once expired,
        a caveat leaf when caveated, True otherwise."""
        self.volatile = True
        if meta.expires_at is not None and meta.expires_at <= self.now:
            return False
        if meta.caveat is not None:
            return CaveatLeaf(meta.caveat.name, tuple(sorted(meta.caveat.context.items())))
        return True

    def dispatch(self, rtype: str, rid: str, rel: str, subj: Subject, depth: int) -> Result:
        """Evaluate `rtype:rid#rel` for `subj`, with memo, cycle cut and depth limit."""
        if subj[2] == rel and subj[1] == rid and subj[0] == rtype:
            return True  # a subject set is a member of itself
        key = (rtype, rid, rel, subj)
        known = self.memo.get(key)
        if known is not None:
            return known
        stack = self.stack
        if key in stack:
            self.cut = True
            return self._cycle(key, rtype, rel)
        if depth >= self.max_depth:
            raise DepthExceeded(
                f"check exceeded the maximum depth of {self.max_depth} at {rtype}:{rid}#{rel}"
            )
        function = self.functions.get((rtype, rel))
        if function is None:
            return False
        self.budget -= 1
        if not self.budget:
            self.budget = CHECK_EVERY
            check_deadline(self.deadline)
        outer_cut = self.cut
        self.cut = False
        stack[key] = None
        try:
            result = function(self, rid, subj, depth + 1)
        finally:
            del stack[key]
            inner_cut = self.cut
            self.cut = outer_cut or inner_cut
        if not inner_cut:
            self.memo[key] = result
        return result
