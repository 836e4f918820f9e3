"""How OpenFGA resolves a check whose walk runs into a cycle in the data.

OpenFGA (v1.22, default configuration, as embedded in the fga CLI) evaluates the operands of
a rewrite concurrently and answers a sub-problem met again on its own path with "not allowed,
cycle detected". Its reducers keep the *first decisive* outcome to arrive:

* a union grants on the first operand that grants; otherwise it is not allowed, flagged when
  any operand was flagged;
* an intersection stops at the first operand that is not allowed *or* flagged, and takes that
  operand's flag;
* an exclusion stops at the first of: base not allowed or flagged, subtract allowed or
  flagged, taking that operand's flag; it grants only when base grants and subtract is
  neither allowed nor flagged.

So the answer is fixed by the data except where a flagged and an unflagged decisive operand
race. Which one arrives first is decided by the work on its way: a cycle is seen without
reading anything, a datastore read costs far more than entering a sub-problem or a dispatch
hop. Launch order counts too: a union or an intersection (`union`/`intersection` in OpenFGA's
internal/graph/check.go) hands its operands to `resolver`, whose single launcher goroutine
starts them one after the other in the rewrite's order, each behind a limiter send and two
goroutine spawns (`checker`, then the handler), so an operand starts :data:`LAUNCH` after the
one before it; `exclusion` spawns its base and subtracted side itself, back to back, and gives
neither a head start. (Measured with fga 0.8.2: `r1 and p0 from up` under `but not`, p0 met
again, is decided by r1's plain false 78 times in 80; `p0 from up and r1` by the flag 63 times
in 80; `r0 but not r2 from parent` with the cycle behind the arrow by the flag 56 times in
60.) :class:`CycleRace` replays OpenFGA's walk with those relative costs (:data:`READ`,
:data:`RESOLVE`, :data:`DISPATCH`, :data:`REDUCE`, :data:`LAUNCH`; fitted to OpenFGA's usual
answers on the fgafuzz corpus, where they reproduce every one) and its reducers take the
earliest decisive operand, the unflagged one at equal cost. Where the costs are close OpenFGA
itself can answer either way from run to run.

The replay never grants anything the three-valued evaluation of
:mod:`stonetown.engine.check` does not grant: a grant needs operands that grant and a
subtracted side that is plainly not allowed, and "plainly not allowed" is always exact. So
the engine consults it only for grants (:meth:`CycleRace.allowed`), only for relations that
can meet a cycle under an exclusion (:attr:`CycleRace.prone`), and it can only turn such a
grant into the denial OpenFGA gives. Caveats, expiration and `all` arrows are not replayed.

Relations recursive through one plain edge, all their other operands assigned directly
(`member: [user, group#member]`, `viewer: [user] or viewer from parent`), are resolved by
OpenFGA's recursive strategy, which walks the data without flags and without counting depth
(see :func:`stonetown.engine.openfga_recursion.simple_recursive_relations`). OpenFGA also applies
PathExists: a sub-problem whose relation cannot lead to the subject's type is plainly not
allowed without any read.

:meth:`CycleRace.replay` also reports OpenFGA's resolution-depth failure (error 2002): it
counts a hop over a subject-set or tuple-to-userset relationship, not a computed userset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stonetown.engine.reachability import evaluated_relations, reads_direct_only
from stonetown.schema import ir
from stonetown.schema.graphs import cyclic_nodes, leading_to

Subject = tuple[str, str, str]
Key = tuple[str, str, str, Subject]
Maps = Mapping[tuple[str, str, str], Mapping[Any, Any]]

# Limits of one replay (it takes no short cut); beyond them the ordinary evaluation's answer
# stands.
MAX_REPLAY_DEPTH = 200
MAX_REPLAY_STEPS = 20_000


class ReplayAbandoned(Exception):
    """The replay met something it does not model (caveats, too deep); keep the ordinary answer."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One OpenFGA sub-result: allowed, cycle flag, and when it arrives (see the costs)."""

    allowed: bool
    cycle: bool
    cost: float
    error: bool = False  # resolution too deep (OpenFGA's error 2002)


