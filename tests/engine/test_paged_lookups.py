"""Streaming lookups and the shared change feed, in process over the memory store.

- Paging: on random data (nested groups, wildcards, exclusions, intersections, arrows,
  caveats), the pages of LookupResources and LookupSubjects, each resumed from the previous
  page's last id, add up to the unpaged answer: same order, no duplicate, no miss.
- A lookup whose head index advances while it pauses answers for one revision only: the
  one it reports (checked against a snapshot read of that revision).
- The pages of a LookupSubjects reuse its walk at one revision, under any caveat context,
  and not past a write; the walks kept stay bounded.
- Watch: idle watchers never read the change log; a write is read once for all of them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stonetown.core.errors import ResourceExhausted
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine import bulk_import, change_feed, cooperative
from stonetown.engine.datastore import RevisionChanges, Update, UpdateOp
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.lookup_subjects import HeldCache
from stonetown.engine.reachability import Reachability
from stonetown.engine.subject_sets import Held
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency
from stonetown.stores.memory import MemoryDatastore

SCHEMA = """
caveat is_open(open bool) {
    open
}

definition user {}

definition group {
    relation member: user | group#member | user with is_open
}

definition folder {
    relation parent: folder
    relation viewer: user | group#member
    relation approved: user | user:*
    permission view = viewer + parent->view
}

definition doc {
    relation folder: folder
    relation reader: user | user:* | group#member | user with is_open
    relation banned: user | group#member
    relation approved: user | user:*
    permission read = (reader + folder->view) - banned
    permission strict = read & approved
    permission open = reader + folder->view
}
"""

USERS = [f"u{i}" for i in range(12)]
GROUPS = [f"g{i}" for i in range(5)]
FOLDERS = [f"f{i}" for i in range(5)]
DOCS = [f"d{i:02d}" for i in range(25)]
QUERIES = [("doc", "read"), ("doc", "strict"), ("doc", "open"), ("folder", "view"), ("group", "member")]
LATEST = Consistency.fully_consistent()


def _random_relationships(rng: random.Random) -> list[str]:
    def user() -> str:
        return f"user:{rng.choice(USERS)}"

    def userish(wildcard: bool = True) -> str:
        roll = rng.random()
        if roll < 0.1 and wildcard:
            return "user:*"
        if roll < 0.3:
            return f"group:{rng.choice(GROUPS)}#member"
        if roll < 0.4:
            return f"{user()}[is_open]"
        return user()

    found: set[str] = set()
    for _ in range(25):
        found.add(f"group:{rng.choice(GROUPS)}#member@{userish(wildcard=False)}")
    for _ in range(6):
        found.add(f"folder:{rng.choice(FOLDERS)}#parent@folder:{rng.choice(FOLDERS)}")
        found.add(f"folder:{rng.choice(FOLDERS)}#viewer@{userish(wildcard=False).removesuffix('[is_open]')}")
    for doc in DOCS:
        if rng.random() < 0.6:
            found.add(f"doc:{doc}#folder@folder:{rng.choice(FOLDERS)}")
        for _ in range(rng.randint(0, 3)):
            found.add(f"doc:{doc}#reader@{userish()}")
        if rng.random() < 0.3:
            found.add(f"doc:{doc}#banned@{rng.choice([user(), f'group:{rng.choice(GROUPS)}#member'])}")
        if rng.random() < 0.5:
            found.add(f"doc:{doc}#approved@{rng.choice([user(), 'user:*'])}")
    return sorted(found)


async def _system(relationships: list[str]) -> PermissionSystem:
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None)
    await system.start()
    await system.write_schema(SCHEMA)
    unique = {rel.key: rel for rel in map(Relationship.parse, relationships)}  # one per key
    await system.write_relationships([Update(UpdateOp.TOUCH, rel) for rel in unique.values()])
    return system


async def _all(results: AsyncIterator[tuple[object, int]]) -> list[tuple[object, int]]:
    return [item async for item in results]


def _key(found: object) -> str:
    return getattr(found, "resource_id", None) or found.subject.id  # type: ignore[attr-defined]


async def _paged(make: object, rng: random.Random) -> list[object]:
    """Every page of `make(after, limit)` from the start, each after the previous one's last id."""
    out: list[object] = []
    after = None
    while True:
        limit = rng.randint(1, 4)
        page = [found for found, _ in await _all(make(after, limit))]  # type: ignore[operator]
        out.extend(page)
        if len(page) < limit:
            return out
        after = _key(page[-1])


