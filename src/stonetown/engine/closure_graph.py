"""One recursive set's transitive closures (engine/closure.py's :class:`Graph`): a nested
set's (team in team) or an ancestor arrow's (folder in folder), built from the head index's
maps, moved by each write of one of its edges, and what it keeps per plain subject (reach,
holders) for the checks; with the bounds that give a graph up or start what it keeps afresh."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stonetown.engine.index import RelationshipIndex

SET = "set"
ARROW = "arrow"
GraphKey = tuple[str, str, str]  # (SET or ARROW, object type, relation)

# a node's closure beyond this many nodes gives the graph up (memory: 8 bytes a node)
MAX_REACH = 256
# closures holding more than this many nodes on average give the graph up (dense graphs:
# a closure would cost more memory than it saves walking)
MEAN_REACH = 32
# one write re-closing more nodes than this gives the graph up (bounded work per write)
MAX_AFFECTED = 20_000

# subjects whose reach a graph keeps at most (see Graph.remember); beyond, it starts afresh
MAX_REACHES = 4096
# resource keys a subject's holders, or ids a subject's side (engine/subject_side.py), may
# count; beyond, none are kept for it and its checks walk as before (memory: 8-16 B an entry)
MAX_HOLDERS = 256
# subjects whose holders a graph, or whose ids a side, keeps at most; beyond, it starts afresh
# (at most ~4 MB a graph or side, typically ~1-2 KB a subject for all of them)
MAX_SIDES = 1024

_ABSENT = object()

# the reach of a plain subject in a nested set (closure_check): the sets holding it over
# unconditional edges, directly or nested, and whether that is all (no metadata on the way)
Reach = tuple[frozenset[str], bool]
ResourceKey = tuple[str, str, str]


class GiveUp(Exception):
    """A graph outgrew its bounds: it is dropped and walked as before."""


class Graph:
    """The closure of one kind of self edge (see the module docstring) over unconditional
    edges, read from and kept in step with `index`."""

    __slots__ = (
        "kind",
        "rtype",
        "relation",
        "up",
        "size",
        "conditional",
        "longest",
        "_index",
        "_covered",
        "_tainted",
        "reaches",
        "holders",
        "_reach_values",
    )

    def __init__(self, index: Maps, key: GraphKey) -> None:
        self.kind, self.rtype, self.relation = key
        self._index = index
        # node -> the nodes reachable from it over unconditional edges, nearest first
        self.up: dict[str, tuple[str, ...]] = {}
        self.size = 0  # the nodes all closures hold together
        # edges (source, target) with a caveat or an expiration
        self.conditional: set[tuple[str, str]] = set()
        # an upper bound of every closure's size, so of any simple path's length (never lowered)
        self.longest = 0
        self._covered: frozenset[str] | None = None
        self._tainted: frozenset[str] | None = None
        # plain subject -> its reach in a nested set, until a relationship of the graph's
        # relation storing it, a subject set or a wildcard changes (Closures.touched): a
        # subject's next checks skip the scan
        self.reaches: dict[tuple[str, str, str], Reach] = {}
        # plain subject -> the resource keys storing a subject set of the graph's relation on a
        # node of its (exact) reach, None when too many: a bucket whose key is not there holds
        # no set the subject is in (engine/subject_side.py). Forgotten with the reaches, and
        # when a relationship naming such a set changes (Closures.touched): a key missing
        # there would skip an evaluation that grants (a wrong denial, or a wrong grant where
        # it is subtracted)
        self.holders: dict[tuple[str, str, str], frozenset[ResourceKey] | None] = {}
        # each distinct reach once, shared by the subjects that have it (most subjects of a
        # group reach the same few sets): the kept reaches cost a dict entry each, not three
        # objects allocated among a request's garbage (memory freed later stays fragmented)
        self._reach_values: dict[Reach, Reach] = {}

    # ---- the edges, as the index holds them ----------------------------------------------

    def edge_meta(self, source: str, target: str) -> object:
        """The metadata of the edge source -> target: None (plain), a RelMeta, or _ABSENT."""
        t, r = self.rtype, self.relation
        if self.kind == SET:
            return self._index.usersets.get((t, target, r), {}).get((t, source, r), _ABSENT)
        return self._index.objects.get((t, source, r), {}).get((t, target), _ABSENT)

    def targets(self, node: str) -> list[str]:
        """The nodes `node` has an unconditional edge to."""
        t, r = self.rtype, self.relation
        if self.kind == SET:
            index, skey = self._index, (t, node, r)
            return [
                key[1]
                for key in index.reverse.get(skey, ())
                if key[2] == r and key[0] == t and index.usersets.get(key, {}).get(skey, _ABSENT) is None
            ]
        bucket = self._index.objects.get((t, node, r))
        if not bucket:
            return []
        return [sid for (st, sid), meta in bucket.items() if meta is None and st == t and sid != "*"]

    def sources(self, node: str) -> list[str]:
        """The nodes with an unconditional edge to `node`."""
        t, r = self.rtype, self.relation
        if self.kind == SET:
            bucket = self._index.usersets.get((t, node, r))
            if not bucket:
                return []
            return [sid for (st, sid, srel), meta in bucket.items() if meta is None and srel == r and st == t]
        index, skey = self._index, (t, node)
        return [
            key[1]
            for key in index.reverse.get((t, node, ""), ())
            if key[2] == r and key[0] == t and index.objects.get(key, {}).get(skey, _ABSENT) is None
        ]

    def all_edges(self) -> Iterable[tuple[str, str, object]]:
        """Every edge of the graph in the index, (source, target, metadata): one scan."""
        t, r = self.rtype, self.relation
        # the keys first (a comprehension over the whole map), then their buckets
        if self.kind == SET:
            usersets = self._index.usersets
            for key in [key for key in usersets if key[2] == r and key[0] == t]:
                for (st, source, srel), meta in usersets[key].items():
                    if srel == r and st == t:
                        yield source, key[1], meta
        else:
            objects = self._index.objects
            for key in [key for key in objects if key[2] == r and key[0] == t]:
                for (st, target), meta in objects[key].items():
                    if st == t and target != "*":
                        yield key[1], target, meta

    # ---- closures -------------------------------------------------------------------------

    def build(self) -> None:
        """Every closure, from the index (one scan, then one walk per node with an edge)."""
        # in the index's order (objects are mostly written parents first: their closures are
        # then there to reuse, see _reach)
        nodes: dict[str, None] = {}
        for source, target, meta in self.all_edges():
            if meta is None:
                nodes[source] = None
            else:
                self.conditional.add((source, target))
        for node in nodes:
            self._store(node, self._reach(node))

    def _reach(self, node: str) -> tuple[str, ...]:
        """The nodes reachable from `node` over unconditional edges, nearest first."""
        targets = self.targets(node)
        if len(targets) == 1:
            # one target whose closure is kept (complete): it and what it reaches (a tree's
            # common case, no walk)
            closed = self.up.get(targets[0])
            if closed is not None and targets[0] != node:
                first = targets[0]  # nearest first: a chain's order (closure_check relies on it)
                reach = (first, *(n for n in closed if n != first)) if first in closed else (first, *closed)
                if len(reach) > MAX_REACH:
                    raise GiveUp
                return reach
        seen: dict[str, None] = {}
        todo = deque(targets)
        while todo:
            current = todo.popleft()
            if current in seen:
                continue
            seen[current] = None
            closed = self.up.get(current) if current != node else None
            if closed is None:
                todo.extend(self.targets(current))
            else:
                # a closure kept (and current) is complete: its nodes need no walk
                for reached in closed:
                    seen.setdefault(reached)
            if len(seen) > MAX_REACH:
                raise GiveUp
        return tuple(seen)

    def _store(self, node: str, reach: tuple[str, ...]) -> None:
        if len(reach) > MAX_REACH:
            raise GiveUp
        self.size -= len(self.up.pop(node, ()))
        if reach:
            self.up[node] = reach
            self.size += len(reach)
            if len(reach) > self.longest:
                self.longest = len(reach)
            if self.size > MEAN_REACH * len(self.up) + MAX_REACH * 64:
                raise GiveUp

    def _below(self, node: str) -> list[str]:
        """`node` and every node with an unconditional path to it (whose closures hold it)."""
        seen = {node: None}
        todo = deque((node,))
        while todo:
            for source in self.sources(todo.popleft()):
                if source not in seen:
                    seen[source] = None
                    if len(seen) > MAX_AFFECTED:
                        raise GiveUp
                    todo.append(source)
        return list(seen)

    def changed(self, source: str, target: str) -> None:
        """The edge source -> target was written or deleted (the index already shows it)."""
        self._covered = self._tainted = None
        meta = self.edge_meta(source, target)
        if meta is None or meta is _ABSENT:
            self.conditional.discard((source, target))
        else:
            self.conditional.add((source, target))
        if meta is None:
            # a new unconditional edge: everything below source reaches target and beyond
            gained = (target, *self.up.get(target, ()))
            for node in self._below(source):
                have = self.up.get(node, ())
                new = [n for n in gained if n not in have] if have else gained
                if new:
                    self._store(node, (*have, *new))
        elif target in self.up.get(source, ()):
            # an unconditional edge may be gone: what reached it is closed again, nearest
            # nodes first so each can reuse closures already redone
            stale = self._below(source)
            for node in stale:
                self.size -= len(self.up.pop(node, ()))
            for node in stale:
                self._store(node, self._reach(node))

    # ---- what the check code asks ---------------------------------------------------------

    def remember(self, subject: tuple[str, str, str], reach: Reach) -> Reach:
        """Keep `reach`, the reach of the plain `subject` in this nested set (see
        closure_check), for later runs; forgotten on a change it depends on (Closures.touched)."""
        reaches = self.reaches
        # (the shared values too: a subject forgotten alone leaves its old one there)
        if len(reaches) >= MAX_REACHES or len(self._reach_values) >= MAX_REACHES:
            self.forget_reaches()
        reach = self._reach_values.setdefault(reach, reach)
        reaches[subject] = reach
        return reach

    def keep_holders(
        self, subject: tuple[str, str, str], nodes: frozenset[str] | None
    ) -> frozenset[ResourceKey] | None:
        """The resource keys storing the subject set `rtype:n#relation` of a node `n` of
        `nodes` (the exact reach of the plain `subject`), read from the index's reverse
        entries and kept for later runs; None (kept too) beyond :data:`MAX_HOLDERS` keys or
        without an exact reach (`nodes` None)."""
        holders = self.holders
        if len(holders) >= MAX_SIDES:
            holders.clear()
        reverse, t, r = self._index.reverse, self.rtype, self.relation
        found: frozenset[ResourceKey] | None = None
        if nodes is not None:
            keys: set[ResourceKey] = set()
            for node in nodes:
                keys.update(reverse.get((t, node, r), ()))
                if len(keys) > MAX_HOLDERS:
                    break
            else:
                found = frozenset(keys)
        holders[subject] = found
        return found

    def forget(self, subject: tuple[str, str, str]) -> None:
        """Forget the reach and holders kept for the plain `subject` alone (a relationship
        of the graph's relation storing it changed: see Closures.touched)."""
        self.reaches.pop(subject, None)
        self.holders.pop(subject, None)

    def forget_reaches(self) -> None:
        """Forget the reaches kept (stale, too many, or the server idle)."""
        self.reaches.clear()
        self._reach_values.clear()

    def tainted(self) -> frozenset[str]:
        """The nodes with an edge carrying metadata (a closure reaching one of them is not
        the whole story: the walk also follows that edge)."""
        if self._tainted is None:
            self._tainted = frozenset(source for source, _ in self.conditional)
        return self._tainted

    def covered(self) -> frozenset[str]:
        """The nodes some edge with metadata leads to, directly or through unconditional
        edges: walking *down* from one of them (towards the nodes reaching it, as a check
        of a nested set does) meets metadata."""
        if self._covered is None:
            out: set[str] = set()
            for _, target in self.conditional:
                out.add(target)
                out.update(self.up.get(target, ()))
            self._covered = frozenset(out)
        return self._covered


class Maps:
    """The head index's maps, which a :class:`Graph` reads. Not the index itself: the index
    holds its closures, and a reference back would make a cycle that only the collector frees
    (and never, once the loaded index is frozen out of its reach)."""

    __slots__ = ("objects", "usersets", "reverse")

    def __init__(self, index: RelationshipIndex) -> None:
        self.objects, self.usersets, self.reverse = index.objects, index.usersets, index.reverse
