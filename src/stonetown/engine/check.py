"""Check: does a subject hold a permission on a resource?

The schema is compiled once (check_plan.py) into one closure per (type, relation): the
relationships stored under a relation are read by check_stored.py, set operations and arrows
combined by check_operators.py. A check walks those closures over an index in one
:class:`CheckRun`, defined here with the types they share. Within one run, identical
sub-problems are answered once (memo), cycles in the data terminate (a sub-problem already on
the stack contributes nothing), and a depth limit turns runaway recursion into
ResourceExhausted. Results are three-valued (see conditions.py).

Depth errors are deferred inside unions: another branch may still grant, and a grant found by
any branch is a true grant however deep the other branches go. A run whose shortcuts met the
depth limit has its queries answered again by the plain walk (:class:`Rewalk`): the error, if
any, is the walk's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from stonetown.core.errors import ResourceExhausted
from stonetown.engine.closure import Closures
from stonetown.engine.conditions import UNKNOWN, CaveatLeaf, Result
from stonetown.engine.deadline import CHECK_EVERY, check_deadline, request_deadline
from stonetown.engine.index import EVERY_KEY, RelationshipIndex, RelMeta

if TYPE_CHECKING:
    from stonetown.engine.check_plan import CompiledSchema

Subject = tuple[str, str, str]  # (type, id, relation or "")
Query = tuple[str, str, str, Subject]  # (resource type, resource id, permission, subject)
EvalFn = Callable[["CheckRun", str, Subject, int], Result]
# True when an evaluation surely yields False for a plain subject, read from lookups alone: the
# evaluation it stands for dispatches nothing, raises nothing and reads no metadata (see
# refuter_of)
Refuter = Callable[["CheckRun", str, Subject], bool]
# A nested set's answer from a closure for a dispatch at the given depth, None when the
# closure cannot give it (see closure_check.member_shortcut)
Member = Callable[["CheckRun", str, Subject, int], "bool | None"]

_NO_PLAN = (None, True)  # a relation the schema does not define: evaluates to False

# Put in place of a compiled schema's simple recursive relations, makes every cycle plainly
# False: OpenFGA's ListUsers expands that way, without cycle flags.
PLAIN_CYCLES: frozenset[tuple[str, str]] = frozenset({("", "")})
# A compiled schema's simple recursive relations when cycles are resolved exactly (not
# OpenFGA's way): see CheckRun._cycle.
EXACT_CYCLES: frozenset[tuple[str, str]] = frozenset({("", "exact")})


# A run's empty stack, subtracted sides and holders until it writes one (shared, never written)
NO_FRAMES: dict[tuple[str, str, str, Subject], int] = {}
NO_MARKS: list[int] = []
NO_HOLDERS: dict[object, tuple[object, int]] = {}


def negation_marks(run: CheckRun) -> list[int]:
    """The run's list of subtracted sides being evaluated (see CheckRun._cycle), to push on."""
    marks = run.negations
    if marks is NO_MARKS:
        marks = run.negations = []
    return marks


class DepthExceeded(ResourceExhausted):
    """The walk went deeper than the configured limit."""


def set_refuter(function: EvalFn, refute: Refuter | None) -> None:
    """Attach `refute` (if any) to the compiled closure `function` (see :func:`refuter_of`)."""
    if refute is not None:
        function.refute = refute  # type: ignore[attr-defined]


def refuter_of(function: EvalFn) -> Refuter | None:
    """The refuter of a compiled closure: a test, from lookups alone, that the closure yields
    False for a plain subject without dispatching, raising or reading metadata (so skipping it
    changes nothing). None when the closure has none."""
    return getattr(function, "refute", None)


def skipped(run: CheckRun, key: tuple[str, str, str, Subject]) -> None:
    """What the dispatch of `key` would leave when its refuter holds (a plain subject, an
    acyclic relation, below the depth limit): its memo entry, False, and one dispatch off the
    deadline budget (none when the memo already answers)."""
    memo = run.memo
    if key not in memo:
        memo[key] = False
        run.budget -= 1
        if not run.budget:
            run.budget = CHECK_EVERY
            check_deadline(run.deadline)