@pytest.mark.parametrize("seed", range(12))
async def test_pages_add_up_to_the_unpaged_answer(seed: int) -> None:
    rng = random.Random(seed)
    system = await _system(_random_relationships(rng))
    context = {"open": True} if seed % 2 else None
    try:
        for resource_type, permission in QUERIES:
            for uid in [*USERS[:6], "nobody"]:
                subject = SubjectRef("user", uid)

                def resources(after: str | None, limit: int | None) -> AsyncIterator[tuple[object, int]]:
                    return system.lookup_resources(  # noqa: B023 - used within the iteration
                        resource_type, permission, subject, LATEST, context, after=after, limit=limit  # noqa: B023
                    )

                whole = [found for found, _ in await _all(resources(None, None))]
                assert await _paged(resources, rng) == whole
                assert len({_key(f) for f in whole}) == len(whole)
                assert [_key(f) for f in whole] == sorted(_key(f) for f in whole)
            objects = {"doc": DOCS, "folder": FOLDERS, "group": GROUPS}[resource_type]
            for oid in rng.sample(objects, 4):
                for subject_type, relation in [("user", ""), ("group", "member")]:

                    def subjects(after: str | None, limit: int | None) -> AsyncIterator[tuple[object, int]]:
                        return system.lookup_subjects(  # noqa: B023
                            ObjectRef(resource_type, oid), permission, subject_type, relation,  # noqa: B023
                            LATEST, context, after=after, limit=limit,
                        )  # fmt: skip

                    whole = [found for found, _ in await _all(subjects(None, None))]
                    assert await _paged(subjects, rng) == whole
                    assert len({_key(f) for f in whole}) == len(whole)
    finally:
        await system.stop()


async def test_the_pages_of_a_lookup_subjects_reuse_its_walk_until_a_write() -> None:
    """The pages of a LookupSubjects at one revision reuse its walk (the system's held cache),
    whatever their caveat context: caveated members are checked at each page under its own
    context. A write between two pages is seen by the next page (a new revision: the walk is
    done again). Each page is compared with the unpaged answer of its own context and revision."""
    members = [f"group:big#member@user:m{i:03d}" for i in range(300)]
    members += [f"group:big#member@user:c{i:03d}[is_open]" for i in range(40)]
    system = await _system([*members, "doc:d1#reader@group:big#member", "doc:d1#banned@user:m005"])

    def lookup(after: str | None, limit: int | None, context: dict[str, bool]) -> AsyncIterator[Any]:
        return system.lookup_subjects(
            ObjectRef("doc", "d1"), "read", "user", "", LATEST, context, after=after, limit=limit
        )

    async def ids(after: str | None, limit: int | None, context: dict[str, bool]) -> list[str]:
        return [_key(found) for found, _ in await _all(lookup(after, limit, context))]

    try:
        opened, shut = {"open": True}, {"open": False}
        whole = {"open": await ids(None, None, opened), "shut": await ids(None, None, shut)}
        assert whole["open"][:40] == [f"c{i:03d}" for i in range(40)] and "m005" not in whole["open"]
        assert whole["shut"][0] == "m000" and len(whole["shut"]) == 299
        after: str | None = None
        for n in range(8):  # the two contexts in turn, each page after the last one's cursor
            name, context = ("open", opened) if n % 2 == 0 else ("shut", shut)
            page = await ids(after, 10, context)
            start = 0 if after is None else next(i for i, cid in enumerate(whole[name]) if cid > after)
            assert page == whole[name][start : start + 10], (n, after)
            after = page[-1]
        (kept,) = system.held_cache.entries.values()
        assert kept.ordered is not None  # the later pages started at their cursor in one sorted list
        await system.write_relationships([
            Update(UpdateOp.TOUCH, Relationship.parse("group:big#member@user:m0455")),
            Update(UpdateOp.DELETE, Relationship.parse("group:big#member@user:m046")),
        ])  # fmt: skip
        page = await ids("m045", 3, shut)
        assert page == ["m0455", "m047", "m048"]
        assert page == [cid for cid in await ids(None, None, shut) if cid > "m045"][:3]
    finally:
        await system.stop()


