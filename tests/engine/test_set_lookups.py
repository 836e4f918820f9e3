"""The set-at-a-time lookups against Check, on random data: every LookupSubjects and
LookupResources answer (and its caveat condition) must be exactly what Check says for each
(resource, subject) pair, and exactly what the per-candidate path answers, in the same order.

The data mixes nested groups (cycles, diamonds and caveated nesting included), folder trees,
exclusions at every level (one reaching itself through its subtracted side), intersections,
`all` arrows, caveats, expirations (past and future) and wildcards, so both the sets' proofs
and their refusals (Declined: wildcards, cycles) are exercised."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from stonetown.core.relationship import Relationship
from stonetown.engine import lookup_subjects as lookup_subjects_module
from stonetown.engine.check import CheckRun, Subject
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.conditions import granted
from stonetown.engine.cooperative import PAUSE, SCAN_CHUNK, finish
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.lookup_resources import lookup_resources_steps
from stonetown.engine.lookup_subjects import lookup_subjects_steps
from stonetown.engine.reachability import Reachability
from stonetown.engine.subject_sets import Declined, subject_sets_steps
from stonetown.schema import compile_schema

SCHEMA = """
use expiration

caveat is_open(open bool) {
    open
}

definition user {}

definition group {
    relation member: user | user with is_open | user with expiration | group#member
        | group#member with is_open
    relation banned: user
    permission active = member - banned
}

definition folder {
    relation parent: folder | folder with is_open
    relation viewer: user | user:* | group#member | user with is_open | user with expiration
    relation approved: user | group#member
    relation blocked: user | group#member
    permission view = (viewer + parent->view) - blocked
    permission open_view = viewer + parent->open_view
    permission gated = open_view & approved
    permission every = parent.all(open_view)
}

