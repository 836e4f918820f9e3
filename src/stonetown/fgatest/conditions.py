"""Deciding an engine result (True, False, UNKNOWN or a condition tree) the OpenFGA way.

A condition tree is evaluated against the request context with three-valued logic: a leaf
whose condition lacks a parameter is *missing*; `or` is true if any child is true, `and` is
false if any child is false, `not` keeps missing. A result that stays missing is OpenFGA's
error 2000 ("missing condition parameter"). The tree and the CEL expressions are evaluated by
:class:`stonetown.engine.caveats.CaveatEvaluator` (stored condition context merged with the
request context).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from stonetown.engine.conditions import UNKNOWN, CaveatLeaf, CaveatNot, CaveatOr, Condition, Result
from stonetown.schema import ir


class ConditionOutcome(enum.Enum):
    """The decided value of a result."""

    TRUE = "true"
    FALSE = "false"
    MISSING = "missing"  # depends on a condition parameter the request did not give


class ConditionsUnavailable(RuntimeError):
    """Condition (CEL) evaluation is not available in this build."""


def _evaluator_class() -> Any:
    try:
        from stonetown.engine.caveats import CaveatEvaluator
    except ImportError as exc:  # pragma: no cover - only before caveats.py existed
        raise ConditionsUnavailable(f"conditions need stonetown.engine.caveats: {exc}") from exc
    return CaveatEvaluator


def make_evaluator(schema: ir.Schema) -> Any:
    """A condition evaluator for `schema` (compiles each condition once, on first use)."""
    return _evaluator_class()(schema)


def resolve_condition(
    schema: ir.Schema,
    result: Result,
    context: Mapping[str, Any],
    evaluator: Any = None,
    strict: bool = False,
) -> ConditionOutcome:
    """Decide `result` for a request carrying `context` (UNKNOWN, a cycle, is False).

    OpenFGA's rules: a condition whose declared parameters are not all given (stored context
    merged with the request's, stored values winning) is *missing*, whatever its expression
    would do without them; with ``strict`` (ListObjects / ListUsers, which evaluate every
    tuple) any missing condition makes the whole result missing. Raises InvalidArgument when
    a context value does not fit its parameter type."""
    if result is True:
        return ConditionOutcome.TRUE
    if result is False or result is UNKNOWN:
        return ConditionOutcome.FALSE
    if evaluator is None:
        evaluator = make_evaluator(schema)
    values: list[ConditionOutcome] = []
    outcome = _walk(schema, evaluator, result, dict(context), values)  # type: ignore[arg-type]
    if strict and ConditionOutcome.MISSING in values:
        return ConditionOutcome.MISSING
    return outcome


def _walk(
    schema: ir.Schema, evaluator: Any, node: Condition, context: dict[str, Any], seen: list[ConditionOutcome]
) -> ConditionOutcome:
    if isinstance(node, CaveatLeaf):
        merged = {**context, **dict(node.context)}
        caveat = schema.caveats.get(node.name)
        if caveat is not None and any(p.name not in merged for p in caveat.parameters):
            value = ConditionOutcome.MISSING
        else:
            value = (
                ConditionOutcome.TRUE
                if evaluator.compiled(node.name).evaluate(merged)
                else ConditionOutcome.FALSE
            )
        seen.append(value)
        return value
    if isinstance(node, CaveatNot):
        inner = _walk(schema, evaluator, node.child, context, seen)
        if inner is ConditionOutcome.MISSING:
            return inner
        return ConditionOutcome.FALSE if inner is ConditionOutcome.TRUE else ConditionOutcome.TRUE
    outcomes = [_walk(schema, evaluator, child, context, seen) for child in node.children]
    decisive, other = (
        (ConditionOutcome.TRUE, ConditionOutcome.FALSE)
        if isinstance(node, CaveatOr)
        else (ConditionOutcome.FALSE, ConditionOutcome.TRUE)
    )
    if decisive in outcomes:
        return decisive
    return ConditionOutcome.MISSING if ConditionOutcome.MISSING in outcomes else other
