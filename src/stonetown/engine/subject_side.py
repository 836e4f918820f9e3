"""Zanzibar Leopard's subject side for Check: for a plain subject, the objects it could be
granted on at all, kept on the head index's closures (engine/closure.py), so that a check
of an ancestor chain skips the levels where nothing could grant instead of probing the
index's million-entry forward maps on each (closure_check's ancestors).

- **holders** in a nested set (closure_graph.Graph.holders): the keys storing a subject set
  `team:n#member` of a team n the subject is in, directly or nested (its exact reach);
- the ids of a **union of stored relations** (:class:`Side`: the stored operands of a
  folder's `view`, or an organization's `view = member + admin`): the objects storing the
  subject under one of them, directly, by wildcard, or through a set among its holders;
- the ids of an **arrow** (:class:`ArrowSide`: `org->view` over plain objects to such a
  union): the objects whose tupleset points to one of the target's ids; an arrow from
  another object yields False without reading its tupleset;
- the ids of the **levels** of an ancestor chain (:class:`Levels`): those of the union's
  operands evaluated on each level.

Outside its ids, an evaluation yields False for the subject without a dispatch, a depth
error or a metadata read: exact where the subject's reach is (no relationship with metadata
leads to it), the nested set's graph has no edge with metadata (so a walk below any of its
sets meets unconditional edges only, at most `longest` hops) and the evaluation's depth
keeps that walk and an arrow's dispatches below the limit (asked at the deepest level).
The ids are kept per subject for later runs (closure.Closures.sides) until a write may
change them (closure.Closures.touched: the subject's own relationships drop its ids; a link
of an arrow whose ids are kept drops that arrow's; a subject set drops the ids of the
subjects below it, a wildcard those of its type, in the sites reading them), and bounded
(MAX_HOLDERS: beyond, none are kept and the levels are evaluated as before). Never with
OpenFGA's cycle handling (it has no nested-set shortcuts); an old revision or contextual
relationships have no closures.
"""

from __future__ import annotations

from collections.abc import Collection

from stonetown.engine.check import CheckRun, EvalFn, Member, Subject
from stonetown.engine.closure import MAX_WILD_SCAN, Closures
from stonetown.engine.closure_graph import MAX_HOLDERS, MAX_SIDES, Graph, GraphKey, Reach, ResourceKey

# a subject storing more relationships than this has its reach in a nested set built only
# when a run asks about a second set (a scan of them costs more than one walk down a chain)
SCAN_LIMIT = 64
# a reverse entry scanned for ids holds at most this many keys (beyond, none are kept)
MAX_SCAN = 16 * MAX_HOLDERS

_MISSING = object()
_EMPTY: dict[object, object] = {}


class NestedShape:
    """A nested set as its closure shortcut reads it: its graph, and the object and wildcard
    types it stores (hashed by identity: a key of each run's cache, see subject_side)."""

    __slots__ = ("key", "object_types", "wildcard_types")

    def __init__(self, key: GraphKey, object_types: frozenset[str], wildcard_types: frozenset[str]) -> None:
        self.key, self.object_types, self.wildcard_types = key, object_types, wildcard_types


def reach_of(
    run: CheckRun, graph: Graph, subj: Subject, object_types: frozenset[str], wildcard_types: frozenset[str]
) -> Reach:
    """The sets of `graph` holding the plain subject `subj` over unconditional edges, and
    whether no relationship with metadata could add to them."""
    rtype, rel = graph.rtype, graph.relation
    stype, sid = subj[0], subj[1]
    exact = True
    direct: list[str] = []
    keys: list[tuple[tuple[str, str, str], tuple[str, str]]] = []
    if stype in object_types:
        held = run.held if subj is run.held_subject else run.held_by(subj)
        keys.extend((key, (stype, sid)) for key in held if key[2] == rel and key[0] == rtype)
    if stype in wildcard_types:
        wild = run.reverse.get((stype, "*", ""), ())
        keys.extend((key, (stype, "*")) for key in wild if key[2] == rel and key[0] == rtype)
    for key, skey in keys:
        meta = run.objects.get(key, _EMPTY).get(skey, _MISSING)
        if meta is None:
            direct.append(key[1])
        elif meta is not _MISSING:
            exact = False
    nodes = set(direct)
    up = graph.up
    for node in direct:
        nodes.update(up.get(node, ()))
    if exact and graph.conditional:
        exact = graph.tainted().isdisjoint(nodes)
    return frozenset(nodes), exact


