"""PermissionSystem.cached_check: the answer of check() without the engine, only when the
index as it is meets the consistency asked for and the whole check is cached."""

from __future__ import annotations

from pathlib import Path

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.datastore import Update, UpdateOp
from stonetown.engine.system import PermissionSystem
from stonetown.engine.types import Consistency, Permissionship
from stonetown.stores.sqlite import SqliteDatastore

SCHEMA = """
definition user {}

definition doc {
    relation viewer: user
    permission view = viewer
}
"""

LATEST = Consistency.minimize_latency()
KEY = ("doc", "d1", "view", ("user", "ana", ""))


def touch(text: str) -> list[Update]:
    return [Update(UpdateOp.TOUCH, Relationship.parse(text))]


async def check(system: PermissionSystem, consistency: Consistency, user: str = "ana") -> Permissionship:
    result = await system.check(ObjectRef("doc", "d1"), "view", SubjectRef("user", user), consistency)
    return result.permissionship


async def test_a_hit_is_the_answer_of_check_and_counted_as_one(tmp_path: Path) -> None:
    system = PermissionSystem(SqliteDatastore(str(tmp_path / "st.db")), poll_interval=None)
    await system.start()
    try:
        await system.write_schema(SCHEMA)
        head = await system.write_relationships(touch("doc:d1#viewer@user:ana"))
        assert system.cached_check(KEY, LATEST) is None  # not asked yet: nothing counted
        assert (system.check_cache.hits, system.check_cache.misses) == (0, 0)
        assert await check(system, LATEST) is Permissionship.ALLOWED  # a miss, then cached
        assert await check(system, LATEST, "bob") is Permissionship.DENIED
        cache = system.check_cache
        hits, misses = cache.hits, cache.misses
        for consistency in (
            LATEST,
            Consistency.at_least_as_fresh(head),
            Consistency.at_least_as_fresh(head - 1),
            Consistency.at_exact_snapshot(head),
        ):
            cached = system.cached_check(KEY, consistency)
            assert cached is not None
            assert cached == await system.check(
                ObjectRef("doc", "d1"), "view", SubjectRef("user", "ana"), consistency
            )
        denied = system.cached_check(("doc", "d1", "view", ("user", "bob", "")), LATEST)
        assert denied is not None and denied.permissionship is Permissionship.DENIED
        assert denied.revision == head
        assert (cache.hits, cache.misses) == (hits + 9, misses)
        # what the index as it is cannot answer without the store or another snapshot
        assert system.cached_check(KEY, Consistency.fully_consistent()) is None
        assert system.cached_check(KEY, Consistency.at_least_as_fresh(head + 1)) is None
        assert system.cached_check(KEY, Consistency.at_exact_snapshot(head - 1)) is None
        assert system.cached_check(("doc", "d1", "view", ("user", "cy", "")), LATEST) is None
        assert (cache.hits, cache.misses) == (hits + 9, misses)
        # the revision moves on: the old answers are not given any more
        after = await system.write_relationships(touch("doc:d2#viewer@user:ana"))
        assert after > head
        assert system.cached_check(KEY, LATEST) is None
    finally:
        await system.stop()


async def test_a_token_from_another_process_is_waited_for(tmp_path: Path) -> None:
    """Two systems over one file, as two workers: a token of a write made by the other one is
    never answered from the cache of the revision before it."""
    path = str(tmp_path / "st.db")
    writer = PermissionSystem(SqliteDatastore(path), poll_interval=None)
    await writer.start()
    reader = PermissionSystem(SqliteDatastore(path), poll_interval=None)
    try:
        await writer.write_schema(SCHEMA)
        await reader.start()
        assert await check(reader, LATEST) is Permissionship.DENIED
        assert reader.cached_check(KEY, LATEST) is not None  # cached, denied
        token = await writer.write_relationships(touch("doc:d1#viewer@user:ana"))
        fresh = Consistency.at_least_as_fresh(token)
        assert reader.cached_check(KEY, fresh) is None
        assert reader.cached_check(KEY, Consistency.at_exact_snapshot(token)) is None
        assert await check(reader, fresh) is Permissionship.ALLOWED
        cached = reader.cached_check(KEY, fresh)
        assert cached is not None and cached.permissionship is Permissionship.ALLOWED
        assert cached.revision == token
    finally:
        await reader.stop()
        await writer.stop()