definition doc {
    relation folder: folder | folder with expiration
    relation owner: user | group#active
    relation editor: group#member | user with is_open
    relation banned: user | group#member
    relation watcher: user | doc#shown
    permission shown = (owner + editor) - watcher
    permission edit = owner + editor + folder->gated
    permission view = (owner + editor + folder->view + folder->every) - banned
    permission plain = owner + editor + folder->open_view
}
"""

QUERIES = [
    ("group", "member"),
    ("group", "active"),
    ("folder", "view"),
    ("folder", "open_view"),
    ("folder", "gated"),
    ("folder", "every"),
    ("doc", "edit"),
    ("doc", "view"),
    ("doc", "plain"),
    ("doc", "shown"),
]
USERS = [f"u{i}" for i in range(8)]
PAST, FUTURE = "2020-01-01T00:00:00Z", "2300-01-01T00:00:00Z"


def _random_relationships(seed: int) -> list[Relationship]:
    rng = random.Random(seed)
    groups, folders = [f"g{i}" for i in range(5)], [f"f{i}" for i in range(7)]
    docs = [f"d{i}" for i in range(6)]
    cycles = seed % 3 == 0  # a third of the seeds may nest groups and folders in cycles
    wildcard = seed % 4 == 1
    texts: set[str] = set()

    def user() -> str:
        return f"user:{rng.choice(USERS)}"

    def user_edge(caveat: bool, expiring: bool) -> str:
        roll = rng.random()
        if caveat and roll < 0.15:
            return f"{user()}[is_open]"
        if expiring and roll < 0.3:
            return f"{user()}[expiration:{rng.choice((PAST, FUTURE))}]"
        return user()

    def group_set(below: int | None = None) -> str:
        pool = groups if below is None or cycles else groups[:below] or groups[:1]
        return f"group:{rng.choice(pool)}#member"

    for n, g in enumerate(groups):
        for _ in range(rng.randint(1, 3)):
            texts.add(f"group:{g}#member@{user_edge(True, True)}")
        for _ in range(rng.choice((1, 1, 2))):  # two inner groups: diamonds below a group
            if n and rng.random() < 0.6:
                inner = group_set(n)
                if inner != f"group:{g}#member":
                    texts.add(f"group:{g}#member@{inner}" + ("[is_open]" if rng.random() < 0.25 else ""))
        if rng.random() < 0.3:
            texts.add(f"group:{g}#banned@{user()}")
    for n, f in enumerate(folders):
        for _ in range(rng.choice((1, 1, 2)) if n and rng.random() < 0.8 else 0):  # some have two parents
            parent = rng.choice(folders if cycles else folders[:n])
            if parent != f:
                texts.add(f"folder:{f}#parent@folder:{parent}" + ("[is_open]" if rng.random() < 0.15 else ""))
        for _ in range(rng.randint(0, 2)):
            texts.add(f"folder:{f}#viewer@{user_edge(True, True)}")
        if rng.random() < 0.4:
            texts.add(f"folder:{f}#viewer@{group_set()}")
        if wildcard and rng.random() < 0.3:
            texts.add(f"folder:{f}#viewer@user:*")
        for relation in ("approved", "blocked"):
            if rng.random() < 0.35:
                texts.add(f"folder:{f}#{relation}@{rng.choice((user(), group_set()))}")
    for d in docs:
        for _ in range(rng.randint(1, 2)):
            folder = f"folder:{rng.choice(folders)}"
            texts.add(f"doc:{d}#folder@{folder}" + (f"[expiration:{PAST}]" if rng.random() < 0.1 else ""))
        if rng.random() < 0.5:
            texts.add(f"doc:{d}#owner@{rng.choice((user(), f'group:{rng.choice(groups)}#active'))}")
        if rng.random() < 0.5:
            texts.add(f"doc:{d}#editor@{rng.choice((group_set(), user() + '[is_open]'))}")
        if rng.random() < 0.3:
            texts.add(f"doc:{d}#banned@{rng.choice((user(), group_set()))}")
        if rng.random() < 0.4:  # `shown` may reach itself through its subtracted side
            texts.add(f"doc:{d}#watcher@{rng.choice((user(), f'doc:{rng.choice(docs)}#shown'))}")
    return [Relationship.parse(t) for t in sorted(texts)]


def _ids(relationships: list[Relationship], resource_type: str) -> list[str]:
    found = {r.resource_id for r in relationships if r.resource_type == resource_type}
    found |= {r.subject_id for r in relationships if r.subject_type == resource_type and r.subject_id != "*"}
    return sorted(found)


def _cases() -> Iterator[tuple[CompiledSchema, Reachability, RelationshipIndex, list[Relationship]]]:
    schema = compile_schema(SCHEMA)
    compiled, facts = CompiledSchema(schema), Reachability.of(schema)
    for seed in range(36):
        relationships = _random_relationships(seed)
        yield compiled, facts, RelationshipIndex.build(relationships, 1), relationships


def _check(
    compiled: CompiledSchema, index: RelationshipIndex, node: tuple[str, str, str], subject: str | Subject
) -> Any:
    """Check's own answer for `subject` (a user id, or a subject), from a fresh run (no memo
    shared with another question)."""
    who = ("user", subject, "") if isinstance(subject, str) else subject
    return CheckRun(compiled, index, 50).dispatch(*node, who, 0)


def _subjects(
    compiled: CompiledSchema, facts: Reachability, index: RelationshipIndex, node: tuple[str, str, str]
) -> list[Any]:
    steps = lookup_subjects_steps(compiled, facts, index, node[:2], node[2], "user", "", 50)
    return finish(steps)[0]


def _per_candidate(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    """The path before the sets: every candidate confirmed with Check."""
    monkeypatch.setattr(module, name, lambda *args, **kwargs: _none_steps())


def _none_steps() -> Iterator[Any]:
    return None
    yield  # a generator returning None


def test_held_sets_agree_with_check_for_every_subject() -> None:
    declined = proven = 0
    for compiled, facts, index, relationships in _cases():
        for rtype, permission in QUERIES:
            for rid in _ids(relationships, rtype):
                node = (rtype, rid, permission)
                sets = subject_sets_steps(compiled.schema, facts.admits, index, node, "user", 50)
                try:
                    _, held = finish(sets)
                except Declined:
                    declined += 1
                    continue
                assert not held.sure & held.maybe
                for uid in [*USERS, "nobody"]:
                    result = _check(compiled, index, node, uid)
                    where = (node, uid, sorted(map(str, relationships)))
                    if uid in held.sure:
                        proven += 1
                        assert result is True, where
                    elif uid not in held.maybe:
                        assert not granted(result), where
    assert declined and proven  # both the proofs and the refusals were met


def test_lookup_subjects_answers_are_the_per_candidate_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    for compiled, facts, index, relationships in _cases():
        for rtype, permission in QUERIES:
            for rid in _ids(relationships, rtype):
                node = (rtype, rid, permission)
                new = _subjects(compiled, facts, index, node)
                with monkeypatch.context() as patch:
                    _per_candidate(patch, lookup_subjects_module, "_held_sets")
                    old = _subjects(compiled, facts, index, node)
                assert new == old, node
                for found in new:
                    if found.subject_id != "*":
                        assert found.result == _check(compiled, index, node, found.subject_id)


def test_lookup_resources_answers_are_check_answers() -> None:
    for compiled, facts, index, relationships in _cases():
        for rtype, permission in QUERIES:
            ids = _ids(relationships, rtype)
            for subject in [*(("user", uid, "") for uid in [*USERS, "nobody"]), ("group", "g1", "member")]:
                steps = lookup_resources_steps(compiled, facts, index, rtype, permission, subject, 50)
                found = finish(steps)[0]
                checks = [(rid, _check(compiled, index, (rtype, rid, permission), subject)) for rid in ids]
                expected = [(rid, result) for rid, result in checks if granted(result)]
                assert found == expected, (rtype, permission, subject, sorted(map(str, relationships)))


def test_a_large_group_is_read_between_pauses() -> None:
    """The walk offers the event loop a turn at least every SCAN_CHUNK members of a large
    group (a count, not a time: each slice between pauses is bounded by its entries)."""
    members = 20 * SCAN_CHUNK + 5
    relationships = [Relationship("group", "big", "member", "user", f"u{i}") for i in range(members)]
    relationships.append(Relationship("group", "outer", "member", "group", "big", "member"))
    schema = compile_schema(SCHEMA)
    facts, index = Reachability.of(schema), RelationshipIndex.build(relationships, 1)
    for start in (("group", "big", "member"), ("group", "outer", "member")):
        steps = subject_sets_steps(schema, facts.admits, index, start, "user", 50)
        pauses = 0
        while True:
            try:
                pauses += next(steps) is PAUSE
            except StopIteration as done:
                held = done.value
                break
        assert pauses >= members // SCAN_CHUNK, start
        assert len(held.sure) == members and not held.maybe
