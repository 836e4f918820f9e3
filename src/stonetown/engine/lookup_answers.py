"""Lookups of a PermissionSystem: LookupResources and LookupSubjects walks streamed as answers
(caveats evaluated, in SpiceDB's shape), paged by cursor, restarted or continued on a
snapshot when the head index advances during one of their pauses.

Answers travel in batches (those a walk finds between two of its pauses): a lookup hands out
tens of thousands, and per answer a suspension of each generator on the way and a frozen
dataclass built field by field cost more than the walk that found it. The per-answer methods
flatten the batches; the servicers take them whole, a batch per stream message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from functools import partial
from typing import Any, ParamSpec, TypeVar

from stonetown.core.relationship import WILDCARD, ObjectRef, Relationship, SubjectRef
from stonetown.engine.caveat_values import require_request_context
from stonetown.engine.cel_runtime import EvaluationBudget
from stonetown.engine.conditions import Result
from stonetown.engine.cooperative import PAUSE_EVERY, Granted, Pause, items, last_key, resumable
from stonetown.engine.lookup_resources import lookup_resources_steps
from stonetown.engine.lookup_subjects import (
    HeldCache,
    SubjectFound,
    excluded_beside,
    listed_beside,
    lookup_subjects_steps,
)
from stonetown.engine.permission_checks import PermissionChecks
from stonetown.engine.revision_views import View, _ContinueOnSnapshot
from stonetown.engine.types import (
    Consistency,
    LookupResourceResult,
    LookupSubjectResult,
    Permissionship,
    granted_resources,
    granted_subjects,
)

Found = TypeVar("Found")
Answer = TypeVar("Answer")
P = ParamSpec("P")


def _one_by_one(
    batches: Callable[P, AsyncIterator[tuple[list[Answer], int]]], doc: str
) -> Callable[P, AsyncIterator[tuple[Answer, int]]]:
    """A method giving the answers of the batch method `batches` one by one, each with its
    batch's revision (the same parameters); `doc` its docstring."""

    def each(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[tuple[Answer, int]]:
        return _each(batches(*args, **kwargs))

    each.__name__ = batches.__name__.replace("_batches", "s")
    each.__qualname__ = batches.__qualname__.replace("_batches", "s")
    each.__doc__ = doc
    each.__wrapped__ = batches  # type: ignore[attr-defined]  # (its parameters, for help and IDEs)
    return each


class LookupAnswers(PermissionChecks):
    """LookupResources and LookupSubjects (the top layer under PermissionSystem, see
    engine/system.py)."""

    held_cache: HeldCache

    async def lookup_resource_batches(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[list[LookupResourceResult], int]]:
        """The answers of :meth:`lookup_resources` in order, in non-empty batches, each with
        the revision used."""
        budget = _budget_for(context)

        def validate(view: View) -> None:
            self._require_permission(view.state, resource_type, permission, "resource_object_type")
            self._require_subject(view.state, subject, "subject")

        def walk(
            view: View, cursor: str | None
        ) -> Generator[tuple[str, Result] | Granted | Pause, None, None]:
            state = view.state
            return lookup_resources_steps(
                state.compiled, state.facts, view.index, resource_type, permission,
                (subject.type, subject.id, subject.relation), self.max_depth, cursor, _likely_wanted(limit),
            )  # fmt: skip

        def outright(batch: list[tuple[str, Result]]) -> list[LookupResourceResult] | None:
            if type(batch) is Granted:
                return granted_resources(batch)
            if all(result is True for _, result in batch):
                return granted_resources([rid for rid, _ in batch])
            return None

        async def shape(found: tuple[str, Result], view: View) -> LookupResourceResult | None:
            if found[1] is True:
                return LookupResourceResult(found[0])  # no caveat to evaluate: no verdict to ask
            verdict = await self._verdict(view.state, found[1], view.revision, context, budget)
            if verdict.permissionship is Permissionship.DENIED:
                return None
            conditional = verdict.permissionship is Permissionship.CONDITIONAL
            return LookupResourceResult(found[0], conditional, verdict.missing_parameters)

        batches = self._lookup(
            consistency, contextual, validate, walk, lambda found: found[0], outright, shape, after, limit
        )
        async for batch in batches:
            yield batch

    lookup_resources = _one_by_one(
        lookup_resource_batches,
        """Resource ids of `resource_type` on which `subject` has `permission`, sorted by id,
        starting after the cursor id `after`, at most `limit`; each with the revision used.

        Results stream as they are found; the walk gives the event loop a turn every few
        milliseconds and stops when the consumer stops (a page full, a cancelled call).""",
    )

    async def lookup_subject_batches(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[list[LookupSubjectResult], int]]:
        """The answers of :meth:`lookup_subjects` in order, in non-empty batches, each with
        the revision used."""
        budget = _budget_for(context)

        def validate(view: View) -> None:
            self._require_permission(view.state, resource.type, permission, "resource")
            self._require_subject(
                view.state, SubjectRef(subject_type, "x", subject_relation), "subject_object_type"
            )

        def walk(view: View, cursor: str | None) -> Generator[SubjectFound | Granted | Pause, None, None]:
            state = view.state
            return lookup_subjects_steps(
                state.compiled, state.facts, view.index, (resource.type, resource.id), permission,
                subject_type, subject_relation, self.max_depth, cursor, _likely_wanted(limit),
                self.held_cache if view.index is self.index else None,  # the next page reuses the walk
            )  # fmt: skip

        def outright(batch: list[SubjectFound]) -> list[LookupSubjectResult] | None:
            if type(batch) is Granted:  # ids
                return granted_subjects(subject_type, batch, subject_relation)  # type: ignore[arg-type]
            if all(_granted_listed(found) for found in batch):
                return granted_subjects(subject_type, [found.subject_id for found in batch], subject_relation)
            return None

        async def shape(found: SubjectFound, view: View) -> LookupSubjectResult | None:
            return await self._subject_answer(found, view, context, subject_type, subject_relation, budget)

        batches = self._lookup(
            consistency, contextual, validate, walk, _subject_id, outright, shape, after, limit
        )
        async for batch in batches:
            yield batch

    lookup_subjects = _one_by_one(
        lookup_subject_batches,
        """Subjects of `subject_type` (with `subject_relation`, "" for plain objects) that have
        `permission` on `resource`, sorted by id (wildcard first), after the cursor id `after`,
        at most `limit`; each with the revision used. Streams like :meth:`lookup_resources`.""",
    )

    async def _lookup(
        self,
        consistency: Consistency,
        contextual: Sequence[Relationship],
        validate: Callable[[View], None],
        walk: Callable[[View, str | None], Generator[Found | Pause, None, None]],
        key: Callable[[Found], str],
        outright: Callable[[list[Found]], list[Answer] | None],
        shape: Callable[[Found, View], Awaitable[Answer | None]],
        after: str | None,
        limit: int | None,
    ) -> AsyncIterator[tuple[list[Answer], int]]:
        """The answers of a lookup in non-empty batches, each with its revision: `walk` over
        the view `consistency` asks for (validated by `validate`) from the cursor `after` on,
        each found item made an answer by `shape` (or dropped: None), at most `limit`; a batch
        of found items that are all answers as they are is made answers at once by `outright`
        (None when one is not). The walk restarts where it was when the head index advances
        during one of its pauses (see :meth:`_replacement`)."""
        view = self._with_contextual(await self._view(consistency), contextual)
        validate(view)
        if limit == 0:
            return
        left = limit
        most = PAUSE_EVERY if limit is None else min(PAUSE_EVERY, limit)  # found items per batch
        found = self._found_batches(view, consistency, contextual, validate, walk, key, after, most)
        async for batch, used in found:
            answers = outright(batch)
            if answers is None:
                answers = await _shaped(batch, used, shape)
            if left is not None:
                answers, left = answers[:left], left - len(answers)
            if answers:
                yield answers, used.revision
            if left is not None and left <= 0:
                return

    async def _found_batches(
        self,
        view: View,
        consistency: Consistency,
        contextual: Sequence[Relationship],
        validate: Callable[[View], None],
        walk: Callable[[View, str | None], Generator[Found | Pause, None, None]],
        key: Callable[[Found], str],
        after: str | None,
        most: int,
    ) -> AsyncIterator[tuple[list[Found], View]]:
        """The items `walk` finds on `view` from the cursor `after` on, in batches of at most
        `most`, each with the view it was found on. On the live view the walk restarts where
        it was when the head index advances during one of its pauses (see
        :meth:`_replacement`)."""
        if view.live:
            replacement = self._replacement(consistency, contextual, validate)
            try:
                found = resumable(view, walk, self._unchanged, replacement, key, after, most)
                async for batch, used in found:
                    after = last_key(batch, key)
                    yield batch, used
                return
            except _ContinueOnSnapshot as moved:
                view = moved.view
        # An old revision is read through the store, on an old-read thread: the walk runs there
        # whole (from the cursor on), then its answers are shaped by the consumer.
        found_all = await self._evaluate(view, partial(_walked, walk, view, after))
        for start in range(0, len(found_all), most):
            yield found_all[start : start + most], view

    async def _subject_answer(
        self,
        found: SubjectFound,
        view: View,
        context: dict[str, Any] | None,
        subject_type: str,
        subject_relation: str,
        budget: EvaluationBudget,
    ) -> LookupSubjectResult | None:
        """The answer LookupSubjects gives for `found`, None when the caveat context denies it.

        Caveats are evaluated here, and the answer takes SpiceDB's shape: a subject the
        context denies is no answer; beside a granted wildcard a subject is listed only as
        lookup_subjects.listed_beside says, and the wildcard excludes the subjects
        lookup_subjects.excluded_beside says, marking those the context leaves undecided
        excluded only conditionally."""
        if _granted_listed(found):
            # granted outright and listed: the answer has nothing to evaluate
            return LookupSubjectResult(SubjectRef(subject_type, found.subject_id, subject_relation))
        state, revision = view.state, view.revision
        verdict = await self._verdict(state, found.result, revision, context, budget)
        if verdict.permissionship is Permissionship.DENIED:
            return None
        excluded: tuple[str, ...] = ()
        conditionally: tuple[str, ...] = ()
        if found.subject_id == WILDCARD:
            out: list[str] = []
            maybe: list[str] = []
            for cid, condition, result in found.conditional:
                out_of = Permissionship.DENIED
                if condition is not False:
                    out_of = (await self._verdict(state, condition, revision, context, budget)).permissionship
                theirs = (await self._verdict(state, result, revision, context, budget)).permissionship
                if excluded_beside(out_of, theirs, verdict.permissionship):
                    out.append(cid)
                    certain = out_of is Permissionship.ALLOWED or theirs is Permissionship.DENIED
                    if not certain:
                        maybe.append(cid)
            excluded, conditionally = tuple(sorted({*found.excluded, *out})), tuple(sorted(maybe))
        elif found.listed is not None:
            listed = (await self._verdict(state, found.listed, revision, context, budget)).permissionship
            if not listed_beside(verdict.permissionship, listed):
                return None
        return LookupSubjectResult(
            SubjectRef(subject_type, found.subject_id, subject_relation),
            excluded,
            verdict.permissionship is Permissionship.CONDITIONAL,
            verdict.missing_parameters,
            conditionally,
        )


def _budget_for(context: dict[str, Any] | None) -> EvaluationBudget:
    """A fresh caveat-evaluation budget for one lookup whose request context is `context`
    (checked against its bounds first)."""
    if context:
        require_request_context(context)
    return EvaluationBudget()


def _subject_id(found: SubjectFound) -> str:
    """The cursor key of `found`."""
    return found.subject_id


def _granted_listed(found: SubjectFound) -> bool:
    """Whether `found` is an answer as it is: a concrete subject granted outright and listed."""
    return found.result is True and found.subject_id != WILDCARD and found.listed in (None, True)


async def _shaped(
    batch: list[Found], view: View, shape: Callable[[Found, View], Awaitable[Answer | None]]
) -> list[Answer]:
    """The answers `shape` makes of the items of `batch`, in order (those it drops left out)."""
    answers: list[Answer] = []
    for found in batch:
        answer = await shape(found, view)
        if answer is not None:
            answers.append(answer)
    return answers


async def _each(batches: AsyncIterator[tuple[list[Answer], int]]) -> AsyncIterator[tuple[Answer, int]]:
    """The answers of `batches` one by one, each with its batch's revision."""
    async for answers, revision in batches:
        for answer in answers:
            yield answer, revision


def _walked(
    walk: Callable[[View, str | None], Generator[Found | Pause, None, None]], view: View, after: str | None
) -> list[Found]:
    """Every item a cooperative walk finds (its pauses skipped), in order."""
    return list(items(walk(view, after)))


def _likely_wanted(limit: int | None) -> int | None:
    """How many candidates a page of `limit` answers likely takes (some may be denied)."""
    return None if limit is None else 2 * limit + 16
