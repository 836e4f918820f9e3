"""Reads at old revisions (at_exact_snapshot tokens) are answered through the store, exactly.

Issue #18 item 4: every distinct old revision used to load a whole index (forged tokens
could exhaust memory). Now an old revision is read bucket by bucket from the store on a
worker thread; these tests hold every answer at every old revision of a random history to
the answers of a system loaded with exactly that revision's relationships.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from stonetown.core.errors import FailedPrecondition
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine import store_snapshot
from stonetown.engine.datastore import Datastore, RelationshipFilter, Update, UpdateOp
from stonetown.engine.store_snapshot import StoreSnapshot
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import CheckRequest, CheckResult, Consistency
from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore

SCHEMA = """
caveat near(distance int) {
    distance < 5
}

definition user {}

definition group {
    relation member: user | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user | user:* | group#member | user with near
    relation banned: user | group#member
    permission view = (viewer + parent->view) - banned
}
"""

USERS = [f"user:u{i}" for i in range(4)]
GROUPS = [f"group:g{i}" for i in range(3)]
FOLDERS = [f"folder:f{i}" for i in range(4)]
FRESH = Consistency.fully_consistent()


def _random_relationship(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return f"{rng.choice(GROUPS)}#member@{rng.choice(USERS + [g + '#member' for g in GROUPS])}"
    if kind == 1:
        return f"{rng.choice(FOLDERS)}#parent@{rng.choice(FOLDERS)}"
    if kind == 2:
        return f"{rng.choice(FOLDERS)}#banned@{rng.choice(USERS + [g + '#member' for g in GROUPS])}"
    subject = rng.choice([*USERS, "user:*", *(g + "#member" for g in GROUPS)])
    caveat = "[near]" if subject.startswith("user:u") and rng.random() < 0.3 else ""
    return f"{rng.choice(FOLDERS)}#viewer@{subject}{caveat}"


async def _answers(system: PermissionSystem, consistency: Consistency) -> list[object]:
    """Every check, both lookups and an expand at `consistency`, as comparable values."""
    requests = [
        CheckRequest(ObjectRef.parse(folder), "view", SubjectRef.parse(subject))
        for folder in FOLDERS
        for subject in [*USERS, *(g + "#member" for g in GROUPS)]
    ]
    out: list[object] = []
    for result in await system.check_bulk(requests, consistency):
        assert isinstance(result, CheckResult)
        out.append(result.permissionship)
    first = (ObjectRef.parse("folder:f0"), "view", SubjectRef.parse("user:u0"))
    single = await system.check(*first, consistency)
    out.append(single.permissionship)
    for user in USERS:
        found = system.lookup_resources("folder", "view", SubjectRef.parse(user), consistency)
        out.append([item.resource_id async for item, _ in found])
    for folder in FOLDERS:
        subjects = system.lookup_subjects(ObjectRef.parse(folder), "view", "user", "", consistency)
        out.append([(item.subject.id, item.excluded) async for item, _ in subjects])
    tree, _ = await system.expand(ObjectRef.parse("folder:f1"), "view", consistency, recursive=True)
    out.append(repr(tree))
    contextual = [Relationship.parse("group:g0#member@user:u3")]
    with_context = await system.check(
        ObjectRef.parse("folder:f2"), "view", SubjectRef.parse("user:u3"), consistency, contextual=contextual
    )
    out.append(with_context.permissionship)
    # a contextual relationship replacing a stored one (caveated instead of plain)
    replacing = [Relationship.parse("folder:f2#viewer@user:u0[near]")]
    for user in USERS[:2]:
        found = await system.check(
            ObjectRef.parse("folder:f2"), "view", SubjectRef.parse(user), consistency, contextual=replacing
        )
        out.append(found.permissionship)
    return out


async def _reference(store: Datastore, revision: int) -> list[object]:
    """The answers of a fresh system holding exactly the relationships live at `revision`."""
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        rels = await store.read(RelationshipFilter(), revision)
        if rels:
            await system.write_relationships([Update(UpdateOp.TOUCH, r) for r in rels])
        return await _answers(system, FRESH)
    finally:
        await system.stop()


@pytest.mark.parametrize("seed", [18, 7, 2026])
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_every_old_revision_answers_as_it_was(kind: str, seed: int, tmp_path: Path) -> None:
    store: Datastore = MemoryDatastore() if kind == "memory" else SqliteDatastore(str(tmp_path / "s.db"))
    system = PermissionSystem(store, poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        rng = random.Random(seed)
        # a stored plain viewer that the contextual caveated one of _answers replaces
        plain = Update(UpdateOp.TOUCH, Relationship.parse("folder:f2#viewer@user:u0"))
        revisions = [await system.write_relationships([plain])]
        for _ in range(12):
            live = [str(r) for r in await store.read(RelationshipFilter(), await store.head_revision())]
            touched = [_random_relationship(rng) for _ in range(3)]
            updates = [Update(UpdateOp.TOUCH, Relationship.parse(text)) for text in touched]
            for text in rng.sample(live, min(len(live), rng.randrange(3))):
                updates.append(Update(UpdateOp.DELETE, Relationship.parse(text)))
            unique = {u.relationship.key: u for u in updates}
            revisions.append(await system.write_relationships(list(unique.values())))
        for revision in revisions[:-1]:
            view = await system._view(Consistency.at_exact_snapshot(revision))
            assert isinstance(view.index, StoreSnapshot)  # no copy of the index
            got = await _answers(system, Consistency.at_exact_snapshot(revision))
            assert got == await _reference(store, revision), f"revision {revision}"
    finally:
        await system.stop()


async def test_old_reads_keep_a_bounded_cache_and_follow_garbage_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_snapshot, "MAX_CACHED_BUCKETS", 3)
    monkeypatch.setattr(store_snapshot, "MAX_CACHED_ROWS", 5)
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        chain = [f"folder:f{i + 1}#parent@folder:f{i}" for i in range(30)]
        old = await system.write_relationships(
            [Update(UpdateOp.TOUCH, Relationship.parse(t)) for t in [*chain, "folder:f0#viewer@user:u0"]]
        )
        await system.write_relationships(
            [Update(UpdateOp.DELETE, Relationship.parse("folder:f0#viewer@user:u0"))]
        )
        at_old = Consistency.at_exact_snapshot(old)
        view = await system._view(at_old)
        assert isinstance(view.index, StoreSnapshot)
        deep = (ObjectRef.parse("folder:f30"), "view", SubjectRef.parse("user:u0"))
        assert (await system.check(*deep, at_old)).allowed
        assert not (await system.check(*deep, FRESH)).allowed
        # a walk over 31 folders with room for 3 buckets: the cache never holds more
        def probe() -> int:
            for i in range(31):
                view.index.objects.get((f"folder:f{i}", "folder", "parent"))
                view.index.objects.get(("folder", f"f{i}", "parent"))
            cache = view.index._cache
            assert cache.rows <= 5
            return cache.entries()

        assert await system._evaluate(view, probe) <= 3
        with pytest.raises(RuntimeError, match="never the event loop"):
            view.index.objects.get(("folder", "f1", "parent"))
        system.gc_window = 0.0
        await system.collect_garbage()
        with pytest.raises(FailedPrecondition, match="garbage collected"):
            await system.check(*deep, at_old)
    finally:
        await system.stop()
