"""Evaluating caveat condition trees: CEL semantics, three-valued logic, context merging."""

from __future__ import annotations

from typing import Any

import pytest

from stonetown.core.errors import InvalidArgument
from stonetown.engine.caveats import CaveatEvaluator
from stonetown.engine.conditions import CaveatAnd, CaveatLeaf, CaveatNot, CaveatOr, Condition
from stonetown.engine.types import Permissionship
from stonetown.schema import compile_schema, ir

ALLOWED, DENIED, CONDITIONAL = Permissionship.ALLOWED, Permissionship.DENIED, Permissionship.CONDITIONAL

SCHEMA = """
definition user {}

caveat is_answer(answer int) { answer == 42 }
caveat either_one(first bool, second bool) { first || second }
caveat both(first bool, second bool) { first && second }
caveat in_network(user_ip ipaddress, cidr string) { user_ip.in_cidr(cidr) }
caveat not_expired(now timestamp, granted timestamp, ttl duration) { now < granted + ttl }
caveat has_tag(tags list<string>, wanted string) { wanted in tags }
caveat quota(limits map<int>) { limits.used < limits.max }
caveat loose(anything any) { anything.level >= 3 }

definition document {
    relation viewer: user with is_answer | user with either_one | user with both | user with in_network
        | user with not_expired | user with has_tag | user with quota | user with loose
}
"""

# Caveats WriteSchema refuses now (tests/caveats/test_caveat_schema_check.py); a schema stored
# before those checks existed may still hold them, and evaluating them must fail cleanly.
LEGACY = {
    "wrong_type": ("name string", "name + 1 == 2"),
    "not_boolean": ("count int", "count + 1"),
    "bad_cel": ("count int", "count =="),
    "unknown_name": ("count int", "count == other"),
}


@pytest.fixture(scope="module")
def evaluator() -> CaveatEvaluator:
    return CaveatEvaluator(compile_schema(SCHEMA))


def leaf(name: str, **stored: Any) -> CaveatLeaf:
    return CaveatLeaf(name, tuple(sorted(stored.items())))


def verdict(evaluator: CaveatEvaluator, condition: Condition, context: dict[str, Any] | None = None):
    result = evaluator.verdict(condition, context)
    return result.permissionship, result.missing_parameters


def test_stored_context_decides_without_request_context(evaluator: CaveatEvaluator) -> None:
    assert verdict(evaluator, leaf("is_answer", answer=42)) == (ALLOWED, ())
    assert verdict(evaluator, leaf("is_answer", answer=41)) == (DENIED, ())


def test_request_context_fills_missing_parameters(evaluator: CaveatEvaluator) -> None:
    assert verdict(evaluator, leaf("is_answer")) == (CONDITIONAL, ("answer",))
    assert verdict(evaluator, leaf("is_answer"), {"answer": 42}) == (ALLOWED, ())
    assert verdict(evaluator, leaf("is_answer"), {"answer": 7}) == (DENIED, ())


def test_stored_context_wins_over_request_context(evaluator: CaveatEvaluator) -> None:
    assert verdict(evaluator, leaf("is_answer", answer=42), {"answer": 41}) == (ALLOWED, ())
    assert verdict(evaluator, leaf("is_answer", answer=41), {"answer": 42}) == (DENIED, ())
    # only the parameter that is stored is overridden; the other comes from the request
    assert verdict(evaluator, leaf("both", first=True), {"first": False, "second": True}) == (ALLOWED, ())


def test_cel_short_circuit_decides_despite_missing_parameters(evaluator: CaveatEvaluator) -> None:
    assert verdict(evaluator, leaf("either_one"), {"second": True}) == (ALLOWED, ())
    assert verdict(evaluator, leaf("either_one"), {"second": False}) == (CONDITIONAL, ("first",))
    assert verdict(evaluator, leaf("both"), {"first": False}) == (DENIED, ())
    assert verdict(evaluator, leaf("both"), {"first": True}) == (CONDITIONAL, ("second",))
    assert verdict(evaluator, leaf("both")) == (CONDITIONAL, ("first", "second"))