class _Site:
    """What an evaluation grants a plain subject through, as the ids of the objects it may
    grant it on (kept per subject on the closures). `needs`: the nested sets whose holders
    the ids read, each with how much deeper than the evaluation its sets are walked;
    `dispatches`: whether the evaluation dispatches at its own depth (an arrow); `links`: the
    arrows (resource type, tupleset, target type) whose links to plain targets the ids read;
    `wilds`: the (resource type, relation, subject type) whose wildcards the ids read; `graphs`:
    the keys of `needs` (closure.Closures.touched drops a subject's ids where a write changes
    what they read)."""

    __slots__ = ("needs", "dispatches", "links", "wilds", "graphs")

    def __init__(
        self,
        needs: dict[NestedShape, int],
        dispatches: bool,
        links: frozenset[tuple[str, str, str]] = frozenset(),
        wilds: frozenset[tuple[str, str, str]] = frozenset(),
    ) -> None:
        self.needs = tuple(needs.items())
        self.dispatches = dispatches
        self.links = links
        self.wilds = wilds
        self.graphs = frozenset(shape.key for shape in needs)

    def ids_of(self, run: CheckRun, subj: Subject, depth: int) -> frozenset[str] | None:
        """The ids of objects on which the evaluation may yield more than False for the plain
        `subj` at `depth`; None when not known."""
        closures = run.closure
        if closures is None:
            return None
        kept = closures.sides.get(self)
        if kept is None:
            kept = closures.sides[self] = {}
        entry = kept.get(subj)
        if entry is not None and depth + entry[1] < run.max_depth:
            # kept (by this run or an earlier one) where the holders read answered at a depth
            # this evaluation's are walked at too (what they depend on, the graphs' edges,
            # metadata and longest paths, changes only with a write that forgets the entry:
            # Closures.touched)
            return entry[0]
        if self.dispatches and depth >= run.max_depth:
            return None
        # (the holders read answer at the depth their sets are walked: then at every
        # depth above, too)
        for shape, deeper in self.needs:
            if usable_holders(run, shape, subj, depth + deeper) is None:
                return None
        if entry is None:
            self.register(closures.arrow_readers)  # before anything is kept
            found = self.build(run, subj, depth)
            if len(kept) >= MAX_SIDES:
                kept.clear()
            entry = kept[subj] = (found, self._reach(closures))
        return entry[0]

    def _reach(self, closures: Closures) -> int:
        """How much deeper than the evaluation the ids read: they answer at `depth` when
        `depth` plus this is below the depth limit (the conditions :meth:`ids_of` checks
        before it builds them, on graphs it found usable)."""
        reach = 0 if self.dispatches else -(1 << 30)  # (an arrow: below the limit itself)
        for shape, deeper in self.needs:
            graph = closures.graphs[shape.key]
            reach = max(reach, deeper + 1 + graph.longest)
        return reach

    def build(self, run: CheckRun, subj: Subject, depth: int) -> frozenset[str] | None:
        """The ids, read from the index and the holders (None beyond MAX_HOLDERS)."""
        raise NotImplementedError

    def register(self, readers: dict[tuple[str, str, str], set[object]]) -> None:
        """Add this site to `readers` (closure.Closures.arrow_readers) under each arrow
        (resource type, tupleset, target type) whose links to plain targets its ids read:
        such a link's write changes them for every subject."""
        for link in self.links:
            readers.setdefault(link, set()).add(self)


def _merged(sites: list[tuple[_Site, int]]) -> dict[NestedShape, int]:
    """The needs of `sites` (each evaluated that much deeper), each shape at its deepest."""
    needs: dict[NestedShape, int] = {}
    for site, deeper in sites:
        for shape, more in site.needs:
            needs[shape] = max(needs.get(shape, 0), deeper + more)
    return needs


