"""Bounded CEL evaluation: a cost meter, a request budget and a worker pool off the event loop.

cel-python walks the parse tree; a 3 KB context can make a nested macro run for minutes
(`tags.all(x, tags.all(y, ...))` over 400 items). Every evaluation therefore runs under a
:class:`Meter` that charges one unit per parse-tree node visited and
:data:`ITERATION_COST` units per macro iteration (each iteration builds a fresh activation) and
stops the evaluation with :class:`CostLimitExceeded` past :data:`MAX_CAVEAT_COST` units,
deterministically, like cel-go's cost limit in SpiceDB.

A request's evaluations share one :class:`EvaluationBudget`: it starts them on the event loop
(nearly every caveat costs a few dozen units) and, once they have spent
:data:`INLINE_COST` units there, asks for the rest to run on a worker thread
(:class:`MoveOffLoop`), so the loop keeps serving health and other calls. Every
:data:`CHECK_EVERY` units the meter also looks at the request deadline and at the
cancellation flag set when the caller went away, so abandoned work stops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import lark
from celpy import InterpretedRunner
from celpy.evaluation import Evaluator

from stonetown.core.errors import DeadlineExceeded, StonetownError
from stonetown.engine.deadline import request_deadline

MAX_CAVEAT_COST = 25_000
"""Units one caveat evaluation may spend (a node visit is 1, a macro iteration
:data:`ITERATION_COST` more): a macro with a small body over about 1,000 items, a few tenths
of a second of CPU. A typical caveat (`now < expires`) costs 20-60."""

ITERATION_COST = 5
INLINE_COST = 150
"""Units a request may spend on the event loop (a few milliseconds, three to seven typical
evaluations) before its evaluations move to the pool."""

CHECK_EVERY = 64
# One thread: caveat work beyond the inline allowance never takes more than one core, and the
# event loop competes for the GIL with a single busy thread.
EVALUATION_THREADS = 1

_T = TypeVar("_T")


class CostLimitExceeded(Exception):
    """One evaluation spent more than :data:`MAX_CAVEAT_COST` units."""


class MoveOffLoop(Exception):
    """The request spent its allowance on the event loop: run this evaluation on the pool."""


class EvaluationCancelled(StonetownError):
    """The caller went away while its caveats were being evaluated (gRPC CANCELLED)."""

    code = "CANCELLED"


class EvaluationBudget:
    """What one request's caveat evaluations may spend, where, and until when."""

    __slots__ = ("inline_left", "deadline", "cancelled", "on_loop")

    def __init__(self, deadline: float | None = None) -> None:
        self.inline_left = INLINE_COST
        self.deadline = deadline if deadline is not None else request_deadline.get()
        self.cancelled = False  # set by the loop thread, read by the worker (atomic under the GIL)
        self.on_loop = True

    def tick(self, units: int) -> None:
        """Account `units` spent since the last tick; stop when the work must move or end."""
        if self.on_loop:
            self.inline_left -= units
            if self.inline_left <= 0:
                raise MoveOffLoop
        else:
            # Hand the GIL over now rather than at the interpreter's next switch (5 ms): the
            # event loop thread, waiting for it, answers health and cheap calls in between.
            time.sleep(0)
        if self.cancelled:
            raise EvaluationCancelled("the request was cancelled while its caveats were evaluated")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("the request deadline passed while its caveats were evaluated")

    async def run(self, work: Callable[[], _T]) -> _T:
        """`work()` on the event loop while the allowance lasts, else on the worker pool;
        cancelling the awaiting task stops the worker at its next tick."""
        if self.inline_left > 0 and self.on_loop:
            try:
                return work()
            except MoveOffLoop:
                pass
        self.on_loop = False
        future = asyncio.get_running_loop().run_in_executor(_pool(), work)
        try:
            return await future
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Meter:
    """The cost of one evaluation, charged against `budget` (None: no request around it)."""

    __slots__ = ("spent", "budget", "_unticked")

    def __init__(self, budget: EvaluationBudget | None) -> None:
        self.spent = 0
        self.budget = budget
        self._unticked = 0

    def spend(self, units: int) -> None:
        """Charge `units`; raise CostLimitExceeded past the limit."""
        self.spent += units
        if self.spent > MAX_CAVEAT_COST:
            raise CostLimitExceeded
        self._unticked += units
        if self._unticked >= CHECK_EVERY and self.budget is not None:
            self.budget.tick(self._unticked)
            self._unticked = 0


class _MeteredEvaluator(Evaluator):
    """celpy's tree-walking evaluator, charging every node visit and macro iteration."""

    def __init__(self, ast: lark.Tree, activation: Any, meter: Meter) -> None:
        super().__init__(ast, activation)
        self.meter = meter

    def sub_evaluator(self, ast: lark.Tree) -> Evaluator:
        return _MeteredEvaluator(ast, self.activation, self.meter)

    def evaluate(self, context: Any = None) -> Any:
        self.meter.spend(ITERATION_COST)
        return super().evaluate(context)

    def _visit_tree(self, tree: lark.Tree) -> Any:
        self.meter.spend(1)
        return super()._visit_tree(tree)


class MeteredProgram(InterpretedRunner):
    """A compiled caveat whose evaluations run under a meter."""

    def run(self, activation: dict[str, Any], meter: Meter) -> Any:
        """The value of the expression over `activation`, charged to `meter`."""
        evaluator = _MeteredEvaluator(self.ast, self.new_activation(), meter)
        return evaluator.evaluate(activation)

    def run_subtree(self, node: Any, activation: dict[str, Any], meter: Meter) -> Any:
        """The value of one subtree of the expression over `activation`, charged to `meter`."""
        return _MeteredEvaluator(node, self.new_activation(), meter).evaluate(activation)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(EVALUATION_THREADS, thread_name_prefix="stonetown-caveats")
        return _executor

