"""Lookups of a PermissionSystem: LookupResources and LookupSubjects walks streamed as answers
(caveats evaluated, in SpiceDB's shape), paged by cursor, restarted or continued on a
snapshot when the head index advances during one of their pauses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from functools import partial
from typing import Any, TypeVar

from stonetown.core.relationship import WILDCARD, ObjectRef, Relationship, SubjectRef
from stonetown.engine.caveat_values import require_request_context
from stonetown.engine.cel_runtime import EvaluationBudget
from stonetown.engine.conditions import Result
from stonetown.engine.cooperative import Pause, resumable
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
from stonetown.engine.types import Consistency, LookupResourceResult, LookupSubjectResult, Permissionship

Found = TypeVar("Found")
Answer = TypeVar("Answer")


class LookupAnswers(PermissionChecks):
    """LookupResources and LookupSubjects (the top layer under PermissionSystem, see
    engine/system.py)."""

    held_cache: HeldCache

    async def lookup_resources(
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
    ) -> AsyncIterator[tuple[LookupResourceResult, int]]:
        """Resource ids of `resource_type` on which `subject` has `permission`, sorted by id,
        starting after the cursor id `after`, at most `limit`; each with the revision used.

        Results stream as they are found; the walk gives the event loop a turn every few
        milliseconds and stops when the consumer stops (a page full, a cancelled call)."""
        if context:
            require_request_context(context)
        budget = EvaluationBudget()

        def validate(view: View) -> None:
            self._require_permission(view.state, resource_type, permission, "resource_object_type")
            self._require_subject(view.state, subject, "subject")

        def walk(view: View, cursor: str | None) -> Generator[tuple[str, Result] | Pause, None, None]:
            state = view.state
            return lookup_resources_steps(
                state.compiled, state.facts, view.index, resource_type, permission,
                (subject.type, subject.id, subject.relation), self.max_depth, cursor, _likely_wanted(limit),
            )  # fmt: skip

        async def shape(found: tuple[str, Result], view: View) -> LookupResourceResult | None:
            if found[1] is True:
                return LookupResourceResult(found[0])  # no caveat to evaluate: no verdict to ask
            verdict = await self._verdict(view.state, found[1], view.revision, context, budget)
            if verdict.permissionship is Permissionship.DENIED:
                return None
            conditional = verdict.permissionship is Permissionship.CONDITIONAL
            return LookupResourceResult(found[0], conditional, verdict.missing_parameters)

        answers = self._lookup(
            consistency, contextual, validate, walk, lambda found: found[0], shape, after, limit
        )
        async for answer in answers:
            yield answer

    async def lookup_subjects(
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
    ) -> AsyncIterator[tuple[LookupSubjectResult, int]]:
        """Subjects of `subject_type` (with `subject_relation`, "" for plain objects) that have
        `permission` on `resource`, sorted by id (wildcard first), after the cursor id `after`,
        at most `limit`; each with the revision used. Streams like :meth:`lookup_resources`."""
        if context:
            require_request_context(context)
        budget = EvaluationBudget()

        def validate(view: View) -> None:
            self._require_permission(view.state, resource.type, permission, "resource")
            self._require_subject(
                view.state, SubjectRef(subject_type, "x", subject_relation), "subject_object_type"
            )

        def walk(view: View, cursor: str | None) -> Generator[SubjectFound | Pause, None, None]:
            state = view.state
            return lookup_subjects_steps(
                state.compiled, state.facts, view.index, (resource.type, resource.id), permission,
                subject_type, subject_relation, self.max_depth, cursor, _likely_wanted(limit),
                self.held_cache if view.index is self.index else None,  # the next page reuses the walk
            )  # fmt: skip

        async def shape(found: SubjectFound, view: View) -> LookupSubjectResult | None:
            return await self._subject_answer(found, view, context, subject_type, subject_relation, budget)

        answers = self._lookup(
            consistency, contextual, validate, walk, lambda found: found.subject_id, shape, after, limit
        )
        async for answer in answers:
            yield answer

    async def _lookup(
        self,
        consistency: Consistency,
        contextual: Sequence[Relationship],
        validate: Callable[[View], None],
        walk: Callable[[View, str | None], Generator[Found | Pause, None, None]],
        key: Callable[[Found], str],
        shape: Callable[[Found, View], Awaitable[Answer | None]],
        after: str | None,
        limit: int | None,
    ) -> AsyncIterator[tuple[Answer, int]]:
        """The answers of a lookup: `walk` over the view `consistency` asks for (validated by
        `validate`) from the cursor `after` on, each found item made an answer by `shape` (or
        dropped: None), at most `limit`; the walk restarts where it was when the head index
        advances during one of its pauses (see :meth:`_replacement`)."""
        view = self._with_contextual(await self._view(consistency), contextual)
        validate(view)
        if limit == 0:
            return
        sent = 0
        if view.live:
            replacement = self._replacement(consistency, contextual, validate)
            try:
                async for found, used in resumable(view, walk, self._unchanged, replacement, key, after):
                    after = key(found)
                    answer = await shape(found, used)
                    if answer is None:
                        continue
                    yield answer, used.revision
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
                return
            except _ContinueOnSnapshot as moved:
                view = moved.view
        # An old revision is read through the store, on an old-read thread: the walk runs there
        # whole (from the cursor on), then its answers are shaped here.
        found_all = await self._evaluate(view, partial(_walked, walk, view, after))
        for found in found_all:
            answer = await shape(found, view)
            if answer is None:
                continue
            yield answer, view.revision
            sent += 1
            if limit is not None and sent >= limit:
                return

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
        if found.result is True and found.subject_id != WILDCARD and found.listed in (None, True):
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


def _walked(
    walk: Callable[[View, str | None], Generator[Found | Pause, None, None]], view: View, after: str | None
) -> list[Found]:
    """Every item a cooperative walk finds (its pauses skipped), in order."""
    return [item for item in walk(view, after) if not isinstance(item, Pause)]


def _likely_wanted(limit: int | None) -> int | None:
    """How many candidates a page of `limit` answers likely takes (some may be denied)."""
    return None if limit is None else 2 * limit + 16
