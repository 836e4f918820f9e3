"""`stonetown check-bulk`, the real CLI in subprocesses against a real server (the test schema of
grpc_harness: `document#viewer` accepts `user with on_weekday`, a caveat on the `day` parameter)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

Runner = Callable[..., subprocess.CompletedProcess[str]]


def _touch(stonetown: Runner, *relationships: str) -> str:
    """Touch relationships with the CLI; the write's token."""
    result = stonetown("rel", "touch", "--json", *relationships)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["token"])


def _answers(result: subprocess.CompletedProcess[str]) -> list[tuple[str, ...]]:
    """The text output as (check, answer) pairs."""
    return [tuple(line.split("\t")) for line in result.stdout.splitlines()]


def test_arguments_exit_codes_and_one_line_per_check(stonetown: Runner) -> None:
    """Exit 0 when every check is allowed, 1 as soon as one is denied or conditional; one line
    per check, in order."""
    _touch(stonetown, "document:b1#owner@user:ana", "document:b1#viewer@user:bob[on_weekday]")
    allowed = stonetown("check-bulk", "document:b1#edit@user:ana", "document:b1#view@user:ana")
    assert allowed.returncode == 0, allowed.stderr
    assert _answers(allowed) == [
        ("document:b1#edit@user:ana", "allowed"),
        ("document:b1#view@user:ana", "allowed"),
    ]
    mixed = stonetown(
        "check-bulk", "document:b1#edit@user:ana", "document:b1#edit@user:bob", "document:b1#view@user:bob"
    )
    assert mixed.returncode == 1, mixed.stderr
    assert _answers(mixed) == [
        ("document:b1#edit@user:ana", "allowed"),
        ("document:b1#edit@user:bob", "denied"),
        ("document:b1#view@user:bob", "conditional (missing: day)"),
    ]
    only_conditional = stonetown("check-bulk", "document:b1#view@user:bob")
    assert only_conditional.returncode == 1
    assert _answers(only_conditional) == [("document:b1#view@user:bob", "conditional (missing: day)")]


def test_file_with_per_line_context_and_default_context(stonetown: Runner, tmp_path: Path) -> None:
    """--file takes one check per line (comments and blank lines skipped), each with an optional
    ` with {json}` context; --context is the default, a line's own keys override it."""
    _touch(stonetown, "document:b2#viewer@user:cat[on_weekday]")
    (tmp_path / "checks.txt").write_text(
        "# weekday viewer\n"
        "document:b2#view@user:cat\n"
        "\n"
        'document:b2#view@user:cat with {"day": "sat"}\n'
        "// a line's context wins over --context\n"
        'document:b2#view@user:cat with {"day": "tue"}\n'
    )
    with_default = stonetown("check-bulk", "--file", "checks.txt", "--context", '{"day": "sun"}')
    assert with_default.returncode == 1, with_default.stderr
    assert _answers(with_default) == [
        ('document:b2#view@user:cat with {"day":"sun"}', "denied"),
        ('document:b2#view@user:cat with {"day":"sat"}', "denied"),
        ('document:b2#view@user:cat with {"day":"tue"}', "allowed"),
    ]
    without_default = stonetown("check-bulk", "--file", "checks.txt")
    assert [answer for *_check, answer in _answers(without_default)] == [
        "conditional (missing: day)",
        "denied",
        "allowed",
    ]
    weekday = stonetown(
        "check-bulk", "--file", "-", "--context", '{"day": "mon"}', stdin="document:b2#view@user:cat\n"
    )
    assert (weekday.returncode, _answers(weekday)) == (
        0,
        [('document:b2#view@user:cat with {"day":"mon"}', "allowed")],
    )


def test_json_output_one_document_per_check(stonetown: Runner) -> None:
    """--json prints one document per check with its answer, missing parameters and token."""
    token = _touch(stonetown, "document:b3#viewer@user:dan[on_weekday]", "document:b3#owner@user:eli")
    result = stonetown(
        "check-bulk",
        "--json",
        "--at-least-as-fresh",
        token,
        "document:b3#view@user:dan",
        'document:b3#view@user:dan with {"day": "wed"}',
        "document:b3#edit@user:dan",
    )
    assert result.returncode == 1, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(doc["check"], doc["permissionship"], doc["missing_parameters"]) for doc in docs] == [
        ("document:b3#view@user:dan", "conditional", ["day"]),
        ('document:b3#view@user:dan with {"day":"wed"}', "allowed", []),
        ("document:b3#edit@user:dan", "denied", []),
    ]
    assert [doc["allowed"] for doc in docs] == [False, True, False]
    assert len({doc["token"] for doc in docs}) == 1 and docs[0]["token"]


def test_batches_answer_at_the_requested_snapshot(stonetown: Runner) -> None:
    """With --batch-size 1 every check is its own call, and all of them answer at the snapshot
    asked for, not at the newer state."""
    before = _touch(stonetown, "document:b4#viewer@user:fay", "document:b4#viewer@user:gil")
    _touch(stonetown, "document:b4#banned@user:fay")
    checks = ("document:b4#view@user:fay", "document:b4#view@user:gil")
    now = stonetown("check-bulk", "--batch-size", "1", *checks)
    assert [answer for *_check, answer in _answers(now)] == ["denied", "allowed"]
    then = stonetown("check-bulk", "--batch-size", "1", "--at-exact-snapshot", before, "--json", *checks)
    assert then.returncode == 0, then.stderr
    docs = [json.loads(line) for line in then.stdout.splitlines()]
    assert [doc["allowed"] for doc in docs] == [True, True]


def test_errors_exit_2(stonetown: Runner, tmp_path: Path) -> None:
    """An unknown permission fails its item (the other lines are still answered); malformed input,
    a bad context and no checks at all fail the command; all exit 2."""
    _touch(stonetown, "document:b5#owner@user:hana")
    item_error = stonetown("check-bulk", "document:b5#edit@user:hana", "document:b5#nosuch@user:hana")
    assert item_error.returncode == 2
    answers = _answers(item_error)
    assert answers[0] == ("document:b5#edit@user:hana", "allowed")
    assert answers[1][0] == "document:b5#nosuch@user:hana" and "INVALID_ARGUMENT" in answers[1][1]
    as_json = stonetown("check-bulk", "--json", "document:b5#nosuch@user:hana")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["code"] == "INVALID_ARGUMENT"
    for args in (
        ("document:b5#edit",),
        ("document:b5#edit@user:hana with [1]",),
        ("document:b5#edit@user:hana with {nope",),
        ("--context", "[]", "document:b5#edit@user:hana"),
        ("document:b5#edit@user:hana[expiration:2099-01-01T00:00:00Z]",),
        (),
    ):
        result = stonetown("check-bulk", *args)
        assert result.returncode == 2, args
        assert "INVALID_ARGUMENT" in result.stderr and result.stdout == "", args
    (tmp_path / "empty.txt").write_text("# nothing here\n\n")
    empty = stonetown("check-bulk", "--file", "empty.txt")
    assert empty.returncode == 2 and "no checks given" in empty.stderr
    missing = stonetown("check-bulk", "--file", "no-such-file.txt")
    assert missing.returncode == 2 and "no-such-file.txt" in missing.stderr