class Side(_Site):
    """A union of stored relations of `rtype` (check_stored.compile_stored): relations looked
    up (relation, object types, wildcard types) and relations whose subject sets are nested
    sets (relation, their shapes)."""

    __slots__ = ("rtype", "direct", "sets")

    def __init__(
        self,
        rtype: str,
        direct: tuple[tuple[str, frozenset[str], frozenset[str]], ...],
        sets: tuple[tuple[str, tuple[NestedShape, ...]], ...],
    ) -> None:
        wilds = frozenset((rtype, rel, stype) for rel, _, types in direct for stype in types)
        super().__init__({shape: 0 for _, shapes in sets for shape in shapes}, False, wilds=wilds)
        self.rtype, self.direct, self.sets = rtype, direct, sets

    def build(self, run: CheckRun, subj: Subject, depth: int) -> frozenset[str] | None:
        stype, rtype = subj[0], self.rtype
        found: set[str] = set()
        rels = {rel for rel, object_types, _ in self.direct if stype in object_types}
        if rels:
            held = run.held if subj is run.held_subject else run.held_by(subj)
            found.update(k[1] for k in held if k[2] in rels and k[0] == rtype)
        if any(stype in wildcard_types for _, _, wildcard_types in self.direct):
            closures = run.closure
            assert closures is not None
            wild = closures.wild_sides.get((self, stype), _MISSING)
            if wild is _MISSING:
                wild = closures.wild_sides[(self, stype)] = self._wild(run, stype)
            if wild is None:
                return None
            found.update(wild)  # type: ignore[arg-type]
        for rel, shapes in self.sets:
            for shape in shapes:
                holders = usable_holders(run, shape, subj, depth)
                if holders is None:
                    return None
                found.update(k[1] for k in holders if k[2] == rel and k[0] == rtype)
        return frozenset(found) if len(found) <= MAX_HOLDERS else None

    def _wild(self, run: CheckRun, stype: str) -> frozenset[str] | None:
        """The ids storing the wildcard of `stype` under one of the relations looked up."""
        closures = run.closure
        assert closures is not None
        groups = closures.wild_groups.get(stype, _MISSING)
        if groups is _MISSING:
            groups = closures.wild_groups[stype] = wild_groups(run.reverse.get((stype, "*", ""), ()))
        if groups is None:
            return None
        found: set[str] = set()
        for rel, _, wildcard_types in self.direct:
            if stype in wildcard_types:
                ids = groups.get((self.rtype, rel), frozenset())
                if ids is None:
                    return None
                found.update(ids)
        return frozenset(found) if len(found) <= MAX_HOLDERS else None


def wild_groups(keys: Collection[ResourceKey]) -> dict[tuple[str, str], frozenset[str] | None] | None:
    """A wildcard's reverse entry (its resource keys) as the ids per (resource type,
    relation), None for a group of more than MAX_HOLDERS; None beyond MAX_WILD_SCAN keys."""
    if len(keys) > MAX_WILD_SCAN:
        return None
    groups: dict[tuple[str, str], set[str] | None] = {}
    for rtype, rid, rel in keys:
        if (rtype, rel) not in groups:
            groups[(rtype, rel)] = {rid}
            continue
        group = groups[(rtype, rel)]
        if group is not None:
            group.add(rid)
            if len(group) > MAX_HOLDERS:
                groups[(rtype, rel)] = None
    return {key: None if ids is None else frozenset(ids) for key, ids in groups.items()}


class ArrowSide(_Site):
    """The arrow `rtype#tupleset->computed` over plain objects, each target type's
    `computed` a union of stored relations (its :class:`Side`) that no cycle reaches.

    Outside its ids, the arrow yields False: a target outside the target's ids stores the
    subject under none of the union's relations, directly or by wildcard, and none of its
    subject sets holds it (its holders answer, at the target's depth); its evaluation
    dispatches nothing and yields False, as does the arrow (an edge's metadata cannot turn
    False into more)."""

    __slots__ = ("rtype", "tupleset", "targets")

    def __init__(self, rtype: str, tupleset: str, targets: dict[str, Side]) -> None:
        # dispatches at its depth, the targets evaluated one deeper
        links = frozenset((rtype, tupleset, target_type) for target_type in targets)
        wilds = frozenset().union(*(side.wilds for side in targets.values()))
        super().__init__(_merged([(side, 1) for side in targets.values()]), True, links, wilds)
        self.rtype, self.tupleset, self.targets = rtype, tupleset, targets

    def build(self, run: CheckRun, subj: Subject, depth: int) -> frozenset[str] | None:
        reverse, rtype, tupleset = run.reverse, self.rtype, self.tupleset
        found: set[str] = set()
        for target_type, side in self.targets.items():
            targets = side.ids_of(run, subj, depth + 1)
            if targets is None:
                return None
            for target in targets:
                pointing = reverse.get((target_type, target, ""), ())
                if len(pointing) > MAX_SCAN:
                    return None
                found.update(k[1] for k in pointing if k[2] == tupleset and k[0] == rtype)
                if len(found) > MAX_HOLDERS:
                    return None
        return frozenset(found)


