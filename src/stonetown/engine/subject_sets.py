"""Set-at-a-time LookupSubjects: which subjects of one type hold a permission on one object,
computed per (type, id, relation) node from the object downward, not one Check per subject.

Each node evaluates to two disjoint sets of subject ids, :class:`Held`:
- ``sure``: Check answers exactly True for every id in it (reached through relationships
  without caveat or expiration, under unions, intersections where every side is sure, and
  exclusions whose subtracted side cannot hold the id);
- ``maybe``: ids Check may grant, only under a caveat or expiration, or that only Check can
  settle (an `all` arrow, a subtracted side that may hold the id).
Every other id is certainly denied. The caller confirms the ``maybe`` ids with Check, so
the answers (and their caveat conditions) are Check's own.

The evaluation declines (:class:`Declined`, the caller checks every candidate as before)
where sets cannot stand for Check's answer: a wildcard of the wanted type (its answer has a
shape of its own), a cycle in the data (Check's cycle rules decide there), a walk deeper than
the depth limit (Check would fail or decide on depth), subjects that are subject sets.
Each node is evaluated once (memoized), so shared subtrees (a team inside many teams) cost
once; the walk pauses like the other lookups (see cooperative.py).
"""

from __future__ import annotations

from collections.abc import Generator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import islice

from stonetown.engine.cooperative import PAUSE, PAUSE_EVERY, SORT_CHUNK, Pause
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import RelationshipIndex
from stonetown.schema import ir

Node = tuple[str, str, str]


class Declined(Exception):  # noqa: N818 - a signal to take the per-candidate path, not an error
    """The sets cannot stand for Check's answers here; check every candidate instead."""


@dataclass(frozen=True, slots=True)
class Held:
    """The subject ids a node certainly grants (``sure``) and those only Check can settle
    (``maybe``); disjoint. Shared between nodes (a bucket's set is not copied into each node
above it): never mutated once built."""

    sure: AbstractSet[str]
    maybe: AbstractSet[str]


_NONE = Held(frozenset(), frozenset())


def subject_sets_steps(
    schema: ir.Schema,
    admits: set[tuple[str, str, str, str, bool]],
    index: RelationshipIndex,
    start: Node,
    subject_type: str,
    max_depth: int,
) -> Generator[Pause, None, Held]:
    """The :class:`Held` sets of `start` for plain subjects of `subject_type`, as cooperative
    steps; raises :class:`Declined` where sets cannot stand for Check (module docstring)."""
    walk = _SetWalk(schema, admits, index, subject_type, max_depth)
    return (yield from walk.node(start, 0))


