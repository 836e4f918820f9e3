"""An index load of a large SQLite file, read by a child process (stores/sqlite_load.py):
the index it builds is the one the in-process read builds, object for object."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stonetown.core.errors import FailedPrecondition, StoreError
from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import CodedRows, RelationshipFilter, Update, UpdateOp
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.writes import _load_index
from stonetown.stores import sqlite_load
from stonetown.stores.sqlite import SqliteDatastore


def _relationship(rng: random.Random) -> Relationship:
    caveat = ContextualizedCaveat("ip", {"n": rng.randrange(3)}) if rng.random() < 0.05 else None
    expiration = datetime(2031, 1, 1, tzinfo=UTC) if rng.random() < 0.03 else None
    return Relationship(
        rng.choice(["document", "folder"]),
        f"r{rng.randrange(300)}",
        rng.choice(["viewer", "editor", "parent"]),
        rng.choice(["user", "team", "folder"]),
        rng.choice([f"s{rng.randrange(40)}", "*"]),
        rng.choice(["", "", "member"]),
        caveat,
        expiration,
    )


def _layout(index: RelationshipIndex) -> list[object]:
    """The index's maps in order, every object named by the order it is first met in (so two
    indexes sharing the same objects in the same places give the same list)."""
    numbers: dict[int, int] = {}
    kept: list[object] = []  # alive while numbered (ids are not reused)

    def name(value: object) -> object:
        if isinstance(value, tuple):
            inner: object = tuple(name(item) for item in value)
        elif isinstance(value, dict):
            inner = [(name(k), name(v)) for k, v in value.items()]
        else:
            inner = value
        kept.append(value)
        return (numbers.setdefault(id(value), len(numbers)), type(value).__name__, inner)

    return [name(index.objects), name(index.usersets), name(index.reverse), index.count]


async def _load(
    store: SqliteDatastore, revision: int, child: bool, monkeypatch: pytest.MonkeyPatch
) -> RelationshipIndex:
    monkeypatch.setattr(sqlite_load, "CHILD_LOAD_BYTES", 0 if child else 1 << 60)
    kinds = set()
    seen = store.iter_fields

    async def iter_fields(revision: int, batch: int = 1000):  # type: ignore[no-untyped-def]
        async for found in seen(revision, batch):
            kinds.add(type(found))
            yield found

    monkeypatch.setattr(store, "iter_fields", iter_fields)
    index = await _load_index(store, revision)
    monkeypatch.undo()
    assert (CodedRows in kinds) == child
    return index


async def test_a_child_load_builds_the_same_index_as_the_in_process_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over several frames of the child's output, with subject sets, wildcards, caveats,
    expirations, rewritten and deleted relationships, at the head and at an older revision."""
    monkeypatch.setattr(sqlite_load, "ROWS_PER_FRAME", 97)
    rng = random.Random(7)
    store = SqliteDatastore(str(tmp_path / "load.db"))
    await store.open()
    try:
        rels = list({rel.key: rel for rel in (_relationship(rng) for _ in range(3000))}.values())
        first = await store.write([Update(UpdateOp.TOUCH, rel) for rel in rels])
        await store.write([Update(UpdateOp.DELETE, rel) for rel in rng.sample(rels, 400)])
        touched = {rel.key: rel for rel in (_relationship(rng) for _ in range(600))}.values()
        head = await store.write([Update(UpdateOp.TOUCH, rel) for rel in touched])
        for revision in (first, head):
            child = await _load(store, revision, True, monkeypatch)
            in_process = await _load(store, revision, False, monkeypatch)
            assert _layout(child) == _layout(in_process), revision
            expected = RelationshipIndex.build(await store.read(RelationshipFilter(), revision), revision)
            assert set(child.relationships()) == set(expected.relationships())
            assert child.count == expected.count > 2000
        monkeypatch.setattr(sqlite_load, "CHILD_LOAD_BYTES", 0)
        with pytest.raises(FailedPrecondition):
            async for _ in store.iter_fields(head + 1):
                pass
    finally:
        await store.close()


async def test_a_child_that_cannot_read_the_file_fails_the_load(tmp_path: Path) -> None:
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is not a SQLite database, only some text " * 100)
    with pytest.raises(StoreError, match="not a database"):
        async for _ in sqlite_load.child_rows(str(path), 1.0, 1):
            pass
