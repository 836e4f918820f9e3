"""OpenFGA's ListUsers, replayed: the forward expansion OpenFGA v1.22 runs, quirks included.

OpenFGA answers ListUsers with its own walk rather than with Check, and that walk does not
always agree with its Check. The OpenFGA-semantics store (:class:`~.store.FgaStore`) must
answer what OpenFGA answers, so it expands the same way:

* Expanding `object#relation` first fails with error 2002 when the path from the request
  already holds 25 expansions, then stops (a *cycle*, reported upwards) when the path already
  expanded that `object#relation`: cycles are detected per path, not per request. A computed
  userset, a subject-set tuple and a tuple-to-userset hop each expand anew; operators and the
  direct part of a definition mixing direct types with operators do not.
* Every expansion of `type:id#relation` matching a `type#relation` filter reports that
  subject set itself.
* A direct relation reports each plain subject whose *type* matches the filter, whatever the
  filter's relation (so a `group#member` filter also lists plain `group:x` subjects and a
  `user` filter lists `user:*`), and expands each subject-set tuple. Tuples whose condition
  does not hold are skipped; a condition missing a parameter fails the request (error 2000).
* Found users carry a status, *has* or *has not* (the latter only comes out of exclusions).
  A union or intersection keeps the users reported with *has* at least once in an operand; an
  intersection counts an operand holding the filter type's wildcard as holding every user.
  An exclusion and the request itself keep the status each user was reported with last.
* An exclusion whose subtracted side ran into a cycle (only detected through direct relations
  and computed usersets: tuple-to-userset hops and operators do not pass the flag on) reports
  nothing and swallows the errors of both sides. Otherwise it combines the two sides' statuses
  as OpenFGA does (:func:`_exclusion`), which can flip a *has not* from a subtracted side
  into a *has*.
* A user the subtracted side grants under a base wildcard is reported *has not* and named
  *excluded*. An intersection leaves out every user an operand's reports named excluded
  (OpenFGA's fix for GHSA-g3pg-frfm-pr2m, v1.18.1) and names them on its own reports; a
  union names a user excluded when as many of its operands' *reports* named it as it has
  operands (reports, not operands, are counted).
* Where OpenFGA's goroutines race (branches reporting one user with different statuses to a
  consumer keeping the last), the replay orders reports in virtual time (see
  :class:`ListUsersWalk`): reports behind more work arrive later, ties go to storage order.
  OpenFGA usually answers so; its other orders are its nondeterminism.

The walk is memoised: the answer of one expansion depends on the path only through the
`object#relation` keys reachable from it, and on its depth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from stonetown.core.errors import InvalidArgument
from stonetown.core.relationship import ContextualizedCaveat
from stonetown.engine.index import RelationshipIndex, RelMeta
from stonetown.schema import ir
from stonetown.schema.fga import HIDDEN_SUFFIX, fga_write_relation

RESOLUTION_TOO_COMPLEX = 2002
MAX_RESOLUTION_DEPTH = 25
# Distinct expansions one request may make. Cycle detection per path makes the walk
# exponential in the size of a strongly connected part of the data; OpenFGA then stops at its
# deadline with partial results, which cannot be replayed: the replay fails instead.
MAX_EXPANSIONS = 200_000

Node = tuple[str, str, str]  # (type, id, visible relation)


class ListUsersFailure(Exception):
    """The request fails with OpenFGA error ``code`` (2002: too deep; 2000: a condition could
    not be evaluated)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


# Decides a tuple's condition for the request: True / False, or raises ListUsersFailure.
ConditionJudge = Callable[[ContextualizedCaveat], bool]


@dataclass
class _Stream:
    """What one expansion reported on its channel, in virtual time from its start (see
    :class:`ListUsersWalk`): per user the time and status (True: has, False: has not) of its
    latest report, the users reported with *has* at least once, per user named *excluded* by
    some report (OpenFGA's excluded users) how many reports named it, and when the expansion
    finished."""

    last: dict[str, tuple[int, bool]] = field(default_factory=dict)
    granted: set[str] = field(default_factory=set)
    excluded: dict[str, int] = field(default_factory=dict)
    done: int = 0

    def emit(self, at: int, user: str, has: bool, excluded: Iterable[str] = ()) -> None:
        """Report `user` at time `at`."""
        known = self.last.get(user)
        if known is None or at >= known[0]:
            self.last[user] = (at, has)
        if has:
            self.granted.add(user)
        for other in excluded:
            self.excluded[other] = self.excluded.get(other, 0) + 1
        self.done = max(self.done, at)

    def extend(self, other: _Stream, offset: int) -> None:
        """Take in the reports of `other`, an expansion started at time `offset`; of two
        reports at the same time, `other`'s counts as the later."""
        for user, (at, has) in other.last.items():
            known = self.last.get(user)
            if known is None or at + offset >= known[0]:
                self.last[user] = (at + offset, has)
        self.granted |= other.granted
        for user, count in other.excluded.items():
            self.excluded[user] = self.excluded.get(user, 0) + count
        self.done = max(self.done, other.done + offset)

    def status(self) -> dict[str, bool]:
        """Each user's latest status."""
        return {user: has for user, (_at, has) in self.last.items()}


