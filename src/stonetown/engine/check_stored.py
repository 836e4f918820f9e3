"""Check evaluations of the relationships stored under a relation: plain subjects and
wildcards looked up, subject sets dispatched (or answered from a closure), and chains of
nested sets walked as one loop. Compiled by check_plan.py, run by check.py."""

from __future__ import annotations

from stonetown.engine.check import (
    EXACT_CYCLES,
    PLAIN_CYCLES,
    CheckRun,
    DepthExceeded,
    EvalFn,
    Member,
    Refuter,
    Subject,
    set_refuter,
    skipped,
)
from stonetown.engine.conditions import UNKNOWN, Result, all_of, any_of
from stonetown.engine.deadline import CHECK_EVERY, check_deadline
from stonetown.engine.index import RelMeta
from stonetown.engine.subject_side import Side, shapes_of
from stonetown.schema import ir

_MISSING = object()
_EMPTY: dict[tuple[str, str], RelMeta | None] = {}


def allowed_sets(
    allowed: tuple[ir.AllowedSubject, ...],
) -> tuple[frozenset[str], frozenset[str], frozenset[tuple[str, str]]]:
    """(object types, wildcard types, (type, relation) subject sets) a relation admits."""
    objects = frozenset(a.type for a in allowed if a.relation is None and not a.wildcard)
    wildcards = frozenset(a.type for a in allowed if a.wildcard)
    usersets = frozenset((a.type, a.relation) for a in allowed if a.relation is not None)
    return objects, wildcards, usersets