def test_three_valued_or(evaluator: CaveatEvaluator) -> None:
    unknown, yes, no = leaf("is_answer"), leaf("is_answer", answer=42), leaf("is_answer", answer=1)
    assert verdict(evaluator, CaveatOr((unknown, yes))) == (ALLOWED, ())
    assert verdict(evaluator, CaveatOr((no, unknown))) == (CONDITIONAL, ("answer",))
    assert verdict(evaluator, CaveatOr((no, no))) == (DENIED, ())


def test_three_valued_and(evaluator: CaveatEvaluator) -> None:
    unknown, yes, no = leaf("is_answer"), leaf("is_answer", answer=42), leaf("is_answer", answer=1)
    assert verdict(evaluator, CaveatAnd((unknown, no))) == (DENIED, ())
    assert verdict(evaluator, CaveatAnd((yes, unknown))) == (CONDITIONAL, ("answer",))
    assert verdict(evaluator, CaveatAnd((yes, yes))) == (ALLOWED, ())


def test_three_valued_not(evaluator: CaveatEvaluator) -> None:
    assert verdict(evaluator, CaveatNot(leaf("is_answer"))) == (CONDITIONAL, ("answer",))
    assert verdict(evaluator, CaveatNot(leaf("is_answer", answer=42))) == (DENIED, ())
    assert verdict(evaluator, CaveatNot(leaf("is_answer", answer=1))) == (ALLOWED, ())


def test_missing_parameters_are_merged_sorted_and_deduplicated(evaluator: CaveatEvaluator) -> None:
    tree = CaveatAnd(
        (leaf("in_network"), CaveatOr((leaf("is_answer"), leaf("in_network", cidr="10.0.0.0/8"))))
    )
    # `user_ip.in_cidr(cidr)` without either misses user_ip only (the receiver, see below)
    assert verdict(evaluator, tree) == (CONDITIONAL, ("answer", "user_ip"))


DECIDING = """
definition user {}
caveat less(x int, y int) { x < y }
caveat choose(a bool, b int, c int) { a ? b > 1 : c > 1 }
caveat mixed(a bool, b int, c int) { (b + c > 2) || !a }
"""


@pytest.mark.parametrize(
    ("name", "context", "missing"),
    [
        ("less", {}, ("x",)),
        ("less", {"x": 1}, ("y",)),
        ("less", {"y": 1}, ("x",)),
        ("choose", {}, ("a",)),
        ("choose", {"b": 1}, ("a",)),
        ("choose", {"a": True}, ("b",)),
        ("mixed", {}, ("a", "b")),
        ("mixed", {"a": True}, ("b",)),
        ("mixed", {"c": 1}, ("a", "b")),
    ],
)
def test_missing_parameters_are_those_that_decide(
    name: str, context: dict[str, Any], missing: tuple[str, ...]
) -> None:
    # SpiceDB (cel-go) reports the unknowns its evaluation carries: an operator or call stops
    # at its first unknown operand, `&&` / `||` carry both sides' unless a known side decides,
    # `?:` its condition's or the chosen branch's (answers of SpiceDB v1.54, embedded)
    evaluator = CaveatEvaluator(compile_schema(DECIDING))
    assert verdict(evaluator, leaf(name), context) == (CONDITIONAL, missing)


def test_in_cidr(evaluator: CaveatEvaluator) -> None:
    network = leaf("in_network", cidr="10.0.0.0/8")
    assert verdict(evaluator, network, {"user_ip": "10.200.1.1"}) == (ALLOWED, ())
    assert verdict(evaluator, network, {"user_ip": "11.0.0.1"}) == (DENIED, ())
    assert verdict(evaluator, network, {"user_ip": "::ffff:1"}) == (DENIED, ())
    v6 = leaf("in_network", cidr="2001:db8::/32")
    assert verdict(evaluator, v6, {"user_ip": "2001:db8:1::5"}) == (ALLOWED, ())
    assert verdict(evaluator, v6, {"user_ip": "10.0.0.1"}) == (DENIED, ())
    with pytest.raises(InvalidArgument, match="in_network"):
        evaluator.verdict(leaf("in_network", cidr="not a cidr"), {"user_ip": "10.0.0.1"})


