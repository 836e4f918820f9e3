"""The client subcommands: each takes parsed arguments and a connected Client, returns an exit code.

Exit codes: 0 ok / allowed, 1 denied (or conditional), 2 error (raised, handled in main).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stonetown.cli import output
from stonetown.cli.progress import Progress
from stonetown.client import Client, ReadConsistency
from stonetown.client.results import CheckOutcome, ConsistencyMode
from stonetown.core.errors import InvalidArgument, StonetownError
from stonetown.core.relationship import Relationship
from stonetown.engine.explain import render
from stonetown.engine.types import CheckRequest

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_ERROR = 2


def consistency_of(args: argparse.Namespace) -> ReadConsistency:
    """The consistency the read options ask for (default: fully consistent)."""
    if getattr(args, "at_exact_snapshot", None):
        return ReadConsistency.at_exact_snapshot(args.at_exact_snapshot)
    if getattr(args, "at_least_as_fresh", None):
        return ReadConsistency.at_least_as_fresh(args.at_least_as_fresh)
    if getattr(args, "consistency", None) == "minimize_latency":
        return ReadConsistency.minimize_latency()
    return ReadConsistency.fully_consistent()


def context_of(args: argparse.Namespace) -> dict[str, Any] | None:
    """The caveat context given with --context (a JSON object)."""
    if not getattr(args, "context", None):
        return None
    try:
        value = json.loads(args.context)
    except ValueError as exc:
        raise InvalidArgument(f"--context: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument("--context: must be a JSON object")
    return value


def read_lines(path: str) -> Iterator[str]:
    """Non-empty, non-comment lines of a file (`-`: stdin)."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    try:
        for line in stream:
            text = line.strip()
            if text and not text.startswith(("#", "//")):
                yield text
    finally:
        if stream is not sys.stdin:
            stream.close()


def relationships_of(args: argparse.Namespace) -> list[Relationship]:
    """The relationships named on the command line and in --file."""
    texts = list(args.relationships)
    if args.file:
        texts.extend(read_lines(args.file))
    return [Relationship.parse(text) for text in texts]


def _print_token(args: argparse.Namespace, token: str, **extra: Any) -> None:
    if args.json:
        output.emit_json({"token": token, **extra})
    else:
        for key, value in extra.items():
            print(f"{key}: {value}")
        print(token)


# ---------------------------------------------------------------- schema


def schema_write(args: argparse.Namespace, client: Client) -> int:
    """`schema write FILE`: store the schema in FILE (`-`: stdin)."""
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    _print_token(args, client.write_schema(text))
    return EXIT_OK


def schema_read(args: argparse.Namespace, client: Client) -> int:
    """`schema read`: print the schema in force."""
    outcome = client.read_schema()
    if args.json:
        output.emit_json({"schema": outcome.text, "token": outcome.token})
    else:
        sys.stdout.write(outcome.text if outcome.text.endswith("\n") else outcome.text + "\n")
    return EXIT_OK


# ---------------------------------------------------------------- relationships


def rel_update(args: argparse.Namespace, client: Client) -> int:
    """`rel write|touch|delete TUPLE...`: one atomic write (write = create, failing on duplicates)."""
    if args.action == "delete" and args.filter:
        if args.relationships or args.file:
            raise InvalidArgument("rel delete: give relationships or --filter, not both")
        outcome = client.delete(args.filter, limit=args.limit)
        _print_token(args, outcome.token, deleted=outcome.deleted, partial=outcome.partial)
        return EXIT_OK
    rels = relationships_of(args)
    if not rels:
        raise InvalidArgument(f"rel {args.action}: no relationships given")
    key = {"write": "create", "touch": "touch", "delete": "delete"}[args.action]
    token = client.write(**{key: rels})
    _print_token(args, token)
    return EXIT_OK


