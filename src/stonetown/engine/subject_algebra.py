"""SpiceDB's subject-set algebra, for the shape of a LookupSubjects answer beside a wildcard.

Check says whether a subject holds a permission; when a wildcard holds it too, LookupSubjects
must also say which subjects are listed on their own beside the wildcard and which the wildcard
excludes. SpiceDB answers that from the sets it builds bottom-up (internal/datasets/
basesubjectset.go): each node of the rewrite yields concrete subjects, at most one wildcard and
the wildcard's exclusions, each under a caveat condition, and unions, intersections and
exclusions combine them by fixed rules. `{*} & {*, u}` lists u (the right side names it and the
left side's wildcard covers it), `{*} - {u}` excludes u, `{*} - {* - {u}}` lists u.

:class:`SubjectSets` builds those sets bottom-up, each node's once (:class:`SubjectSet`: the
subjects listed on their own, the wildcard's condition, the subjects it excludes, each under
a condition), reading the same index and relationship metadata as Check. Whether a subject
holds the permission at all stays Check's answer; this only shapes the listing.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field

from stonetown.engine.check import CheckRun, DepthExceeded
from stonetown.engine.conditions import Result, all_of, any_of, negate
from stonetown.engine.cooperative import PAUSE, PAUSE_EVERY, SORT_CHUNK, Pause
from stonetown.engine.deadline import CHECK_EVERY, check_deadline
from stonetown.engine.reachability import Reachability
from stonetown.schema import ir


@dataclass(frozen=True, slots=True)
class SubjectSet:
    """A node's subjects: `concrete`, the ids listed on their own, each under its condition;
    `wildcard`, the condition of the node's wildcard (False: none); `excluded`, the ids that
    wildcard excludes, each under its condition. Ids absent from a map stand at False."""

    concrete: Mapping[str, Result] = field(default_factory=dict)
    wildcard: Result = False
    excluded: Mapping[str, Result] = field(default_factory=dict)


EMPTY = SubjectSet()


def _covered(s: SubjectSet, sid: str) -> Result:
    """Whether s's wildcard covers `sid`."""
    return all_of(s.wildcard, negate(s.excluded.get(sid, False)))


def _merged(a: Mapping[str, Result], b: Mapping[str, Result]) -> dict[str, Result]:
    out = dict(a)
    for sid, value in b.items():
        out[sid] = any_of(out.get(sid, False), value)
    return out


def _kept(values: dict[str, Result]) -> dict[str, Result]:
    return {sid: value for sid, value in values.items() if value is not False}


def union(*parts: SubjectSet) -> SubjectSet:
    """`a + b + ...`: concretes merged; the wildcards' exclusions intersected, then dropped
    for a subject any part lists (kept under the negation of its condition). One pass over
    every part: a relation holding thousands of subject sets unites them in linear time."""
    concrete: dict[str, Result] = {}
    for part in parts:
        for sid, value in part.concrete.items():
            concrete[sid] = any_of(concrete.get(sid, False), value)
    wilds = [part for part in parts if part.wildcard is not False]
    if not wilds:
        return SubjectSet(concrete)
    wildcard: Result = False
    excluded = dict(wilds[0].excluded)
    for part in wilds:
        wildcard = any_of(wildcard, part.wildcard)
        if part is not wilds[0]:
            others = part.excluded
            excluded = {sid: all_of(x, others[sid]) for sid, x in excluded.items() if sid in others}
    for sid in excluded:
        excluded[sid] = all_of(excluded[sid], negate(concrete.get(sid, False)))
    return SubjectSet(concrete, wildcard, _kept(excluded))


def intersection(a: SubjectSet, b: SubjectSet) -> SubjectSet:
    """`a & b`: a subject one side lists is kept where the other side lists it or its
    wildcard covers it; the wildcards intersect (their exclusions united)."""
    concrete: dict[str, Result] = {}
    for sid, value in a.concrete.items():
        concrete[sid] = all_of(value, any_of(b.concrete.get(sid, False), _covered(b, sid)))
    for sid, value in b.concrete.items():
        concrete[sid] = any_of(concrete.get(sid, False), all_of(value, _covered(a, sid)))
    if a.wildcard is False or b.wildcard is False:
        return SubjectSet(_kept(concrete))
    return SubjectSet(_kept(concrete), all_of(a.wildcard, b.wildcard), _merged(a.excluded, b.excluded))