class CheckRun:
    """The state of one evaluation (one Check, or one CheckBulk sharing its memo)."""

    __slots__ = (
        "plans",
        "simple_recursive",
        "objects",
        "usersets",
        "memo",
        "stack",
        "cut",
        "max_depth",
        "now",
        "volatile",
        "deadline",
        "budget",
        "race",
        "racing",
        "reverse",
        "held_subject",
        "held",
        "wild",
        "negations",
        "closure",
        "closure_sets",
        "side_subject",
        "side_holders",
        "with_meta",
    )

    def __init__(self, compiled: CompiledSchema, index: RelationshipIndex, max_depth: int) -> None:
        self.plans = compiled.plans
        self.simple_recursive = compiled.simple_recursive
        self.objects = index.objects
        self.usersets = index.usersets
        self.reverse = index.reverse
        # the subjects having relationships with metadata (RelationshipIndex.with_meta): a
        # plain subject outside it found in a reverse entry is stored there without any; an
        # index that does not count them (an old revision's) has every subject in it
        self.with_meta = getattr(index, "with_meta", EVERY_KEY)
        # the resource keys holding `held_subject` directly (see held_by)
        self.held_subject: Subject | None = None
        self.held: Collection[tuple[str, str, str]] = ()
        # the resource keys storing the wildcard of its type (see wild_of), None until asked
        self.wild: tuple[tuple[str, str, str], ...] | set[tuple[str, str, str]] | None = None
        self.memo: dict[tuple[str, str, str, Subject], Result] = {}
        # sub-problems being evaluated, outermost first (a dict keeps insertion order), each
        # with its height on the stack; NO_FRAMES (never written) until the first is pushed:
        # most checks push none (one allocation less per check)
        self.stack: dict[tuple[str, str, str, Subject], int] = NO_FRAMES
        # the stack heights at which the subtracted sides being evaluated started (see _cycle);
        # NO_MARKS (never written) until the first (see negation_marks)
        self.negations: list[int] = NO_MARKS
        self.cut = False
        self.max_depth = max_depth
        self.now: float | None = None  # the clock, read once when an expiration is met
        # set once a caveat or an expiration took part: the answer may change without a write
        self.volatile = False
        self.deadline = request_deadline.get()
        self.budget = CHECK_EVERY  # dispatches left before the next look at the deadline
        self.race = compiled.prone_race
        self.racing = False
        # the closures of recursive sets (the head index only) and what they gave this run
        self.closure: Closures | None = getattr(index, "closure", None)
        self.closure_sets: dict[tuple[str, str, Subject], object] | None = None
        # the subject whose side this run has read, and what it read (see subject_side): per
        # nested set, (its holders, the graph's longest path); per kept side, (its ids, the
        # deepest evaluation they were asked for)
        self.side_subject: Subject | None = None
        self.side_holders: dict[object, tuple[object, int]] = NO_HOLDERS  # replaced with the subject

    def _cycle(self, key: tuple[str, str, str, Subject], rtype: str, rel: str) -> Result:
        """The value of a sub-problem met again while it is being evaluated.

        Exactly (the server's rule): a cycle that does not pass through the subtracted side
        of an exclusion adds nothing: False, which gives the least fixpoint, the one answer
        derivable from the data (nothing is memoized below a cut). A cycle through a
        subtracted side (`read = owner - banned`, `banned` containing `read`) may have no
        consistent answer: UNKNOWN, False in unions and intersections, never a grant under an
        exclusion, so an answer stands only where it does not depend on the cycle.

        OpenFGA's way (`openfga_cycles`): a cycle through one simply recursive relation only
        (group A member of B member of A, folder A parent of B parent of A) is False; any
        other cycle is UNKNOWN (its recursive strategy for the first kind, a cycle flag for
        the rest; see simple_recursive_relations for when it applies which, and cycle_race
        for how its flags race under exclusions).
        """
        if self.simple_recursive is EXACT_CYCLES:
            negations = self.negations
            return UNKNOWN if negations and negations[-1] > self.stack[key] else False
        if self.simple_recursive is PLAIN_CYCLES:
            return False
        if (rtype, rel) not in self.simple_recursive:
            return UNKNOWN
        inside = False
        for frame in self.stack:
            if inside and (frame[0] != rtype or frame[2] != rel):
                return UNKNOWN
            inside = inside or frame == key
        return False

    def held_by(self, subj: Subject) -> Collection[tuple[str, str, str]]:
        """The (type, id, relation) keys storing the plain subject `subj` directly (its
        reverse entry: a few keys, unlike the forward map), remembered for the whole run; on
        the head index, the set the closures keep for the subject (Closures.keep_held)."""
        self.held_subject = subj
        self.wild = None
        closures = self.closure
        if closures is None or subj[2]:
            self.held = self.reverse.get((subj[0], subj[1], ""), ())
        else:
            held = closures.held.get(subj)
            self.held = closures.keep_held(subj) if held is None else held
        return self.held

    def wild_of(self, stype: str) -> tuple[tuple[str, str, str], ...] | set[tuple[str, str, str]]:
        """The (type, id, relation) keys storing the wildcard `stype:*` (its reverse entry: a
        set far smaller than the forward map, so a miss costs no probe of that map), for the
        subject of :meth:`held_by`, whose type is `stype`; remembered until it changes."""
        self.wild = self.reverse.get((stype, "*", ""), ())
        return self.wild

    def meta_result(self, meta: RelMeta) -> Result:
        """What one relationship's caveat and expiration contribute: False once expired,
        a caveat leaf when caveated, True otherwise."""
        self.volatile = True
        if meta.expires_at is not None:
            now = self.now
            if now is None:
                now = self.now = time.time()
            if meta.expires_at <= now:
                return False
        if meta.caveat is not None:
            return CaveatLeaf(meta.caveat.name, tuple(sorted(meta.caveat.context.items())))
        return True

    def _raced(self, rtype: str, rid: str, rel: str, subj: Subject) -> Result:
        """A top-level evaluation of a relation whose cycles can meet an exclusion: the
        three-valued answer, except a grant OpenFGA denies because a cycle flag won a race
        (see cycle_race). The replay never grants what the evaluation does not."""
        assert self.race is not None
        self.racing = True
        try:
            result = self.dispatch(rtype, rid, rel, subj, 0)
        finally:
            self.racing = False
        if result is True and self.race.allowed(self.objects, self.usersets, rtype, rid, rel, subj) is False:
            return False
        return result

    def dispatch(self, rtype: str, rid: str, rel: str, subj: Subject, depth: int) -> Result:
        """Evaluate `rtype:rid#rel` for `subj`, with memo, cycle cut and depth limit."""
        if not depth and self.race is not None and not self.racing and (rtype, rel) in self.race.prone:
            return self._raced(rtype, rid, rel, subj)
        if subj[2] == rel and subj[1] == rid and subj[0] == rtype:
            return True  # a subject set is a member of itself
        key = (rtype, rid, rel, subj)
        memo = self.memo
        if memo:  # (a run's first dispatch hashes no key for an empty memo)
            known = memo.get(key)
            if known is not None:
                return known
        stack = self.stack
        # an acyclic relation is never met again while being evaluated, and never lies between
        # two frames of a cycle (_cycle's frames): it needs no place on the stack
        function, cyclic = self.plans.get((rtype, rel), _NO_PLAN)
        if cyclic and stack and key in stack:
            self.cut = True
            return self._cycle(key, rtype, rel)
        if depth >= self.max_depth:
            raise DepthExceeded(
                f"check exceeded the maximum depth of {self.max_depth} at {rtype}:{rid}#{rel}"
            )
        if function is None:
            return False
        self.budget -= 1
        if not self.budget:
            self.budget = CHECK_EVERY
            check_deadline(self.deadline)
        outer_cut = self.cut
        self.cut = False
        if cyclic:
            if stack is NO_FRAMES:
                stack = self.stack = {}
            stack[key] = len(stack)
        try:
            result = function(self, rid, subj, depth + 1)
        finally:
            if cyclic:
                del stack[key]
            inner_cut = self.cut
            self.cut = outer_cut or inner_cut
        if not inner_cut:
            memo[key] = result
        return result