def rel_read(args: argparse.Namespace, client: Client) -> int:
    """`rel read [FILTER]`: print matching relationships, one per line."""
    for rel in client.read(args.filter or None, consistency=consistency_of(args), limit=args.limit):
        if args.json:
            output.emit_json(output.relationship_json(rel))
        else:
            print(rel)
    return EXIT_OK


# ---------------------------------------------------------------- permissions


def check(args: argparse.Namespace, client: Client) -> int:
    """`check RESOURCE PERMISSION SUBJECT`: exit 0 when allowed, 1 otherwise."""
    outcome = client.check(
        args.resource,
        args.permission,
        args.subject,
        context=context_of(args),
        contextual=args.contextual or (),
        consistency=consistency_of(args),
        explain=args.explain,
    )
    if args.json:
        output.emit_json({**output.check_json(outcome), **({"trace": outcome.trace} if args.explain else {})})
    else:
        print(output.check_text(outcome))
        if outcome.trace is not None:
            print(render(outcome.trace))
    return EXIT_OK if outcome.allowed else EXIT_DENIED


def parse_check_line(text: str, default_context: dict[str, Any] | None = None) -> CheckRequest:
    """One check in validation-assertion notation: `resource#permission@subject`, optionally
    followed by ` with {json}`, a caveat context whose keys override `default_context`'s."""
    head, sep, tail = text.partition(" with ")
    context = dict(default_context) if default_context else None
    if sep:
        try:
            own = json.loads(tail)
        except ValueError as exc:
            raise InvalidArgument(f"check {text!r}: context is not valid JSON: {exc}") from None
        if not isinstance(own, dict):
            raise InvalidArgument(f"check {text!r}: context must be a JSON object")
        context = (context or {}) | own
    rel = Relationship.parse(head)
    if rel.caveat is not None or rel.expiration is not None:
        raise InvalidArgument(f"check {text!r}: a check has no caveat or expiration suffix")
    return CheckRequest(rel.resource, rel.relation, rel.subject, context)


def _check_label(item: CheckRequest) -> str:
    text = f"{item.resource}#{item.permission}@{item.subject}"
    if item.context:
        text += " with " + json.dumps(item.context, separators=(",", ":"), sort_keys=True)
    return text


def check_bulk(args: argparse.Namespace, client: Client) -> int:
    """`check-bulk [CHECK...] [--file FILE]`: many checks at one revision, one line per check.

    Exit 0 when every check is allowed, 1 when any is denied or conditional, 2 when any fails."""
    default_context = context_of(args)
    texts = list(args.checks)
    if args.file:
        texts.extend(read_lines(args.file))
    items = [parse_check_line(text, default_context) for text in texts]
    if not items:
        raise InvalidArgument("check-bulk: no checks given (arguments or --file)")
    if args.batch_size < 1:
        raise InvalidArgument("check-bulk: --batch-size must be at least 1")
    consistency = consistency_of(args)
    outcomes: list[CheckOutcome | StonetownError] = []
    for start in range(0, len(items), args.batch_size):
        batch = client.check_bulk(
            items[start : start + args.batch_size], contextual=args.contextual or (), consistency=consistency
        )
        outcomes.extend(batch)
        token = next((item.token for item in batch if isinstance(item, CheckOutcome)), None)
        if token and consistency.mode is not ConsistencyMode.AT_EXACT_SNAPSHOT:
            # every further batch at the first one's revision (which satisfied the options):
            # all checks are answered at one revision
            consistency = ReadConsistency.at_exact_snapshot(token)
    code = EXIT_OK
    for item, outcome in zip(items, outcomes, strict=True):
        label = _check_label(item)
        if isinstance(outcome, StonetownError):
            code = EXIT_ERROR
            if args.json:
                output.emit_json({"check": label, "error": {"code": outcome.code, "message": str(outcome)}})
            else:
                print(f"{label}\terror ({outcome.code}: {outcome})")
            continue
        if not outcome.allowed and code == EXIT_OK:
            code = EXIT_DENIED
        if args.json:
            output.emit_json({"check": label, **output.check_json(outcome)})
        else:
            print(f"{label}\t{output.check_text(outcome)}")
    return code