def test_timestamps_and_durations(evaluator: CaveatEvaluator) -> None:
    grant = leaf("not_expired", granted="2024-01-01T00:00:00Z", ttl="1h30m")
    assert verdict(evaluator, grant, {"now": "2024-01-01T01:29:59Z"}) == (ALLOWED, ())
    assert verdict(evaluator, grant, {"now": "2024-01-01T02:29:59+01:00"}) == (ALLOWED, ())
    assert verdict(evaluator, grant, {"now": "2024-01-01T01:30:00Z"}) == (DENIED, ())
    assert verdict(evaluator, grant) == (CONDITIONAL, ("now",))


def test_lists_maps_and_any(evaluator: CaveatEvaluator) -> None:
    assert verdict(evaluator, leaf("has_tag", tags=["a", "b"]), {"wanted": "b"}) == (ALLOWED, ())
    assert verdict(evaluator, leaf("has_tag", tags=[]), {"wanted": "b"}) == (DENIED, ())
    assert verdict(evaluator, leaf("quota"), {"limits": {"used": 1, "max": 2}}) == (ALLOWED, ())
    assert verdict(evaluator, leaf("quota"), {"limits": {"used": 2, "max": 2}}) == (DENIED, ())
    assert verdict(evaluator, leaf("loose"), {"anything": {"level": 3}}) == (ALLOWED, ())
    assert verdict(evaluator, leaf("loose"), {"anything": {"level": 2}}) == (DENIED, ())


def test_context_of_the_wrong_type_is_invalid_argument(evaluator: CaveatEvaluator) -> None:
    with pytest.raises(InvalidArgument, match=r"caveat `is_answer`.*`answer`"):
        evaluator.verdict(leaf("is_answer"), {"answer": "many"})
    with pytest.raises(InvalidArgument, match="has_tag"):
        evaluator.verdict(leaf("has_tag"), {"tags": "a", "wanted": "a"})


def test_request_keys_that_are_not_parameters_are_ignored(evaluator: CaveatEvaluator) -> None:
    # one request context serves every caveat met during the check
    assert verdict(evaluator, leaf("is_answer"), {"answer": 42, "user_ip": "not even an ip"}) == (ALLOWED, ())


def legacy_evaluator() -> CaveatEvaluator:
    caveats = {}
    for name, (parameters, expression) in LEGACY.items():
        params = tuple(ir.CaveatParameter(*p.split()) for p in parameters.split(", "))
        caveats[name] = ir.Caveat(name, params, expression)
    return CaveatEvaluator(ir.Schema({}, caveats))


def test_cel_runtime_errors_are_invalid_argument_without_evaluator_internals() -> None:
    evaluator = legacy_evaluator()
    cases = [
        ("wrong_type", {"name": "x"}, "evaluation error for caveat `wrong_type`"),
        ("not_boolean", {"count": 1}, "`not_boolean` evaluated to int, not a boolean"),
        ("bad_cel", {"count": 1}, "`bad_cel` cannot be evaluated: syntax error"),
        ("unknown_name", {"count": 1}, "evaluation error for caveat `unknown_name`"),
        ("no_such_caveat", {}, "caveat `no_such_caveat` not found"),
    ]
    for name, context, expected in cases:
        with pytest.raises(InvalidArgument) as raised:
            evaluator.verdict(leaf(name), context)
        message = str(raised.value)
        assert expected in message, message
        assert len(message) < 300 and "\n" not in message, message
        for internal in ("Tree(", "Token(", "<class", "celpy", "Traceback", "CELEvalError"):
            assert internal not in message, message


def test_a_missing_map_key_is_a_runtime_error_unless_short_circuited(evaluator: CaveatEvaluator) -> None:
    with pytest.raises(InvalidArgument, match="quota"):
        evaluator.verdict(leaf("quota"), {"limits": {"used": 1}})


def test_programs_are_compiled_once_per_schema(evaluator: CaveatEvaluator) -> None:
    first = evaluator.compiled("is_answer")
    evaluator.verdict(leaf("is_answer"), {"answer": 1})
    assert evaluator.compiled("is_answer") is first