def exclusion(a: SubjectSet, b: SubjectSet) -> SubjectSet:
    """`a - b`: b's concretes leave a's concretes and join a's exclusions; b's wildcard
    removes a's concretes it covers and a's wildcard, whose subjects b's wildcard excludes
    become concretes (SpiceDB's subtractWildcardFromWildcard)."""
    concrete = {sid: all_of(value, negate(b.concrete.get(sid, False))) for sid, value in a.concrete.items()}
    wildcard = a.wildcard
    excluded = _merged(a.excluded, b.concrete) if wildcard is not False else {}
    if b.wildcard is not False:
        for sid, value in concrete.items():
            concrete[sid] = all_of(value, negate(_covered(b, sid)))
        if wildcard is not False:
            both = all_of(wildcard, b.wildcard)
            for sid, out in b.excluded.items():
                mine = excluded.get(sid, False)
                if mine is not True:
                    concrete[sid] = all_of(all_of(both, out), negate(mine))
            wildcard = all_of(wildcard, negate(b.wildcard))
            if wildcard is False:
                excluded = {}
    return SubjectSet(_kept(concrete), wildcard, _kept(excluded))


def under(edge: Result, s: SubjectSet) -> SubjectSet:
    """s reached through a relationship whose caveat / expiration gives `edge`."""
    if edge is True:
        return s
    concrete = {sid: all_of(edge, value) for sid, value in s.concrete.items()}
    return SubjectSet(concrete, all_of(edge, s.wildcard), s.excluded)


Steps = Generator[Pause, None, SubjectSet]


class _Cycle(Exception):
    """The walk met a relation it is evaluating (a cycle in the data)."""


