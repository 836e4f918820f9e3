"""LookupSubjects: every subject of a type that holds a permission on one object.

The walk goes forward from the object through the rewrite (all branches, subtracted ones
included) collecting every subject of the wanted type, and notes whether a wildcard of that
type was seen. Candidates of a monotone permission are answers; the others are confirmed
with Check. A wildcard is answered by checking a subject id no relationship can hold; the
concrete candidates it does not cover are its exclusions.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from itertools import islice

from stonetown.core.relationship import WILDCARD
from stonetown.engine.check import CheckRun, CompiledSchema
from stonetown.engine.conditions import Result, granted
from stonetown.engine.cooperative import PAUSE, PAUSE_EVERY, SORT_CHUNK, Pause, sorted_steps
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.reachability import Reachability
from stonetown.schema import ir

# No stored id can contain NUL, so this id stands for "any subject not named in the data".
UNSEEN_ID = "\x00unseen"


@dataclass(frozen=True, slots=True)
class SubjectFound:
    """One answer, in the order answers come: the wildcard first (when granted), then the
    concrete subject ids ascending; ``result`` is True or a caveat condition.

    For the wildcard, ``excluded`` lists the candidates its result does not cover and
    ``conditional`` the candidates granted only under a caveat condition, with their results
    (a caveat context may still deny them, which excludes them from the wildcard too)."""

    subject_id: str
    result: Result
    excluded: tuple[str, ...] = ()
    conditional: tuple[tuple[str, Result], ...] = ()


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
    candidates, wildcard_seen = yield from _candidates(
        compiled.schema, facts, index, (*resource, permission), subject_type, subject_relation
    )
    monotone = (resource[0], permission) in facts.monotone
    run = CheckRun(compiled, index, max_depth)
    rtype, rid = resource

    def result_of(cid: str) -> Result:
        if monotone:
            return True
        return run.dispatch(rtype, rid, permission, (subject_type, cid, subject_relation), 0)

    results: dict[str, Result] | None = None
    if wildcard_seen and (after is None or WILDCARD > after):
        wildcard: Result = True
        if not monotone:
            wildcard = run.dispatch(rtype, rid, permission, (subject_type, UNSEEN_ID, ""), 0)
        if granted(wildcard):
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
            yield SubjectFound(cid, result)  # type: ignore[arg-type]
        if not monotone:
            yield PAUSE


def _candidates(
    schema: ir.Schema,
    facts: Reachability,
    index: RelationshipIndex,
    start: tuple[str, str, str],
    subject_type: str,
    subject_relation: str,
) -> Generator[Pause, None, tuple[set[str], bool]]:
    """Every subject id of the wanted type the walk from `start` reaches, and whether a
    wildcard of that type was seen; pausing inside long buckets (see lookup_resources._climb
    for why that is safe)."""
    found: set[str] = set()
    wildcard = False
    visited: set[tuple[str, str, str]] = set()
    stack = [start]
    admits = facts.admits
    deadline = request_deadline.get()
    steps = 0
    while stack:
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
                        while chunk := list(islice(subjects, SORT_CHUNK)):
                            found.update([i for t, i in chunk if t == subject_type and i != "*"])
                            yield PAUSE
                for count, (stype, sid, srel) in enumerate(index.usersets.get(node, {}), 1):
                    if count % PAUSE_EVERY == 0:
                        yield PAUSE
                    if (ntype, nrel, stype, srel, False) in admits:
                        stack.append((stype, sid, srel))
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
                        stack.append((stype, sid, part.computed))
    return found, wildcard


def _parts(node: ir.Rewrite) -> list[ir.Rewrite]:
    """The leaves (This, computed usersets, arrows) of a rewrite, every branch included."""
    if isinstance(node, ir.Union | ir.Intersection):
        return [leaf for child in node.children for leaf in _parts(child)]
    if isinstance(node, ir.Exclusion):
        return _parts(node.base) + _parts(node.subtract)
    return [node]