class _SetWalk:
    """One evaluation: the memo of finished nodes and the nodes being evaluated."""

    def __init__(
        self,
        schema: ir.Schema,
        admits: set[tuple[str, str, str, str, bool]],
        index: RelationshipIndex,
        subject_type: str,
        max_depth: int,
    ) -> None:
        self.schema = schema
        self.admits = admits
        self.objects = index.objects
        self.usersets = index.usersets
        self.subject_type = subject_type
        self.max_depth = max_depth
        self.memo: dict[Node, Held] = {}
        self.active: set[Node] = set()
        self.deadline = request_deadline.get()
        self.steps = 0

    def node(self, node: Node, depth: int) -> Generator[Pause, None, Held]:
        """The sets of one (type, id, relation)."""
        known = self.memo.get(node)
        if known is not None:
            return known
        if node in self.active:
            raise Declined("a cycle in the data")
        if depth >= self.max_depth:
            raise Declined("deeper than the depth limit")
        relation = self.schema.relation(node[0], node[2])
        if relation is None:
            return _NONE
        self.steps += 1
        if self.steps % CHECK_EVERY == 0:
            check_deadline(self.deadline)
        if self.steps % PAUSE_EVERY == 0:
            yield PAUSE
        self.active.add(node)
        try:
            held = yield from self.rewrite(node, relation.rewrite, depth + 1)
        finally:
            self.active.discard(node)
        self.memo[node] = held
        return held

    def rewrite(self, node: Node, rewrite: ir.Rewrite, depth: int) -> Generator[Pause, None, Held]:
        """The sets of one rewrite of `node`'s relation."""
        ntype, nid, _ = node
        if isinstance(rewrite, ir.This):
            return (yield from self.this(node, depth))
        if isinstance(rewrite, ir.ComputedUserset):
            return (yield from self.node((ntype, nid, rewrite.relation), depth))
        if isinstance(rewrite, ir.TupleToUserset):
            return (yield from self.arrow(node, rewrite, depth))
        if isinstance(rewrite, ir.Union | ir.Intersection):
            parts: list[Held] = []
            for child in rewrite.children:
                parts.append((yield from self.rewrite(node, child, depth)))
            if isinstance(rewrite, ir.Union):
                return _union(parts)
            yield PAUSE
            sure = set.intersection(*(set(p.sure) for p in parts))
            yield PAUSE
            possible = set.intersection(*(set(p.sure) | p.maybe for p in parts))
            yield PAUSE
            return Held(sure, possible - sure)
        if isinstance(rewrite, ir.Exclusion):
            base = yield from self.rewrite(node, rewrite.base, depth)
            if not base.sure and not base.maybe:
                return _NONE  # Check does not evaluate the subtracted side either
            subtract = yield from self.rewrite(node, rewrite.subtract, depth)
            if not subtract.sure and not subtract.maybe:
                return base
            # what the subtracted side may hold is only maybe; what it surely holds, denied
            yield PAUSE  # each of these copies a set as large as the base (200k ids: ~10 ms)
            sure = base.sure - subtract.sure
            yield PAUSE
            sure -= subtract.maybe
            yield PAUSE
            return Held(sure, (base.maybe - subtract.sure) | (subtract.maybe & base.sure))
        return _NONE  # Nil

    def this(self, node: Node, depth: int) -> Generator[Pause, None, Held]:
        """The relationships stored under `node`: plain subjects of the wanted type, and the
        subject sets they name, each evaluated in turn."""
        ntype, _, nrel = node
        stype, admits = self.subject_type, self.admits
        sure: set[str] = set()
        maybe: set[str] = set()
        bucket = self.objects.get(node)
        if bucket:
            if (stype, "*") in bucket and (ntype, nrel, stype, "", True) in admits:
                raise Declined("a wildcard of the subject type")
            if (ntype, nrel, stype, "", False) in admits:
                entries = iter(bucket.items())
                while chunk := list(islice(entries, SORT_CHUNK)):
                    mine = [(sid, meta) for (t, sid), meta in chunk if t == stype and sid != "*"]
                    sure.update([sid for sid, meta in mine if meta is None])
                    maybe.update([sid for sid, meta in mine if meta is not None])
                    if len(chunk) >= PAUSE_EVERY:  # smaller buckets: node() pauses every few
                        yield PAUSE
        parts: list[Held] = []
        edged: list[Held] = []  # reached through a caveated or expiring relationship
        ubucket = self.usersets.get(node)
        if ubucket:
            for (ust, usid, usrel), meta in list(ubucket.items()):
                if (ntype, nrel, ust, usrel, False) not in admits:
                    continue
                held = yield from self.node((ust, usid, usrel), depth)
                (parts if meta is None else edged).append(held)
        return _union([Held(sure, maybe), *parts], edged)

    def arrow(self, node: Node, arrow: ir.TupleToUserset, depth: int) -> Generator[Pause, None, Held]:
        """`tupleset->computed` over the objects (and subject sets' objects) `node` stores
        under the tupleset; an `all` arrow is left to Check."""
        ntype, nid, _ = node
        key = (ntype, nid, arrow.tupleset)
        targets: list[tuple[str, str, bool]] = []
        bucket = self.objects.get(key)
        if bucket:
            targets += [
                (st, sid, meta is None)
                for (st, sid), meta in bucket.items()
                if sid != "*" and (ntype, arrow.tupleset, st, "", False) in self.admits
            ]
        ubucket = self.usersets.get(key)
        if ubucket:
            targets += [
                (st, sid, meta is None)
                for (st, sid, srel), meta in ubucket.items()
                if (ntype, arrow.tupleset, st, srel, False) in self.admits
            ]
        parts: list[Held] = []
        edged: list[Held] = []
        for st, sid, plain in targets:
            if self.schema.relation(st, arrow.computed) is None:
                continue
            held = yield from self.node((st, sid, arrow.computed), depth)
            (parts if plain and arrow.mode == "any" else edged).append(held)
        return _union(parts, edged)


def _union(parts: list[Held], edged: list[Held] = ()) -> Held:  # type: ignore[assignment]
    """The union of `parts`; the ids of `edged` (reached under a condition) are only maybe."""
    nonempty = [p for p in parts if p.sure or p.maybe]
    if not edged and len(nonempty) == 1:
        return nonempty[0]
    sure: set[str] = set()
    for part in nonempty:
        sure |= part.sure
    maybe: set[str] = set()
    for part in nonempty:
        maybe |= part.maybe
    for part in edged:
        maybe |= part.sure
        maybe |= part.maybe
    if not sure and not maybe:
        return _NONE
    maybe -= sure
    return Held(sure, maybe)
