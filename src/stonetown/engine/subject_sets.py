"""SpiceDB's subject-set algebra, for the shape of a LookupSubjects answer beside a wildcard.

Check says whether a subject holds a permission; when a wildcard holds it too, LookupSubjects
must also say which subjects are listed on their own beside the wildcard and which the wildcard
excludes. SpiceDB answers that from the sets it builds bottom-up (internal/datasets/
basesubjectset.go): each node of the rewrite yields concrete subjects, at most one wildcard and
the wildcard's exclusions, each under a caveat condition, and unions, intersections and
exclusions combine them by fixed rules. `{*} & {*, u}` lists u (the right side names it and the
left side's wildcard covers it), `{*} - {u}` excludes u, `{*} - {* - {u}}` lists u.

:class:`SubjectSets` evaluates those rules for one candidate subject at a time, as a
:class:`Membership` (three results: listed on its own, the wildcard's condition, excluded from
the wildcard), reading the same index and relationship metadata as Check. Whether a subject
holds the permission at all stays Check's answer; this only shapes the listing.
"""

from __future__ import annotations

from dataclasses import dataclass

from stonetown.engine.check import CheckRun, DepthExceeded
from stonetown.engine.conditions import Result, all_of, any_of, negate
from stonetown.engine.deadline import CHECK_EVERY, check_deadline
from stonetown.engine.reachability import Reachability
from stonetown.schema import ir


@dataclass(frozen=True, slots=True)
class Membership:
    """One candidate's place in a node's subject set: `concrete`, under which condition it is
    listed on its own; `wildcard`, the condition of the node's wildcard (False: none);
    `excluded`, under which condition that wildcard excludes the candidate."""

    concrete: Result = False
    wildcard: Result = False
    excluded: Result = False


EMPTY = Membership()


def _covered(m: Membership) -> Result:
    """Whether m's wildcard covers the candidate."""
    return all_of(m.wildcard, negate(m.excluded))


def union(a: Membership, b: Membership) -> Membership:
    """`a + b`: concretes merged; the wildcards' exclusions intersected, then dropped for a
    candidate the other side lists (kept under the negation of its condition)."""
    if a.wildcard is False and b.wildcard is False:
        return Membership(any_of(a.concrete, b.concrete))
    if a.wildcard is False:
        excluded = b.excluded
    elif b.wildcard is False:
        excluded = a.excluded
    else:
        excluded = all_of(a.excluded, b.excluded)
    excluded = all_of(excluded, all_of(negate(a.concrete), negate(b.concrete)))
    return Membership(any_of(a.concrete, b.concrete), any_of(a.wildcard, b.wildcard), excluded)


def intersection(a: Membership, b: Membership) -> Membership:
    """`a & b`: a candidate one side lists is kept where the other side lists it or its
    wildcard covers it; the wildcards intersect (their exclusions united)."""
    concrete = any_of(all_of(a.concrete, any_of(b.concrete, _covered(b))), all_of(b.concrete, _covered(a)))
    if a.wildcard is False or b.wildcard is False:
        return Membership(concrete)
    return Membership(concrete, all_of(a.wildcard, b.wildcard), any_of(a.excluded, b.excluded))


def exclusion(a: Membership, b: Membership) -> Membership:
    """`a - b`: b's concretes leave a's concretes and join a's exclusions; b's wildcard
    removes a's concretes it covers and a's wildcard, whose candidates b's wildcard excludes
    become concretes (SpiceDB's subtractWildcardFromWildcard)."""
    concrete = all_of(a.concrete, negate(b.concrete))
    wildcard = a.wildcard
    excluded = any_of(a.excluded, b.concrete) if wildcard is not False else False
    if b.wildcard is not False:
        concrete = all_of(concrete, negate(_covered(b)))
        if wildcard is not False:
            if b.excluded is not False and excluded is not True:
                concrete = all_of(all_of(all_of(wildcard, b.wildcard), b.excluded), negate(excluded))
            wildcard = all_of(wildcard, negate(b.wildcard))
            if wildcard is False:
                excluded = False
    return Membership(concrete, wildcard, excluded)


def under(edge: Result, m: Membership) -> Membership:
    """m reached through a relationship whose caveat / expiration gives `edge`."""
    if edge is True:
        return m
    return Membership(all_of(edge, m.concrete), all_of(edge, m.wildcard), m.excluded)


