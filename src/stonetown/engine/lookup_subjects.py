"""LookupSubjects: every subject of a type that holds a permission on one object.

The walk goes forward from the object through the rewrite (all branches, subtracted ones
included) collecting every subject of the wanted type, and notes whether a wildcard of that
type was seen. Candidates of a monotone permission are answers; the others are confirmed
with Check. A wildcard is answered by checking a subject id no relationship can hold; the
concrete candidates it does not cover are its exclusions.

The answer takes SpiceDB's shape: a subject is listed on its own when it is named outside
every subtracted side (SpiceDB's concrete subjects: `viewer: user:*` with `viewer@user:u1`
lists `*` and u1), not when only an exclusion names it and the wildcard covers it; see
:func:`listed_beside` and :func:`excluded_beside`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from itertools import islice

from stonetown.core.relationship import WILDCARD
from stonetown.engine.check import CheckRun, CompiledSchema
from stonetown.engine.conditions import Result, granted
from stonetown.engine.cooperative import PAUSE, PAUSE_EVERY, SORT_CHUNK, Pause, sorted_steps
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import RelationshipIndex, without_wildcards
from stonetown.engine.lookup_resources import next_level
from stonetown.engine.reachability import Reachability
from stonetown.engine.subject_sets import Declined, Held, subject_sets_steps
from stonetown.engine.types import Permissionship
from stonetown.schema import ir

# No stored id can contain NUL, so this id stands for "any subject not named in the data".
UNSEEN_ID = "\x00unseen"


@dataclass(frozen=True, slots=True)
class SubjectFound:
    """One answer, in the order answers come: the wildcard first (when granted), then the
    concrete subject ids ascending; ``result`` is True or a caveat condition.

    For the wildcard, ``excluded`` lists the candidates its result does not cover and
    ``conditional`` the candidates granted only under a caveat condition, with their results
    (a caveat context may still deny them, which excludes them from the wildcard too).

    For a concrete subject beside a granted wildcard, ``wildcard`` is the wildcard's result,
    ``named`` whether the subject is named outside every subtracted side, and ``own`` what it
    holds without any wildcard (None when that cannot differ from ``result``): SpiceDB lists a
    subject the wildcard covers only when it is named and granted on its own."""

    subject_id: str
    result: Result
    excluded: tuple[str, ...] = ()
    conditional: tuple[tuple[str, Result], ...] = ()
    wildcard: Result = False
    named: bool = True
    own: Result | None = None


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
) -> Generator[SubjectFound | Pause, None, None]:
    """Subjects of `subject_type` (with `subject_relation`, "" for plain objects) holding
    `permission` on `resource`, those after the cursor id `after` in order, as cooperative
    steps (see cooperative.py). The walk collects every candidate; only the candidates after
    the cursor are sorted, and only those handed out are checked, except when the wildcard
    is handed out: its exclusions need every candidate's result. `first`: how many answers
    the consumer likely wants (see cooperative.sorted_steps)."""
    monotone = (resource[0], permission) in facts.monotone
    run = CheckRun(compiled, index, max_depth)
    rtype, rid = resource
    held = None  # the sets of subject_sets.py, when they stand for Check (no wildcard met)
    if not monotone:
        held = yield from _held_sets(compiled, facts, index, (*resource, permission), subject_type,
                                     subject_relation, max_depth, run)  # fmt: skip
    if held is not None:
        candidates, wildcard_seen = (held.sure | held.maybe if held.maybe else held.sure), False
    else:
        candidates, wildcard_seen = yield from _candidates(
            compiled.schema, facts, index, (*resource, permission), subject_type, subject_relation,
            max_depth=None if compiled.openfga_cycles else max_depth,  # OpenFGA's walks are not limited
        )  # fmt: skip
    wildcard: Result = False
    if wildcard_seen:
        unseen = (subject_type, UNSEEN_ID, "")
        wildcard = True if monotone else run.dispatch(rtype, rid, permission, unseen, 0)
        if not granted(wildcard):
            wildcard = False
    named: set[str] | None = None  # None: every candidate is named outside the subtracted sides
    own_run: CheckRun | None = None
    if wildcard is not False:
        if not monotone:
            named, _ = yield from _candidates(
                compiled.schema, facts, index, (*resource, permission), subject_type, subject_relation,
                _named_parts,
            )  # fmt: skip
        # without caveats and expiration, a candidate of a monotone permission is granted on
        # its own (reached through relationships naming it): no second look needed
        if not monotone or compiled.schema.caveats or compiled.schema.uses_expiration:
            own_run = CheckRun(compiled, without_wildcards(index, subject_type), max_depth)

    def result_of(cid: str) -> Result:
        if monotone:
            return True
        if held is not None:
            if cid in held.sure:
                return True
            if cid not in held.maybe:
                return False
        return run.dispatch(rtype, rid, permission, (subject_type, cid, subject_relation), 0)

    results: dict[str, Result] | None = None
    if wildcard is not False and (after is None or WILDCARD > after):
        results = {}
        for cid in candidates:
            results[cid] = result_of(cid)
            yield PAUSE
        excluded = [cid for cid, result in results.items() if not granted(result)]
        conditional = tuple((cid, r) for cid, r in results.items() if r is not True and granted(r))
        ordered = [cid for cid in sorted_steps(excluded) if cid is not PAUSE]
        yield SubjectFound(WILDCARD, wildcard, tuple(ordered), conditional)  # type: ignore[arg-type]
    wanted: list[str] = []
    remaining = iter(candidates)
    while chunk := list(islice(remaining, SORT_CHUNK)):
        wanted.extend(chunk if after is None else [cid for cid in chunk if cid > after])
        yield PAUSE
    for cid in sorted_steps(wanted, first):
        if cid is PAUSE:
            yield PAUSE
            continue
        result = results[cid] if results is not None else result_of(cid)  # type: ignore[index]
        if granted(result):
            if wildcard is False:
                yield SubjectFound(cid, result)  # type: ignore[arg-type]
            else:
                is_named = named is None or cid in named
                own = None
                if is_named and own_run is not None:
                    own = own_run.dispatch(rtype, rid, permission, (subject_type, cid, ""), 0)
                yield SubjectFound(cid, result, wildcard=wildcard, named=is_named, own=own)  # type: ignore[arg-type]
        if not monotone:
            yield PAUSE


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


_RANK = {Permissionship.DENIED: 0, Permissionship.CONDITIONAL: 1, Permissionship.ALLOWED: 2}


def listed_beside(
    verdict: Permissionship, wildcard: Permissionship, named: bool, own: Permissionship
) -> bool:
    """Whether a granted subject (`verdict` under the request context) is listed on its own
    beside a granted wildcard (`wildcard`), as SpiceDB shapes LookupSubjects: when the
    wildcard answers it worse, or when it is named outside every subtracted side and granted
    without the wildcard (`own`; a caveat that fails, an expired relationship, drop it)."""
    if verdict is Permissionship.DENIED:
        return False
    return _RANK[verdict] > _RANK[wildcard] or (named and own is not Permissionship.DENIED)


def excluded_beside(verdict: Permissionship, wildcard: Permissionship) -> bool:
    """Whether the wildcard excludes a candidate: the wildcard answers it better than Check
    (denied, or conditional under a wildcard granted outright)."""
    return _RANK[verdict] < _RANK[wildcard]


def _candidates(
    schema: ir.Schema,
    facts: Reachability,
    index: RelationshipIndex,
    start: tuple[str, str, str],
    subject_type: str,
    subject_relation: str,
    parts: Callable[[ir.Rewrite], list[ir.Rewrite]] | None = None,
    max_depth: int | None = None,
) -> Generator[Pause, None, tuple[set[str], bool]]:
    """Every subject id of the wanted type the walk from `start` meets through the `parts` of
    each rewrite (default: every branch), and whether it met the type's wildcard; pausing
    inside long buckets (see lookup_resources._climb for why that is safe). With `max_depth`,
    depth is counted as Check counts it (a subject set or an arrow one level, a computed
    userset none), level by level, and a node `max_depth` levels down fails with
    DepthExceeded, so LookupSubjects never answers where Check answers max depth."""
    parts = parts or _parts
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
        for part in parts(relation.rewrite):
            if isinstance(part, ir.This):
                bucket = index.objects.get(node)
                if bucket and not subject_relation:
                    if (subject_type, "*") in bucket:
                        wildcard = wildcard or (ntype, nrel, subject_type, "", True) in admits
                    if (ntype, nrel, subject_type, "", False) in admits:
                        subjects = iter(bucket)
                        while chunk := list(islice(subjects, SORT_CHUNK)):
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


def _named_parts(node: ir.Rewrite) -> list[ir.Rewrite]:
    """The leaves of a rewrite outside its subtracted sides."""
    if isinstance(node, ir.Union | ir.Intersection):
        return [leaf for child in node.children for leaf in _named_parts(child)]
    if isinstance(node, ir.Exclusion):
        return _named_parts(node.base)
    return [node]


def _parts(node: ir.Rewrite) -> list[ir.Rewrite]:
    """The leaves (This, computed usersets, arrows) of a rewrite, every branch included."""
    if isinstance(node, ir.Union | ir.Intersection):
        return [leaf for child in node.children for leaf in _parts(child)]
    if isinstance(node, ir.Exclusion):
        return _parts(node.base) + _parts(node.subtract)
    return [node]