class Levels(_Site):
    """The operands of a union evaluated on each level of an ancestor chain (`parts`): their
    ids together, one set to ask per chain."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[_Site, ...]) -> None:
        super().__init__(
            _merged([(part, 0) for part in parts]),
            any(part.dispatches for part in parts),
            frozenset().union(*(part.links for part in parts)),
            frozenset().union(*(part.wilds for part in parts)),
        )
        self.parts = parts

    def build(self, run: CheckRun, subj: Subject, depth: int) -> frozenset[str] | None:
        found: set[str] = set()
        for part in self.parts:
            ids = part.ids_of(run, subj, depth)
            if ids is None:
                return None
            found.update(ids)
        return frozenset(found)


class Nothing(_Site):
    """An evaluation that grants a plain subject nothing (a union of no operands)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__({}, False)

    def ids_of(self, run: CheckRun, subj: Subject, depth: int) -> frozenset[str] | None:
        return frozenset()


NOTHING = Nothing()


def level_sides(operands: tuple[EvalFn, ...]) -> Levels | None:
    """The :class:`Levels` of `operands` (compiled evaluations), when each has a side."""
    parts = tuple(getattr(operand, "side", None) for operand in operands)
    if not all(isinstance(part, _Site) for part in parts):
        return None
    return Levels(parts)  # type: ignore[arg-type]


def arrow_side(rtype: str, tupleset: str, sides: dict[str, object]) -> ArrowSide | None:
    """The :class:`ArrowSide` of the arrow `rtype#tupleset->...` whose targets, per type,
    evaluate as `sides` (each a :class:`Side`, or the arrow has none: None)."""
    if not sides or not all(isinstance(side, Side) for side in sides.values()):
        return None
    return ArrowSide(rtype, tupleset, sides)  # type: ignore[arg-type]


def usable_holders(
    run: CheckRun, shape: NestedShape, subj: Subject, depth: int
) -> frozenset[ResourceKey] | None:
    """The holders of the plain `subj` in the nested set `shape` (built and kept on first
    use), when they answer a walk of subject sets at `depth` exactly; else None."""
    if subj is run.side_subject:
        seen = run.side_holders.get(shape)
        if seen is not None:  # (no write happens during a run: the graph is as it was)
            return seen[0] if depth + 1 + seen[1] < run.max_depth else None
    else:
        run.side_subject, run.side_holders = subj, {}
    closures = run.closure
    assert closures is not None
    key = shape.key
    graph = closures.graphs.get(key) or closures.graph(key)
    # edges with metadata: the walk below a set may meet one (a caveat, a deeper path)
    if graph is None or graph.conditional or depth + 1 + graph.longest >= run.max_depth:
        return None
    holders = graph.holders.get(subj, _MISSING)
    if holders is _MISSING:
        reach = graph.reaches.get(subj)
        if reach is None:
            held = run.held if subj is run.held_subject else run.held_by(subj)
            if len(held) > SCAN_LIMIT:
                return None  # (its reach is scanned once the member shortcut asks for it)
            reach = graph.remember(subj, reach_of(run, graph, subj, shape.object_types, shape.wildcard_types))
        holders = graph.keep_holders(subj, reach[0] if reach[1] else None)
    if holders is not None:
        run.side_holders[shape] = (holders, graph.longest)  # type: ignore[assignment]
    return holders  # type: ignore[return-value]


def shapes_of(
    userset_types: frozenset[tuple[str, str]], members: dict[tuple[str, str], Member] | None
) -> tuple[NestedShape, ...] | None:
    """The shapes of the nested sets `userset_types` when each is answered from its closure
    (`members`, see closure_check.member_shortcut), or none at all; else None."""
    if not userset_types:
        return ()
    if not members or any(t not in members for t in userset_types):
        return None
    return tuple(members[t].shape for t in sorted(userset_types))
