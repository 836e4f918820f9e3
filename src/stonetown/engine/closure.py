"""Transitive closures of recursive sets, kept up to date with the index (Zanzibar's Leopard).

Two kinds of relationship lead from an object to another object of the same type, and a walk
follows chains of them one dispatch per hop:

- a **set** edge stores a subject set of the relation itself, `team:a#member@team:b#member`
  (team b nested in team a): the graph (``SET``, "team", "member") has the edge b -> a;
- an **arrow** edge stores a plain object of the resource's own type, `folder:x#parent@folder:y`
  (the tupleset of a `parent->view` arrow): the graph (``ARROW``, "folder", "parent") has the
  edge x -> y.

For each graph a check uses, :class:`Graph` (engine/closure_graph.py) keeps `up[x]`: every node
reachable from x over *unconditional* edges (neither caveat nor expiration), nearest first: the
teams a team is transitively nested in, the ancestors of a folder. A nested membership is then
one set lookup, a folder's ancestors one loop. Edges with metadata never enter a closure; the
check code falls back to the ordinary walk wherever one could matter (see :meth:`Graph.tainted`
and :meth:`Graph.covered`), so answers are exactly the walk's.

Consistency: the head :class:`~stonetown.engine.index.RelationshipIndex` owns one
:class:`Closures` and tells it of every change to a self edge in the same synchronous call
that changes the index, and evaluation never awaits: a check sees closures of exactly its
revision. Older revisions (:mod:`stonetown.engine.store_snapshot`) and per-request overlays
(contextual relationships) have none and always walk.

When it pays: a graph is built only once a compiled schema asks for it (the first check that
needs it, or :meth:`Closures.prepare` at load), and only nodes with an unconditional edge
have an entry (a tuple of their reachable nodes, sharing the index's interned strings). A
graph whose closures grow past :data:`MAX_REACH` nodes (or :data:`MEAN_REACH` on average),
or where one write would touch more than :data:`MAX_AFFECTED` nodes, is given up (dropped,
walked as before) until the index is rebuilt: bounded memory and work per write, whatever
the data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from stonetown.engine.closure_drops import MAX_DROPPED, drop, members_below
from stonetown.engine.closure_graph import (
    ARROW,
    MAX_HOLDERS,
    MAX_REACHES,
    SET,
    GiveUp,
    Graph,
    GraphKey,
    Maps,
    ResourceKey,
)

if TYPE_CHECKING:
    from stonetown.engine.index import RelationshipIndex

# a wildcard's reverse entry grouped by (resource type, relation) holds at most this many keys:
# it mixes every relation storing the wildcard (a million documents' `viewer: user:*` beside
# the folders' none), scanned when first asked (5-10 ms at the bound); a wildcard's write
# updates its group in place (Closures.touched)
MAX_WILD_SCAN = 256 * MAX_HOLDERS
# resource keys the held sets (Closures.held, at most MAX_REACHES subjects) hold together at
# most; beyond, they start afresh (measured at 1M: ~70 B a key with the sets' own, so ~2.3 MB)
MAX_HELD_KEYS = 32_768


class Closures:
    """The closures of one index (its head revision), built on demand per graph, and what
    plain subjects are kept to reach through them (engine/subject_side.py)."""

    __slots__ = (
        "_index",
        "graphs",
        "given_up",
        "sides",
        "wild_sides",
        "wild_groups",
        "arrow_readers",
        "held",
        "held_keys",
    )

    def __init__(self, index: RelationshipIndex) -> None:
        self._index = Maps(index)
        self.graphs: dict[GraphKey, Graph] = {}
        self.given_up: set[GraphKey] = set()
        # a compiled union of stored relations or arrow (subject_side.Side, ArrowSide) ->
        # plain subject -> (the ids of objects it may be granted on there, None when too many;
        # how much deeper than the evaluation they read, see subject_side._Site.ids_of)
        self.sides: dict[object, dict[tuple[str, str, str], tuple[frozenset[str] | None, int]]] = {}
        # (side, subject type) -> the ids its wildcard of that type is stored on: the same for
        # every subject of the type, so kept apart (a subject's side is read again after most
        # writes; this scan only after a wildcard's)
        self.wild_sides: dict[tuple[object, str], frozenset[str] | None] = {}
        # subject type -> (resource type, relation) -> the ids its wildcard is stored on there
        # (None when too many), or None when the wildcard's entry is too long to group: one
        # scan of it when first asked, shared by every side (subject_side.wild_groups), then
        # kept in step by each write of the wildcard (touched)
        self.wild_groups: dict[str, dict[tuple[str, str], frozenset[str] | None] | None] = {}
        # (resource type, tupleset, target type) of an arrow over plain objects -> the sites
        # whose ids read where it points (subject_side.ArrowSide, and the Levels holding one):
        # a relationship `resource#tupleset@target:id` changes them for every subject
        self.arrow_readers: dict[tuple[str, str, str], set[object]] = {}
        # plain subject -> its reverse entry as a set (the resource keys storing it directly),
        # kept for its next checks (see keep_held), until a relationship storing it changes
        # (touched); held_keys: the keys they hold together
        self.held: dict[tuple[str, str, str], frozenset[ResourceKey]] = {}
        self.held_keys = 0

    def keep_held(self, subject: tuple[str, str, str]) -> frozenset[ResourceKey] | tuple[ResourceKey, ...]:
        """The resource keys storing the plain `subject` directly (its reverse entry), as a
        set kept for its next checks: a test of one is a hash probe of a small set made by
        this subject's checks, in place of a probe of the big reverse map and a scan of the
        entry's key tuples and id strings (cold at 10M relationships). An entry of more than
        :data:`MAX_HOLDERS` keys (a dict already), or a wildcard's, is given as it is, not kept."""
        entry = self._index.reverse.get(subject, ())
        if len(entry) > MAX_HOLDERS or subject[1] == "*" or subject[2]:
            return entry  # type: ignore[return-value]  (a wildcard's write forgets no held set)
        held = self.held
        if len(held) >= MAX_REACHES or self.held_keys + len(entry) > MAX_HELD_KEYS:
            held.clear()
            self.held_keys = 0
        found = held[subject] = frozenset(entry)
        self.held_keys += len(found)
        return found

    def graph(self, key: GraphKey) -> Graph | None:
        """The closures of `key`, built now if not yet kept; None when given up."""
        found = self.graphs.get(key)
        if found is None and key not in self.given_up:
            found = Graph(self._index, key)
            try:
                found.build()
            except GiveUp:
                self.given_up.add(key)
                return None
            self.graphs[key] = found
        return found

    def prepare(self, keys: Iterable[GraphKey]) -> None:
        """Build the graphs `keys` now (at load: the first checks do not pay for it)."""
        for key in keys:
            self.graph(key)

    def changed(self, rtype: str, rid: str, relation: str, sid: str, srel: str) -> None:
        """A relationship from `rtype:rid#relation` to an object of its own type was written
        or deleted (called by the index after the change)."""
        if srel:
            if srel != relation:
                return
            key, source, target = (SET, rtype, relation), sid, rid
        else:
            key, source, target = (ARROW, rtype, relation), rid, sid
            if sid == "*":
                return
        graph = self.graphs.get(key)
        if graph is None:
            return
        longest, plain = graph.longest, not graph.conditional
        try:
            graph.changed(source, target)
        except GiveUp:
            del self.graphs[key]
            self.given_up.add(key)
            self._drop_sites(key)  # (its holders go with it: nothing kept may read them)
            return
        if key[0] == SET and (graph.longest > longest or (plain and graph.conditional)):
            # the kept ids' depth margins, and their premise that no edge of the graph has
            # metadata, read the whole graph (subject_side._Site.ids_of): not one subject's
            self._drop_sites(key)

    def touched(self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str) -> None:
        """A relationship `rtype:rid#relation@stype:sid#srel` was written, deleted, or given
        another caveat or expiration (called by the index after every such change; `changed`
        first). What is kept per plain subject s, and what it is read from:

        - the reach of s in a nested set `t#r` (:attr:`Graph.reaches`): the relationships of
          `t#r` storing s itself (and whether each has metadata), those storing its type's
          wildcard, and the graph's set edges (closures, edges with metadata);
        - the holders of s there (:attr:`Graph.holders`): its reach, and the reverse entries
          of the subject sets `t:n#r` of the nodes n of it (relationships storing them);
        - the resource keys storing s directly (:attr:`held`): its reverse entry;
        - the ids of s for a site (:attr:`sides`, engine/subject_side.py): the relationships
          storing s itself, its type's wildcard ids (:attr:`wild_sides`, from
          :attr:`wild_groups`: a wildcard's reverse entry), its holders in the site's nested
          sets (with each graph's edges with metadata and longest path, which the entry's
          depth margin records), and for an arrow (`ArrowSide`, and the `Levels` holding one)
          the objects pointing over its tupleset to a target it may be granted on: the
          reverse entries of plain objects of the target type.

        So a change naming a **plain subject** (no relation, not a wildcard) is read only by
        that subject's own reach in `rtype#relation`'s nested set, its holders there and its
        own ids; and, when `rtype#relation` is an arrow's tupleset to objects of `stype`, by
        that arrow's ids for every subject (:attr:`arrow_readers`). Only those go. Every other
        subject's reach, holders and ids read neither the changed bucket nor `stype:sid`'s
        reverse entry (a plain relationship is no set edge: the graphs it changes, an
        ancestor arrow's, are read afresh by every check, never kept per subject).

        A **subject set** `stype:sid#srel` is read by the reach and holders of the subjects
        whose reach in `stype#srel`'s nested set holds sid (that set's reverse entry, and its
        edges when the write is one of them: :meth:`Closures.changed` moves only closures
        below sid), and by those subjects' ids in the sites reading those holders: exactly
        the plain subjects stored on sid or on a set with a path to it (closure_drops.members_below),
        or of a type whose wildcard is stored there. Those go, each alone; where they are
        more than :data:`MAX_DROPPED`, every subject's (of that nested set and those sites).
        A set edge that makes a longer path or the graph's first edge with metadata drops
        the sites reading it whole (:meth:`changed`). A **wildcard** of `stype` is read by
        every subject of `stype`: its reach in `rtype#relation`'s nested set, and its ids in
        the sites reading that set or that wildcard (`wilds` of a site), and those sites'
        kept wildcard ids, go; the wildcard's group for `rtype#relation` takes rid or loses
        it (:attr:`wild_groups`: the others stay). Other types' subjects stay."""
        if not srel and sid != "*":
            subject = (stype, sid, "")
            if self.held:
                gone = self.held.pop(subject, None)
                if gone is not None:
                    self.held_keys -= len(gone)
            graph = self.graphs.get((SET, rtype, relation))
            if graph is not None:
                graph.forget(subject)
            sides = self.sides
            if sides:
                readers = self.arrow_readers.get((rtype, relation, stype))
                if readers:
                    for site in readers:
                        sides.pop(site, None)
                for kept in sides.values():
                    kept.pop(subject, None)
            return
        if srel:
            self._set_written(rtype, relation, stype, sid, srel)
        else:
            self._wildcard_written(rtype, rid, relation, stype)

    def _set_written(self, rtype: str, relation: str, stype: str, sid: str, srel: str) -> None:
        """`touched` for the subject set `stype:sid#srel` stored on `rtype:x#relation`."""
        own = (SET, rtype, relation)
        if (stype, srel) != (rtype, relation) and own in self.graphs:
            # (a nested set stores no other subject set, the schema says so: never taken)
            self._drop_graph(own)
        key = (SET, stype, srel)
        graph = self.graphs.get(key)
        if graph is None:
            # no holders of an unclosed set are kept, nor ids reading them (a site needs its
            # graph built; a given-up one took its sites with it: `changed`)
            return
        below = members_below(self._index, graph.rtype, graph.relation, sid, MAX_DROPPED)
        if below is None:
            self._drop_graph(key)
            return
        subjects, wild_types = below
        if not subjects and not wild_types:
            return
        drop(graph.reaches, subjects, wild_types)
        drop(graph.holders, subjects, wild_types)
        for site, kept in self.sides.items():
            if kept and key in site.graphs:  # type: ignore[attr-defined]
                drop(kept, subjects, wild_types)

    def _wildcard_written(self, rtype: str, rid: str, relation: str, stype: str) -> None:
        """`touched` for the wildcard of `stype` stored on `rtype:rid#relation`."""
        types, wild = frozenset((stype,)), (rtype, relation, stype)
        key = (SET, rtype, relation)
        graph = self.graphs.get(key)
        if graph is not None:
            drop(graph.reaches, frozenset(), types)
            drop(graph.holders, frozenset(), types)
        groups = self.wild_groups.get(stype)
        if groups is None or len(self._index.reverse.get((stype, "*", ""), ())) > MAX_WILD_SCAN:
            self.wild_groups.pop(stype, None)  # (a scan of a long entry stops at its length)
        else:
            # the group as a scan of the wildcard's reverse entry finds it, or None (too many,
            # then: kept, though a delete may leave it fewer, as "not known" reads it)
            group = groups.get((rtype, relation), frozenset())
            if group is not None:
                if (stype, "*") in self._index.objects.get((rtype, rid, relation), ()):
                    group = group | {rid}
                else:
                    group = group - {rid}
                groups[(rtype, relation)] = group if len(group) <= MAX_HOLDERS else None
        for site in [site for site, t in self.wild_sides if t == stype and wild in site.wilds]:  # type: ignore[attr-defined]
            del self.wild_sides[(site, stype)]
        for site, kept in self.sides.items():
            if kept and (wild in site.wilds or key in site.graphs):  # type: ignore[attr-defined]
                drop(kept, frozenset(), types)

    def _drop_graph(self, key: GraphKey) -> None:
        """Forget every subject's reach and holders in the nested set `key`, and every
        subject's ids in the sites reading them."""
        graph = self.graphs[key]
        graph.forget_reaches()
        graph.holders.clear()
        self._drop_sites(key)

    def _drop_sites(self, key: GraphKey) -> None:
        """Forget every subject's ids in the sites reading holders of the nested set `key`
        (each registers again before it keeps anything)."""
        for site in [site for site in self.sides if key in site.graphs]:  # type: ignore[attr-defined]
            del self.sides[site]

    def forget_reaches(self) -> int:
        """Forget what is kept per subject (the server is idle: rebuilt on demand): every
        graph's reaches and holders, the sides' ids; how many graphs or sides kept any."""
        kept = [graph for graph in self.graphs.values() if graph.reaches or graph.holders]
        for graph in kept:
            graph.forget_reaches()
            graph.holders.clear()
        sides = len(self.sides) + len(self.wild_sides) + len(self.wild_groups) + bool(self.held)
        self.sides.clear()
        self.held.clear()
        self.held_keys = 0
        # the sites registered go with the sides they index: a schema replaced leaves none
        # of its sites behind (each registers again before it keeps anything)
        self.arrow_readers.clear()
        self.wild_sides.clear()
        self.wild_groups.clear()
        return len(kept) + sides

    def nbytes(self) -> int:
        """The memory the closures take (dict slots, tuples; the strings belong to the index)."""
        import sys

        total = 0
        for graph in self.graphs.values():
            total += sys.getsizeof(graph.up) + sum(sys.getsizeof(t) for t in graph.up.values())
            total += sys.getsizeof(graph.conditional)
            total += sys.getsizeof(graph.holders) + sum(sys.getsizeof(k) for k in graph.holders.values())
        total += sys.getsizeof(self.wild_sides) + sum(sys.getsizeof(k) for k in self.wild_sides.values())
        total += sys.getsizeof(self.wild_groups)
        for groups in self.wild_groups.values():
            if groups is not None:
                total += sys.getsizeof(groups) + sum(sys.getsizeof(ids) for ids in groups.values())
        for kept in self.sides.values():
            total += sys.getsizeof(kept) + sum(sys.getsizeof(k) + sys.getsizeof(k[0]) for k in kept.values())
        total += sys.getsizeof(self.held) + sum(sys.getsizeof(keys) for keys in self.held.values())
        return total
