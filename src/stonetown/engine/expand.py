"""Expand: the userset tree of a relation or permission on one object.

Shallow (SpiceDB's default): the rewrite is unfolded through computed usersets and arrows,
and each stored relation becomes a leaf listing its direct subjects, subject sets included
as they are. The tree has SpiceDB's shape: a permission is always an operation node (one of a
single operand is a one-child union), an arrow is a union (`.all`: an intersection) with a
subtree per object its relation points to, and an empty leaf for an object whose type lacks
the arrow's relation. Recursive: every subject set in a leaf is expanded in turn, the leaf becoming a
union of the direct subjects and those subtrees. Cycles end in an empty leaf; the depth limit
gives ResourceExhausted, and so does a tree that would hold more than `max_size` nodes and
subjects (checked before a leaf is built, so a huge group fails at once instead of building a
tree no message can carry: LookupSubjects pages through such sets).

:func:`evaluate` turns a tree back into the set of subjects it denotes, so tests can hold
Expand to the same answers as Check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from stonetown.core.errors import ResourceExhausted
from stonetown.core.relationship import ObjectRef, SubjectRef
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.types import ExpandNode, ExpandOp
from stonetown.schema import ir

# The default bound on the nodes and subjects of one expand tree: about 220 kB as a message,
# and tens of milliseconds to build and encode.
MAX_EXPAND_SIZE = 10_000


_SET_OPERATIONS = (ir.Union, ir.Intersection, ir.Exclusion)


class Expander:
    """Builds expand trees over one index at one moment."""

    def __init__(
        self,
        schema: ir.Schema,
        index: RelationshipIndex,
        max_depth: int,
        recursive: bool,
        max_size: int = MAX_EXPAND_SIZE,
    ) -> None:
        self.schema = schema
        self.index = index
        self.max_depth = max_depth
        self.recursive = recursive
        self.max_size = max_size
        self.size = 0  # nodes and subjects in the tree so far
        self.now = time.time()
        self.stack: set[tuple[str, str, str]] = set()

    def _grow(self, count: int, rtype: str, rid: str, rel: str) -> None:
        """Count `count` more nodes or subjects; ResourceExhausted beyond the bound."""
        self.size += count
        if self.size > self.max_size:
            raise ResourceExhausted(
                f"expand: the tree would hold more than {self.max_size} nodes and subjects "
                f"(the expand size bound, --max-expand-size) at {rtype}:{rid}#{rel}; "
                "list large sets with LookupSubjects, which pages"
            )

    def expand(self, rtype: str, rid: str, rel: str, depth: int = 0) -> ExpandNode:
        """The tree of `rtype:rid#rel`."""
        relation = self.schema.relation(rtype, rel)
        key = (rtype, rid, rel)
        if relation is None or key in self.stack:
            return ExpandNode(ObjectRef(rtype, rid), rel)
        if depth >= self.max_depth:
            raise ResourceExhausted(
                f"expand exceeded the maximum depth of {self.max_depth} at {rtype}:{rid}#{rel}"
            )
        self._grow(1, rtype, rid, rel)
        self.stack.add(key)
        try:
            tree = self._rewrite(rtype, rid, rel, relation.rewrite, depth)
        finally:
            self.stack.discard(key)
        if relation.is_permission and not isinstance(relation.rewrite, _SET_OPERATIONS):
            # SpiceDB compiles a permission of one operand to a union of that operand
            return ExpandNode(ObjectRef(rtype, rid), rel, ExpandOp.UNION, [tree])
        return tree

    def _rewrite(self, rtype: str, rid: str, rel: str, node: ir.Rewrite, depth: int) -> ExpandNode:
        obj = ObjectRef(rtype, rid)
        if isinstance(node, ir.This):
            return self._direct(rtype, rid, rel, depth)
        if isinstance(node, ir.ComputedUserset):
            return self.expand(rtype, rid, node.relation, depth + 1)
        if isinstance(node, ir.TupleToUserset):
            op = ExpandOp.INTERSECTION if node.mode == "all" else ExpandOp.UNION
            # as SpiceDB's: an object whose type lacks the arrow's relation is an empty leaf
            children = [
                self.expand(subject.type, subject.id, node.computed, depth + 1)
                if self.schema.relation(subject.type, node.computed) is not None
                else ExpandNode(obj, rel)
                for subject, _caveat in self._subjects(rtype, rid, node.tupleset)
                if subject.id != "*"
            ]
            return ExpandNode(obj, rel, op, children)
        if isinstance(node, ir.Union | ir.Intersection):
            op = ExpandOp.UNION if isinstance(node, ir.Union) else ExpandOp.INTERSECTION
            return ExpandNode(obj, rel, op, [self._rewrite(rtype, rid, rel, c, depth) for c in node.children])
        if isinstance(node, ir.Exclusion):
            base = self._rewrite(rtype, rid, rel, node.base, depth)
            subtract = self._rewrite(rtype, rid, rel, node.subtract, depth)
            return ExpandNode(obj, rel, ExpandOp.EXCLUSION, [base, subtract])
        return ExpandNode(obj, rel)

    def _subjects(
        self, rtype: str, rid: str, rel: str, leaf: bool = False
    ) -> list[tuple[SubjectRef, str | None]]:
        """Live direct subjects of `rtype:rid#rel`, sorted, with their caveat names; for a
        `leaf`, counted against the size bound before they are gathered."""
        key = (rtype, rid, rel)
        objects, usersets = self.index.objects.get(key, {}), self.index.usersets.get(key, {})
        if leaf:
            self._grow(len(objects) + len(usersets), rtype, rid, rel)
        found: list[tuple[SubjectRef, str | None]] = []
        for (stype, sid), meta in objects.items():
            if meta is None or meta.expires_at is None or meta.expires_at > self.now:
                found.append((SubjectRef(stype, sid), meta.caveat.name if meta and meta.caveat else None))
        for (stype, sid, srel), meta in usersets.items():
            if meta is None or meta.expires_at is None or meta.expires_at > self.now:
                found.append(
                    (SubjectRef(stype, sid, srel), meta.caveat.name if meta and meta.caveat else None)
                )
        found.sort(key=lambda pair: (pair[0].type, pair[0].id, pair[0].relation))
        return found

    def _direct(self, rtype: str, rid: str, rel: str, depth: int) -> ExpandNode:
        obj = ObjectRef(rtype, rid)
        pairs = self._subjects(rtype, rid, rel, leaf=True)
        leaf = ExpandNode(obj, rel, subjects=[s for s, _ in pairs], subject_caveats=[c for _, c in pairs])
        if not self.recursive:
            return leaf
        nested = [self.expand(s.type, s.id, s.relation, depth + 1) for s, _ in pairs if s.relation]
        if not nested:
            return leaf
        return ExpandNode(obj, rel, ExpandOp.UNION, [leaf, *nested])


@dataclass
class SubjectSet:
    """Subjects denoted by an expand tree: concrete subjects, and wildcards per type with the
    ids they exclude."""

    concrete: set[SubjectRef] = field(default_factory=set)
    wildcards: dict[str, set[str]] = field(default_factory=dict)

    def contains(self, subject: SubjectRef) -> bool:
        """True when `subject` is in the set, directly or through a wildcard."""
        if subject in self.concrete:
            return True
        if subject.relation:
            return False
        excluded = self.wildcards.get(subject.type)
        return excluded is not None and subject.id not in excluded

    def union(self, other: SubjectSet) -> SubjectSet:
        """Subjects in either set."""
        wildcards = {t: set(e) for t, e in self.wildcards.items()}
        for stype, excluded in other.wildcards.items():
            wildcards[stype] = wildcards[stype] & excluded if stype in wildcards else set(excluded)
        return SubjectSet(self.concrete | other.concrete, wildcards)._normalized()

    def intersect(self, other: SubjectSet) -> SubjectSet:
        """Subjects in both sets."""
        concrete = {s for s in self.concrete if other.contains(s)} | {
            s for s in other.concrete if self.contains(s)
        }
        wildcards = {
            stype: self.wildcards[stype] | other.wildcards[stype]
            for stype in self.wildcards.keys() & other.wildcards.keys()
        }
        return SubjectSet(concrete, wildcards)._normalized()

    def subtract(self, other: SubjectSet) -> SubjectSet:
        """Subjects in this set and not in `other`."""
        concrete = {s for s in self.concrete if not other.contains(s)}
        wildcards: dict[str, set[str]] = {}
        for stype, excluded in self.wildcards.items():
            if stype in other.wildcards:
                # (* - E1) - (* - E2) = E2 - E1, as concrete subjects
                concrete |= {SubjectRef(stype, i) for i in other.wildcards[stype] - excluded}
                continue
            wildcards[stype] = excluded | {s.id for s in other.concrete if s.type == stype and not s.relation}
        return SubjectSet(concrete, wildcards)._normalized()

    def _normalized(self) -> SubjectSet:
        # A concrete subject covered by its type's wildcard is still listed (SpiceDB lists both);
        # an excluded id that is also concrete is not excluded.
        for stype, excluded in self.wildcards.items():
            excluded -= {s.id for s in self.concrete if s.type == stype and not s.relation}
        return self


def evaluate(node: ExpandNode) -> SubjectSet:
    """The set of subjects an expand tree denotes."""
    if node.op is None:
        result = SubjectSet()
        for subject in node.subjects:
            if subject.id == "*" and not subject.relation:
                result.wildcards.setdefault(subject.type, set())
            else:
                result.concrete.add(subject)
        return result
    children = [evaluate(child) for child in node.children]
    if node.op is ExpandOp.UNION:
        result = SubjectSet()
        for child in children:
            result = result.union(child)
        return result
    if node.op is ExpandOp.INTERSECTION:
        if not children:
            return SubjectSet()
        result = children[0]
        for child in children[1:]:
            result = result.intersect(child)
        return result
    result = children[0]
    for child in children[1:]:
        result = result.subtract(child)
    return result
