"""Which missing parameters decide a caveat expression, as SpiceDB reports them.

SpiceDB (cel-go) evaluates a caveat with the parameters it lacks as *unknowns* and lists the
unknowns the result carries in `missing_required_context`. cel-go propagates them like this:
`a || b` and `a && b` are decided by a known side that decides them (`true ||`, `false &&`),
otherwise they carry the unknowns of both sides; `c ? a : b` carries the condition's unknowns,
or the chosen branch's; any other operator or function call carries the unknowns of its first
unknown argument (left to right) and never looks at the rest. So `x < y` with neither given
misses `x` only: once `x` is given, the answer may still need `y`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celpy import celtypes

from stonetown.core.errors import StonetownError
from stonetown.engine.cel_runtime import CostLimitExceeded, Meter, MeteredProgram, MoveOffLoop

# celpy's parse tree (a lark Tree: `data`, `children`; tokens among the children)
Node = Any
Evaluate = Callable[[Node], Any]


def deciding_unknowns(node: Node, missing: frozenset[str], evaluate: Evaluate) -> frozenset[str]:
    """The unknowns among `missing` (parameter names without a value) that the CEL expression
    `node` (celpy's parse tree) carries when evaluated; `evaluate` runs a subtree that has no
    unknowns. Empty when a known part decides the expression."""
    if node.data == "ident":
        name = str(node.children[0])
        return frozenset({name}) if name in missing else frozenset()
    children = [child for child in node.children if hasattr(child, "data")]
    if node.data in ("conditionalor", "conditionaland") and len(children) == 2:
        decisive = node.data == "conditionalor"  # `true ||` and `false &&` decide
        carried: set[str] = set()
        for child in children:
            unknowns = deciding_unknowns(child, missing, evaluate)
            if unknowns:
                carried |= unknowns
                continue
            try:
                value = evaluate(child)
            except Exception:  # noqa: BLE001 - a CEL error decides nothing
                continue
            if isinstance(value, celtypes.BoolType | bool) and bool(value) is decisive:
                return frozenset()
        return frozenset(carried)
    if node.data == "expr" and len(children) == 3:
        condition, when_true, when_false = children
        unknowns = deciding_unknowns(condition, missing, evaluate)
        if unknowns:
            return unknowns
        try:
            chosen = when_true if evaluate(condition) else when_false
        except Exception:  # noqa: BLE001 - a CEL error: the caller reports it
            return frozenset()
        return deciding_unknowns(chosen, missing, evaluate)
    for child in children:
        unknowns = deciding_unknowns(child, missing, evaluate)
        if unknowns:
            return unknowns
    return frozenset()


def missing_parameters(
    program: MeteredProgram, activation: dict[str, Any], missing: frozenset[str], meter: Meter
) -> frozenset[str]:
    """The parameters of `missing` that a compiled caveat `program`, evaluated over
    `activation` (the parameters given, converted), reports as missing the way SpiceDB does
    (see deciding_unknowns); all of `missing` when the expression's shape is not one it
    follows. Subtrees are evaluated under `meter`, the evaluation's own cost meter."""

    def evaluate(node: Node) -> Any:
        return program.run_subtree(node, activation, meter)

    try:
        found = deciding_unknowns(program.ast, missing, evaluate)
    except (CostLimitExceeded, MoveOffLoop, StonetownError):
        raise
    except Exception:  # noqa: BLE001 - an unexpected tree: keep every missing parameter
        return missing
    return found or missing
