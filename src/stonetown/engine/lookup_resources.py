"""LookupResources: every object of a type on which a subject holds a permission.

The subject's holders are found through the reverse index and the walk climbs the schema's
reverse edges (relation → permissions containing it, relation → arrows over it, subject set →
relations holding it) breadth-first, each (type, id, relation) visited once, so cycles in the
data end. Every object of the wanted type reached with the wanted permission is a candidate.

Candidates of a monotone permission are answers. Otherwise the walk runs in two phases:
1. along *positive* edges only (a relation held under unions only, an `any` arrow under unions
   only, a relationship without caveat or expiration into a relation that grants its own
   relationships under unions only: see reachability.py). A node reached this way is proven:
   the subject holds it, so candidates reached here are answers without a check. An edge that
   is not positive (into an intersection, an exclusion's base, an `all` arrow, a caveated or
   expiring relationship) stops at its target, a *boundary* node.
2. each boundary node is checked once: when the subject does not hold it (not even under a
   caveat), nothing above it can be granted through it and the walk does not climb from it;
   otherwise the walk climbs from it over every edge, and the candidates found only this way
   are confirmed with Check, which settles intersections, exclusions, `all` arrows, caveats
   and expirations.

Depth is counted as Check counts it: a hop over a subject set or an arrow is one level, a
computed userset none. A walk that reaches a node `max_depth` levels above the subject's
holders fails with DepthExceeded (as Check of that node would), so LookupResources never
answers where Check answers max depth; the walk goes level by level to count the fewest.
A node the first phase reaches over an edge that is not positive is still proven (and climbed
from) when lookup_confirm.py proves it from the nodes proven so far: an exclusion's base held
and its subtracted side certainly not; only the candidates left are checked one by one.
A check of a candidate that meets the depth limit is answered again by the plain walk (as
Check's is, see check.Rewalk): the error, if any, is the walk's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from itertools import islice

from stonetown.engine.check import CheckRun, DepthExceeded, Rewalk, Subject
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.conditions import Result, granted
from stonetown.engine.cooperative import (
    PAUSE,
    PAUSE_EVERY,
    SCAN_CHUNK,
    Granted,
    Pause,
    finish,
    granted_runs,
    sorted_runs,
    sorted_steps,
)
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import EVERY_KEY, RelationshipIndex
from stonetown.engine.lookup_confirm import Confirmer, Holds, Leaf, always, never
from stonetown.engine.reachability import Reachability, WalkPlan

Node = tuple[str, str, str]

_MISSING = object()


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
    found, _ = finish(
        lookup_resources_steps(compiled, facts, index, resource_type, permission, subject, max_depth)
    )
    return found


def lookup_resources_steps(
    compiled: CompiledSchema,
    facts: Reachability,
    index: RelationshipIndex,
    resource_type: str,
    permission: str,
    subject: Subject,
    max_depth: int,
    after: str | None = None,
    first: int | None = None,
) -> Generator[tuple[str, Result] | Granted | Pause, None, None]:
    """The answers of :func:`lookup_resources` with ids after `after`, in order, as
    cooperative steps (see cooperative.py; those granted outright in :class:`Granted` runs):
    the walk runs to its end (any object can be reached last), then the candidates are sorted
    in slices and only those handed out are checked, so a consumer that stops after a page
    does not pay for the rest. `first`: how many answers the consumer likely wants (see
    cooperative.sorted_steps)."""
    plan = facts.plan_for(resource_type, permission)
    # OpenFGA's ListObjects does not fail at its resolution depth: its walks are not limited
    limit = None if compiled.openfga_cycles else max_depth
    if (resource_type, permission) in facts.monotone:
        reached: set[Node] = set()
        queue = yield from _start(plan, index, subject, reached)
        yield from _climb(plan, index, queue, reached, limit)
        yield from _granted(ids=(yield from _of(reached, resource_type, permission, after)), first=first)
        return
    run = CheckRun(compiled, index, max_depth)
    confirmer = _confirmer(compiled, facts, index, subject, run)
    split = _two_phase_steps(
        plan, index, subject, run, check_tops=False, max_depth=limit, confirmer=confirmer
    )
    proven, maybe = yield from split
    ids = yield from _of(proven, resource_type, permission, after)
    others = yield from _of(maybe, resource_type, permission, after)
    if not others:  # every candidate proven: nothing to check
        yield from _granted(ids, first)
        return
    certain = set(ids)
    ids.extend(others)
    prove = never
    if confirmer is not None:
        yield from confirmer.prepare(resource_type, permission)
        prove = confirmer.prover(resource_type, permission)
    rewalk: Rewalk | None = None  # the plain walk, once a check meets the depth limit
    for rid in sorted_steps(ids, first):
        if rid is PAUSE:
            yield PAUSE
        elif rid in certain or prove(rid):
            yield (rid, True)
        else:
            try:
                result = run.dispatch(resource_type, rid, permission, subject, 0)
            except DepthExceeded as error:
                # the error is the plain walk's to give, as in Check (see check.Rewalk)
                rewalk = Rewalk.instead(error, compiled, index, max_depth, rewalk)
                result = rewalk.again((resource_type, rid, permission, subject))
            if granted(result):
                yield (rid, result)
            yield PAUSE


def _granted(ids: list[str], first: int | None) -> Generator[Granted | Pause, None, None]:
    """`ids`, each granted outright, in order, in runs (see cooperative.sorted_steps for
    `first`)."""
    yield from granted_runs(sorted_runs(ids, first), outright)


def outright(rid: str) -> tuple[str, Result]:
    """The result of a resource granted outright (an id of a :class:`Granted` run)."""
    return (rid, True)


def _of(
    nodes: set[Node], resource_type: str, permission: str, after: str | None
) -> Generator[Pause, None, list[str]]:
    """The ids of the `resource_type#permission` nodes in `nodes` (a set the walk owns) after
    the cursor id `after`."""
    found: list[str] = []
    entries = iter(nodes)
    while chunk := list(islice(entries, SCAN_CHUNK)):
        found += [rid for rtype, rid, rel in chunk if rel == permission and rtype == resource_type]
        yield PAUSE
    return found if after is None else [rid for rid in found if rid > after]


def _confirmer(
    compiled: CompiledSchema, facts: Reachability, index: RelationshipIndex, subject: Subject, run: CheckRun
) -> Confirmer | None:
    """What proves candidates from the walk's sets (lookup_confirm.py); None where Check must
    confirm each: under OpenFGA's cycle races, whose replay may deny what the sets prove."""
    if run.race is not None:
        return None

    def walk(rtype: str, relation: str) -> Generator[Pause, None, set[Node]]:
        # every node a plain walk up from the subject to `rtype#relation` reaches
        plan = facts.plan_for(rtype, relation)
        reached: set[Node] = set()
        queue = yield from _start(plan, index, subject, reached)
        yield from _climb(plan, index, queue, reached)
        return reached

    return Confirmer(compiled, facts.admits, index, set(), walk)


