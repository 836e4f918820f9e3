"""Check evaluations that combine others: arrows (`tupleset->computed`), unions,
intersections and exclusions. Compiled by check_plan.py, run by check.py."""

from __future__ import annotations

from stonetown.engine.check import (
    CheckRun,
    DepthExceeded,
    EvalFn,
    Refuter,
    Subject,
    negation_marks,
    refuter_of,
    set_refuter,
    skipped,
)
from stonetown.engine.conditions import Result, all_of, any_of, negate
from stonetown.engine.deadline import CHECK_EVERY, check_deadline
from stonetown.engine.index import RelMeta
from stonetown.engine.subject_side import NOTHING, ArrowSide
from stonetown.schema import ir

_MISSING = object()
_EMPTY: dict[tuple[str, str], RelMeta | None] = {}


def nil(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
    """The evaluation of a rewrite that grants nothing."""
    return False


def compile_factored(lookups: EvalFn, shared: EvalFn) -> EvalFn:
    """`lookups & shared` (flags and their shared operand, see CompiledSchema._factor), with
    the shared operand's refuter as its own: it costs one lookup where the flags cost one
    each, and when it holds the intersection is False whatever the flags (which never raise
    nor dispatch, and whose metadata cannot change that answer)."""
    evaluate = compile_intersection((lookups, shared))
    set_refuter(evaluate, refuter_of(shared))
    return evaluate


def compile_arrow(
    rtype: str,
    node: ir.TupleToUserset,
    allowed: tuple[frozenset[str], frozenset[tuple[str, str]]],
    skips: dict[str, Refuter] | None = None,
    side: ArrowSide | None = None,
) -> EvalFn:
    """`tupleset->computed` (any target, or every target for `all`). `skips`: per target
    type, the refuter of `computed` when its dispatch may be skipped (CompiledSchema._skips).
    `side`: for a tupleset of plain objects, what the arrow grants a plain subject through:
    outside its ids, it yields False without reading the tupleset (subject_side)."""
    tupleset, computed, every = node.tupleset, node.computed, node.mode == "all"
    skips = skips or {}
    object_types, userset_types = allowed
    # per target type, the evaluation of `computed` to call in place of its dispatch for a
    # plain subject (an ancestor chain's, see closure_check._compile_ancestors); set by
    # link() once every relation is compiled
    direct: dict[str, EvalFn] = {}

    def targets(run: CheckRun, rid: str) -> list[tuple[str, str, RelMeta | None]]:
        key = (rtype, rid, tupleset)
        found: list[tuple[str, str, RelMeta | None]] = []
        # only the maps the tupleset admits subjects from: one dict probe less per arrow
        if object_types:
            bucket = run.objects.get(key)
            if bucket:
                for (st, sid), meta in bucket.items():
                    if st in object_types and sid != "*":
                        found.append((st, sid, meta))
        if userset_types:
            ubucket = run.usersets.get(key)
            if ubucket:
                for (st, sid, srel), meta in ubucket.items():
                    if (st, srel) in userset_types:
                        found.append((st, sid, meta))
        return found

    def arrow_any(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        # any-of loop written out in each operator: a shared helper is a call per operand (5-10 % of a Check)
        result: Result = False
        deferred: DepthExceeded | None = None
        for st, sid, meta in targets(run, rid):
            edge: Result = True
            if meta is not None:
                edge = run.meta_result(meta)
                if edge is False:
                    continue
            try:
                found = run.dispatch(st, sid, computed, subj, depth)
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

    def arrow_any_objects(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        # arrow_any over a tupleset of plain objects only (nearly every arrow): the bucket
        # is walked in place, no list of targets is built (so arrow_any's loop is written out
        # again here: a helper per target would cost what the copy saves)
        if side is not None and not subj[2]:
            ids = side.ids_of(run, subj, depth)
            if ids is not None and rid not in ids:
                return False
        bucket = run.objects.get((rtype, rid, tupleset))
        if not bucket:
            return False
        result: Result = False
        deferred: DepthExceeded | None = None
        for (st, sid), meta in bucket.items():
            if st not in object_types or sid == "*":
                continue
            edge: Result = True
            if meta is not None:
                edge = run.meta_result(meta)
                if edge is False:
                    continue
            if skips and not subj[2] and depth < run.max_depth:
                refute = skips.get(st)
                if refute is not None and refute(run, sid, subj):
                    skipped(run, (st, sid, computed, subj))
                    continue
            try:
                found = None
                function = direct.get(st) if direct and not subj[2] else None
                if function is not None:
                    # the dispatch answered by the target's evaluation called `direct` (see
                    # link), without its stack entry: its memo entry if any, else the answer one
                    # deeper, counted against the deadline budget and memoized unless a cycle was
                    # cut below, as the dispatch would; None where the evaluation cannot answer
                    # (the dispatch must). Written out here: a helper is a call per check
                    key = (st, sid, computed, subj)
                    memo = run.memo
                    found = memo.get(key) if memo else None
                    if found is None:
                        outer_cut = run.cut
                        run.cut = False
                        try:
                            found = function(run, sid, subj, depth + 1, True)  # type: ignore[call-arg]
                        finally:
                            inner_cut = run.cut
                            run.cut = outer_cut or inner_cut
                        if found is not None:
                            run.budget -= 1
                            if not run.budget:
                                run.budget = CHECK_EVERY
                                check_deadline(run.deadline)
                            if not inner_cut:
                                memo[key] = found
                if found is None:
                    found = run.dispatch(st, sid, computed, subj, depth)
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

    def arrow_all(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = True
        seen = False
        for st, sid, meta in targets(run, rid):
            edge: Result = True
            if meta is not None:
                edge = run.meta_result(meta)
                if edge is False:
                    continue
            seen = True
            found = run.dispatch(st, sid, computed, subj, depth)
            result = all_of(result, all_of(edge, found))
            if result is False:
                return False
        return result if seen else False

    if every:
        return arrow_all
    if userset_types:
        return arrow_any

    def refute(run: CheckRun, rid: str, subj: Subject) -> bool:
        return not subj[2] and not run.objects.get((rtype, rid, tupleset))

    def link(functions: dict[tuple[str, str], EvalFn]) -> None:
        """Note the targets' evaluations (among `functions`) the arrow may call in place of a
        dispatch: those that answer `direct`."""
        for st in object_types:
            function = functions.get((st, computed))
            if getattr(function, "direct", False):
                direct[st] = function  # type: ignore[assignment]

    set_refuter(arrow_any_objects, refute)
    arrow_any_objects.link = link  # type: ignore[attr-defined]
    if side is not None:
        arrow_any_objects.side = side  # type: ignore[attr-defined]
    return arrow_any_objects


def compile_union(
    children: tuple[EvalFn, ...], names: frozenset[str] = frozenset(), rtype: str = "", named: bool = False
) -> EvalFn:
    """The union of `children`, evaluated in order until one grants; depth errors deferred
    past a grant. `names`: relations of `rtype` inlined into it (a subject set naming one on
    the object is a member of itself); `named`: the first child answers those. A union of
    one child with nothing else to answer is that child."""
    if len(children) == 1 and (named or not names):
        return children[0]

    def union(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        if subj[2] in names and subj[1] == rid and subj[0] == rtype:
            return True  # a subject set is a member of itself (an inlined relation)
        # any-of loop written out in each operator: a shared helper is a call per operand (5-10 % of a Check)
        result: Result = False
        deferred: DepthExceeded | None = None
        for child in children:
            try:
                found = child(run, rid, subj, depth)
            except DepthExceeded as exc:
                deferred = exc
                continue
            if found is True:
                return True
            if found is not False:
                result = any_of(result, found)
        if deferred is not None:
            raise deferred
        return result

    # a union of one operand (the factored grants of a role) has its refuter; a longer union
    # has none: its refuter, inconclusive at its last operand, would cost as many lookups
    # again as the evaluation it stands for
    if len(children) == 1:
        set_refuter(union, refuter_of(children[0]))
    if not children:
        union.side = NOTHING  # type: ignore[attr-defined]
    return union


def compile_intersection(children: tuple[EvalFn, ...]) -> EvalFn:
    """The intersection of `children`, evaluated in order until one yields False."""

    def intersection(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        result: Result = True
        for child in children:
            found = child(run, rid, subj, depth)
            if found is False:
                return False
            if found is not True:
                result = all_of(result, found)
        return result

    # the first operand is evaluated first: when it yields False, nothing else is evaluated
    if children:
        set_refuter(intersection, refuter_of(children[0]))
    return intersection


def compile_exclusion(
    base: EvalFn,
    subtract: EvalFn,
    marked: bool = False,
    lookup_first: bool = False,
    stored: tuple[str, str, frozenset[str], frozenset[str]] | None = None,
) -> EvalFn:
    """`base - subtract`. `marked`: the subtracted side's evaluation is noted on the run (the
    stack height it starts at), so a cycle can tell whether it passes through it.
    `lookup_first`: `subtract` is a lookup (CompiledSchema._lookup: it never dispatches nor
    raises), evaluated first: when it surely holds, the answer is False whatever `base` (a
    banned user is refused without a walk). `stored`: that lookup's (type, relation, object
    types, wildcard types), read in place for a plain subject: where the subject's reverse
    entries say nothing is stored, `subtract` is False and reads nothing (the answer is
    `base`'s), without its call."""

    def exclusion(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        granted = base(run, rid, subj, depth)
        if granted is False:
            return False
        # an UNKNOWN base still yields False when the subtracted side surely holds
        return all_of(granted, negate(subtract(run, rid, subj, depth)))

    def marked_exclusion(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        granted = base(run, rid, subj, depth)
        if granted is False:
            return False
        marks = negation_marks(run)
        marks.append(len(run.stack))
        try:
            subtracted = subtract(run, rid, subj, depth)
        finally:
            marks.pop()
        return all_of(granted, negate(subtracted))

    def lookup_exclusion(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
        volatile = run.volatile
        subtracted = subtract(run, rid, subj, depth)
        if subtracted is True:
            return False
        # what the lookup read (a caveat, an expiration) counts only where it is used
        read, run.volatile = run.volatile, volatile
        granted = base(run, rid, subj, depth)
        if granted is False:
            return False
        run.volatile = run.volatile or read
        return all_of(granted, negate(subtracted))

    if lookup_first and stored is not None:
        rtype, rel, object_types, wildcard_types = stored

        def stored_exclusion(run: CheckRun, rid: str, subj: Subject, depth: int) -> Result:
            stype, srel = subj[0], subj[2]
            if not srel:
                key = (rtype, rid, rel)
                # check_stored.compile_this's probes of the held and wildcard keys, written out
                if subj is run.held_subject:
                    held = run.held
                else:  # run.held_by(subj), written out (the first probe of most checks)
                    closures = run.closure
                    if closures is None:
                        held = run.reverse.get((stype, subj[1], ""), ())
                    else:
                        held = closures.held.get(subj)  # type: ignore[assignment]
                        if held is None:
                            held = closures.keep_held(subj)
                    run.held, run.held_subject, run.wild = held, subj, None
                if stype not in object_types or key not in held:
                    if stype not in wildcard_types:
                        return base(run, rid, subj, depth)
                    wild = run.wild
                    if wild is None:
                        wild = run.wild_of(stype)
                    if key not in wild:
                        return base(run, rid, subj, depth)
                elif (
                    not run.with_meta
                    or (stype, subj[1], "") not in run.with_meta
                    or run.objects.get(key, _EMPTY).get((stype, subj[1]), _MISSING) is None
                ):
                    return False  # stored without metadata: the subtracted side surely holds
            return lookup_exclusion(run, rid, subj, depth)

        return stored_exclusion
    if lookup_first:
        return lookup_exclusion
    return marked_exclusion if marked else exclusion