class Rewalk:
    """The plain walk (:meth:`CompiledSchema.walked`: no shortcut, no closure) answering again
    the top-level queries of a run that met the depth limit, over the same index and limit.

    The shortcuts answer as the walk does wherever the walk stays below the limit, but near it
    they differ in where they stop: a closure evaluates an ancestor at its place in the chain,
    not at the end of the path the walk took, and leaves no memo entries for the levels it
    skips, so a later dispatch of the run may meet the limit where the walk's memo answers (or
    the reverse). A depth error is therefore the walk's to give: the run's queries are
    replayed by one plain run in the same order (a CheckBulk's memo is the walk's), each only
    once, and the one that met the limit answered by it, error or not. Where the shortcuts
    answer and the walk would have met the limit, the shortcuts' answer stands: it is exact
    (every evaluation it used completed below the limit; see tests/engine/test_closures.py)."""

    __slots__ = ("run", "asked")

    def __init__(self, compiled: CompiledSchema, index: RelationshipIndex, max_depth: int) -> None:
        self.run = CheckRun(compiled.walked(), index, max_depth)
        self.run.closure = None
        self.asked = 0  # how many of the queries the plain run has answered

    @staticmethod
    def needed(compiled: CompiledSchema, index: RelationshipIndex) -> bool:
        """Whether a run of `compiled` over `index` may take a shortcut the walk does not."""
        return compiled.shortcuts or getattr(index, "closure", None) is not None

    @classmethod
    def instead(
        cls,
        error: DepthExceeded,
        compiled: CompiledSchema,
        index: RelationshipIndex,
        max_depth: int,
        rewalk: Rewalk | None = None,
    ) -> Rewalk:
        """The plain walk to answer again what a run of `compiled` over `index` gave up with
        `error`: `rewalk` (one per request, its memo shared) or a new one. `error` is raised
        again when that run could take no shortcut: then it is the walk's own."""
        if not cls.needed(compiled, index):
            raise error
        return rewalk if rewalk is not None else cls(compiled, index, max_depth)

    def again(self, query: Query) -> Result:
        """The plain walk's answer to `query` alone (no earlier query replayed: a lookup's
        candidates are checked one by one); raises the walk's DepthExceeded."""
        return self.run.dispatch(*query, 0)

    def answer(self, queries: list[Query], position: int) -> Result:
        """The plain walk's answer to `queries[position]`, the queries before it (those not yet
        replayed) answered first, their depth errors ignored; raises the walk's DepthExceeded."""
        run = self.run
        for query in queries[self.asked : position]:
            try:
                run.dispatch(*query, 0)
            except DepthExceeded:
                pass
        self.asked = position + 1
        return run.dispatch(*queries[position], 0)