def _start(
    plan: WalkPlan, index: RelationshipIndex, subject: Subject, reached: set[Node]
) -> Generator[Pause, None, deque[Node]]:
    """The first nodes of a plain walk: the subject set itself and the subject's holders."""
    queue: deque[Node] = deque()
    stype, sid, srel = subject
    if srel:
        reached.add(subject)
        queue.append(subject)
    starts = [(subject, False)]
    if not srel and sid != "*":
        starts.append(((stype, "*", ""), True))
    for key, wildcard in starts:
        shapes = plan.holders.get((stype, srel, wildcard))
        if shapes:
            for count, rkey in enumerate(index.reverse.get(key, ()), 1):
                if (rkey[0], rkey[2]) in shapes and rkey not in reached:
                    reached.add(rkey)
                    queue.append(rkey)
                if count % PAUSE_EVERY == 0:
                    yield PAUSE
    return queue


def next_level(level: int, max_depth: int | None, node: Node) -> int:
    """The level after `level` of a lookup's walk, about to visit `node`; DepthExceeded when
    it reaches `max_depth` (None: levels are not limited)."""
    level += 1
    if max_depth is not None and level >= max_depth:
        raise DepthExceeded(
            f"lookup exceeded the maximum depth of {max_depth} at {node[0]}:{node[1]}#{node[2]}"
        )
    return level