def compile_this(
    rtype: str,
    rel: str,
    node: ir.This,
    part: str = "all",
    itself: bool = False,
    skips: dict[tuple[str, str], Refuter] | None = None,
    members: dict[tuple[str, str], Member] | None = None,
) -> EvalFn:
    """The relationships stored under `rtype#rel`: `part` "objects" looks up plain subjects
    and wildcards only, "usersets" walks subject sets only, "all" does both. `itself`: the
    subject set `rtype:rid#rel` is a member (for a relation evaluated inline). `skips`:
    refuters of subject-set relations whose dispatch may be skipped (CompiledSchema._skips)."""
    object_types, wildcard_types, userset_types = allowed_sets(node.allowed)
    if part == "usersets":
        object_types = wildcard_types = frozenset()
    elif part == "objects":
        userset_types = frozenset()
    has_objects = bool(object_types or wildcard_types)
    skips = skips or {}

    def this(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        key = (rtype, rid, rel)
        stype, sid, srel = subj
        if itself and srel == rel and sid == rid and stype == rtype:
            return True
        result: Result = False
        if has_objects and not srel:
            # the subject's own short list of holders answers "not stored here" without a
            # probe of the big forward map; the map is read only for a hit (its metadata)
            held = run.held if subj is run.held_subject else run.held_by(subj)
            if stype in object_types and key in held:
                with_meta = run.with_meta
                if not with_meta or (stype, sid, "") not in with_meta:
                    return True  # none of the subject's relationships has metadata
                meta = run.objects.get(key, _EMPTY).get((stype, sid), _MISSING)
                if meta is None:
                    return True
                if meta is not _MISSING:
                    result = run.meta_result(meta)  # type: ignore[arg-type]
                    if result is True:
                        return True
            if stype in wildcard_types:
                # the keys storing `stype:*` (a set far smaller than the forward map) answer
                # most lookups without a probe of that map
                wild = run.wild
                if wild is None:
                    wild = run.wild_of(stype)
                if key in wild and (not run.with_meta or (stype, "*", "") not in run.with_meta):
                    return True  # the wildcard is stored here, and none of its relationships has metadata
                bucket = run.objects.get(key) if key in wild else None
                if bucket is not None:
                    meta = bucket.get((stype, "*"), _MISSING)
                    if meta is None:
                        return True
                    if meta is not _MISSING:
                        result = any_of(result, run.meta_result(meta))  # type: ignore[arg-type]
                        if result is True:
                            return True
        if userset_types:
            ubucket = run.usersets.get(key)
            if ubucket:
                return walk_sets(run, ubucket, subj, depth, userset_types, skips, members, result)
        return result

    def refute(run: CheckRun, rid: str, subj: Subject) -> bool:
        stype, sid, srel = subj
        if srel:
            return False
        key = (rtype, rid, rel)
        if has_objects:
            held = run.held if subj is run.held_subject else run.held_by(subj)
            if stype in object_types and key in held:
                return False
            if stype in wildcard_types:
                wild = run.wild
                if wild is None:
                    wild = run.wild_of(stype)
                if key in wild:
                    return False
        return not (userset_types and run.usersets.get(key))

    set_refuter(this, refute)
    return this


def walk_sets(
    run: CheckRun,
    ubucket: dict[tuple[str, str, str], RelMeta | None],
    subj: Subject,
    depth: int,
    userset_types: frozenset[tuple[str, str]],
    skips: dict[tuple[str, str], Refuter],
    members: dict[tuple[str, str], Member] | None,
    result: Result = False,
) -> Result:
    """`result` (what was found before) or the subject sets of one stored bucket `ubucket` of
    the types `userset_types`, each dispatched (or skipped on the word of its refuter, or
    answered from its closure) until one grants. A depth error is deferred until every set
    was tried (another may grant)."""
    srel = subj[2]
    # any-of loop written out in each operator: a shared helper is a call per operand (5-10 % of a Check)
    deferred: DepthExceeded | None = None
    for (ustype, usid, usrel), meta in ubucket.items():
        if (ustype, usrel) not in userset_types:
            continue
        edge: Result = True
        if meta is not None:
            edge = run.meta_result(meta)
            if edge is False:
                continue
        if skips and not srel and depth < run.max_depth:
            refute = skips.get((ustype, usrel))
            if refute is not None and refute(run, usid, subj):
                skipped(run, (ustype, usid, usrel, subj))
                continue
        # a nested set answered by its closure, without a dispatch (closure_check)
        member = members.get((ustype, usrel)) if members and not srel else None
        found = member(run, usid, subj, depth) if member is not None else None
        if found is False:
            continue
        if found is None:
            try:
                found = run.dispatch(ustype, usid, usrel, subj, depth)
            except DepthExceeded as exc:
                deferred = exc
                continue
        if edge is not True:
            found = all_of(edge, found)
        if found is True:
            return True
        if found is not False:
            result = any_of(result, found)
    if deferred is not None:
        raise deferred
    return result


def chain_shape(rtype: str, relation: ir.Relation) -> bool:
    """Whether `relation` stores plain subjects and subject sets of itself only (`member:
    user | team#member`), no wildcard: nested teams (see :func:`compile_chain`)."""
    rewrite = relation.rewrite
    if not isinstance(rewrite, ir.This):
        return False
    objects, wildcards, usersets = allowed_sets(rewrite.allowed)
    return bool(objects) and not wildcards and usersets == {(rtype, relation.name)}


def compile_chain(rtype: str, rel: str, node: ir.This, walk: EvalFn) -> EvalFn:
    """A relation of :func:`chain_shape` for a plain subject, where its subject sets form a
    chain (each set holds at most one set of this relation: team in team in team): the
    walk's dispatches down the chain replayed as one loop, with `walk` (the plain evaluation)
    wherever the chain branches or a relationship has a caveat or an expiration.

    Step for step what the walk does: each set of the chain is looked up in the memo, cut
    as a cycle when already on the stack (the value CheckRun._cycle gives; the loop's own
    sets are all of this relation, so they would not change it), refused at the depth limit
    (the walk's DepthExceeded, raised through every set above it), counted against the
    deadline budget, and memoized with the value it hands up unless a cycle was cut below
    it. Nothing is written before the loop knows it can answer: a fallback to `walk` starts
    from an unchanged run."""
    object_types = allowed_sets(node.allowed)[0]
    pair = (rtype, rel)

    def chain(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        stype, sid, srel = subj
        if srel or stype not in object_types:
            return walk(run, rid, subj, depth)
        held = run.held if subj is run.held_subject else run.held_by(subj)
        objects, usersets, memo = run.objects, run.usersets, run.memo
        skey = (stype, sid)
        # past the first set: the sets of this relation holding the subject directly, and
        # those on the stack for it, read once, then one probe of a small set per step
        direct: set[str] | None = None
        outer: set[str] | None = None
        path: list[tuple[str, str, str, Subject]] = []  # memo keys of the sets dispatched
        inner = {rid}  # rid and the sets of `path`: the walk's frames of this loop
        current = rid
        cut = False
        error: DepthExceeded | None = None
        while True:
            key = (rtype, current, rel)
            if current in direct if direct is not None else key in held:  # type: ignore[operator]
                meta = objects.get(key, _EMPTY).get(skey, _MISSING)
                if meta is None:
                    value: Result = True
                    break
                if meta is not _MISSING:
                    return walk(run, rid, subj, depth)
            ubucket = usersets.get(key)
            child = None
            if ubucket:
                for (ustype, usid, usrel), meta in ubucket.items():
                    if usrel != rel or ustype != rtype:
                        continue
                    if child is not None or meta is not None:
                        return walk(run, rid, subj, depth)  # a branch, or metadata
                    child = usid
            if child is None:
                value = False
                break
            # run.dispatch(rtype, child, rel, subj, depth + len(path)), unrolled
            if outer is None:
                outer = {k[1] for k in run.stack if k[2] == rel and k[0] == rtype and k[3] == subj}
                if type(held) is tuple:
                    direct = {k[1] for k in held if k[2] == rel and k[0] == rtype}
            dkey = (rtype, child, rel, subj)
            known = memo.get(dkey)
            if known is not None:
                value = known
                break
            if child in inner:
                # met again within the loop: _cycle over frames all of this relation
                cycles = run.simple_recursive
                cut = True
                plain = cycles is PLAIN_CYCLES or cycles is EXACT_CYCLES
                value = False if plain or pair in cycles else UNKNOWN
                break
            if child in outer:
                cut, value = True, run._cycle(dkey, rtype, rel)
                break
            if depth + len(path) >= run.max_depth:
                error = DepthExceeded(
                    f"check exceeded the maximum depth of {run.max_depth} at {rtype}:{child}#{rel}"
                )
                break
            path.append(dkey)
            inner.add(child)
            current = child
        for _ in path:
            run.budget -= 1
            if not run.budget:
                run.budget = CHECK_EVERY
                check_deadline(run.deadline)
        if error is not None:
            raise error
        if cut:
            run.cut = True
        else:
            for dkey in path:
                memo[dkey] = value
        return value

    return chain


def compile_stored(
    rtype: str,
    direct: list[tuple[str, ir.This]],
    itself: frozenset[str] = frozenset(),
    sets: tuple[tuple[str, ir.This, dict[tuple[str, str], Refuter], dict[tuple[str, str], Member]], ...] = (),
) -> EvalFn:
    """The relationships stored under several relations of one union, in one closure: the
    plain-subject and wildcard lookups of `direct` (the "objects" part of
    :func:`compile_this` for each), then the subject sets of `sets` (its "usersets" part:
    relation, node, skips, members), in that order (the union's). `itself`: relations
    whose subject set on the object is a member (relations evaluated inline)."""
    specs = tuple((rel, *allowed_sets(node.allowed)[:2]) for rel, node in direct)
    set_specs = tuple(
        (rel, allowed_sets(node.allowed)[2], skips, members) for rel, node, skips, members in sets
    )
    set_shapes = tuple((rel, shapes_of(types, members)) for rel, types, _, members in set_specs)
    complete = all(shapes is not None for _, shapes in set_shapes)
    # the objects where a subject set stored here holds a plain subject (as its holders say),
    # kept per subject (subject_side): asked where it saves several probes of the forward map
    own = Side(rtype, (), set_shapes) if len(set_specs) > 1 and complete else None  # type: ignore[arg-type]

    def stored(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        stype, sid, srel = subj
        result: Result = False
        if srel:
            if srel in itself and sid == rid and stype == rtype:
                return True
        else:
            get, with_meta = run.objects.get, run.with_meta
            held = run.held if subj is run.held_subject else run.held_by(subj)
            # compile_this's probes written out over several relations: a call per relation
            # would cost the union what one closure saves
            for rel, object_types, wildcard_types in specs:
                key = (rtype, rid, rel)
                if stype in object_types and key in held:
                    if not with_meta or (stype, sid, "") not in with_meta:
                        return True  # none of the subject's relationships has metadata
                    meta = get(key, _EMPTY).get((stype, sid), _MISSING)
                    if meta is None:
                        return True
                    if meta is not _MISSING:
                        result = any_of(result, run.meta_result(meta))  # type: ignore[arg-type]
                        if result is True:
                            return True
                if stype in wildcard_types:
                    wild = run.wild
                    if wild is None:  # run.wild_of(stype), written out (a call per check)
                        wild = run.wild = run.reverse.get((stype, "*", ""), ())
                    if key not in wild:
                        continue
                    if not with_meta or (stype, "*", "") not in with_meta:
                        return True  # none of the wildcard's relationships has metadata
                    bucket = get(key)
                    if bucket is None:
                        continue
                    meta = bucket.get((stype, "*"), _MISSING)
                    if meta is None:
                        return True
                    if meta is not _MISSING:
                        result = any_of(result, run.meta_result(meta))  # type: ignore[arg-type]
                        if result is True:
                            return True
        if not set_specs:
            return result
        if own is not None and not srel:
            # outside its own objects, no subject set here holds the subject (as its holders
            # say): no probe of the forward map. (own.ids_of's kept entry read in place: a
            # call per check)
            closures = run.closure
            entry = None if closures is None else closures.sides.get(own, _EMPTY).get(subj)
            if entry is not None and depth + entry[1] < run.max_depth:
                ids = entry[0]
            else:
                ids = own.ids_of(run, subj, depth)
            if ids is not None and rid not in ids:
                return result
        # any-of loop written out in each operator: a shared helper is a call per operand (5-10 % of a Check)
        deferred: DepthExceeded | None = None
        usersets = run.usersets
        for rel, userset_types, skips, members in set_specs:
            ubucket = usersets.get((rtype, rid, rel))
            if ubucket:
                try:
                    found = walk_sets(run, ubucket, subj, depth, userset_types, skips, members)
                except DepthExceeded as exc:
                    deferred = exc
                    continue
                if found is True:
                    return True
                if found is not False:
                    result = any_of(result, found)  # (as a union of each relation's sets)
        if deferred is not None:
            raise deferred
        return result

    def refute(run: CheckRun, rid: str, subj: Subject) -> bool:
        stype, sid, srel = subj
        if srel:
            return False
        held = run.held if subj is run.held_subject else run.held_by(subj)
        for rel, object_types, wildcard_types in specs:
            key = (rtype, rid, rel)
            if stype in object_types and key in held:
                return False
            if stype in wildcard_types:
                wild = run.wild
                if wild is None:
                    wild = run.wild_of(stype)
                if key in wild:
                    return False
        return True

    # with subject sets, a refuter (inconclusive wherever sets are stored) would cost as many
    # lookups again as the evaluation it stands for: none, as for a union of several operands
    if not set_specs:
        set_refuter(stored, refute)
    if complete:
        # what it grants a plain subject through (subject_side): for an arrow to it, and
        # for the levels of an ancestor chain
        stored.side = Side(rtype, specs, set_shapes)  # type: ignore[arg-type,attr-defined]
    return stored
