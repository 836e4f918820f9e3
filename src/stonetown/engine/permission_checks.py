"""Permission checks of a PermissionSystem: Check (cached, bulk, explained) and Expand, with the
validation of what they name and the caveat verdicts of their results.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from stonetown.core.errors import DeadlineExceeded, InvalidArgument
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.caveat_values import require_request_context
from stonetown.engine.cel_runtime import EvaluationBudget, EvaluationCancelled
from stonetown.engine.check import CheckRun, DepthExceeded, Query, Rewalk
from stonetown.engine.check_cache import CheckCache, CheckKey
from stonetown.engine.conditions import Result, granted
from stonetown.engine.expand import Expander
from stonetown.engine.explain import ExplainNode
from stonetown.engine.explain import build as build_explanation
from stonetown.engine.revision_views import RevisionViews, View
from stonetown.engine.schema_cache import SchemaState
from stonetown.engine.types import (
    CheckRequest,
    CheckResult,
    Consistency,
    ConsistencyMode,
    ExpandNode,
    Permissionship,
)


class PermissionChecks(RevisionViews):
    """Check, CheckBulk, explained Check and Expand (a layer of PermissionSystem, see
    engine/system.py)."""

    # set by PermissionSystem.__init__
    max_depth: int
    max_expand_size: int
    check_cache: CheckCache
    _cached_verdicts: tuple[int, CheckResult, CheckResult]

    @staticmethod
    async def _verdict(
        state: SchemaState,
        result: Result,
        revision: int,
        context: dict[str, Any] | None,
        budget: EvaluationBudget | None,
    ) -> CheckResult:
        """The answer for `result`; a caveat condition is evaluated against `context` under
        the request's `budget` (on the event loop while it lasts, then on the worker pool)."""
        if result is True:
            return CheckResult(Permissionship.ALLOWED, revision)
        if not granted(result):
            return CheckResult(Permissionship.DENIED, revision)
        spend = budget if budget is not None else EvaluationBudget()
        verdict = await spend.run(lambda: state.caveats.verdict(result, context, spend))  # type: ignore[arg-type]
        return CheckResult(verdict.permissionship, revision, verdict.missing_parameters)

    @staticmethod
    def _require_permission(state: SchemaState, resource_type: str, permission: str, field: str) -> None:
        definition = state.schema.definitions.get(resource_type)
        if definition is None:
            raise InvalidArgument(f"{field}: object definition `{resource_type}` not found")
        if permission not in definition.relations:
            raise InvalidArgument(
                f"{field}: relation/permission `{permission}` not found under definition `{resource_type}`"
            )

    @staticmethod
    def _require_subject(state: SchemaState, subject: SubjectRef, field: str) -> None:
        definition = state.schema.definitions.get(subject.type)
        if definition is None:
            raise InvalidArgument(f"{field}: object definition `{subject.type}` not found")
        if subject.relation and subject.relation not in definition.relations:
            raise InvalidArgument(
                f"{field}: relation/permission `{subject.relation}` "
                f"not found under definition `{subject.type}`"
            )
        if subject.is_wildcard:
            raise InvalidArgument(f"{field}: cannot check a wildcard subject ({subject})")

    async def _check_view(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None,
        contextual: Sequence[Relationship],
    ) -> View:
        """The view a Check (or its explanation) evaluates against, the request validated."""
        if context:
            require_request_context(context)
        view = self._with_contextual(await self._view(consistency), contextual)
        self._require_permission(view.state, resource.type, permission, "resource")
        self._require_subject(view.state, subject, "subject")
        return view

    async def check(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
    ) -> CheckResult:
        """Does `subject` have `permission` on `resource`?"""
        view = await self._check_view(resource, permission, subject, consistency, context, contextual)
        state = view.state
        subj = (subject.type, subject.id, subject.relation)
        cacheable = view.index is self.index
        key = (resource.type, resource.id, permission, subj)
        result = self.check_cache.get(view.revision, key) if cacheable else None
        if result is None:
            run = CheckRun(state.compiled, view.index, self.max_depth)
            work = partial(run.dispatch, resource.type, resource.id, permission, subj, 0)
            try:
                result = work() if cacheable else await self._evaluate(view, work)
            except DepthExceeded as error:
                # the error is the plain walk's to give (see Rewalk)
                rewalk = Rewalk.instead(error, state.compiled, view.index, self.max_depth)
                again = partial(rewalk.again, key)
                result = again() if cacheable else await self._evaluate(view, again)
                run = rewalk.run
            if cacheable and not run.volatile:
                self.check_cache.put(view.revision, key, result)
        if result is True:
            return CheckResult(Permissionship.ALLOWED, view.revision)
        return await self._verdict(state, result, view.revision, context, None)

    async def explain(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
    ) -> tuple[ExplainNode, CheckResult]:
        """The resolution tree of a Check (:mod:`stonetown.engine.explain`) and its answer."""
        view = await self._check_view(resource, permission, subject, consistency, context, contextual)
        state = view.state
        run = CheckRun(state.compiled, view.index, self.max_depth)
        subj = (subject.type, subject.id, subject.relation)
        budget = EvaluationBudget()

        async def verdict(result: Result) -> tuple[Permissionship, tuple[str, ...]]:
            answer = await self._verdict(state, result, view.revision, context, budget)
            return answer.permissionship, answer.missing_parameters

        where = (resource.type, resource.id)
        work = partial(build_explanation, state.compiled, run, view.index, where, permission, subj)
        tree, explainer = await self._evaluate(view, work)
        await explainer.settle(tree, verdict)
        return tree, await self._verdict(state, tree.raw, view.revision, context, budget)

    def cached_check(self, key: CheckKey, consistency: Consistency) -> CheckResult | None:
        """What :meth:`check` answers for `key` ``(resource type, resource id, permission,
        (subject type, subject id, subject relation))`` with no caveat context and no
        contextual relationships, when that needs neither the store nor the engine: the
        index as it is meets `consistency` and the answer is in the whole-check cache. None
        otherwise (then call :meth:`check`; nothing was counted).

        Only checks that passed validation against the schema of the index's revision are
        cached for it (the schema only changes with the revision), so a hit needs no
        validation either."""
        revision = self.index.revision
        cache = self.check_cache
        if cache.revision != revision or self.state is None:
            return None
        mode = consistency.mode
        if mode is not ConsistencyMode.MINIMIZE_LATENCY:
            wanted = consistency.revision
            if wanted is None or mode is ConsistencyMode.FULLY_CONSISTENT:
                return None  # the store must be asked for its head (or the token is missing)
            if wanted > revision if mode is ConsistencyMode.AT_LEAST_AS_FRESH else wanted != revision:
                return None  # a newer revision to wait for, or another snapshot
        result = cache.entries.get(key)
        if result is None or (result is not True and granted(result)):
            return None  # absent, or a caveat condition: check() evaluates it, maybe off the loop
        cache.hits += 1
        verdicts = self._cached_verdicts
        if verdicts[0] != revision:
            verdicts = self._cached_verdicts = (
                revision,
                CheckResult(Permissionship.ALLOWED, revision),
                CheckResult(Permissionship.DENIED, revision),
            )
        if result is True:
            return verdicts[1]
        return verdicts[2]

    async def check_bulk(
        self,
        requests: Sequence[CheckRequest],
        consistency: Consistency,
        contextual: Sequence[Relationship] = (),
    ) -> list[CheckResult | Exception]:
        """Many checks at one revision, sharing work; per-item errors are returned, not raised."""
        view = self._with_contextual(await self._view(consistency), contextual)
        state = view.state
        run = CheckRun(state.compiled, view.index, self.max_depth)

        def evaluate() -> list[Result | Exception]:
            out: list[Result | Exception] = []
            # the items dispatched, in order, and the plain walk answering again any that
            # meets the depth limit (see Rewalk): one for the request, as the run is
            queries: list[Query] = []
            rewalk: Rewalk | None = None
            for position, request in enumerate(requests):
                try:
                    self._require_permission(
                        state, request.resource.type, request.permission, f"items[{position}].resource"
                    )
                    self._require_subject(state, request.subject, f"items[{position}].subject")
                    subject = request.subject
                    query = (
                        request.resource.type,
                        request.resource.id,
                        request.permission,
                        (subject.type, subject.id, subject.relation),
                    )
                    queries.append(query)
                    try:
                        out.append(run.dispatch(*query, 0))
                    except DepthExceeded as error:
                        rewalk = Rewalk.instead(error, state.compiled, view.index, self.max_depth, rewalk)
                        out.append(rewalk.answer(queries, len(queries) - 1))
                except DeadlineExceeded:
                    raise  # the whole request is over, not one item
                except Exception as exc:  # noqa: BLE001 - reported per item
                    out.append(exc)
            return out

        budget = EvaluationBudget()
        answers: list[CheckResult | Exception] = []
        raws = await self._evaluate(view, evaluate)
        for position, (request, raw) in enumerate(zip(requests, raws, strict=True)):
            if isinstance(raw, Exception):
                answers.append(raw)
                continue
            try:
                if request.context:
                    require_request_context(request.context, f"items[{position}].context")
                answers.append(await self._verdict(state, raw, view.revision, request.context, budget))
            except (DeadlineExceeded, EvaluationCancelled):
                raise  # the whole request is over, not one item
            except Exception as exc:  # noqa: BLE001 - reported per item
                answers.append(exc)
        return answers

    async def expand(
        self, resource: ObjectRef, permission: str, consistency: Consistency, *, recursive: bool = False
    ) -> tuple[ExpandNode, int]:
        """The userset tree of `permission` on `resource`, and the revision used."""
        view = await self._view(consistency)
        self._require_permission(view.state, resource.type, permission, "resource")
        expander = Expander(view.state.schema, view.index, self.max_depth, recursive, self.max_expand_size)
        tree = await self._evaluate(view, partial(expander.expand, resource.type, resource.id, permission))
        return tree, view.revision