def _climb(
    plan: WalkPlan,
    index: RelationshipIndex,
    queue: deque[Node],
    reached: set[Node],
    max_depth: int | None = None,
) -> Generator[Pause, None, None]:
    """Breadth-first over every reverse edge from the nodes in `queue` (already in `reached`),
    adding what it reaches to `reached`; a node already in `reached` is not climbed again.
    With `max_depth`, the nodes in `queue` are level 0 and a level reaching it fails (see
    the module docstring); without, levels are not counted (the answers are checked).

    It pauses between nodes and inside long fan-outs: an index that changes during a pause
    is never read again (see cooperative.resumable), so holding its iterators is safe."""
    reverse = index.reverse
    computed, arrows, holders = plan.computed, plan.arrows, plan.holders
    onward, climbable = plan.onward, plan.climbable
    deadline = request_deadline.get()
    steps = 0
    level, later = 0, deque[Node]()  # `later`: the next level's nodes
    while queue or later:
        if not queue:
            level = next_level(level, max_depth, later[0])
            queue, later = later, queue
        steps += 1
        if steps % CHECK_EVERY == 0:
            check_deadline(deadline)
        if steps % PAUSE_EVERY == 0:
            yield PAUSE
        node = queue.popleft()
        ntype, nid, nrel = node
        for perm, _ in computed.get((ntype, nrel), ()):
            up = (ntype, nid, perm)
            if up not in reached:
                reached.add(up)
                if (ntype, perm) in onward:
                    queue.append(up)
        for parent_type, tupleset, perm, _, vias in arrows.get((ntype, nrel), ()):
            for via in vias:
                for count, (rtype, rid, rrel) in enumerate(reverse.get((ntype, nid, via), ()), 1):
                    if count % PAUSE_EVERY == 0:
                        yield PAUSE
                    if rtype == parent_type and rrel == tupleset:
                        up = (rtype, rid, perm)
                        if up not in reached:
                            reached.add(up)
                            if (rtype, perm) in climbable:
                                later.append(up)
        shapes = holders.get((ntype, nrel, False))
        if shapes:
            rkeys = reverse.get(node)
            if rkeys:
                for count, rkey in enumerate(rkeys, 1):
                    if count % PAUSE_EVERY == 0:
                        yield PAUSE
                    if (rkey[0], rkey[2]) in shapes and rkey not in reached:
                        reached.add(rkey)
                        if (rkey[0], rkey[2]) in climbable:
                            later.append(rkey)


def _two_phase(
    plan: WalkPlan,
    index: RelationshipIndex,
    subject: Subject,
    run: CheckRun,
    confirmer: Confirmer | None = None,
) -> tuple[set[Node], set[Node]]:
    """(proven, maybe): nodes the subject certainly holds, and the other nodes reached
    through boundary nodes the subject may hold (see the module docstring)."""
    _, split = finish(_two_phase_steps(plan, index, subject, run, confirmer=confirmer))
    return split