# Relative time of the steps of OpenFGA's walk: a datastore read dominates; entering a
# sub-problem, a dispatch hop over a relationship and a reducer's goroutines cost a little, and
# a union's or intersection's operand starts LAUNCH after the one before it (the corpus allows
# 0.05 < LAUNCH < 0.17 with the other costs as they are).
READ = 1.0
RESOLVE = 0.15
DISPATCH = 0.1
REDUCE = 0.05
LAUNCH = 0.1

_CYCLE = Outcome(False, True, 0.0)
_TOO_DEEP = Outcome(False, False, 0.0, error=True)


def _later(outcome: Outcome, cost: float) -> Outcome:
    return Outcome(outcome.allowed, outcome.cycle, outcome.cost + cost, outcome.error)


def _launched(outcomes: list[Outcome]) -> list[Outcome]:
    # OpenFGA's `resolver` starts a union's or intersection's operands one after the other
    return [_later(o, LAUNCH * i) for i, o in enumerate(outcomes)]


def _union(outcomes: list[Outcome]) -> Outcome:
    grants = [o for o in outcomes if o.allowed]
    if grants:
        return _later(min(grants, key=lambda o: o.cost), REDUCE)
    if any(o.error for o in outcomes):
        return _TOO_DEEP
    cost = max((o.cost for o in outcomes), default=0.0)
    return Outcome(False, any(o.cycle for o in outcomes), cost + REDUCE)


def _first_decisive(decisive: list[Outcome]) -> Outcome:
    # the earliest; at equal cost the unflagged one
    return min(decisive, key=lambda o: (o.cost, o.cycle))


def _intersection(outcomes: list[Outcome]) -> Outcome:
    decisive = [o for o in outcomes if not o.error and (o.cycle or not o.allowed)]
    if decisive:
        first = _first_decisive(decisive)
        return Outcome(False, first.cycle, first.cost + REDUCE)
    if any(o.error for o in outcomes):
        return _TOO_DEEP
    return Outcome(True, False, max((o.cost for o in outcomes), default=0.0) + REDUCE)


def _exclusion(base: Outcome, subtract: Outcome) -> Outcome:
    decisive = []
    if not base.error and (base.cycle or not base.allowed):
        decisive.append(base)
    if not subtract.error and (subtract.cycle or subtract.allowed):
        decisive.append(subtract)
    if decisive:
        first = _first_decisive(decisive)
        return Outcome(False, first.cycle, first.cost + REDUCE)
    if base.error or subtract.error:
        return _TOO_DEEP
    return Outcome(True, False, max(base.cost, subtract.cost) + REDUCE)


class CycleRace:
    """OpenFGA's cycle behaviour for one schema (see module docstring): which relations can
    race at all (:attr:`prone`), and :meth:`allowed` to replay one check."""

    def __init__(self, schema: ir.Schema, simple_recursive: set[tuple[str, str]]) -> None:
        self.schema = schema
        self.simple_recursive = simple_recursive
        self.prone = race_prone_relations(schema, simple_recursive)
        self.recursive = bool(_recursive_relations(schema))
        self._reaches: dict[tuple[str, str], set[tuple[str, str]]] | None = None
        self._weight_one: frozenset[tuple[str, str]] | None = None

    @property
    def weight_one(self) -> frozenset[tuple[str, str]]:
        """Relations reading directly assigned subjects only (OpenFGA's weight 1)."""
        if self._weight_one is None:
            self._weight_one = _direct_only_relations(self.schema)
        return self._weight_one

    @property
    def reaches(self) -> dict[tuple[str, str], set[tuple[str, str]]]:
        """Per (type, relation) the subject types and subject sets the model lets it hold."""
        if self._reaches is None:
            self._reaches = _subject_reach(self.schema)
        return self._reaches

    def allowed(
        self, objects: Maps, usersets: Maps, rtype: str, rid: str, rel: str, subj: Subject
    ) -> bool | None:
        """OpenFGA's answer over these relationship maps (an index's `objects` and
        `usersets`), or None when the replay cannot tell. No depth limit applies."""
        outcome = self.replay(objects, usersets, rtype, rid, rel, subj, None)
        return None if outcome is None else outcome.allowed

    def replay(
        self,
        objects: Maps,
        usersets: Maps,
        rtype: str,
        rid: str,
        rel: str,
        subj: Subject,
        max_depth: int | None,
    ) -> Outcome | None:
        """OpenFGA's outcome, failing (``error``) where OpenFGA's resolution depth reaches
        `max_depth`: OpenFGA counts a hop over a subject-set relationship or a tuple-to-userset
        relationship, not a computed userset, and nothing inside the recursive strategy."""
        try:
            return _Replay(self, objects, usersets, max_depth)._resolve(rtype, rid, rel, subj, (), 0)
        except (ReplayAbandoned, RecursionError):
            return None


