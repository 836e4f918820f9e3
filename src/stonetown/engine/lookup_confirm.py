"""Confirming LookupResources candidates from the walk's sets instead of a Check each.

The LookupResources walk (lookup_resources.py) ends with the nodes it *proved* (reached along
union-only edges over relationships without caveat or expiration: Check answers True for
each) and candidates it could not prove: reached through an exclusion's base, an
intersection, an `all` arrow, a caveat. For a candidate `type:id#permission` the
:class:`Confirmer` evaluates the permission's rewrite once more, one level only, against
those sets:
- a computed relation, or an `any` arrow over a relationship without caveat or expiration,
  holds when its node is proven;
- a union holds when one side does, an intersection when every side does;
- an exclusion holds when its base does and the subject certainly does not hold the
  subtracted side: the subtracted relation's node is not among the nodes a plain walk up from
  the subject to that relation reaches (one walk per subtracted relation and lookup, the set
  of every object where the subject may hold it), and the subtracted relation cannot lead back
  to the permission (so Check's evaluation of it meets no cycle through the exclusion and
  answers exactly False).
A candidate that holds is answered True (what Check answers); any other is left to Check,
which settles caveats, expirations, intersections and exclusions exactly as before.

The walk asks while it climbs, too, naming the edge that reached a node from a proven one (a
computed relation, or an arrow over a relationship without caveat or expiration): the node
then holds when the exclusions between that edge and the permission (through unions,
exclusions' bases and computed permissions followed inline) all hold; a proven node is climbed
from, so exclusions at every level of a tree are proven level after level.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator

from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.cooperative import Pause
from stonetown.engine.index import RelationshipIndex
from stonetown.schema import ir
from stonetown.schema.graphs import strongly_connected_components

Node = tuple[str, str, str]
# (resource id) -> whether the candidate certainly holds
Holds = Callable[[str], bool]
# an edge into a permission: ("computed", relation) or ("arrow", tupleset, computed relation)
Leaf = tuple[str, ...]
# (type, relation) -> the walk up from the subject to it: every node it reaches
Walk = Callable[[str, str], Generator[Pause, None, set[Node]]]

_COMPONENTS: weakref.WeakKeyDictionary[CompiledSchema, dict[tuple[str, str], int]] = (
    weakref.WeakKeyDictionary()
)


class Confirmer:
    """Candidates of one lookup proved from its sets (module docstring); built per lookup."""

    def __init__(
        self,
        compiled: CompiledSchema,
        admits: set[tuple[str, str, str, str, bool]],
        index: RelationshipIndex,
        proven: set[Node],
        walk: Walk,
    ) -> None:
        self.schema = compiled.schema
        self.admits = admits
        self.index = index
        self.proven = proven
        self.walk = walk
        components = _COMPONENTS.get(compiled)
        if components is None:
            components = _COMPONENTS[compiled] = strongly_connected_components(compiled.graph)
        self.components = components
        # (type, relation) -> every node of it the subject may hold (see module docstring)
        self._may_hold: dict[tuple[str, str], set[Node]] = {}
        self._compiled: dict[tuple[str, str], Holds | None] = {}
        # (type, permission) -> {edge into it: the test that proves it over that edge}
        self._guards: dict[tuple[str, str], dict[Leaf, Holds]] = {}

    def prepare(self, rtype: str, permission: str) -> Generator[Pause, None, None]:
        """Make :meth:`prover` able to prove `rtype#permission`: compile its test and run the
        walks its subtracted sides need (as cooperative steps)."""
        key = (rtype, permission)
        if key in self._compiled:
            return
        needed: list[tuple[str, str]] = []
        relation = self.schema.relation(rtype, permission)
        test = None if relation is None else self._compile(rtype, permission, relation.rewrite, needed)
        chains: dict[Leaf, list[tuple[Holds, ...]]] = {}
        if relation is not None:
            self._leaves(rtype, permission, relation.rewrite, (), needed, chains, frozenset((permission,)))
        for wanted in needed:
            if wanted not in self._may_hold:
                self._may_hold[wanted] = yield from self.walk(*wanted)
        # a subtracted relation the walk found nowhere cannot hold: its test is always True
        # and drops out of the chain (the test asked once per node the walk climbs to)
        self._guards[key] = {
            leaf: _any([_all([t for t in chain if not self._vacuous(t)]) for chain in found])
            for leaf, found in chains.items()
        }
        self._compiled[key] = test

    def _vacuous(self, test: Holds) -> bool:
        """Whether `test` is a subtracted relation's (see _absent) whose walk found nothing."""
        reads = getattr(test, "reads", None)
        return reads is not None and not self._may_hold[reads]

    def ready(self, rtype: str, permission: str) -> bool:
        """Whether :meth:`prepare` ran for `rtype#permission`."""
        return (rtype, permission) in self._compiled

    def prover(self, rtype: str, permission: str, edge: Leaf | None = None) -> Holds:
        """The test whether the subject certainly holds an `rtype#permission` node that is
        not proven (Check answers True), to be kept and asked for many nodes; it never holds
        when :meth:`prepare` was not run for it. `edge`: how the walk reached the node from a
        proven one (a computed relation, or an arrow over a relationship without caveat or
        expiration), so the exclusions above that edge are enough to test. The test is
        :data:`always` (the caller need not ask it) where nothing above that edge can fail."""
        guard = None if edge is None else self._guards.get((rtype, permission), _NO_GUARDS).get(edge)
        tests = [test for test in (guard, self._compiled.get((rtype, permission))) if test is not None]
        return _any(tests) if tests else never

    def _compile(
        self, rtype: str, permission: str, node: ir.Rewrite, needed: list[tuple[str, str]]
    ) -> Holds | None:
        """A test of `node` on an object of `rtype`; None where it can never prove. `needed`
        collects the relations whose walks the test reads."""
        proven = self.proven
        if isinstance(node, ir.ComputedUserset):
            relation = node.relation
            return lambda rid: (rtype, rid, relation) in proven
        if isinstance(node, ir.TupleToUserset):
            if node.mode != "any":
                return None
            return self._arrow(rtype, node)
        if isinstance(node, ir.Union | ir.Intersection):
            tests = [self._compile(rtype, permission, child, needed) for child in node.children]
            known = [t for t in tests if t is not None]
            if isinstance(node, ir.Union):
                return _any(known) if known else None
            return _all(known) if len(known) == len(tests) else None
        if isinstance(node, ir.Exclusion):
            base = self._compile(rtype, permission, node.base, needed)
            absent = self._absent(rtype, permission, node.subtract, needed)
            if base is None or absent is None:
                return None
            return lambda rid: base(rid) and absent(rid)
        return None  # This (a relation's own relationships are proven by the walk), Nil

    def _leaves(
        self,
        rtype: str,
        owner: str,
        node: ir.Rewrite,
        guards: tuple[Holds, ...],
        needed: list[tuple[str, str]],
        found: dict[Leaf, list[tuple[Holds, ...]]],
        seen: frozenset[str],
    ) -> None:
        """Collect in `found` the edges (computed relations, `any` arrows) under `node`, the
        rewrite of `owner`, reached through unions and exclusions' bases only (computed
        permissions followed inline), each with the tests of the subtracted sides above it."""
        if isinstance(node, ir.ComputedUserset):
            found.setdefault(("computed", node.relation), []).append(guards)
            target = self.schema.relation(rtype, node.relation)
            if target is not None and target.is_permission and node.relation not in seen:
                inner = seen | {node.relation}
                self._leaves(rtype, node.relation, target.rewrite, guards, needed, found, inner)
        elif isinstance(node, ir.TupleToUserset):
            if node.mode == "any":
                found.setdefault(("arrow", node.tupleset, node.computed), []).append(guards)
        elif isinstance(node, ir.Union):
            for child in node.children:
                self._leaves(rtype, owner, child, guards, needed, found, seen)
        elif isinstance(node, ir.Exclusion):
            absent = self._absent(rtype, owner, node.subtract, needed)
            if absent is not None:
                self._leaves(rtype, owner, node.base, (*guards, absent), needed, found, seen)

    def _arrow(self, rtype: str, node: ir.TupleToUserset) -> Holds:
        objects, proven, admits = self.index.objects, self.proven, self.admits
        tupleset, computed = node.tupleset, node.computed

        def arrow(rid: str) -> bool:
            bucket = objects.get((rtype, rid, tupleset))
            if not bucket:
                return False
            for (st, sid), meta in bucket.items():
                if meta is None and (st, sid, computed) in proven:
                    if (rtype, tupleset, st, "", False) in admits:
                        return True
            return False

        return arrow

    def _absent(
        self, rtype: str, permission: str, node: ir.Rewrite, needed: list[tuple[str, str]]
    ) -> Holds | None:
        """A test that the subject certainly does not hold `node` (Check answers False);
        None where only Check can tell."""
        own = self.components.get((rtype, permission))
        if isinstance(node, ir.ComputedUserset):
            if own is None or self.components.get((rtype, node.relation)) == own:
                return None  # it may lead back to the permission: a cycle Check settles
            relation = node.relation
            needed.append((rtype, relation))
            may_hold = self._may_hold
            absent = lambda rid: (rtype, rid, relation) not in may_hold[(rtype, relation)]  # noqa: E731
            absent.reads = (rtype, relation)  # type: ignore[attr-defined]  # (see _vacuous)
            return absent
        if isinstance(node, ir.TupleToUserset):
            return self._absent_arrow(rtype, permission, node, needed)
        if isinstance(node, ir.Union):
            tests = [self._absent(rtype, permission, child, needed) for child in node.children]
            if any(t is None for t in tests):
                return None
            return _all(tests)  # type: ignore[arg-type]
        if isinstance(node, ir.Nil):
            return lambda rid: True
        return None

    def _absent_arrow(
        self, rtype: str, permission: str, node: ir.TupleToUserset, needed: list[tuple[str, str]]
    ) -> Holds | None:
        own = self.components.get((rtype, permission))
        tupleset = self.schema.relation(rtype, node.tupleset)
        if own is None or tupleset is None:
            return None
        computed = node.computed
        types = {a.type for a in tupleset.allowed if not a.wildcard}
        types = {t for t in types if self.schema.relation(t, computed) is not None}
        if any(self.components.get((t, computed)) == own for t in types):
            return None
        needed.extend((t, computed) for t in types)
        objects, usersets, may_hold = self.index.objects, self.index.usersets, self._may_hold
        key_of = node.tupleset

        def absent(rid: str) -> bool:
            # every target the tupleset names, caveated or not, must be one the subject
            # cannot hold `computed` on
            key = (rtype, rid, key_of)
            targets = list(objects.get(key, ()))
            targets += [(st, sid) for st, sid, _ in usersets.get(key, ())]
            return all(
                sid == "*" or st not in types or (st, sid, computed) not in may_hold[(st, computed)]
                for st, sid in targets
            )

        return absent


def _any(tests: list[Holds]) -> Holds:
    """A test that holds when one of `tests` does (in order, the first that holds ends it)."""
    if always in tests:
        return always
    if len(tests) == 1:
        return tests[0]

    def union(rid: str) -> bool:
        for test in tests:
            if test(rid):
                return True
        return False

    return union


def _all(tests: list[Holds]) -> Holds:
    """A test that holds when every one of `tests` does (:data:`always` when there is none)."""
    if not tests:
        return always
    if len(tests) == 1:
        return tests[0]

    def every(rid: str) -> bool:
        for test in tests:
            if not test(rid):
                return False
        return True

    return every


def never(rid: str) -> bool:
    """The test of a node nothing can prove."""
    return False


def always(rid: str) -> bool:
    """The test of an edge with no exclusion above it (or none that can fail)."""
    return True


_NO_GUARDS: dict[Leaf, Holds] = {}
