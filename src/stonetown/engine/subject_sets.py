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
once, except nested sets of plain relations, walked straight into the set above them the
first time (see :meth:`_SetWalk.this`); the walk pauses like the other lookups (see
cooperative.py).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import islice

from stonetown.engine.cooperative import PAUSE, PAUSE_EVERY, SCAN_CHUNK, SORT_CHUNK, Pause
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
_UNKNOWN = object()


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
        self.rewrites: dict[tuple[str, str], ir.Rewrite | None] = {}
        self.walked: set[Node] = set()  # nodes `this` walked inline (see there)
        self.admitted_by: dict[tuple[str, str], tuple[bool, bool, frozenset[tuple[str, str]]]] = {}
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
        rewrite = self.rewrite_of(node)
        if rewrite is None:
            return _NONE
        if self.tick():
            yield PAUSE
        self.active.add(node)
        try:
            if type(rewrite) is ir.This:  # a relation's own: the common case, no detour
                held = yield from self.this(node, depth + 1)
            else:
                held = yield from self.rewrite(node, rewrite, depth + 1)
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
                return _gather(set(), set(), parts, [])
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
        subject sets they name (at `depth`), evaluated in turn.

        A subject set whose relation is only its own relationships (a team in a team in a
        team) is walked here, depth first over a stack, its subjects added straight into
        `node`'s sets: no sets of its own are built, nor copied into each set above it. Such
        a set is walked this way once per evaluation; met again from elsewhere it goes
        through :meth:`node` (built, memoized, shared from then on). Cycles and depth are
        judged as :meth:`node` judges them (the nodes on the walk's path are active)."""
        active, memo, walked, max_depth = self.active, self.memo, self.walked, self.max_depth
        sure: set[str] = set()
        maybe: set[str] = set()
        done: set[Node] = set()  # walked here over plain edges: every subject added
        done_maybe: set[Node] = set()  # walked here under a condition: added as maybe
        stack: list[tuple[Node, bool, Iterator[tuple[Node, object]]]] = []
        entering: Node | None = node
        under = False  # whether `entering` was reached through a caveated or expiring edge
        while True:
            if entering is not None:
                into = maybe if under else sure
                if not self.direct(entering, into, maybe):
                    yield from self.direct_large(entering, into, maybe)
                (done_maybe if under else done).add(entering)
                stack.append((entering, under, iter(self.children(entering))))
                entering = None
            top, top_under, children = stack[-1]
            child_depth = depth + len(stack) - 1
            for child, meta in children:
                under = top_under or meta is not None
                if child in active:
                    raise Declined("a cycle in the data")
                if child in done or (under and child in done_maybe):
                    continue  # its subjects are in the sets already
                held = memo.get(child)
                if held is None:
                    if child_depth >= max_depth:
                        raise Declined("deeper than the depth limit")
                    rewrite = self.rewrite_of(child)
                    if rewrite is None:
                        continue
                    if type(rewrite) is ir.This and child not in walked:
                        if self.tick():
                            yield PAUSE
                        active.add(child)
                        walked.add(child)
                        entering = child
                        break
                    held = yield from self.node(child, child_depth)
                if len(held.sure) + len(held.maybe) > SORT_CHUNK:
                    yield PAUSE  # a large set is copied next (200k ids: ~10 ms)
                (maybe if under else sure).update(held.sure)
                maybe.update(held.maybe)
            if entering is not None:
                continue
            stack.pop()
            if not stack:
                break
            active.discard(top)
        if maybe and sure:
            maybe -= sure
        return Held(sure, maybe) if sure or maybe else _NONE

    def children(self, node: Node) -> list[tuple[Node, object]]:
        """The subject sets stored under `node` its relation admits, with their metadata."""
        bucket = self.usersets.get(node)
        if not bucket:
            return []
        admitted = self.admitted(node)[2]
        return [(sub, meta) for sub, meta in bucket.items() if (sub[0], sub[2]) in admitted]

    def admitted(self, node: Node) -> tuple[bool, bool, frozenset[tuple[str, str]]]:
        """What `node`'s relation admits: a wildcard of the wanted type, plain subjects of
        it, and which (type, relation) subject sets."""
        key = (node[0], node[2])
        known = self.admitted_by.get(key)
        if known is None:
            ntype, nrel, stype = key[0], key[1], self.subject_type
            sets = frozenset((a[2], a[3]) for a in self.admits if a[:2] == key and not a[4])
            known = self.admitted_by[key] = (
                (ntype, nrel, stype, "", True) in self.admits,
                (ntype, nrel, stype, "", False) in self.admits,
                sets,
            )
        return known

    def rewrite_of(self, node: Node) -> ir.Rewrite | None:
        """The rewrite of `node`'s relation (None: its type has no such relation)."""
        key = (node[0], node[2])
        rewrite = self.rewrites.get(key, _UNKNOWN)
        if rewrite is _UNKNOWN:
            relation = self.schema.relation(*key)
            rewrite = self.rewrites[key] = None if relation is None else relation.rewrite
        return rewrite  # type: ignore[return-value]

    def direct(self, node: Node, into: set[str], maybe: set[str]) -> bool:
        """Add the plain subjects of the wanted type stored under `node` to `into` (to `maybe`
        those with a caveat or an expiration); decline on a wildcard of that type. False for a
        bucket too large to read without pausing: :meth:`direct_large` reads it."""
        bucket = self.objects.get(node)
        if not bucket:
            return True
        stype = self.subject_type
        wildcard, plain, _ = self.admitted(node)
        if wildcard and (stype, "*") in bucket:
            raise Declined("a wildcard of the subject type")
        if not plain:
            return True
        if len(bucket) > PAUSE_EVERY:
            return False
        if not any(bucket.values()):  # none with a caveat or an expiration (the common case)
            into.update([sid for t, sid in bucket if t == stype and sid != "*"])
            return True
        for (t, sid), meta in bucket.items():
            if t == stype and sid != "*":
                (into if meta is None else maybe).add(sid)
        return True

    def direct_large(self, node: Node, into: set[str], maybe: set[str]) -> Generator[Pause, None, None]:
        """:meth:`direct` of a large bucket, pausing between slices of it."""
        stype = self.subject_type
        entries = iter(self.objects[node].items())
        while True:
            read = 0
            for (t, sid), meta in islice(entries, SCAN_CHUNK):
                read += 1
                if t == stype and sid != "*":
                    (into if meta is None else maybe).add(sid)
            if read < SCAN_CHUNK:
                return
            yield PAUSE

    def tick(self) -> bool:
        """One more node evaluated: look at the deadline every so many; whether to pause."""
        self.steps += 1
        if self.steps % CHECK_EVERY == 0:
            check_deadline(self.deadline)
        return self.steps % PAUSE_EVERY == 0

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
        return _gather(set(), set(), parts, edged)


def _gather(sure: set[str], maybe: set[str], parts: list[Held], edged: list[Held]) -> Held:
    """The union of `sure` / `maybe` (sets the caller owns: grown in place) and `parts`; the
    ids of `edged` (reached under a condition) are only maybe. A lone nonempty part is
    shared, not copied."""
    if not edged and not sure and not maybe:
        nonempty = [p for p in parts if p.sure or p.maybe]
        if len(nonempty) <= 1:
            return nonempty[0] if nonempty else _NONE  # shared, not copied
    for part in parts:
        sure |= part.sure
        maybe |= part.maybe
    for part in edged:
        maybe |= part.sure
        maybe |= part.maybe
    if not sure and not maybe:
        return _NONE
    if maybe:
        maybe -= sure
    return Held(sure, maybe)
