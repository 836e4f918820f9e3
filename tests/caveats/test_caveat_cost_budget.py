"""The caveat evaluation budget in process: the per-evaluation cost limit (deterministic,
remembered), the request deadline and cancellation stop an evaluation at its next tick, a
request moves off the event loop once its inline allowance is spent, and request contexts
are bounded in size."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from stonetown.core.errors import DeadlineExceeded, InvalidArgument
from stonetown.engine.caveat_values import MAX_REQUEST_CONTEXT_BYTES, require_request_context
from stonetown.engine.caveats import CaveatEvaluator
from stonetown.engine.cel_runtime import (
    INLINE_COST,
    MAX_CAVEAT_COST,
    CostLimitExceeded,
    EvaluationBudget,
    EvaluationCancelled,
    Meter,
    MoveOffLoop,
)
from stonetown.engine.conditions import CaveatLeaf
from stonetown.engine.types import Permissionship
from stonetown.schema import compile_schema

SCHEMA = """
definition user {}
caveat nested(tags list<int>) { tags.all(x, tags.all(y, x == y || x != y)) }
caveat scan(tags list<int>, wanted int) { tags.exists(x, x == wanted) }
caveat small(limit int, used int) { used < limit }
definition doc { relation viewer: user with nested | user with scan | user with small }
"""


@pytest.fixture
def evaluator() -> CaveatEvaluator:
    return CaveatEvaluator(compile_schema(SCHEMA))


def nested(items: int) -> CaveatLeaf:
    return CaveatLeaf("nested", (("tags", list(range(items))),))


def test_the_cost_limit_refuses_naming_the_bound_and_is_remembered(evaluator: CaveatEvaluator) -> None:
    for _ in range(2):
        with pytest.raises(InvalidArgument) as raised:
            evaluator.verdict(nested(400), None)
        message = str(raised.value)
        assert "evaluation error for caveat `nested`: cost limit exceeded" in message
        assert str(MAX_CAVEAT_COST) in message
    # the refusal was cached: the second call did not evaluate again
    assert any(type(v).__name__ == "_Refused" for v in evaluator.compiled("nested")._outcomes.values())


def test_a_small_list_is_well_within_the_limit(evaluator: CaveatEvaluator) -> None:
    assert evaluator.verdict(nested(10), None).permissionship is Permissionship.ALLOWED
    leaf = CaveatLeaf("scan", (("tags", list(range(500))),))
    assert evaluator.verdict(leaf, {"wanted": 499}).permissionship is Permissionship.ALLOWED


def test_a_passed_deadline_stops_the_evaluation(evaluator: CaveatEvaluator) -> None:
    budget = EvaluationBudget(deadline=time.monotonic() - 1)
    budget.on_loop = False
    with pytest.raises(DeadlineExceeded):
        evaluator.verdict(nested(30), None, budget)


def test_cancellation_stops_the_evaluation(evaluator: CaveatEvaluator) -> None:
    budget = EvaluationBudget()
    budget.on_loop = False
    budget.cancelled = True
    with pytest.raises(EvaluationCancelled):
        evaluator.verdict(nested(30), None, budget)


def test_the_inline_allowance_moves_expensive_work_off_the_loop(evaluator: CaveatEvaluator) -> None:
    budget = EvaluationBudget()
    with pytest.raises(MoveOffLoop):
        evaluator.verdict(nested(20), None, budget)
    assert budget.inline_left <= 0

    async def run() -> tuple[Permissionship, str]:
        spend = EvaluationBudget()
        where: list[str] = []

        def work() -> Permissionship:
            where.append(threading.current_thread().name)
            return evaluator.verdict(nested(20), None, spend).permissionship

        return await spend.run(work), where[-1]

    evaluator.compiled("nested")._outcomes.clear()
    verdict, thread = asyncio.run(run())
    assert verdict is Permissionship.ALLOWED and thread.startswith("stonetown-caveats")


def test_cheap_caveats_stay_on_the_loop(evaluator: CaveatEvaluator) -> None:
    async def run() -> str:
        spend = EvaluationBudget()
        where: list[str] = []

        def work() -> Permissionship:
            where.append(threading.current_thread().name)
            return evaluator.verdict(CaveatLeaf("small", (("limit", 5),)), {"used": 1}, spend).permissionship

        assert await spend.run(work) is Permissionship.ALLOWED
        return where[-1]

    assert asyncio.run(run()) == threading.main_thread().name


def test_a_meter_without_a_budget_still_has_the_cost_limit() -> None:
    meter = Meter(None)
    meter.spend(MAX_CAVEAT_COST)
    assert INLINE_COST < MAX_CAVEAT_COST
    with pytest.raises(CostLimitExceeded):
        meter.spend(1)


def test_request_contexts_are_bounded() -> None:
    require_request_context({"now": "2030-01-01T00:00:00Z", "n": 3})
    require_request_context({"tags": list(range(500))})
    with pytest.raises(InvalidArgument, match=f"less than {MAX_REQUEST_CONTEXT_BYTES} bytes but had"):
        require_request_context({"tags": list(range(2000))}, "context")
