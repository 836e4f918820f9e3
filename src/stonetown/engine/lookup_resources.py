"""LookupResources: every object of a type on which a subject holds a permission.

The subject's holders are found through the reverse index and the walk climbs the schema's
reverse edges (relation → permissions containing it, relation → arrows over it, subject set →
relations holding it) breadth-first, each (type, id, relation) visited once, so cycles in the
data end. Every object of the wanted type reached with the wanted permission is a candidate.
Candidates of a monotone permission are answers; the others are confirmed with Check, which
settles intersections, exclusions, `all` arrows, caveats and expirations.
"""

from __future__ import annotations

from collections import deque

from stonetown.engine.check import CheckRun, CompiledSchema, Subject
from stonetown.engine.conditions import Result, granted
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.reachability import Reachability

Node = tuple[str, str, str]


def lookup_resources(
    compiled: CompiledSchema,
    facts: Reachability,
    index: RelationshipIndex,
    resource_type: str,
    permission: str,
    subject: Subject,
    max_depth: int,
) -> list[tuple[str, Result]]:
    """(resource id, result) for every object of `resource_type` reaching `subject`, sorted
    by id; results are True or a caveat condition, never False."""
    candidates = sorted(_candidates(facts, index, resource_type, permission, subject))
    if (resource_type, permission) in facts.monotone:
        return [(rid, True) for rid in candidates]
    run = CheckRun(compiled, index, max_depth)
    found: list[tuple[str, Result]] = []
    for rid in candidates:
        result = run.dispatch(resource_type, rid, permission, subject, 0)
        if granted(result):
            found.append((rid, result))
    return found


def _candidates(
    facts: Reachability, index: RelationshipIndex, resource_type: str, permission: str, subject: Subject
) -> set[str]:
    reverse = index.reverse
    admits = facts.admits
    relevant = facts.relevant_to(resource_type, permission)
    reached: set[Node] = set()
    queue: deque[Node] = deque()

    def holders(stype: str, sid: str, srel: str, wildcard: bool = False) -> None:
        for rkey in reverse.get((stype, sid, srel), ()):
            if (
                (rkey[0], rkey[2]) in relevant
                and (rkey[0], rkey[2], stype, srel, wildcard) in admits
                and rkey not in reached
            ):
                reached.add(rkey)
                queue.append(rkey)

    stype, sid, srel = subject
    if srel:
        reached.add(subject)
        queue.append(subject)
    holders(stype, sid, srel)
    if not srel and sid != "*":
        holders(stype, "*", "", wildcard=True)

    deadline = request_deadline.get()
    steps = 0
    while queue:
        steps += 1
        if steps % CHECK_EVERY == 0:
            check_deadline(deadline)
        node = queue.popleft()
        ntype, nid, nrel = node
        for perm in facts.computed_parents.get((ntype, nrel), ()):
            up = (ntype, nid, perm)
            if (ntype, perm) in relevant and up not in reached:
                reached.add(up)
                queue.append(up)
        for parent_type, tupleset, perm in facts.arrow_parents.get((ntype, nrel), ()):
            if (parent_type, perm) not in relevant:
                continue
            for via in facts.tupleset_subject_relations.get((parent_type, tupleset, ntype), ()):
                for rtype, rid, rrel in reverse.get((ntype, nid, via), ()):
                    if rtype == parent_type and rrel == tupleset:
                        up = (rtype, rid, perm)
                        if up not in reached:
                            reached.add(up)
                            queue.append(up)
        holders(ntype, nid, nrel)
    return {rid for rtype, rid, rel in reached if rtype == resource_type and rel == permission}
