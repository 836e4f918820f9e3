"""Caveat evaluation: the CEL expressions of a schema's caveats, run against request context.

Every caveat is compiled once per schema with cel-python (`celpy`) and cached on the
evaluator the schema state owns. A condition tree (see conditions.py) is evaluated with
three-valued logic: each leaf merges the request context with the context stored on the
relationship (stored values win, as in SpiceDB), converts the values to the caveat's declared
parameter types and runs the expression. A leaf whose outcome depends on a parameter absent
from the merged context is *unknown*, carrying the missing names; CEL's commutative `&&` and
`||` absorb such a gap when the other side decides (`false && x` is false without `x`).

Parameter types and value conversion are in :mod:`.caveat_values`; every evaluation is metered
and may leave the event loop (:mod:`.cel_runtime`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import celpy.celtypes as ct

from stonetown.core.errors import InvalidArgument, StonetownError
from stonetown.engine.caveat_values import CaveatType, convert_value, in_cidr, parse_type
from stonetown.engine.cel_runtime import (
    MAX_CAVEAT_COST,
    CostLimitExceeded,
    EvaluationBudget,
    Meter,
    MeteredProgram,
    MoveOffLoop,
)
from stonetown.engine.cel_unknowns import missing_parameters
from stonetown.engine.conditions import CaveatAnd, CaveatLeaf, CaveatNot, CaveatOr, Condition
from stonetown.engine.types import Permissionship
from stonetown.schema import ir
from stonetown.schema.cel_check import CelTypeError, cel_environment, parse_caveat

# ---- compilation ------------------------------------------------------------------------

_FUNCTIONS = {"in_cidr": in_cidr}
_OUTCOME_CACHE = 4096


Outcome = bool | frozenset[str]
"""True, False, or (unknown) the non-empty set of parameter names it is missing."""


class _Refused:
    """A cached evaluation error (the cost limit is deterministic): raised again on a hit."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class CompiledCaveat:
    """One caveat compiled to a metered CEL program, with its parameter types."""

    __slots__ = ("name", "types", "program", "referenced", "compile_error", "_outcomes")

    def __init__(self, caveat: ir.Caveat) -> None:
        self.name = caveat.name
        self.types: dict[str, CaveatType] = {}
        self.program: MeteredProgram | None = None
        self.referenced: frozenset[str] = frozenset()
        self.compile_error: str | None = None
        # Outcomes by the JSON of the parameter values: the expression is a pure function of
        # them, and lookups meet the same stored context and request context many times.
        self._outcomes: dict[str, Outcome | _Refused] = {}
        try:
            for parameter in caveat.parameters:
                self.types[parameter.name] = parse_type(parameter.type)
            tree = parse_caveat(caveat.expression)
        except (ValueError, CelTypeError) as exc:
            # Only a schema stored before these checks existed gets here.
            self.compile_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        self.program = MeteredProgram(cel_environment(), tree, _FUNCTIONS)
        identifiers = {
            str(node.children[0]) for node in tree.iter_subtrees() if node.data == "ident" and node.children
        }
        self.referenced = frozenset(identifiers & self.types.keys())

    def evaluate(self, context: Mapping[str, Any], budget: EvaluationBudget | None = None) -> Outcome:
        """Run the expression over `context` (request and stored values already merged),
        charging `budget`."""
        if self.compile_error is not None:
            raise InvalidArgument(f"caveat `{self.name}` cannot be evaluated: {self.compile_error}")
        try:
            key = json.dumps([[n, context[n]] for n in self.types if n in context], allow_nan=False)
        except (TypeError, ValueError):
            return self._evaluate(context, budget)
        known = self._outcomes.get(key)
        if known is None:
            try:
                known = self._evaluate(context, budget)
            except _CostRefusal as refusal:
                known = _Refused(str(refusal))
            if len(self._outcomes) >= _OUTCOME_CACHE:
                self._outcomes.clear()
            self._outcomes[key] = known
        if isinstance(known, _Refused):
            raise InvalidArgument(known.message)
        return known

    def _evaluate(self, context: Mapping[str, Any], budget: EvaluationBudget | None) -> Outcome:
        activation: dict[str, Any] = {}
        missing: set[str] = set()
        for name, ctype in self.types.items():
            if name not in context:
                missing.add(name)
                continue
            try:
                activation[name] = convert_value(context[name], ctype)
            except ValueError as exc:
                raise InvalidArgument(
                    f"type error for parameters for caveat `{self.name}`: parameter `{name}` ({ctype}): {exc}"
                ) from None
        assert self.program is not None
        meter = Meter(budget)
        try:
            try:
                value = self.program.run(activation, meter)
            except (MoveOffLoop, StonetownError, CostLimitExceeded):
                raise
            except Exception as exc:  # noqa: BLE001 - CEL errors surface as several exception types
                gaps = missing & self.referenced
                if not gaps:
                    raise InvalidArgument(
                        f"evaluation error for caveat `{self.name}`: {_cel_message(exc)}"
                    ) from None
                # which of them decide the answer, as SpiceDB reports them (metered too)
                return missing_parameters(self.program, activation, frozenset(gaps), meter)
        except CostLimitExceeded:
            raise _CostRefusal(
                f"evaluation error for caveat `{self.name}`: cost limit exceeded: the expression needs more "
                f"than {MAX_CAVEAT_COST} evaluation steps over this context (list and map sizes multiply "
                "in nested macros)"
            ) from None
        if isinstance(value, ct.BoolType | bool):
            return bool(value)
        raise InvalidArgument(f"caveat `{self.name}` evaluated to {_cel_type_name(value)}, not a boolean")