def test_the_kept_walks_stay_bounded_and_of_one_index_and_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HeldCache, "LARGEST", 30)
    monkeypatch.setattr(HeldCache, "TOTAL", 50)
    compiled, facts = object(), Reachability()
    index, other = RelationshipIndex(3), RelationshipIndex(3)

    def key(n: int) -> Any:
        return (compiled, ("doc", f"d{n}", "read"), "user", "", 50)

    def held(size: int) -> Held:
        return Held(frozenset(f"u{i}" for i in range(size)), frozenset())

    cache = HeldCache()
    assert cache.get(index, 3, key(0), facts) is None
    assert cache.put(index, 3, key(0), facts, held(31)) is None  # larger than LARGEST
    for n in range(1, 4):
        assert cache.put(index, 3, key(n), facts, held(20)) is not None
    assert [k[1][1] for k in cache.entries] == ["d2", "d3"] and cache.size == 40  # d1 gave way
    assert cache.get(index, 3, key(3), facts) is not None
    assert cache.get(index, 3, key(3), Reachability()) is None  # another schema's facts
    assert cache.put(index, 4, key(5), facts, held(1)) is None  # a walk of another revision
    assert cache.get(other, 3, key(3), facts) is None and not cache.entries  # another index
    assert cache.put(other, 3, key(6), facts, held(5)) is not None
    assert cache.get(other, 4, key(6), facts) is None and cache.size == 0  # the revision moved on


@pytest.mark.parametrize("paused_walk", ["resources", "subjects"])
async def test_a_lookup_answers_for_the_revision_it_reports_while_writes_land(
    monkeypatch: pytest.MonkeyPatch, paused_walk: str
) -> None:
    """Writes land between the pauses of a lookup (every pause gives the loop a turn here):
    the lookup's answer is exactly the answer at the one revision it reports."""
    monkeypatch.setattr(cooperative, "SLICE_SECONDS", 0.0)
    members = [f"group:big#member@user:m{i:04d}" for i in range(600)]
    readers = [f"doc:r{i:04d}#reader@group:big#member" for i in range(600)]
    system = await _system([*members, *readers, "doc:r0003#banned@user:m0005"])
    writes = 0
    done = asyncio.Event()

    async def writer() -> None:
        nonlocal writes
        while not done.is_set():
            i = writes % 200
            if paused_walk == "resources":
                text = f"doc:r{i * 3:04d}#banned@user:m0005"
            else:
                text = f"group:big#member@user:m{i * 3:04d}"
            op = UpdateOp.DELETE if writes % 400 >= 200 else UpdateOp.TOUCH
            await system.write_relationships([Update(op, Relationship.parse(text))])
            writes += 1
            await asyncio.sleep(0)

    def lookup(consistency: Consistency) -> AsyncIterator[tuple[object, int]]:
        if paused_walk == "resources":
            return system.lookup_resources("doc", "read", SubjectRef("user", "m0005"), consistency)
        return system.lookup_subjects(ObjectRef("doc", "r0003"), "read", "user", "", consistency)

    try:
        task = asyncio.create_task(writer())
        await asyncio.sleep(0)
        answers: list[tuple[list[object], int]] = []
        for _ in range(3):
            before = writes
            found = await _all(lookup(Consistency.minimize_latency()))
            assert writes > before, "no write landed while the lookup ran"
            revisions = {revision for _, revision in found}
            assert len(revisions) == 1
            answers.append(([f for f, _ in found], revisions.pop()))
        done.set()
        await task
        assert len({revision for _, revision in answers}) == 3
        for found, revision in answers:
            expected = await _all(lookup(Consistency.at_exact_snapshot(revision)))
            assert found == [f for f, _ in expected]
    finally:
        await system.stop()