class SubjectSets:
    """The subject sets of one LookupSubjects question (subjects of `subject_type`, with
    `subject_relation` or "" for plain objects), built bottom-up over the index `run` reads
    (its clock, deadline and depth limit), each node's once."""

    def __init__(
        self, schema: ir.Schema, facts: Reachability, run: CheckRun, subject_type: str, subject_relation: str
    ) -> None:
        self.schema = schema
        self.admits = facts.admits
        self.run = run
        self.subject_type = subject_type
        self.subject_relation = subject_relation
        self._memo: dict[tuple[str, str, str], SubjectSet] = {}
        self._stack: set[tuple[str, str, str]] = set()
        self._steps = 0

    def of(self, rtype: str, rid: str, relation: str) -> Generator[Pause, None, SubjectSet | None]:
        """The subject set of `rtype:rid#relation`, as cooperative steps (see cooperative.py);
        None when the walk meets a cycle in the data (SpiceDB answers those with a depth
        error; a cycle's sets would have to be recomputed for every way into it, so the walk
        stops at the first one). It pauses between nodes and inside long buckets: an index
        that changes during a pause is never read again (cooperative.resumable)."""
        try:
            return (yield from self._relation(rtype, rid, relation, 0))
        except _Cycle:
            return None

    def _relation(self, rtype: str, rid: str, rel: str, depth: int) -> Steps:
        key = (rtype, rid, rel)
        known = self._memo.get(key)
        if known is not None:
            return known
        if key in self._stack:
            raise _Cycle
        if depth >= self.run.max_depth:
            raise DepthExceeded(
                f"lookup exceeded the maximum depth of {self.run.max_depth} at {rtype}:{rid}#{rel}"
            )
        self._steps += 1
        if self._steps % CHECK_EVERY == 0:
            check_deadline(self.run.deadline)
        if self._steps % PAUSE_EVERY == 0:
            yield PAUSE
        found = EMPTY
        srel, stype = self.subject_relation, self.subject_type
        if srel and rel == srel and rtype == stype:
            found = SubjectSet({rid: True})  # a subject set is a member of itself
        relation = self.schema.relation(rtype, rel)
        if relation is not None:
            self._stack.add(key)
            try:
                found = union(found, (yield from self._rewrite(relation.rewrite, rtype, rid, rel, depth + 1)))
            finally:
                self._stack.discard(key)
        self._memo[key] = found
        return found

    def _rewrite(self, node: ir.Rewrite, rtype: str, rid: str, rel: str, depth: int) -> Steps:
        if isinstance(node, ir.This):
            return (yield from self._this(rtype, rid, rel, depth))
        if isinstance(node, ir.ComputedUserset):
            return (yield from self._relation(rtype, rid, node.relation, depth))
        if isinstance(node, ir.TupleToUserset):
            return (yield from self._arrow(node, rtype, rid, depth))
        if isinstance(node, ir.Union):
            parts = []
            for child in node.children:
                parts.append((yield from self._rewrite(child, rtype, rid, rel, depth)))
            return union(*parts)
        if isinstance(node, ir.Intersection):
            result: SubjectSet | None = None
            for child in node.children:
                found = yield from self._rewrite(child, rtype, rid, rel, depth)
                result = found if result is None else intersection(result, found)
            return result or EMPTY
        if isinstance(node, ir.Exclusion):
            base = yield from self._rewrite(node.base, rtype, rid, rel, depth)
            return exclusion(base, (yield from self._rewrite(node.subtract, rtype, rid, rel, depth)))
        return EMPTY  # nil

    def _this(self, rtype: str, rid: str, rel: str, depth: int) -> Steps:
        """The relationships stored under `rtype:rid#rel`: subjects and the wildcard of the
        wanted type directly, and what each stored subject set holds."""
        run, key, admits, stype = self.run, (rtype, rid, rel), self.admits, self.subject_type
        found = EMPTY
        bucket = run.objects.get(key)
        if bucket and not self.subject_relation:
            concrete: dict[str, Result] = {}
            wildcard: Result = False
            plain, wild = (rtype, rel, stype, "", False) in admits, (rtype, rel, stype, "", True) in admits
            for count, ((otype, oid), meta) in enumerate(bucket.items(), 1):
                if count % SORT_CHUNK == 0:
                    yield PAUSE
                if otype != stype or not (wild if oid == "*" else plain):
                    continue
                value = True if meta is None else run.meta_result(meta)
                if value is False:
                    continue
                if oid == "*":
                    wildcard = value
                else:
                    concrete[oid] = value
            found = SubjectSet(concrete, wildcard)
        parts = [found]
        for (ustype, usid, usrel), meta in run.usersets.get(key, {}).items():
            if (rtype, rel, ustype, usrel, False) not in admits:
                continue
            edge = True if meta is None else run.meta_result(meta)
            if edge is not False:
                parts.append(under(edge, (yield from self._relation(ustype, usid, usrel, depth))))
        return union(*parts) if len(parts) > 1 else found

    def _arrow(self, node: ir.TupleToUserset, rtype: str, rid: str, depth: int) -> Steps:
        """`tupleset->computed` over every target (`any`: united; `all`: intersected, under
        every target's relationship condition), targets lacking `computed` skipped."""
        run, key, admits = self.run, (rtype, rid, node.tupleset), self.admits
        targets = [
            (st, sid, meta)
            for (st, sid), meta in run.objects.get(key, {}).items()
            if sid != "*" and (rtype, node.tupleset, st, "", False) in admits
        ]
        targets += [
            (st, sid, meta)
            for (st, sid, srel), meta in run.usersets.get(key, {}).items()
            if (rtype, node.tupleset, st, srel, False) in admits
        ]
        every = node.mode == "all"
        result: SubjectSet | None = None
        reached: list[SubjectSet] = []
        edges: Result = True
        for st, sid, meta in targets:
            edge = True if meta is None else run.meta_result(meta)
            if edge is False:
                continue
            edges = all_of(edges, edge)
            if self.schema.relation(st, node.computed) is None:
                continue
            found = yield from self._relation(st, sid, node.computed, depth)
            if every:
                result = found if result is None else intersection(result, found)
            else:
                reached.append(under(edge, found))
        if not every:
            return union(*reached) if reached else EMPTY
        return EMPTY if result is None else under(edges, result)
