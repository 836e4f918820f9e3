"""Lookups hand out their answers in batches (PermissionSystem.lookup_*_batches): the same
answers as one by one, in order, bounded by the limit; the answers granted outright are
built in bulk (types.granted_*), equal to the constructors' in every respect."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.cooperative import Granted, finish, items, resumable
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.lookup_resources import outright
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import (
    Consistency,
    LookupResourceResult,
    LookupSubjectResult,
    granted_resources,
    granted_subjects,
)
from stonetown.stores.memory import MemoryDatastore

SCHEMA = """
caveat is_open(open bool) {
    open
}

definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation reader: user | user:* | group#member | user with is_open
    relation banned: user
    permission read = reader - banned
    permission open = reader
}
"""

LATEST = Consistency.fully_consistent()
COUNT = 700  # several batches (cooperative.PAUSE_EVERY)


def test_bulk_built_answers_equal_the_constructed_ones() -> None:
    ids = ["a", "b/c", "*"]
    built = granted_resources(ids)
    made = [LookupResourceResult(i) for i in ids]
    assert built == made and [hash(b) for b in built] == [hash(m) for m in made]
    assert [repr(b) for b in built] == [repr(m) for m in made]
    subjects = granted_subjects("group", ids, "member")
    constructed = [LookupSubjectResult(SubjectRef("group", i, "member")) for i in ids]
    assert subjects == constructed and [hash(s) for s in subjects] == [hash(c) for c in constructed]
    assert [repr(s) for s in subjects] == [repr(c) for c in constructed]
    assert granted_resources([]) == [] and granted_subjects("user", [], "") == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        subjects[0].subject.id = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built[0].conditional = True  # type: ignore[misc]


async def _system() -> PermissionSystem:
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None, probe_interval=None)
    await system.start()
    await system.write_schema(SCHEMA)
    texts = [f"group:big#member@user:m{i:04d}" for i in range(COUNT)]
    texts += [f"doc:r{i:04d}#reader@group:big#member" for i in range(COUNT)]
    texts += [f"doc:c{i:04d}#reader@user:m0005[is_open]" for i in range(5)]
    texts += ["doc:r0003#banned@user:m0005", "doc:r0003#banned@user:m0009"]
    texts += ["doc:r0003#reader@user:x[is_open]", "doc:r0004#reader@user:*"]
    rels = [Relationship.parse(text) for text in texts]
    for start in range(0, len(rels), 1000):
        await system.write_relationships([Update(UpdateOp.TOUCH, rel) for rel in rels[start : start + 1000]])
    return system


Context = dict[str, Any] | None
Answers = tuple[list[Any], list[Any]]  # one by one, and in batches


async def _resources(
    system: PermissionSystem, permission: str, context: Context, limit: int | None
) -> Answers:
    subject = SubjectRef("user", "m0005")
    one_by_one = system.lookup_resources("doc", permission, subject, LATEST, context, limit=limit)
    batches = system.lookup_resource_batches("doc", permission, subject, LATEST, context, limit=limit)
    return [f async for f in one_by_one], [batch async for batch in batches]


async def _subjects(
    system: PermissionSystem, doc: str, permission: str, context: Context, limit: int | None
) -> Answers:
    resource = ObjectRef("doc", doc)
    one_by_one = system.lookup_subjects(resource, permission, "user", "", LATEST, context, limit=limit)
    batches = system.lookup_subject_batches(resource, permission, "user", "", LATEST, context, limit=limit)
    return [f async for f in one_by_one], [batch async for batch in batches]


@pytest.mark.parametrize("limit", [1, 255, 256, 300, 5000])
@pytest.mark.parametrize("context", [None, {"open": True}, {"open": False}])
async def test_batches_hold_the_answers_one_by_one_in_order(limit: int, context: Context) -> None:
    system = await _system()
    try:
        lookups = [partial(_resources, system, permission, context) for permission in ("read", "open")]
        lookups += [
            partial(_subjects, system, doc, permission, context)
            for doc in ("r0003", "r0004")
            for permission in ("read", "open")
        ]
        for lookup in lookups:
            whole, _ = await lookup(None)
            assert len(whole) > 600
            one_by_one, batches = await lookup(limit)
            assert all(answers for answers, _ in batches)
            assert [(a, revision) for answers, revision in batches for a in answers] == one_by_one
            assert one_by_one == whole[:limit]
    finally:
        await system.stop()


async def test_a_granted_run_is_handed_out_whole_and_a_restart_follows_its_last_id() -> None:
    """A walk's Granted run (cooperative.py) goes out as batches of at most `most` ids, after
    the items found before it; when the view changes after a batch, the walk restarts after
    that batch's last id (its own id: no key to apply). finish() and items() give the walk's
    own results for the ids."""
    ids = [f"r{i:04d}" for i in range(700)]
    calls: list[str | None] = []

    def walk(view: int, after: str | None) -> Iterator[Any]:
        calls.append(after)
        left = [rid for rid in ids if after is None or rid > after]
        if after is None:
            yield (left.pop(0), "first")  # an item before the run
        yield Granted(left, outright)

    def unchanged(view: int) -> Any:
        return lambda: view != 0 or len(handed) < 2  # the first view changes after two batches

    async def replacement(view: int, sent: bool) -> int:
        return view + 1

    handed: list[list[Any]] = []
    async for batch, _view in resumable(0, walk, unchanged, replacement, lambda item: item[0], None, 256):
        handed.append(batch)
    assert [len(batch) for batch in handed] == [1, 256, 256, 187]
    assert handed[0] == [("r0000", "first")] and type(handed[1]) is Granted
    assert calls == [None, "r0256"]  # restarted after the last id of the second batch
    flat = [item[0] if isinstance(item, tuple) else item for batch in handed for item in batch]
    assert flat == ids
    expected = [("r0000", "first"), *((rid, True) for rid in ids[1:])]
    assert finish(walk(0, None))[0] == expected
    assert list(items(walk(0, None))) == expected