async def test_a_paused_walk_does_not_go_on_over_an_import_half_way_into_the_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An import enters the head index in chunks, yielding between them, before its revision
    moves: a walk paused meanwhile must restart (its view no longer holds one revision), as
    new lookups wait for the import to finish."""
    monkeypatch.setattr(bulk_import, "CHUNK", 4)
    system = await _system([f"group:big#member@user:m{i:04d}" for i in range(20)])
    try:
        view = await system._view(Consistency.minimize_latency())
        unchanged = system._unchanged(view)
        assert unchanged()
        granted = [f"group:big#member@user:n{i}" for i in range(8)]
        banned = [f"doc:r0003#banned@user:n{i}" for i in range(8)]
        rels = [Relationship.parse(text) for text in [*granted, *banned]]
        importing = asyncio.create_task(system.import_relationships(rels))
        while system._indexing is None:
            await asyncio.sleep(0)
        assert system.index.revision == view.revision  # half-filled, the revision not moved yet
        assert not unchanged()
        await importing
        assert not unchanged()
    finally:
        await system.stop()


class CountingStore(MemoryDatastore):
    """The memory store, counting reads of its change log."""

    def __init__(self) -> None:
        super().__init__()
        self.change_reads = 0

    async def changes(
        self, after_revision: int, *, limit: int | None = None, urgent: bool = False
    ) -> list[RevisionChanges]:
        """Count, then read as the memory store does."""
        self.change_reads += 1
        return await super().changes(after_revision, limit=limit, urgent=urgent)


async def test_idle_watchers_cost_no_reads_and_a_write_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(change_feed, "KEEP_CHANGES", 2)
    store = CountingStore()
    system = PermissionSystem(store, poll_interval=None, gc_interval=None, max_watchers=100)
    await system.start()
    await system.write_schema(SCHEMA)

    async def touch(*texts: str) -> int:
        updates = [Update(UpdateOp.TOUCH, Relationship.parse(text)) for text in texts]
        return await system.write_relationships(updates)

    start = await touch("doc:a#reader@user:u1")
    streams = [system.watch(start, ["doc"] if i % 2 else ["group"]) for i in range(100)]
    pending = [asyncio.create_task(anext(stream)) for stream in streams]  # type: ignore[arg-type]
    try:
        reads = store.change_reads
        await asyncio.sleep(0.3)
        assert store.change_reads == reads  # a hundred idle watchers: no read at all
        revision = await touch("doc:b#reader@user:u1", "group:g1#member@user:u1")
        events = await asyncio.wait_for(asyncio.gather(*pending), timeout=10)
        assert store.change_reads - reads <= 2  # read once for all of them
        for i, event in enumerate(events):
            assert event.revision == revision
            assert [c.relationship.resource_type for c in event.changes] == ["doc" if i % 2 else "group"]
        with pytest.raises(ResourceExhausted, match="max-watch-streams 100"):
            await anext(system.watch(start))  # type: ignore[arg-type]
        await streams[0].aclose()  # type: ignore[attr-defined]
        for i in range(5):
            await touch(f"doc:c{i}#reader@user:u2")
        # far behind the few changes the feed keeps: this watcher reads the store itself
        late = system.watch(start, ["doc"])
        seen = [await asyncio.wait_for(anext(late), timeout=10) for _ in range(6)]  # type: ignore[arg-type]
        assert [e.changes[0].relationship.resource_id for e in seen] == ["b", "c0", "c1", "c2", "c3", "c4"]
        await late.aclose()  # type: ignore[attr-defined]
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
        await system.stop()