class _Replay:
    """One replayed check: OpenFGA's walk, every operand evaluated (no short cut)."""

    def __init__(self, race: CycleRace, objects: Maps, usersets: Maps, max_depth: int | None) -> None:
        self.schema = race.schema
        self.simple_recursive = race.simple_recursive
        self.reaches = race.reaches
        self.weight_one = race.weight_one
        self.objects = objects
        self.usersets = usersets
        self.max_depth = max_depth
        self.steps = 0
        # Outcomes of sub-problems whose walk met no cycle: those do not depend on the path
        # (the replay walks everything, so a sub-problem reaching a key of the current path
        # always meets it), only on the depth when a depth limit applies.
        self.memo: dict[tuple[Key, int], Outcome] = {}
        self.cut = False

    # ---- walking ----------------------------------------------------------------------------

    def _resolve(
        self, rtype: str, rid: str, rel: str, subj: Subject, path: tuple[Key, ...], depth: int
    ) -> Outcome:
        if self.max_depth is not None and depth >= self.max_depth:
            return _TOO_DEEP
        key = (rtype, rid, rel, subj)
        if key in path:
            self.cut = True
            return self._cycle(key, path)
        memo_key = (key, depth if self.max_depth is not None else 0)
        known = self.memo.get(memo_key)
        if known is not None:
            return known
        self.steps += 1
        if len(path) >= MAX_REPLAY_DEPTH or self.steps > MAX_REPLAY_STEPS:
            raise ReplayAbandoned("too big")
        if subj[2] == rel and subj[1] == rid and subj[0] == rtype:
            return Outcome(True, False, RESOLVE)
        relation = self.schema.relation(rtype, rel)
        target = (subj[0], subj[2]) if subj[2] else (subj[0], "")
        if relation is None or target not in self.reaches.get((rtype, rel), ()):
            return Outcome(False, False, RESOLVE)  # OpenFGA's PathExists: nothing is read
        outer, self.cut = self.cut, False
        outcome = _later(self._rewrite(rtype, rid, rel, relation.rewrite, subj, (*path, key), depth), RESOLVE)
        if not self.cut:
            self.memo[memo_key] = outcome
        self.cut = self.cut or outer
        return outcome

    def _cycle(self, key: Key, path: tuple[Key, ...]) -> Outcome:
        rtype, _rid, rel, _subj = key
        if (rtype, rel) in self.simple_recursive:
            start = path.index(key)
            if all(frame[0] == rtype and frame[2] == rel for frame in path[start:]):
                return Outcome(False, False, 0.0)
        return _CYCLE

    def _rewrite(
        self,
        rtype: str,
        rid: str,
        rel: str,
        node: ir.Rewrite,
        subj: Subject,
        path: tuple[Key, ...],
        depth: int,
    ) -> Outcome:
        if isinstance(node, ir.This):
            return self._direct(rtype, rid, rel, node, subj, path, depth)
        if isinstance(node, ir.ComputedUserset):
            return self._resolve(rtype, rid, node.relation, subj, path, depth)
        if isinstance(node, ir.TupleToUserset):
            if node.mode != "any":
                raise ReplayAbandoned("`all` arrows are not OpenFGA's")
            return self._arrow(rtype, rid, rel, node, subj, path, depth)
        if isinstance(node, ir.Union):
            return _union(
                _launched([self._rewrite(rtype, rid, rel, c, subj, path, depth) for c in node.children])
            )
        if isinstance(node, ir.Intersection):
            return _intersection(
                _launched([self._rewrite(rtype, rid, rel, c, subj, path, depth) for c in node.children])
            )
        if isinstance(node, ir.Exclusion):
            return _exclusion(
                self._rewrite(rtype, rid, rel, node.base, subj, path, depth),
                self._rewrite(rtype, rid, rel, node.subtract, subj, path, depth),
            )
        return Outcome(False, False, 0.0)

    def _hop(self, rtype: str, rel: str, target: tuple[str, str], depth: int) -> int:
        # the recursive strategy walks a simply recursive relation without dispatching
        if target == (rtype, rel) and target in self.simple_recursive:
            return depth
        return depth + 1

    def _direct(
        self,
        rtype: str,
        rid: str,
        rel: str,
        node: ir.This,
        subj: Subject,
        path: tuple[Key, ...],
        depth: int,
    ) -> Outcome:
        stype, sid, srel = subj
        key = (rtype, rid, rel)
        outcomes: list[Outcome] = []
        direct = any(a.type == stype and (a.relation or "") == srel and not a.wildcard for a in node.allowed)
        if any(a.caveat is not None or a.expiration for a in node.allowed):
            raise ReplayAbandoned("caveats")
        if direct:
            if srel:
                found = (stype, sid, srel) in self.usersets.get(key, {})
            else:
                found = (stype, sid) in self.objects.get(key, {})
            outcomes.append(Outcome(found, False, READ))
        if not srel and any(a.type == stype and a.wildcard for a in node.allowed):
            outcomes.append(Outcome((stype, "*") in self.objects.get(key, {}), False, READ))
        userset_types = {(a.type, a.relation) for a in node.allowed if a.relation is not None}
        if userset_types:
            if not srel and userset_types <= self.weight_one:
                # OpenFGA's weight-two strategy: two reads intersected, nothing dispatched
                dispatched = [
                    self._resolve(ust, usid, usrel, subj, path, depth)
                    for (ust, usid, usrel) in self.usersets.get(key, {})
                    if (ust, usrel) in userset_types
                ]
                outcomes.append(Outcome(any(o.allowed for o in dispatched), False, READ + REDUCE))
            else:
                dispatched = [
                    self._resolve(ust, usid, usrel, subj, path, self._hop(rtype, rel, (ust, usrel), depth))
                    for (ust, usid, usrel) in self.usersets.get(key, {})
                    if (ust, usrel) in userset_types
                ]
                outcomes.append(_later(_union(dispatched), READ + DISPATCH))
        return _union(outcomes)

    def _arrow(
        self,
        rtype: str,
        rid: str,
        rel: str,
        node: ir.TupleToUserset,
        subj: Subject,
        path: tuple[Key, ...],
        depth: int,
    ) -> Outcome:
        key = (rtype, rid, node.tupleset)
        targets = [(st, sid) for (st, sid) in self.objects.get(key, {}) if sid != "*"]
        targets += [(st, sid) for (st, sid, _srel) in self.usersets.get(key, {})]
        tupleset = self.schema.relation(rtype, node.tupleset)
        kinds = {(a.type, node.computed) for a in (tupleset.allowed if tupleset is not None else ())}
        if not subj[2] and kinds <= self.weight_one:
            # OpenFGA's weight-two strategy: two reads intersected, nothing dispatched
            found = any(
                self._resolve(st, sid, node.computed, subj, path, depth).allowed
                for st, sid in targets
                if self.schema.relation(st, node.computed) is not None
            )
            return Outcome(found, False, READ + REDUCE)
        dispatched = [
            self._resolve(
                st, sid, node.computed, subj, path, self._hop(rtype, rel, (st, node.computed), depth)
            )
            for st, sid in targets
            if self.schema.relation(st, node.computed) is not None
        ]
        return _later(_union(dispatched), READ + DISPATCH)