def expand(args: argparse.Namespace, client: Client) -> int:
    """`expand RESOURCE PERMISSION`: print the userset tree."""
    outcome = client.expand(
        args.resource, args.permission, recursive=args.recursive, consistency=consistency_of(args)
    )
    if args.json:
        output.emit_json({"tree": output.expand_json(outcome.tree), "token": outcome.token})
    else:
        print("\n".join(output.expand_text(outcome.tree)))
    return EXIT_OK


def lookup_resources(args: argparse.Namespace, client: Client) -> int:
    """`lookup-resources TYPE PERMISSION SUBJECT`: print resource ids, one per line."""
    results = client.lookup_resources(
        args.resource_type,
        args.permission,
        args.subject,
        context=context_of(args),
        contextual=args.contextual or (),
        consistency=consistency_of(args),
        limit=args.limit,
    )
    for found in results:
        if args.json:
            output.emit_json(output.resource_json(found))
        else:
            print(
                f"{args.resource_type}:{found.resource_id}" + (" (conditional)" if found.conditional else "")
            )
    return EXIT_OK


def lookup_subjects(args: argparse.Namespace, client: Client) -> int:
    """`lookup-subjects RESOURCE PERMISSION SUBJECT_TYPE`: print subjects, one per line."""
    results = client.lookup_subjects(
        args.resource,
        args.permission,
        args.subject_type,
        context=context_of(args),
        contextual=args.contextual or (),
        consistency=consistency_of(args),
        limit=args.limit,
    )
    for found in results:
        if args.json:
            output.emit_json(output.subject_json(found))
        else:
            print(output.subject_text(found))
    return EXIT_OK


# ---------------------------------------------------------------- watch, import, export


def watch(args: argparse.Namespace, client: Client) -> int:
    """`watch`: print changes as they commit (until interrupted, or --count events)."""
    seen = 0
    for event in client.watch(args.type or (), after=args.after):
        if args.json:
            output.emit_json(output.watch_json(event))
        else:
            print("\n".join(output.watch_text(event)))
        sys.stdout.flush()
        seen += 1
        if args.count and seen >= args.count:
            break
    return EXIT_OK


def import_(args: argparse.Namespace, client: Client) -> int:
    """`import FILE`: touch every relationship in FILE, in batches (each batch atomic); with
    --bulk, create them all in one atomic ImportRelationships stream."""
    total = None if args.file == "-" else sum(1 for _ in read_lines(args.file))
    progress = Progress("imported", total, enabled=not args.no_progress)
    if args.bulk:

        def parsed() -> Iterator[Relationship]:
            for line in read_lines(args.file):
                yield Relationship.parse(line)
                progress.advance(1)  # counts what was sent; nothing is written unless all is

        token = client.import_relationships(parsed(), chunk_size=args.batch_size)
        progress.finish()
        _print_token(args, token, imported=progress.count)
        return EXIT_OK
    batch: list[Relationship] = []
    token = ""
    for line in read_lines(args.file):
        batch.append(Relationship.parse(line))
        if len(batch) >= args.batch_size:
            token = client.write(touch=batch)
            progress.advance(len(batch))
            batch = []
    if batch:
        token = client.write(touch=batch)
        progress.advance(len(batch))
    progress.finish()
    _print_token(args, token, imported=progress.count)
    return EXIT_OK


def export(args: argparse.Namespace, client: Client) -> int:
    """`export [FILE]`: write every relationship (matching --filter) in tuple notation."""
    progress = Progress("exported", enabled=not args.no_progress)
    stream = sys.stdout if args.file in (None, "-") else open(args.file, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for rel in client.read(args.filter or None, consistency=consistency_of(args)):
            stream.write(f"{rel}\n")
            progress.advance(1)
    finally:
        if stream is not sys.stdout:
            stream.close()
    progress.finish()
    return EXIT_OK