@dataclass
class _Response:
    stream: _Stream
    cycle: bool = False
    error: ListUsersFailure | None = None


def _joined(first: ListUsersFailure | None, second: ListUsersFailure | None) -> ListUsersFailure | None:
    return first if first is not None else second


class ListUsersWalk:
    """One ListUsers request: `object#relation` expanded for one filter `type` or
    `type#relation` over `index` (see module docstring).

    OpenFGA runs the branches of an expansion concurrently and keeps, where it keeps one
    status per user, the status reported last. The walk replays that order in virtual time:
    each expansion of an `object#relation` and each tuple read takes one step, the branches
    a read or an operator starts begin together, and they finish after the longest of them
    plus half the work of the others (they share a few cores: :func:`_finish`); an operator
    reports when its operands finished. Reports found deeper, or behind more work, therefore
    arrive later, as they usually do in OpenFGA (the weights were fitted to the answers the
    real OpenFGA gives most often on the differential fuzzer's racy cases).
    """

    def __init__(
        self,
        schema: ir.Schema,
        index: RelationshipIndex,
        filter_type: str,
        filter_relation: str,
        judge: ConditionJudge,
        max_depth: int = MAX_RESOLUTION_DEPTH,
    ) -> None:
        self.schema = schema
        self.index = index
        self.filter = (filter_type, filter_relation)
        self.wildcard = f"{filter_type}:*"
        self.judge = judge
        self.max_depth = max_depth
        # the path is a bit set over the nodes met, numbered as first met
        self._bit: dict[Node, int] = {}
        self._memo: dict[tuple[Node, int, int], _Response] = {}
        self._reach: dict[Node, int] = {}
        self._stored: dict[tuple[str, str], str | None] = {}

    def users(self, otype: str, oid: str, relation: str) -> set[str]:
        """The users OpenFGA lists; raises ListUsersFailure when OpenFGA fails the request."""
        response = self._expand((otype, oid, relation), 0, 0)
        if response.error is not None:
            raise response.error
        return {user for user, has in response.stream.status().items() if has}

    # ---- expansion ------------------------------------------------------------------------

    def _expand(self, node: Node, depth: int, path: int) -> _Response:
        key = (node, depth, path & self._reachable(node))
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= MAX_EXPANSIONS:
                raise ListUsersFailure(
                    RESOLUTION_TOO_COMPLEX, f"list users needs more than {MAX_EXPANSIONS} expansions"
                )
            found = self._memo[key] = self._expand_fresh(node, depth, path)
        return found

    def _expand_fresh(self, node: Node, depth: int, path: int) -> _Response:
        if depth >= self.max_depth:
            failure = ListUsersFailure(
                RESOLUTION_TOO_COMPLEX, f"list users exceeded depth {self.max_depth} at {_name(node)}"
            )
            return _Response(_Stream(), error=failure)
        bit = self._bit_of(node)
        if path & bit:
            return _Response(_Stream(), cycle=True)
        path |= bit
        stream = _Stream()
        otype, oid, rel = node
        if (otype, rel) == self.filter:
            stream.emit(1, _name(node), True)
        relation = self.schema.relation(otype, rel)
        if relation is None:
            return _Response(stream)
        inner = self._rewrite(relation.rewrite, node, rel, depth + 1, path)
        stream.extend(inner.stream, 1)
        return _Response(stream, inner.cycle, inner.error)

    def _rewrite(self, rewrite: ir.Rewrite, node: Node, stored: str, depth: int, path: int) -> _Response:
        otype, oid, rel = node
        if isinstance(rewrite, ir.This):
            return self._direct(node, stored, depth, path)
        if isinstance(rewrite, ir.ComputedUserset):
            if rewrite.relation == rel + HIDDEN_SUFFIX:
                # the direct part of a mixed definition: OpenFGA reads it in place
                hidden = self.schema.relation(otype, rewrite.relation)
                assert hidden is not None
                return self._rewrite(hidden.rewrite, node, hidden.name, depth, path)
            return self._expand((otype, oid, rewrite.relation), depth, path)
        if isinstance(rewrite, ir.TupleToUserset):
            return self._arrow(rewrite, node, depth, path)
        if isinstance(rewrite, ir.Union):
            return self._union(rewrite, node, stored, depth, path)
        if isinstance(rewrite, ir.Intersection):
            return self._intersection(rewrite, node, stored, depth, path)
        if isinstance(rewrite, ir.Exclusion):
            return self._exclusion(rewrite, node, stored, depth, path)
        return _Response(_Stream())

    def _holding(
        self, tuples: Mapping[tuple[str, ...], RelMeta | None], failed: list[ListUsersFailure]
    ) -> Iterator[tuple[str, ...]]:
        """The subjects of `tuples` (one read) whose condition holds, in storage order; a
        condition that cannot be decided is skipped, and the first such failure (of this
        and of anything else reported into `failed`) is the one OpenFGA reports."""
        judge = self.judge
        for subject, meta in tuples.items():
            try:
                if meta is None or meta.caveat is None or judge(meta.caveat):
                    yield subject
            except ListUsersFailure as exc:
                if not failed:
                    failed.append(exc)

    def _direct(self, node: Node, stored: str, depth: int, path: int) -> _Response:
        otype, oid, _rel = node
        plain = self.index.objects.get((otype, oid, stored), {})
        sets = self.index.usersets.get((otype, oid, stored), {})
        stream = _Stream(done=1)
        works: list[int] = []
        failed: list[ListUsersFailure] = []
        for stype, sid in self._holding(plain, failed):
            if stype == self.filter[0]:
                stream.emit(1, f"{stype}:{sid}", True)
        cycle = False
        for subject in self._holding(sets, failed):
            sub = self._expand(subject, depth, path)
            stream.extend(sub.stream, 1)
            works.append(sub.stream.done)
            cycle = cycle or sub.cycle
            if sub.error is not None and not failed:
                failed.append(sub.error)
        stream.done = max(stream.done, 1 + _finish(works))
        return _Response(stream, cycle, failed[0] if failed else None)

    def _arrow(self, rewrite: ir.TupleToUserset, node: Node, depth: int, path: int) -> _Response:
        otype, oid, _rel = node
        stream = _Stream(done=1)
        works: list[int] = []
        failed: list[ListUsersFailure] = []
        tupleset = self._stored_relation(otype, rewrite.tupleset)
        parents = self.index.objects.get((otype, oid, tupleset), {}) if tupleset is not None else {}
        for ptype, pid in self._holding(parents, failed):
            sub = self._expand((ptype, pid, rewrite.computed), depth, path)
            stream.extend(sub.stream, 1)
            works.append(sub.stream.done)
            if sub.error is not None and not failed:
                failed.append(sub.error)
        stream.done = max(stream.done, 1 + _finish(works))
        # a cycle met behind an arrow is not passed on
        return _Response(stream, False, failed[0] if failed else None)

    def _union(self, rewrite: ir.Union, node: Node, stored: str, depth: int, path: int) -> _Response:
        granted: set[str] = set()
        reports: dict[str, int] = {}
        error: ListUsersFailure | None = None
        dones: list[int] = []
        for child in rewrite.children:
            sub = self._rewrite(child, node, stored, depth, path)
            granted |= sub.stream.granted
            for user, count in sub.stream.excluded.items():
                reports[user] = reports.get(user, 0) + count
            dones.append(sub.stream.done)
            error = _joined(error, sub.error)
        # OpenFGA counts the reports naming a user excluded, not the operands: a user is
        # excluded from the union when that count equals the number of operands
        excluded = sorted(user for user, count in reports.items() if count == len(rewrite.children))
        done = _finish(dones)
        stream = _Stream(done=done)
        for user in sorted(granted):
            stream.emit(done, user, True, excluded)
        return _Response(stream, False, error)

    def _intersection(
        self, rewrite: ir.Intersection, node: Node, stored: str, depth: int, path: int
    ) -> _Response:
        error: ListUsersFailure | None = None
        counts: dict[str, int] = {}
        excluded: set[str] = set()
        wildcards = 0
        dones: list[int] = []
        for child in rewrite.children:
            sub = self._rewrite(child, node, stored, depth, path)
            error = _joined(error, sub.error)
            excluded.update(sub.stream.excluded)
            dones.append(sub.stream.done)
            granted = sub.stream.granted
            # an operand holding the wildcard holds every user: counted once for all of them
            has_wildcard = self.wildcard in granted
            wildcards += has_wildcard
            for user in granted:
                counts[user] = counts.get(user, 0) + (0 if has_wildcard else 1)
        done = _finish(dones)
        stream = _Stream(done=done)
        named = sorted(excluded)
        for user in sorted(counts):
            # a user some operand excluded from its wildcard is not listed (OpenFGA >= 1.18.1)
            if counts[user] + wildcards == len(rewrite.children) and user not in excluded:
                stream.emit(done, user, True, named)
        return _Response(stream, False, error)

    def _exclusion(self, rewrite: ir.Exclusion, node: Node, stored: str, depth: int, path: int) -> _Response:
        base = self._rewrite(rewrite.base, node, stored, depth, path)
        subtract = self._rewrite(rewrite.subtract, node, stored, depth, path)
        done = _finish([base.stream.done, subtract.stream.done])
        if subtract.cycle:
            # OpenFGA settles a cycle in the subtracted side here: nothing, and no error
            return _Response(_Stream(done=done))
        stream = _exclusion(base.stream.status(), subtract.stream.status(), self.wildcard, done)
        return _Response(stream, False, _joined(base.error, subtract.error))

    # ---- helpers --------------------------------------------------------------------------

    def _stored_relation(self, otype: str, relation: str) -> str | None:
        key = (otype, relation)
        if key not in self._stored:
            try:
                self._stored[key] = fga_write_relation(self.schema, otype, relation)
            except InvalidArgument:  # a tupleset the model does not store: no tuples
                self._stored[key] = None
        return self._stored[key]

    def _successors(self, node: Node) -> set[Node]:
        """Every expansion `node` can start (conditions aside): its subject-set tuples,
        computed usersets and tuple-to-userset hops, through the operators."""
        otype, oid, rel = node
        out: set[Node] = set()
        relation = self.schema.relation(otype, rel)
        todo: list[tuple[ir.Rewrite, str]] = [(relation.rewrite, rel)] if relation is not None else []
        while todo:
            rewrite, stored = todo.pop()
            if isinstance(rewrite, ir.This):
                out.update(self.index.usersets.get((otype, oid, stored), {}))
            elif isinstance(rewrite, ir.ComputedUserset):
                if rewrite.relation == rel + HIDDEN_SUFFIX:
                    hidden = self.schema.relation(otype, rewrite.relation)
                    if hidden is not None:
                        todo.append((hidden.rewrite, hidden.name))
                else:
                    out.add((otype, oid, rewrite.relation))
            elif isinstance(rewrite, ir.TupleToUserset):
                tupleset = self._stored_relation(otype, rewrite.tupleset)
                if tupleset is not None:
                    for ptype, pid in self.index.objects.get((otype, oid, tupleset), {}):
                        out.add((ptype, pid, rewrite.computed))
            elif isinstance(rewrite, ir.Union | ir.Intersection):
                todo.extend((child, stored) for child in rewrite.children)
            elif isinstance(rewrite, ir.Exclusion):
                todo.extend(((rewrite.base, stored), (rewrite.subtract, stored)))
        return out

    def _bit_of(self, node: Node) -> int:
        bit = self._bit.get(node)
        if bit is None:
            bit = self._bit[node] = 1 << len(self._bit)
        return bit

    def _reachable(self, start: Node) -> int:
        """The bits of `start` and of every node an expansion of it can reach."""
        found = self._reach.get(start)
        if found is not None:
            return found
        mask = self._bit_of(start)
        seen = {start}
        todo = [start]
        while todo:
            current = todo.pop()
            known = self._reach.get(current)
            if known is not None and current != start:
                mask |= known
                continue
            for nxt in self._successors(current):
                if nxt not in seen:
                    seen.add(nxt)
                    mask |= self._bit_of(nxt)
                    todo.append(nxt)
        self._reach[start] = mask
        return mask


