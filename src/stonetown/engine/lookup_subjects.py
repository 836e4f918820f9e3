"""LookupSubjects: every subject of a type that holds a permission on one object.

The walk goes forward from the object through the rewrite (all branches, subtracted ones
included) collecting every subject of the wanted type, and notes whether a wildcard of that
type was seen. Candidates of a monotone permission are answers; the others are confirmed
with Check. A wildcard is answered by checking a subject id no relationship can hold; the
concrete candidates it does not cover are its exclusions.

The answer takes SpiceDB's shape: a subject is listed on its own when it is named outside
every subtracted side (SpiceDB's concrete subjects: `viewer: user:*` with `viewer@user:u1`
lists `*` and u1), not when only an exclusion names it and the wildcard covers it; see
:func:`shaped` for the wildcard's exclusions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stonetown.engine.check import CheckRun, CompiledSchema
from stonetown.engine.conditions import Result, granted
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import RelationshipIndex, without_wildcards
from stonetown.engine.reachability import Reachability
from stonetown.engine.types import Permissionship
from stonetown.schema import ir

# No stored id can contain NUL, so this id stands for "any subject not named in the data".
UNSEEN_ID = "\x00unseen"


@dataclass(frozen=True, slots=True)
class SubjectsFound:
    """The answer: concrete subject ids with their results, and the wildcard (if granted) with
    its result and excluded ids."""

    subjects: list[tuple[str, Result]]
    wildcard: Result
    excluded: list[str]
    # the candidates named outside every subtracted side (None: all of them)
    named: frozenset[str] | None = None
    # beside a wildcard, what the named candidates hold on their own (without any wildcard)
    own: dict[str, Result] | None = None


def lookup_subjects(
    compiled: CompiledSchema,
    facts: Reachability,
    index: RelationshipIndex,
    resource: tuple[str, str],
    permission: str,
    subject_type: str,
    subject_relation: str,
    max_depth: int,
) -> SubjectsFound:
    """Subjects of `subject_type` (with `subject_relation`, "" for plain objects) holding
    `permission` on `resource`, ids sorted."""
    candidates, wildcard_seen = _candidates(
        compiled.schema, facts, index, (*resource, permission), subject_type, subject_relation
    )
    ordered = sorted(candidates)
    if (resource[0], permission) in facts.monotone:
        # without caveats and expiration, every candidate of a monotone permission is granted
        # on its own (reached through relationships naming it)
        conditional = bool(compiled.schema.caveats) or compiled.schema.uses_expiration
        own = _own(
            compiled,
            index,
            resource,
            permission,
            subject_type,
            ordered,
            max_depth,
            wildcard_seen and conditional,
        )
        return SubjectsFound([(cid, True) for cid in ordered], wildcard_seen, [], None, own)
    named, _ = _candidates(
        compiled.schema, facts, index, (*resource, permission), subject_type, subject_relation, _named_parts
    )
    run = CheckRun(compiled, index, max_depth)
    rtype, rid = resource
    results = [
        (cid, run.dispatch(rtype, rid, permission, (subject_type, cid, subject_relation), 0))
        for cid in ordered
    ]
    wildcard: Result = False
    excluded: list[str] = []
    if wildcard_seen:
        wildcard = run.dispatch(rtype, rid, permission, (subject_type, UNSEEN_ID, ""), 0)
        if not granted(wildcard):
            wildcard = False
        else:
            excluded = [cid for cid, result in results if not granted(result)]
    own = _own(
        compiled, index, resource, permission, subject_type, sorted(named), max_depth, wildcard is not False
    )
    return SubjectsFound(
        [(cid, r) for cid, r in results if granted(r)], wildcard, excluded, frozenset(named), own
    )


def _own(
    compiled: CompiledSchema,
    index: RelationshipIndex,
    resource: tuple[str, str],
    permission: str,
    subject_type: str,
    ids: list[str],
    max_depth: int,
    wildcard: bool,
) -> dict[str, Result] | None:
    """Beside a wildcard (of plain subjects), what each of `ids` holds on its own: SpiceDB lists
    a subject the wildcard covers only when its own relationships grant it (a caveat that
    fails, an expired relationship, drop it)."""
    if not wildcard:
        return None
    run = CheckRun(compiled, without_wildcards(index, subject_type), max_depth)
    return {cid: run.dispatch(*resource, permission, (subject_type, cid, ""), 0) for cid in ids}


_RANK = {Permissionship.DENIED: 0, Permissionship.CONDITIONAL: 1, Permissionship.ALLOWED: 2}


def shaped(
    found: SubjectsFound,
    verdicts: Mapping[str, Permissionship],
    wildcard: Permissionship,
    own: Mapping[str, Permissionship] | None = None,
) -> tuple[list[str], list[str]]:
    """(the subjects listed on their own, the wildcard's exclusions) as SpiceDB shapes them,
    from the verdict on each granted subject, on the wildcard and on what each named subject
    holds without the wildcard (`own`, see SubjectsFound) under the request context.

    Listed: the subjects not denied that are named outside every subtracted side (and, where
    the wildcard covers them, granted on their own), and those the wildcard answers worse
    (`viewer - (banned - unbanned)` with `*` in all three lists the unbanned). Excluded: the
    subjects the wildcard answers better (denied, or conditional under a wildcard granted
    outright). So every subject's answer is its own entry, else the wildcard's unless
    excluded: Check's answer, except that a conditionally excluded subject reads as excluded
    (SpiceDB marks such an exclusion conditional)."""
    named = found.named
    rank = _RANK[wildcard]
    listed = [
        cid
        for cid, _ in found.subjects
        if verdicts[cid] is not Permissionship.DENIED
        and (
            _RANK[verdicts[cid]] > rank
            or ((named is None or cid in named) and (own is None or own[cid] is not Permissionship.DENIED))
        )
    ]
    excluded = set(found.excluded)
    excluded.update(cid for cid, verdict in verdicts.items() if _RANK[verdict] < rank)
    return listed, sorted(excluded)


def _candidates(
    schema: ir.Schema,
    facts: Reachability,
    index: RelationshipIndex,
    start: tuple[str, str, str],
    subject_type: str,
    subject_relation: str,
    parts: Callable[[ir.Rewrite], list[ir.Rewrite]] | None = None,
) -> tuple[set[str], bool]:
    """The subject ids of the wanted type the walk from `start` meets through the `parts` of
    each rewrite (default: every branch), and whether it met the type's wildcard."""
    parts = parts or _parts
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
                for (stype, sid), _meta in index.objects.get(node, {}).items():
                    if stype != subject_type or subject_relation:
                        continue
                    if sid == "*":
                        wildcard = wildcard or (ntype, nrel, stype, "", True) in admits
                    elif (ntype, nrel, stype, "", False) in admits:
                        found.add(sid)
                for (stype, sid, srel), _meta in index.usersets.get(node, {}).items():
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
                for stype, sid in targets:
                    if schema.relation(stype, part.computed) is not None:
                        stack.append((stype, sid, part.computed))
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