def _two_phase_steps(
    plan: WalkPlan,
    index: RelationshipIndex,
    subject: Subject,
    run: CheckRun,
    check_tops: bool = True,
    max_depth: int | None = None,
    confirmer: Confirmer | None = None,
) -> Generator[Pause, None, tuple[set[Node], set[Node]]]:
    """:func:`_two_phase` as cooperative steps (pausing like :func:`_climb`). Without
    `check_tops`, boundary nodes with no edge above them are not checked (climbing from them
    leads nowhere) but left in `maybe`: the candidates among them are checked when handed
    out, and only those. `max_depth` limits the first phase's levels (the nodes of the
    second are checked, and Check counts its own depth). With a `confirmer` (whose proven
    set becomes the walk's), a node reached over an edge that is not positive is proven when
    the confirmer proves it from the nodes proven so far, and the first phase climbs on from
    it."""
    reverse, objects, usersets = index.reverse, index.objects, index.usersets
    # a subject outside it has no relationship with a caveat or an expiration: every key its
    # reverse entry names stores it plain, without a probe of the forward map (see index.py)
    with_meta = getattr(index, "with_meta", EVERY_KEY)
    computed, arrows, holders = plan.computed, plan.arrows, plan.holders
    onward, climbable = plan.onward, plan.climbable
    proven: set[Node] = confirmer.proven if confirmer is not None else set()
    boundary: set[Node] = set()
    queue: deque[Node] = deque()
    later: deque[Node] = deque()  # the next level's nodes (see _climb)

    # (type, permission, edge) -> the confirmer's test of a node of that type and permission
    # reached from a proven node over `edge` (None: over a caveated or expiring relationship),
    # an edge that is not positive; built once per walk, asked for each node so reached
    provers: dict[tuple[str, str, Leaf | None], Holds] = {}

    def prover(key: tuple[str, str, Leaf | None]) -> Generator[Pause, None, Holds]:
        if confirmer is None:
            provers[key] = never
        else:
            if not confirmer.ready(key[0], key[1]):
                yield from confirmer.prepare(key[0], key[1])
            provers[key] = confirmer.prover(*key)
        return provers[key]

    def climb_holders(node: Node, wildcard: bool, into: deque[Node]) -> Generator[Pause, None, None]:
        # `node` as a stored subject: the relations holding it
        stype, sid, srel = node
        shapes = holders.get((stype, srel, wildcard))
        if not shapes:
            return  # no relation admits such a subject: no need to look in the index
        rkeys = reverse.get(node)
        if not rkeys:
            return
        key = (stype, sid, srel) if srel else (stype, sid)
        store = usersets if srel else objects
        all_plain = node not in with_meta
        for count, rkey in enumerate(rkeys, 1):
            if count % PAUSE_EVERY == 0:
                yield PAUSE
            positive = shapes.get((rkey[0], rkey[2]))
            if positive is None or rkey in proven:
                continue
            if positive:
                if all_plain:
                    proven.add(rkey)
                    if (rkey[0], rkey[2]) in climbable:
                        into.append(rkey)
                    continue
                bucket = store.get(rkey)
                if bucket is not None and bucket.get(key, _MISSING) is None:  # type: ignore[attr-defined]
                    proven.add(rkey)
                    if (rkey[0], rkey[2]) in climbable:
                        into.append(rkey)
                    continue
            boundary.add(rkey)

    stype, sid, srel = subject
    if srel:
        proven.add(subject)  # a subject set is a member of itself
        queue.append(subject)
    yield from climb_holders(subject, False, queue)
    if not srel and sid != "*":
        yield from climb_holders((stype, "*", ""), True, queue)

    deadline = request_deadline.get()
    steps = 0
    level = 0
    while queue or later:
        if not queue:
            level = next_level(level, max_depth, later[0])
            queue, later = later, queue
        steps += 1
        if steps % CHECK_EVERY == 0:
            check_deadline(deadline)
        if steps % PAUSE_EVERY == 0:
            yield PAUSE
        node = queue.popleft()
        ntype, nid, nrel = node
        for perm, positive in computed.get((ntype, nrel), ()):
            up = (ntype, nid, perm)
            if up in proven:
                continue
            if not positive:
                over = (ntype, perm, ("computed", nrel))
                prove = provers.get(over) or (yield from prover(over))
                if not prove(nid):
                    boundary.add(up)
                    continue
            proven.add(up)
            if (ntype, perm) in onward or not positive:
                queue.append(up)
        for parent_type, tupleset, perm, positive, vias in arrows.get((ntype, nrel), ()):
            over_plain = (parent_type, perm, ("arrow", tupleset, nrel))
            over_edged = (parent_type, perm, None)
            # the same for every key reached here (its type and relation are checked below)
            climbs = (parent_type, perm) in climbable
            prove_plain: Holds | None = None
            for via in vias:
                held = (ntype, nid, via)
                rkeys = reverse.get(held)
                if not rkeys:
                    continue
                store = usersets if via else objects
                key = held if via else (ntype, nid)
                all_plain = held not in with_meta
                for count, rkey in enumerate(rkeys, 1):
                    if count % PAUSE_EVERY == 0:
                        yield PAUSE
                    rtype, rid, rrel = rkey
                    if rtype != parent_type or rrel != tupleset:
                        continue
                    up = (rtype, rid, perm)
                    if up in proven:
                        continue
                    if all_plain:
                        plain = True
                    else:
                        bucket = store.get(rkey)
                        plain = bucket is not None and bucket.get(key, _MISSING) is None  # type: ignore[attr-defined]
                    if plain:
                        if not positive:
                            if prove_plain is None:
                                prove_plain = provers.get(over_plain) or (yield from prover(over_plain))
                            if prove_plain is not always and not prove_plain(rid):
                                boundary.add(up)
                                continue
                        proven.add(up)
                        if climbs:
                            later.append(up)
                        continue
                    prove = provers.get(over_edged) or (yield from prover(over_edged))
                    if prove(rid):
                        proven.add(up)
                        if climbs:
                            later.append(up)
                        continue
                    boundary.add(up)
        if (ntype, nrel, False) in holders and node in reverse:
            yield from climb_holders(node, False, later)

    # Phase 2: climb over every edge from the boundary nodes the subject may hold. A node it
    # does not hold stays in `reached` (so it is never climbed from) but is no candidate.
    reached: set[Node] = proven | boundary
    pruned: set[Node] = set()
    pending: deque[Node] = deque()
    for node in boundary - proven:
        if not check_tops and (node[0], node[2]) not in climbable:
            continue
        try:
            held = granted(run.dispatch(node[0], node[1], node[2], subject, 0))
        except DepthExceeded:
            held = True  # undecided here: climb, and let the candidates' checks decide
        if held:
            pending.append(node)
        else:
            pruned.add(node)
        yield PAUSE
    yield from _climb(plan, index, pending, reached)
    return proven, reached - proven - pruned
