"""LookupSubjects: every subject of a type that holds a permission on one object.

The walk goes forward from the object through the rewrite (all branches, subtracted ones
included) collecting every subject of the wanted type, and notes whether a wildcard of that
type was seen. Candidates of a monotone permission are answers; the others are confirmed
with Check (a check meeting the depth limit answered again by the plain walk, as Check's is:
see check.Rewalk). A wildcard is answered by checking a subject id no relationship can hold;
the concrete candidates it does not cover are its exclusions.

Beside a granted wildcard the answer takes SpiceDB's shape, which its subject-set algebra
decides (subject_algebra.py): a subject is listed on its own when that algebra lists it
(`viewer: user:*` with `viewer@user:u1` lists `*` and u1; `(viewer: user:*) & (editor: user:* |
user:u1)` lists u1 too), and the wildcard's exclusions are the ones the algebra gives it; see
:func:`listed_beside` and :func:`excluded_beside`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Generator
from itertools import islice
from typing import NamedTuple

from stonetown.core.relationship import WILDCARD
from stonetown.engine.check import CheckRun, DepthExceeded, Rewalk
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.conditions import Result, granted
from stonetown.engine.cooperative import (
    PAUSE,
    PAUSE_EVERY,
    SCAN_CHUNK,
    Granted,
    Pause,
    granted_runs,
    sorted_runs,
    sorted_steps,
    steps_of,
)
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.lookup_resources import next_level
from stonetown.engine.reachability import Reachability
from stonetown.engine.subject_algebra import SubjectSet, SubjectSets
from stonetown.engine.subject_sets import Declined, Held, subject_sets_steps
from stonetown.engine.types import Permissionship
from stonetown.schema import ir

# No stored id can contain NUL, so this id stands for "any subject not named in the data".
UNSEEN_ID = "\x00unseen"


class SubjectFound(NamedTuple):
    """One answer, in the order answers come: the wildcard first (when granted), then the
    concrete subject ids ascending; ``result`` is True or a caveat condition.

    For the wildcard, ``excluded`` lists the candidates it excludes outright (Check denies
    them, or SpiceDB's algebra excludes them unconditionally) and ``conditional`` the others
    a caveat context may exclude, each with the condition of its exclusion in that algebra
    and its Check result (see :func:`excluded_beside`).

    For a concrete subject beside a granted wildcard, ``listed`` is the condition under which
    SpiceDB lists it on its own (from subject_algebra.SubjectSet.concrete): the wildcard covers
    the others; None when no sets were built (a monotone permission without caveats, where
    that condition is ``result``, or a cycle in the data): listed when granted."""

    subject_id: str
    result: Result
    excluded: tuple[str, ...] = ()
    conditional: tuple[tuple[str, Result, Result], ...] = ()
    listed: Result | None = None


HeldKey = tuple[CompiledSchema, tuple[str, str, str], str, str, int]


class _Kept:
    """One walk's sets, and (once a second page asks) its candidates in order."""

    __slots__ = ("held", "facts", "ordered", "reused")

    def __init__(self, held: Held, facts: Reachability) -> None:
        self.held, self.facts = held, facts
        self.ordered: list[str] | None = None  # never changed once set
        self.reused = False


class HeldCache:
    """The sets (subject_sets.py) of the latest LookupSubjects walks over the head index, kept
    while its revision stays put, so that the next page of a paged lookup (a cursor, a limit)
    neither walks again nor sorts again: it starts at its cursor in the candidates sorted
    once. The sets hold no caveat's or clock's verdict (those candidates are only `maybe`,
    settled by Check at each page), so they stand for the revision whatever the request's
    context; a new revision (or a new head index) clears the cache, as check_cache.py does.
    Bounded: a few walks, none of more than :attr:`LARGEST` subjects, :attr:`TOTAL` together
    (about 50 bytes each, with their order). Used on the event loop only (the head index is
    never read elsewhere)."""

    __slots__ = ("index", "revision", "entries", "size")

    CAPACITY = 8
    LARGEST = 250_000
    TOTAL = 500_000

    def __init__(self) -> None:
        self.index: RelationshipIndex | None = None
        self.revision = -1
        self.entries: dict[HeldKey, _Kept] = {}
        self.size = 0  # the subjects of every walk kept

    def get(self, index: RelationshipIndex, revision: int, key: HeldKey, facts: Reachability) -> _Kept | None:
        """The walk kept for `key` over `index` at `revision`, or None."""
        if index is not self.index or revision != self.revision:
            self.clear()
            self.index, self.revision = index, revision
            return None
        kept = self.entries.get(key)
        return kept if kept is not None and kept.facts is facts else None

    def put(
        self, index: RelationshipIndex, revision: int, key: HeldKey, facts: Reachability, held: Held
    ) -> _Kept | None:
        """Keep a walk done over `index` at `revision` (not if either moved on, or too large)."""
        if index is not self.index or revision != self.revision:
            return None
        size = len(held.sure) + len(held.maybe)
        if size > self.LARGEST:
            return None
        self._drop(key)  # kept by a walk of the same lookup that ran meanwhile
        while self.entries and (len(self.entries) >= self.CAPACITY or self.size + size > self.TOTAL):
            self._drop(next(iter(self.entries)))  # the oldest
        kept = self.entries[key] = _Kept(held, facts)
        self.size += size
        return kept

    def clear(self) -> None:
        """Forget every walk."""
        self.entries.clear()
        self.size = 0

    def _drop(self, key: HeldKey) -> None:
        dropped = self.entries.pop(key, None)
        if dropped is not None:
            self.size -= len(dropped.held.sure) + len(dropped.held.maybe)


def lookup_subjects_steps(
    compiled: CompiledSchema,
    facts: Reachability,
    index: RelationshipIndex,
    resource: tuple[str, str],
    permission: str,
    subject_type: str,
    subject_relation: str,
    max_depth: int,
    after: str | None = None,
    first: int | None = None,
    cache: HeldCache | None = None,
) -> Generator[SubjectFound | Granted | Pause, None, None]:
    """Subjects of `subject_type` (with `subject_relation`, "" for plain objects) holding
    `permission` on `resource`, those after the cursor id `after` in order, as cooperative
    steps (see cooperative.py; when every one is granted outright and listed, in
    :class:`Granted` runs). The walk collects every candidate; only the candidates after
    the cursor are sorted, and only those handed out are checked, except when the wildcard
    is handed out: its exclusions need every candidate's result. `first`: how many answers
    the consumer likely wants (see cooperative.sorted_steps). `cache`: where the sets of
    recent walks over `index` (the head index only) are kept for the next page."""
    monotone = (resource[0], permission) in facts.monotone
    run = CheckRun(compiled, index, max_depth)
    rtype, rid = resource
    # the sets of subject_sets.py, when they stand for Check (no wildcard met; a monotone
    # permission's candidates are its answers either way, the sets are kept for its next page)
    key = (compiled, (*resource, permission), subject_type, subject_relation, max_depth)
    revision = index.revision
    kept = None if cache is None else cache.get(index, revision, key, facts)
    if kept is None:
        held = yield from _held_sets(compiled, facts, index, key[1], subject_type,
                                     subject_relation, max_depth, run)  # fmt: skip
        if cache is not None and held is not None:
            kept = cache.put(index, revision, key, facts, held)
    else:
        held = kept.held
        kept.reused = True
    if held is not None:
        yield PAUSE
        candidates, wildcard_seen = (held.sure | held.maybe if held.maybe else held.sure), False
    else:
        candidates, wildcard_seen = yield from _candidates(
            compiled.schema, facts, index, (*resource, permission), subject_type, subject_relation,
            max_depth=None if compiled.openfga_cycles else max_depth,  # OpenFGA's walks are not limited
        )  # fmt: skip
    wildcard: Result = False
    rewalk: Rewalk | None = None  # the plain walk, once a check meets the depth limit

    def checked(cid: str) -> Result:
        # Check's answer for subject `cid`; the depth error is the plain walk's to give
        nonlocal rewalk
        query = (rtype, rid, permission, (subject_type, cid, subject_relation))
        try:
            return run.dispatch(*query, 0)
        except DepthExceeded as error:
            rewalk = Rewalk.instead(error, compiled, index, max_depth, rewalk)
            return rewalk.again(query)

    if wildcard_seen:
        wildcard = True if monotone else checked(UNSEEN_ID)
        if not granted(wildcard):
            wildcard = False
    shape: SubjectSet | None = None
    # without caveats and expiration, a candidate of a monotone permission is listed (reached
    # through relationships naming it) and never excluded: no need to build the sets; over a
    # cycle in the data (no sets: SpiceDB has no answer) every granted candidate is listed
    if wildcard is not False and (not monotone or compiled.schema.caveats or compiled.schema.uses_expiration):
        sets = SubjectSets(compiled.schema, facts, run, subject_type, subject_relation)
        shape = yield from sets.of(rtype, rid, permission)

    def result_of(cid: str) -> Result:
        if monotone:
            return True
        if held is not None:
            if cid in held.sure:
                return True
            if cid not in held.maybe:
                return False
        return checked(cid)

    results: dict[str, Result] | None = None
    if wildcard is not False and (after is None or WILDCARD > after):
        results = {}
        for cid in candidates:
            results[cid] = result_of(cid)
            yield PAUSE
        excluded: list[str] = []
        conditional: list[tuple[str, Result, Result]] = []
        for cid, result in results.items():
            out: Result = False if shape is None else shape.excluded.get(cid, False)
            if out is True or not granted(result):
                excluded.append(cid)
            elif out is not False or result is not True:
                conditional.append((cid, out, result))
        ordered = [cid for cid in sorted_steps(excluded) if cid is not PAUSE]
        yield SubjectFound(WILDCARD, wildcard, tuple(ordered), tuple(conditional))  # type: ignore[arg-type]
    if kept is not None and (kept.reused or first is None):
        # kept for the next page: every candidate sorted once, each page starts at its cursor
        if kept.ordered is None:
            kept.ordered = yield from _collect(sorted_runs(list(candidates)))
        runs = _from(kept.ordered, after)
    else:
        wanted: list[str] = []
        remaining = iter(candidates)
        while chunk := list(islice(remaining, SCAN_CHUNK)):
            wanted.extend(chunk if after is None else [cid for cid in chunk if cid > after])
            yield PAUSE
        runs = sorted_runs(wanted, first)
    if results is None and shape is None and (monotone or (held is not None and not held.maybe)):
        # every candidate is granted outright (nothing to check, no wildcard to list beside)
        yield from granted_runs(runs, outright)
        return
    for cid in steps_of(runs):
        if cid is PAUSE:
            yield PAUSE
            continue
        if results is None and (monotone or (held is not None and cid in held.sure)):
            # granted outright: no Check, and no pause after it (sorted_steps pauses)
            yield SubjectFound(cid, True, listed=None if shape is None else shape.concrete.get(cid, False))
            continue
        result = results[cid] if results is not None else result_of(cid)  # type: ignore[index]
        if granted(result):
            listed = None if shape is None else shape.concrete.get(cid, False)
            yield SubjectFound(cid, result, listed=listed)  # type: ignore[arg-type]
        if not monotone:
            yield PAUSE


def _collect(runs: Generator[list[str] | Pause, None, None]) -> Generator[Pause, None, list[str]]:
    """The ids of `runs` (see cooperative.sorted_runs) in one list (its pauses passed on)."""
    items: list[str] = []
    for run in runs:
        if run is PAUSE:
            yield PAUSE
        else:
            items += run  # type: ignore[arg-type]
    return items


def _from(ordered: list[str], after: str | None) -> Generator[list[str] | Pause, None, None]:
    """The ids of `ordered` (sorted) after the cursor `after`, in runs of so many, each
    followed by a pause (see cooperative.sorted_runs)."""
    start = 0 if after is None else bisect_right(ordered, after)
    for begin in range(start, len(ordered), PAUSE_EVERY):
        yield ordered[begin : begin + PAUSE_EVERY]
        yield PAUSE


def outright(cid: str) -> SubjectFound:
    """The answer of a subject granted outright and listed (an id of a :class:`Granted` run)."""
    return SubjectFound(cid, True)


def _held_sets(
    compiled: CompiledSchema,
    facts: Reachability,
    index: RelationshipIndex,
    start: tuple[str, str, str],
    subject_type: str,
    subject_relation: str,
    max_depth: int,
    run: CheckRun,
) -> Generator[Pause, None, Held | None]:
    """The subjects `start` certainly grants and those only Check can settle (see
    subject_sets.py), or None where Check must settle every candidate: subject sets as
    subjects, OpenFGA's cycle races, or the walk declined."""
    if subject_relation or run.race is not None:
        return None
    try:
        sets = subject_sets_steps(compiled.schema, facts.admits, index, start, subject_type, max_depth)
        return (yield from sets)
    except Declined:
        return None


def listed_beside(verdict: Permissionship, listed: Permissionship) -> bool:
    """Whether a subject (`verdict`: Check's answer under the request context) is listed on
    its own beside a granted wildcard: when Check grants it and SpiceDB's algebra lists it
    (`listed`, under the same context; a caveat that fails, an expired relationship, drop it)."""
    return verdict is not Permissionship.DENIED and listed is not Permissionship.DENIED


def excluded_beside(excluded: Permissionship, verdict: Permissionship, wildcard: Permissionship) -> bool:
    """Whether the wildcard (`wildcard` under the request context) excludes a candidate whose
    exclusion condition in SpiceDB's algebra evaluates to `excluded` and whose Check answer
    is `verdict`: when that condition is not denied, or when the wildcard answers it better
    than Check (denied, or conditional under a wildcard granted outright), so the wildcard
    never stands for more than Check grants."""
    return excluded is not Permissionship.DENIED or _RANK[verdict] < _RANK[wildcard]


_RANK = {Permissionship.DENIED: 0, Permissionship.CONDITIONAL: 1, Permissionship.ALLOWED: 2}


def _candidates(
    schema: ir.Schema,
    facts: Reachability,
    index: RelationshipIndex,
    start: tuple[str, str, str],
    subject_type: str,
    subject_relation: str,
    max_depth: int | None = None,
) -> Generator[Pause, None, tuple[set[str], bool]]:
    """Every subject id of the wanted type the walk from `start` meets through every branch
    of each rewrite, and whether it met the type's wildcard; pausing inside long buckets (see
    lookup_resources._climb for why that is safe). With `max_depth`, depth is counted as
    Check counts it (a subject set or an arrow one level, a computed userset none), level by
    level, and a node `max_depth` levels down fails with DepthExceeded, so LookupSubjects
    never answers where Check answers max depth."""
    found: set[str] = set()
    wildcard = False
    visited: set[tuple[str, str, str]] = set()
    stack = [start]
    deeper: list[tuple[str, str, str]] = []  # the next level's nodes
    level = 0
    admits = facts.admits
    deadline = request_deadline.get()
    steps = 0
    while stack or deeper:
        if not stack:
            level = next_level(level, max_depth, deeper[0])
            stack, deeper = deeper, stack
        steps += 1
        if steps % CHECK_EVERY == 0:
            check_deadline(deadline)
        if steps % PAUSE_EVERY == 0:
            yield PAUSE
        node = stack.pop()
        if node in visited:
            continue
        visited.add(node)
        ntype, nid, nrel = node
        if subject_relation and ntype == subject_type and nrel == subject_relation:
            found.add(nid)
        relation = schema.relation(ntype, nrel)
        if relation is None:
            continue
        for part in _parts(relation.rewrite):
            if isinstance(part, ir.This):
                bucket = index.objects.get(node)
                if bucket and not subject_relation:
                    if (subject_type, "*") in bucket:
                        wildcard = wildcard or (ntype, nrel, subject_type, "", True) in admits
                    if (ntype, nrel, subject_type, "", False) in admits:
                        subjects = iter(bucket)
                        while chunk := list(islice(subjects, SCAN_CHUNK)):
                            found.update([i for t, i in chunk if t == subject_type and i != "*"])
                            yield PAUSE
                for count, (stype, sid, srel) in enumerate(index.usersets.get(node, {}), 1):
                    if count % PAUSE_EVERY == 0:
                        yield PAUSE
                    if (ntype, nrel, stype, srel, False) in admits:
                        deeper.append((stype, sid, srel))
            elif isinstance(part, ir.ComputedUserset):
                stack.append((ntype, nid, part.relation))
            elif isinstance(part, ir.TupleToUserset):
                key = (ntype, nid, part.tupleset)
                targets = [
                    (st, sid)
                    for (st, sid) in index.objects.get(key, {})
                    if sid != "*" and (ntype, part.tupleset, st, "", False) in admits
                ]
                targets += [
                    (st, sid)
                    for (st, sid, srel) in index.usersets.get(key, {})
                    if (ntype, part.tupleset, st, srel, False) in admits
                ]
                for count, (stype, sid) in enumerate(targets, 1):
                    if count % PAUSE_EVERY == 0:
                        yield PAUSE
                    if schema.relation(stype, part.computed) is not None:
                        deeper.append((stype, sid, part.computed))
    return found, wildcard


def _parts(node: ir.Rewrite) -> list[ir.Rewrite]:
    """The leaves (This, computed usersets, arrows) of a rewrite, every branch included."""
    if isinstance(node, ir.Union | ir.Intersection):
        return [leaf for child in node.children for leaf in _parts(child)]
    if isinstance(node, ir.Exclusion):
        return _parts(node.base) + _parts(node.subtract)
    return [node]