def _exclusion(base: dict[str, bool], subtract: dict[str, bool], wildcard: str, at: int) -> _Stream:
    """OpenFGA's combination of an exclusion's sides (each: the status a user was reported
    with last), `wildcard` being the filter type's `type:*`; reported at time `at`."""
    out = _Stream(done=at)
    base_wildcard = wildcard in base
    subtract_wildcard = wildcard in subtract
    for user in sorted(base):
        subtracted = user in subtract
        if base_wildcard:
            if not subtracted and not subtract_wildcard:
                out.emit(at, user, True)
            for other in sorted(subtract):
                if other.endswith(":*"):
                    if not subtracted:
                        out.emit(at, user, False)
                    continue
                # a user the subtracted side denies keeps the base's wildcard; one it grants
                # loses it, and is named excluded
                if subtract[other]:
                    out.emit(at, other, False, (other,))
                else:
                    out.emit(at, other, True)
        elif subtract_wildcard or subtracted:
            # OpenFGA reads a missing entry as *has*: under a subtracted wildcard every base
            # user is denied
            out.emit(at, user, not subtract.get(user, True))
        else:
            out.emit(at, user, base[user])
    return out


def _finish(branches: list[int]) -> int:
    """When branches started together finish: the longest, plus half the others' work (they
    share OpenFGA's few cores)."""
    if not branches:
        return 0
    longest = max(branches)
    return longest + (sum(branches) - longest) // 2


def _name(node: Node) -> str:
    return f"{node[0]}:{node[1]}#{node[2]}"
