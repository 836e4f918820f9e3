"""Random write histories for the engine's differential tests: an index keeping closures
(and subjects' sides) and a plain one, written alike, compared after each batch, near the
depth limit and far from it: checks (one run each and one shared), lookups and
explanations."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

from stonetown.core.relationship import Relationship
from stonetown.engine.check import CheckRun, DepthExceeded, Query, Rewalk
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.closure import Closures
from stonetown.engine.conditions import (
    UNKNOWN,
    CaveatAnd,
    CaveatLeaf,
    CaveatNot,
    CaveatOr,
    Result,
    all_of,
    any_of,
    granted,
    negate,
)
from stonetown.engine.cooperative import finish
from stonetown.engine.explain import ExplainNode
from stonetown.engine.explain import build as build_explanation
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.lookup_resources import lookup_resources_steps
from stonetown.engine.lookup_subjects import lookup_subjects_steps
from stonetown.engine.reachability import Reachability

# A lookup run with a compiled schema over an index at a depth limit: its answers by id (for
# LookupSubjects a granted wildcard as "*"); raises DepthExceeded
Lookup = Callable[[CompiledSchema, RelationshipIndex, int], dict[str, Result]]


def random_batches(
    rng: random.Random, make: Callable[[random.Random], Relationship], steps: int
) -> Iterator[tuple[int, RelationshipIndex, RelationshipIndex]]:
    """`steps` batches of 1-5 changes each, written to both indexes alike: a write of
    `make(rng)` (a touch: it may change a caveat) or, three times in ten, the delete of a live
    relationship; yields (step, kept, plain) after each batch. `kept` has closures attached
    but not prepared (the caller prepares them when it wants them built from data)."""
    kept, plain = indexes()
    live: dict[tuple[object, ...], Relationship] = {}
    for step in range(steps):
        for _ in range(rng.randrange(1, 6)):
            apply(kept, plain, live, *one_change(rng, live, make))
        yield step, kept, plain


def indexes() -> tuple[RelationshipIndex, RelationshipIndex]:
    """An empty index with closures attached (not prepared) and an empty plain one."""
    kept = RelationshipIndex(1)
    kept.closure = Closures(kept)
    return kept, RelationshipIndex(1)


def one_change(
    rng: random.Random,
    live: dict[tuple[object, ...], Relationship],
    make: Callable[[random.Random], Relationship],
    deletes: float = 0.3,
) -> tuple[bool, Relationship]:
    """(delete, relationship): a live relationship to delete (`deletes` of the time, when
    any is live) or `make(rng)` to write (a touch: it may change a caveat)."""
    if live and rng.random() < deletes:
        return True, live[rng.choice(list(live))]
    return False, make(rng)


def apply(
    kept: RelationshipIndex,
    plain: RelationshipIndex,
    live: dict[tuple[object, ...], Relationship],
    delete: bool,
    rel: Relationship,
) -> None:
    """Write or delete `rel` in both indexes alike, `live` kept in step."""
    if delete:
        live.pop(rel.key, None)
        kept.remove(rel)
        plain.remove(rel)
    else:
        live[rel.key] = rel
        kept.add(rel)
        plain.add(rel)


# a query's outcome when the walk met the depth limit (a tuple: `same` below compares it by ==)
EXCEEDED = (DepthExceeded,)
# the depth limits the histories are checked at: near the data's depth, and far from it
DEPTHS = (*range(1, 9), 50)


def answers(
    compiled: CompiledSchema, index: RelationshipIndex, max_depth: int, queries: list[Query], together: bool
) -> list[object]:
    """Each query's answer as PermissionChecks gives it: one run per query (Check) or one run
    for all of them in order (CheckBulk), a depth error answered again by the plain walk
    (check.Rewalk); EXCEEDED where the walk met the limit too."""
    out: list[object] = []
    run = rewalk = None
    for position, query in enumerate(queries):
        if run is None or not together:
            run, rewalk = CheckRun(compiled, index, max_depth), None
        try:
            out.append(run.dispatch(*query, 0))
        except DepthExceeded:
            try:
                if rewalk is None or not together:
                    rewalk = Rewalk(compiled, index, max_depth)
                out.append(rewalk.answer(queries, position) if together else rewalk.answer([query], 0))
            except DepthExceeded:
                out.append(EXCEEDED)
    return out


def compare_at_depths(
    compiled: CompiledSchema,
    kept: RelationshipIndex,
    plain: RelationshipIndex,
    queries: list[Query],
    same: Callable[[object, object], bool],
    where: object,
) -> tuple[int, int, int]:
    """Assert that `queries`, one run each and all in one run, get the plain walk's answers
    (`compiled.walked()` over `plain`, an index without closures) from `compiled` over `kept`
    (with closures) at every limit of DEPTHS; except where the walk met the limit and the
    shortcuts did not: there the answer must be the walk's with room to spare (depth 50).
    Returns (compared, answered where the walk met the limit, of those granted)."""
    walked = compiled.walked()
    exact = answers(walked, plain, 50, queries, False)
    compared = answered = granted = 0
    for together in (False, True):
        for max_depth in DEPTHS:
            got = answers(compiled, kept, max_depth, queries, together)
            want = answers(walked, plain, max_depth, queries, together)
            for query, one, other, full in zip(queries, got, want, exact, strict=True):
                context = (where, together, max_depth, query, one, other)
                compared += 1
                if other is EXCEEDED and one is not EXCEEDED:
                    assert same(one, full), (*context, full)
                    answered += 1
                    granted += one is True
                else:
                    assert same(one, other), context
    return compared, answered, granted


def _leaves(value: Result) -> set[CaveatLeaf]:
    if isinstance(value, CaveatLeaf):
        return {value}
    if isinstance(value, CaveatNot):
        return _leaves(value.child)
    if isinstance(value, CaveatAnd | CaveatOr):
        return set().union(*(_leaves(child) for child in value.children))
    return set()


def _holds(value: Result, truth: dict[CaveatLeaf, bool]) -> bool:
    if isinstance(value, CaveatLeaf):
        return truth[value]
    if isinstance(value, CaveatNot):
        return not _holds(value.child, truth)
    if isinstance(value, CaveatAnd):
        return all(_holds(child, truth) for child in value.children)
    assert isinstance(value, CaveatOr)
    return any(_holds(child, truth) for child in value.children)


def same(one: object, other: object) -> bool:
    """Equal results; caveat expressions equal as functions of their leaves (the closure may
    combine the same operands in another order)."""
    plain = (bool, type(UNKNOWN), tuple)
    if isinstance(one, plain) or isinstance(other, plain):
        return one == other if isinstance(one, tuple) else one is other
    leaves = sorted(_leaves(one) | _leaves(other), key=repr)  # type: ignore[arg-type]
    if len(leaves) > 10:
        return one == other
    for values in itertools.product((False, True), repeat=len(leaves)):
        truth = dict(zip(leaves, values, strict=True))
        if _holds(one, truth) != _holds(other, truth):  # type: ignore[arg-type]
            return False
    return True


def resources_lookup(
    facts: Reachability, resource_type: str, permission: str, subject: tuple[str, str, str]
) -> Lookup:
    """LookupResources of `resource_type#permission` for `subject`, as a :data:`Lookup`."""

    def found(compiled: CompiledSchema, index: RelationshipIndex, max_depth: int) -> dict[str, Result]:
        steps = lookup_resources_steps(compiled, facts, index, resource_type, permission, subject, max_depth)
        return dict(finish(steps)[0])

    return found


def subjects_lookup(
    facts: Reachability, resource: tuple[str, str], permission: str, subject_type: str
) -> Lookup:
    """LookupSubjects of `subject_type` (plain objects) on `resource#permission`, as a
    :data:`Lookup` (a granted wildcard under "*")."""

    def found(compiled: CompiledSchema, index: RelationshipIndex, max_depth: int) -> dict[str, Result]:
        steps = lookup_subjects_steps(
            compiled, facts, index, resource, permission, subject_type, "", max_depth
        )
        return {answer.subject_id: answer.result for answer in finish(steps)[0]}

    return found


def _outcome(lookup: Lookup, compiled: CompiledSchema, index: RelationshipIndex, max_depth: int) -> object:
    try:
        return lookup(compiled, index, max_depth)
    except DepthExceeded:
        return EXCEEDED


def compare_lookup_at_depths(
    compiled: CompiledSchema,
    kept: RelationshipIndex,
    plain: RelationshipIndex,
    lookup: Lookup,
    checks: dict[str, Query],
    same: Callable[[object, object], bool],
    where: object,
) -> int:
    """Assert that `lookup`, run with `compiled` over `kept` (with closures) at every limit of
    DEPTHS, answers what the plain walk's checks do (`compiled.walked()` over `plain`, one run
    each): `checks` names the check that stands for each id the lookup may answer (for
    LookupSubjects, "*" an id no relationship names), and those ids are every one it may.

    Answered: an id is answered iff its walk's check grants, with the same result; where that
    check met the limit, iff the walk grants with room to spare (depth 50), as Check answers
    there. An id not answered may be granted only beside a granted wildcard (the walk of
    LookupSubjects lists the subjects it meets, the wildcard stands for the others).
    A depth error: only where a walk's check met the limit, or where the lookup's own walk
    does, with the plain walk (it counts levels up from the subject, or down from the
    resource, as SpiceDB's dispatch does). Returns how many lookups were compared."""
    walked = compiled.walked()
    names, queries = list(checks), list(checks.values())
    exact = dict(zip(names, answers(walked, plain, 50, queries, False), strict=True))
    for max_depth in DEPTHS:
        walks = dict(zip(names, answers(walked, plain, max_depth, queries, False), strict=True))
        got = _outcome(lookup, compiled, kept, max_depth)
        context = (where, max_depth, walks)
        if got is EXCEEDED:
            met = EXCEEDED in walks.values() or _outcome(lookup, walked, plain, max_depth) is EXCEEDED
            assert met, ("a depth error the walk does not give", *context)
            continue
        assert isinstance(got, dict)
        assert set(got) <= set(names), (got, *context)
        for name, walk in walks.items():
            want = exact[name] if walk is EXCEEDED else walk
            if name in got:
                assert granted(want) and same(got[name], want), (name, got[name], want, *context)  # type: ignore[arg-type]
            else:
                assert not granted(want) or "*" in got, (name, "missing", want, *context)  # type: ignore[arg-type]
    return len(DEPTHS)


def _explained(compiled: CompiledSchema, index: RelationshipIndex, max_depth: int, query: Query) -> object:
    """The explanation of `query` (explain.build), EXCEEDED when it meets the limit."""
    try:
        run = CheckRun(compiled, index, max_depth)
        return build_explanation(compiled, run, index, query[:2], query[2], query[3])[0]
    except DepthExceeded:
        return EXCEEDED


def compare_explained_at_depths(
    compiled: CompiledSchema,
    kept: RelationshipIndex,
    plain: RelationshipIndex,
    queries: list[Query],
    same: Callable[[object, object], bool],
    where: object,
) -> int:
    """Assert that the explanation of each query, with `compiled` over `kept`, answers as Check
    does (:func:`answers`) at every limit of DEPTHS, meets the limit exactly where Check does,
    and is truthful (:func:`assert_truthful`: every operator node's value is its operands', a
    skipped operand cannot change it). Returns how many explanations were compared."""
    for max_depth in DEPTHS:
        checked = answers(compiled, kept, max_depth, queries, False)
        for query, check in zip(queries, checked, strict=True):
            got = _explained(compiled, kept, max_depth, query)
            context = (where, max_depth, query, check)
            if got is EXCEEDED:
                assert check is EXCEEDED, ("a depth error Check does not give", *context)
                continue
            assert isinstance(got, ExplainNode)
            assert same(got.raw, check), (got.raw, *context)
            assert_truthful(got, context)
    return len(DEPTHS) * len(queries)


def _combined(kind: str, values: list[Result]) -> Result:
    """An operator node's value from its operands' (explain.py's folds)."""
    if kind == "exclusion":
        return all_of(values[0], negate(values[1]))
    combine, value = (any_of, False) if kind == "union" else (all_of, True)
    for item in values:
        value = combine(value, item)
    return value


def assert_truthful(tree: ExplainNode, context: object) -> None:
    """Assert that every union, intersection and exclusion node of `tree` has its operands'
    value whatever a skipped operand's (not evaluated: the depth limit was met there) would
    be, and that any other node with a skipped child has a plain value some evaluated child
    gives too (a relation's relationships, an arrow's targets: another one decides)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        skipped = [child.kind == "skipped" for child in node.children]
        if node.kind in ("union", "intersection", "exclusion"):
            for filler in (True, False, UNKNOWN):
                values = [
                    filler if skip else child.raw for child, skip in zip(node.children, skipped, strict=True)
                ]
                assert same(_combined(node.kind, values), node.raw), (node.label, filler, *context)  # type: ignore[arg-type]
        elif any(skipped):
            deciding = [child.raw for child, skip in zip(node.children, skipped, strict=True) if not skip]
            assert node.raw in (True, False) and node.raw in deciding, (node.label, *context)