class _CostRefusal(Exception):
    """Internal: the cost limit refused one evaluation (message ready for the caller)."""


_SAFE_MESSAGE = re.compile(r"[\w `'.,:;()<>=!+\-*/%\[\]]{1,120}")


def _cel_message(exc: BaseException) -> str:
    """A short, clear description of a CEL evaluation failure: celpy's own messages
    ("no such overload", "divide by zero", "no such key") without its internals (trees,
    classes, values)."""
    if isinstance(exc, RecursionError):
        return "the expression nests too deeply to evaluate"
    args = getattr(exc, "args", ())
    text = str(args[0]) if args and isinstance(args[0], str) else ""
    text = text.splitlines()[0].strip() if text else ""
    if text and _SAFE_MESSAGE.fullmatch(text) and "<" not in text and "Tree" not in text:
        return text
    return "the expression could not be evaluated over this context"


def _cel_type_name(value: Any) -> str:
    return type(value).__name__.removesuffix("Type").lower() or "a value"


# ---- condition trees --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaveatVerdict:
    """The outcome of a condition for a request: ALLOWED, DENIED or CONDITIONAL with the
    parameters that were missing (sorted)."""

    permissionship: Permissionship
    missing_parameters: tuple[str, ...] = ()


class CaveatEvaluator:
    """The caveats of one schema, compiled on first use and kept for the schema's lifetime."""

    def __init__(self, schema: ir.Schema) -> None:
        self.schema = schema
        self._compiled: dict[str, CompiledCaveat] = {}

    def compiled(self, name: str) -> CompiledCaveat:
        """The compiled caveat `name` (InvalidArgument if the schema has no such caveat)."""
        found = self._compiled.get(name)
        if found is None:
            caveat = self.schema.caveats.get(name)
            if caveat is None:
                raise InvalidArgument(f"caveat `{name}` not found in the schema")
            found = CompiledCaveat(caveat)
            self._compiled[name] = found
        return found

    def outcome(
        self,
        condition: Condition,
        context: Mapping[str, Any] | None,
        budget: EvaluationBudget | None = None,
    ) -> Outcome:
        """Three-valued value of `condition` under the request `context`, charging `budget`."""
        return _Evaluation(self, context or {}, budget).value(condition)

    def verdict(
        self,
        condition: Condition,
        context: Mapping[str, Any] | None,
        budget: EvaluationBudget | None = None,
    ) -> CaveatVerdict:
        """ALLOWED, DENIED or CONDITIONAL (with the sorted missing parameter names)."""
        result = self.outcome(condition, context, budget)
        if result is True:
            return CaveatVerdict(Permissionship.ALLOWED)
        if result is False:
            return CaveatVerdict(Permissionship.DENIED)
        return CaveatVerdict(Permissionship.CONDITIONAL, tuple(sorted(result)))


class _Evaluation:
    """One evaluation of a tree: leaves met twice (the same relationship reached by two
    paths) are evaluated once."""

    __slots__ = ("evaluator", "context", "budget", "seen")

    def __init__(
        self, evaluator: CaveatEvaluator, context: Mapping[str, Any], budget: EvaluationBudget | None
    ) -> None:
        self.evaluator = evaluator
        self.context = context
        self.budget = budget
        self.seen: dict[int, tuple[CaveatLeaf, Outcome]] = {}

    def value(self, node: Condition) -> Outcome:
        if isinstance(node, CaveatLeaf):
            return self.leaf(node)
        if isinstance(node, CaveatNot):
            inner = self.value(node.child)
            return inner if isinstance(inner, frozenset) else not inner
        if isinstance(node, CaveatOr):
            gaps: set[str] = set()
            for child in node.children:
                found = self.value(child)
                if found is True:
                    return True
                if isinstance(found, frozenset):
                    gaps |= found
            return frozenset(gaps) if gaps else False
        if isinstance(node, CaveatAnd):
            gaps = set()
            for child in node.children:
                found = self.value(child)
                if found is False:
                    return False
                if isinstance(found, frozenset):
                    gaps |= found
            return frozenset(gaps) if gaps else True
        raise TypeError(f"not a caveat condition: {node!r}")

    def leaf(self, leaf: CaveatLeaf) -> Outcome:
        known = self.seen.get(id(leaf))
        if known is not None and known[0] is leaf:
            return known[1]
        if leaf.context:
            merged: Mapping[str, Any] = {**self.context, **dict(leaf.context)}
        else:
            merged = self.context
        result = self.evaluator.compiled(leaf.name).evaluate(merged, self.budget)
        self.seen[id(leaf)] = (leaf, result)
        return result