def _direct_only_relations(schema: ir.Schema) -> frozenset[tuple[str, str]]:
    """(type, relation) pairs whose rewrite reads directly assigned subjects only: no subject
    set, no arrow, also through the relations it computes."""
    return frozenset(
        (d.name, r.name)
        for d in schema.definitions.values()
        for r in d.relations.values()
        if reads_direct_only(schema, d.name, r.rewrite, frozenset({r.name}))
    )


def _subject_reach(schema: ir.Schema) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """Per (type, relation): the subjects it can hold, as (type, "") for objects and
    (type, relation) for subject sets, following the model only (OpenFGA's PathExists)."""
    edges: dict[tuple[str, str], set[tuple[str, str]]] = {}
    terminals: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def collect(
        rtype: str, node: ir.Rewrite, out_edges: set[tuple[str, str]], out_terms: set[tuple[str, str]]
    ) -> None:
        if isinstance(node, ir.This):
            for a in node.allowed:
                if a.relation is None:
                    out_terms.add((a.type, ""))
                else:
                    out_terms.add((a.type, a.relation))
                    out_edges.add((a.type, a.relation))
        elif isinstance(node, ir.ComputedUserset):
            out_edges.add((rtype, node.relation))
        elif isinstance(node, ir.TupleToUserset):
            tupleset = schema.relation(rtype, node.tupleset)
            for a in tupleset.allowed if tupleset is not None else ():
                if not a.wildcard and schema.relation(a.type, node.computed) is not None:
                    out_edges.add((a.type, node.computed))
        elif isinstance(node, ir.Union | ir.Intersection):
            for child in node.children:
                collect(rtype, child, out_edges, out_terms)
        elif isinstance(node, ir.Exclusion):
            collect(rtype, node.base, out_edges, out_terms)
            collect(rtype, node.subtract, out_edges, out_terms)

    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            edges[key], terminals[key] = set(), {key}
            collect(definition.name, relation.rewrite, edges[key], terminals[key])
    reach: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for key in edges:
        seen = {key}
        todo = [key]
        found: set[tuple[str, str]] = set()
        while todo:
            current = todo.pop()
            found |= terminals.get(current, set())
            for nxt in edges.get(current, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[key] = found
    return reach


def race_prone_relations(
    schema: ir.Schema, simple_recursive: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()
) -> frozenset[tuple[str, str]]:
    """The (type, relation) pairs whose check can meet a flagged cycle under an exclusion:
    those depending on an exclusion and on a relation that reaches itself other than by its
    own plain recursive edge (a cycle through one simply recursive relation alone is not
    flagged). Only for these can a cycle flag turn a grant into a denial, so only these are
    replayed."""
    graph = {
        (d.name, r.name): evaluated_relations(schema, d.name, r.rewrite)
        for d in schema.definitions.values()
        for r in d.relations.values()
    }
    for key in simple_recursive:
        if key in graph:
            graph[key] = graph[key] - {key}

    cyclic = cyclic_nodes(graph)
    excluding = {
        (d.name, r.name)
        for d in schema.definitions.values()
        for r in d.relations.values()
        if _has_exclusion(r.rewrite)
    }
    return frozenset(leading_to(graph, excluding) & leading_to(graph, cyclic) & graph.keys())


def _recursive_relations(schema: ir.Schema) -> set[tuple[str, str]]:
    """The (type, relation) pairs that can reach themselves (through relationships)."""
    return cyclic_nodes(
        {
            (d.name, r.name): evaluated_relations(schema, d.name, r.rewrite)
            for d in schema.definitions.values()
            for r in d.relations.values()
        }
    )


def _has_exclusion(node: ir.Rewrite) -> bool:
    if isinstance(node, ir.Exclusion):
        return True
    if isinstance(node, ir.Union | ir.Intersection):
        return any(_has_exclusion(c) for c in node.children)
    return False