class SubjectSets:
    """The subject sets of one LookupSubjects question (subjects of `subject_type`, with
    `subject_relation` or "" for plain objects), evaluated one candidate at a time over the
    index `run` reads (its clock, deadline and depth limit)."""

    def __init__(
        self, schema: ir.Schema, facts: Reachability, run: CheckRun, subject_type: str, subject_relation: str
    ) -> None:
        self.schema = schema
        self.admits = facts.admits
        self.run = run
        self.subject_type = subject_type
        self.subject_relation = subject_relation
        self._memo: dict[tuple[str, str, str], Membership] = {}
        self._stack: set[tuple[str, str, str]] = set()
        self._cut = False
        self._cid = ""
        self._budget = CHECK_EVERY

    def of(self, rtype: str, rid: str, relation: str, cid: str) -> Membership:
        """Candidate `cid`'s membership in `rtype:rid#relation`."""
        if cid != self._cid:
            self._memo.clear()
            self._cid = cid
        return self._relation(rtype, rid, relation, 0)

    def _relation(self, rtype: str, rid: str, rel: str, depth: int) -> Membership:
        key = (rtype, rid, rel)
        known = self._memo.get(key)
        if known is not None:
            return known
        if key in self._stack:
            # a cycle in the data adds nothing (SpiceDB answers it with a depth error)
            self._cut = True
            return EMPTY
        if depth >= self.run.max_depth:
            raise DepthExceeded(
                f"lookup exceeded the maximum depth of {self.run.max_depth} at {rtype}:{rid}#{rel}"
            )
        self._budget -= 1
        if not self._budget:
            self._budget = CHECK_EVERY
            check_deadline(self.run.deadline)
        found = EMPTY
        srel, stype = self.subject_relation, self.subject_type
        if srel and rel == srel and rtype == stype and rid == self._cid:
            found = Membership(True)  # a subject set is a member of itself
        relation = self.schema.relation(rtype, rel)
        if relation is not None:
            outer_cut, self._cut = self._cut, False
            self._stack.add(key)
            try:
                found = union(found, self._rewrite(relation.rewrite, rtype, rid, rel, depth + 1))
            finally:
                self._stack.discard(key)
            inner_cut = self._cut
            self._cut = outer_cut or inner_cut
            if inner_cut:
                return found
        self._memo[key] = found
        return found

    def _rewrite(self, node: ir.Rewrite, rtype: str, rid: str, rel: str, depth: int) -> Membership:
        if isinstance(node, ir.This):
            return self._this(rtype, rid, rel, depth)
        if isinstance(node, ir.ComputedUserset):
            return self._relation(rtype, rid, node.relation, depth)
        if isinstance(node, ir.TupleToUserset):
            return self._arrow(node, rtype, rid, depth)
        if isinstance(node, ir.Union | ir.Intersection):
            combine = union if isinstance(node, ir.Union) else intersection
            result: Membership | None = None
            for child in node.children:
                found = self._rewrite(child, rtype, rid, rel, depth)
                result = found if result is None else combine(result, found)
            return result or EMPTY
        if isinstance(node, ir.Exclusion):
            base = self._rewrite(node.base, rtype, rid, rel, depth)
            return exclusion(base, self._rewrite(node.subtract, rtype, rid, rel, depth))
        return EMPTY  # nil

    def _this(self, rtype: str, rid: str, rel: str, depth: int) -> Membership:
        """The relationships stored under `rtype:rid#rel`: the candidate and the wildcard
        directly, and what each stored subject set holds."""
        run, key, admits, stype = self.run, (rtype, rid, rel), self.admits, self.subject_type
        found = EMPTY
        bucket = run.objects.get(key)
        if bucket and not self.subject_relation:
            meta = bucket.get((stype, self._cid), False)
            if meta is not False and (rtype, rel, stype, "", False) in admits:
                found = union(found, Membership(True if meta is None else run.meta_result(meta)))
            meta = bucket.get((stype, "*"), False)
            if meta is not False and (rtype, rel, stype, "", True) in admits:
                found = union(found, Membership(False, True if meta is None else run.meta_result(meta)))
        for (ustype, usid, usrel), meta in run.usersets.get(key, {}).items():
            if (rtype, rel, ustype, usrel, False) not in admits:
                continue
            edge = True if meta is None else run.meta_result(meta)
            if edge is not False:
                found = union(found, under(edge, self._relation(ustype, usid, usrel, depth)))
        return found

    def _arrow(self, node: ir.TupleToUserset, rtype: str, rid: str, depth: int) -> Membership:
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
        result: Membership | None = None
        edges: Result = True
        for st, sid, meta in targets:
            edge = True if meta is None else run.meta_result(meta)
            if edge is False:
                continue
            edges = all_of(edges, edge)
            if self.schema.relation(st, node.computed) is None:
                continue
            found = self._relation(st, sid, node.computed, depth)
            if every:
                result = found if result is None else intersection(result, found)
            else:
                result = under(edge, found) if result is None else union(result, under(edge, found))
        if result is None:
            return EMPTY
        return under(edges, result) if every else result
