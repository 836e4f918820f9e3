"""Hostile input: size and depth limits, binary data, and hypothesis fuzzing.

Whatever the text, compile_schema returns a schema or raises SchemaError: never another
exception, a RecursionError or a hang.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stonetown.schema import (
    MAX_NESTING_DEPTH,
    MAX_OPERANDS,
    MAX_SCHEMA_BYTES,
    SchemaError,
    compile_schema,
    format_schema,
    parse_schema,
)

VALID = """use expiration
/** people */
definition user {}
caveat cav(abc int, tags list<string>) { abc > 1 && "}" in tags }
definition group {
  relation member: user | group#member | user with cav and expiration
}
definition folder {
  relation viewer: user | user:*
  permission view = viewer
}
definition doc {
  relation parent: folder
  relation owner: group#member
  relation banned: user
  permission view = (owner + parent->view) - banned & parent.all(view) + nil
}
"""


def _outcome(text: str) -> None:
    """Compile; on success the formatter must round-trip, on failure diagnostics must be positioned."""
    try:
        schema = compile_schema(text)
    except SchemaError as error:
        assert error.diagnostics
        for diagnostic in error.diagnostics:
            assert diagnostic.line >= 0 and diagnostic.column >= 0 and diagnostic.message
        return
    assert compile_schema(format_schema(schema)) == schema


def test_size_limit() -> None:
    with pytest.raises(SchemaError, match=rf"schema is {MAX_SCHEMA_BYTES + 1} bytes; the limit is"):
        compile_schema(" " * (MAX_SCHEMA_BYTES + 1))
    with pytest.raises(SchemaError, match="schema is 10000000 bytes"):
        compile_schema("a" * 10_000_000)
    # Multi-byte characters count in UTF-8 bytes, not characters.
    with pytest.raises(SchemaError, match="bytes; the limit is"):
        compile_schema("é" * (MAX_SCHEMA_BYTES // 2 + 1))


def test_deep_parentheses() -> None:
    depth = 10_000
    text = "definition doc { permission view = " + "(" * depth + "view" + ")" * depth + " }"
    with pytest.raises(SchemaError) as caught:
        compile_schema(text)
    message = str(caught.value)
    assert (
        f"1:{36 + MAX_NESTING_DEPTH}: expression nests more than {MAX_NESTING_DEPTH} parentheses deep"
        in message
    )
    unclosed = "definition doc { permission view = " + "(" * depth
    with pytest.raises(SchemaError):
        compile_schema(unclosed)


def test_nesting_at_the_limit_is_accepted() -> None:
    depth = MAX_NESTING_DEPTH
    text = "definition user {}\ndefinition doc { relation viewer: user\n permission view = "
    text += "(" * depth + "viewer" + ")" * depth + " }"
    assert compile_schema(text).relation("doc", "view") is not None


def test_long_exclusion_chain_is_capped() -> None:
    text = "definition user {}\ndefinition doc {\n relation viewer: user\n permission view = "
    text += " - ".join(["viewer"] * 200) + "\n}"
    with pytest.raises(SchemaError, match="permission `view` nests 200 operations deep; the limit is 100"):
        compile_schema(text)


def test_deep_caveat_type() -> None:
    text = "caveat cav(abc " + "list<" * 5000 + "int" + ">" * 5000 + ") { abc }"
    with pytest.raises(SchemaError, match="caveat parameter type nests more than"):
        compile_schema(text)


def test_wide_union_is_flat_and_fast() -> None:
    text = "definition user {}\ndefinition doc {\n relation viewer: user\n permission view = "
    text += " + ".join(["viewer"] * MAX_OPERANDS) + "\n}"
    start = time.perf_counter()
    schema = compile_schema(text)
    assert time.perf_counter() - start < 5
    view = schema.relation("doc", "view")
    assert view is not None and len(view.rewrite.children) == MAX_OPERANDS  # type: ignore[union-attr]


def test_long_subject_set_chain() -> None:
    count = 1500
    text = "definition user {}\n" + "\n".join(
        f"definition grp{i:04d} {{ relation member: grp{i + 1:04d}#member }}" for i in range(count)
    )
    text += f"\ndefinition grp{count:04d} {{ relation member: user:* }}"
    start = time.perf_counter()
    with pytest.raises(SchemaError, match="wildcard relations cannot be transitively included"):
        compile_schema(text)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "text",
    [
        "\x00\x01\x02",
        "\ufeffdefinition user {}",
        "definition 用户 {}",
        "💥",
        "\udcff",
        "/**",
        "caveat",
        "{{{{",
        "}",
    ],
)
def test_odd_text(text: str) -> None:
    _outcome(text)


def test_bytes_input() -> None:
    assert compile_schema(b"definition user {}")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="not valid UTF-8"):
        compile_schema(b"\xff\xfe")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="must be text"):
        parse_schema(42)  # type: ignore[arg-type]


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALPHABET = st.sampled_from(
    list("abcdefguser_/:#*|+&-(){}.=<>,; \n\t'\"") + ["->", "/*", "*/", "//", "nil", " with "]
)
TOKENS = st.sampled_from(
    [
        "definition", "relation", "permission", "caveat", "use", "expiration", "with", "and", "nil",
        "user", "doc", "viewer", "member", "parent", "view", "any", "all",
        "{", "}", "(", ")", ":", "|", "#", "*", "+", "&", "-", "->", ".", "=", ",", "<", ">",
        "\n", " ", "/** d */", "// c\n", "int", "list",
    ]
)  # fmt: skip


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_random_text(text: str) -> None:
    _outcome(text)


@FUZZ
@given(st.lists(ALPHABET, max_size=200).map("".join))
def test_fuzz_schema_alphabet(text: str) -> None:
    _outcome(text)


@FUZZ
@given(st.lists(TOKENS, max_size=120).map(" ".join))
def test_fuzz_token_soup(text: str) -> None:
    _outcome(text)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID)), st.integers(0, 8), st.text(max_size=6) | TOKENS),
        min_size=1,
        max_size=4,
    )
)
def test_fuzz_mutated_valid_schema(edits: list[tuple[int, int, str]]) -> None:
    text = VALID
    for position, length, replacement in edits:
        position = min(position, len(text))
        text = text[:position] + replacement + text[position + length :]
    _outcome(text)


def test_valid_fixture_compiles() -> None:
    schema = compile_schema(VALID)
    assert compile_schema(format_schema(schema)) == schema
