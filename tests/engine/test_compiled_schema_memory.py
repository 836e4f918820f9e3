"""Compiled schemas leave no work for the cyclic garbage collector, are compiled once, and
the engine's caches give their memory back once idle.

Issue #18's soak: a 600-permission chain compiled into closures that referenced the table of
compiled relations, so every dropped compilation was ~70,000 objects of cyclic garbage, freed
only by full collections (each walking the whole heap with the GIL held, hundreds of ms);
and the compiled schemas were cached by revision, so a schema written again, or read through
old-revision tokens at many revisions, was compiled again each time.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import tracemalloc
import weakref
from pathlib import Path

import pytest

from stonetown.core import object_allocator
from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine import schema_cache
from stonetown.engine.check import DepthExceeded
from stonetown.engine.datastore import StoredSchema, Update, UpdateOp
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.system import PermissionSystem, SchemaState
from stonetown.engine.types import Consistency, Permissionship
from stonetown.stores.memory import MemoryDatastore
from stonetown.stores.sqlite import SqliteDatastore

BASE = """
definition user {}

definition group {
    relation member: user | group#member
}
"""


def _chain(length: int) -> str:
    """A permission chain: each permission the previous one plus a relation (inlined)."""
    lines = ["definition bomb {", "    relation viewer: user", "    permission perm1 = viewer"]
    lines += [f"    permission perm{i} = perm{i - 1} + viewer" for i in range(2, length + 1)]
    return BASE + "\n".join(lines) + "\n}\n"


def _arrows(length: int) -> str:
    parts = [BASE]
    for i in range(length):
        body = "permission perm = direct"
        if i + 1 < length:
            body = f"relation upper: def{i + 1}\n permission perm = upper->perm"
        parts.append(f"definition def{i} {{\n relation direct: user\n {body}\n}}")
    return "\n".join(parts)


# folders under folders (an ancestor chain a document's arrow calls in place of a dispatch,
# check_operators.compile_arrow's `direct`: a link that must not close a loop of references)
TREES = """
definition user {}

definition folder {
    relation parent: folder
    relation viewer: user
    permission view = viewer + parent->view
}

definition document {
    relation folder: folder
    relation viewer: user
    permission view = viewer + folder->view
}
"""


def test_a_dropped_compiled_schema_is_freed_without_the_cyclic_collector() -> None:
    for text in (_chain(300), _arrows(100), BASE, TREES):
        state = SchemaState.checked(text)
        assert state.compiled.functions  # compiled for real
        gc.collect()
        paused = gc.isenabled()
        gc.disable()
        try:
            del state
            # whatever the collector finds now was kept alive only by a reference cycle
            unreachable = gc.collect()
        finally:
            if paused:
                gc.enable()
        assert unreachable == 0, f"{unreachable} objects of a dropped compiled schema were cyclic garbage"


async def test_a_schema_written_again_or_read_at_old_revisions_compiles_once() -> None:
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None, probe_interval=None)
    await system.start()
    try:
        big, small = _chain(200), BASE
        first = await system.write_schema(big)
        compiled = system.state.compiled if system.state else None
        await system.write_schema(small)
        again = await system.write_schema(big)
        assert system.state is not None and system.state.compiled is compiled
        assert system.state.stored == StoredSchema(big, again)
        # an old revision with the same text: the same compilation, its own stored revision
        old = await system._view(Consistency.at_exact_snapshot(first))
        assert old.state.compiled is compiled and old.state.stored == StoredSchema(big, first)
        allowed = await system.check(
            ObjectRef("bomb", "b"), "perm200", SubjectRef("user", "u"), Consistency.at_exact_snapshot(first)
        )
        assert allowed.revision == first
    finally:
        await system.stop()


async def test_the_compiled_schema_cache_is_bounded() -> None:
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None, probe_interval=None)
    await system.start()
    try:
        for n in range(10):
            await system.write_schema(BASE + f"definition extra{n:03d} {{}}\n")
        assert len(system._compiled) <= 4
    finally:
        await system.stop()


async def test_idle_caches_are_released_and_reads_still_answer() -> None:
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None, probe_interval=None)
    await system.start()
    try:
        big = _chain(50)
        first = await system.write_schema(big)
        await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse("bomb:b#viewer@user:u"))])
        await system.write_schema(BASE + "definition bomb {\n relation viewer: user\n}\n")
        old = Consistency.at_exact_snapshot(first + 1)
        resource, subject = ObjectRef("bomb", "b"), SubjectRef("user", "u")
        assert (await system.check(resource, "perm50", subject, old)).permissionship is Permissionship.ALLOWED
        assert system._old_caches and big in system._compiled
        assert system.release_idle_caches(idle=3600) == 0  # in use: kept
        assert system.release_idle_caches(idle=0) == 2  # the old revision's reads, the old schema
        assert not system._old_caches and list(system._compiled) == [system.state.stored.text]
        # released, not lost: the same answer, compiled and read again
        assert (await system.check(resource, "perm50", subject, old)).permissionship is Permissionship.ALLOWED
    finally:
        await system.stop()


async def test_the_caches_requests_fill_are_emptied_once_no_request_came() -> None:
    """The check answers, paged lookups' walks and subjects' reaches kept at the head revision
    stayed as long as the revision did: on a quiet server, for good."""
    system = PermissionSystem(MemoryDatastore(), poll_interval=None, gc_interval=None, probe_interval=None)
    await system.start()
    try:
        await system.write_schema(BASE + "definition doc {\n relation viewer: user | group#member\n}\n")
        rels = [f"group:g{n}#member@group:g{n + 1}#member" for n in range(3)] + ["group:g3#member@user:u"]
        rels.append("doc:d#viewer@group:g0#member")
        await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(r)) for r in rels])
        resource, subject = ObjectRef("doc", "d"), SubjectRef("user", "u")
        for _ in range(2):
            check = await system.check(resource, "viewer", subject, Consistency.fully_consistent())
            assert check.permissionship is Permissionship.ALLOWED
        fresh = Consistency.fully_consistent()
        pages = system.lookup_subject_batches(resource, "viewer", "user", "", fresh, limit=1)
        async for _ in pages:
            pass
        closures = system.index.closure
        assert closures is not None
        assert system.check_cache.entries and any(graph.reaches for graph in closures.graphs.values())
        assert system.release_idle_caches(idle=0) == 0  # requests came since the last look
        assert system.check_cache.entries
        released = system.release_idle_caches(idle=0)  # none since: emptied
        assert released >= 2 and not system.check_cache.entries and not system.held_cache.entries
        assert not any(graph.reaches for graph in closures.graphs.values())
        assert system.release_idle_caches(idle=0) == 0  # nothing left to empty
        check = await system.check(resource, "viewer", subject, Consistency.fully_consistent())
        assert check.permissionship is Permissionship.ALLOWED  # the same answer, found again
    finally:
        await system.stop()


class _InFlight:
    """What a request in flight holds in a reference cycle (an aborted call and its error)."""

    def __init__(self) -> None:
        self.me = self


def _full_passes() -> tuple[list[int], object]:
    """A list that grows by one for every full collector pass from now on, and the callback
    to remove from ``gc.callbacks`` afterwards."""
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info.get("generation") == 2:
            passes.append(len(gc.get_objects()))

    gc.callbacks.append(count)
    return passes, count


async def test_a_large_schema_is_frozen_as_built_without_a_collector_pass(tmp_path: Path) -> None:
    """A large compilation leaves the collector's generations where it is built, before any
    pass walks it: no full pass walks it (one used to, on the event loop, before the freeze:
    70-110 ms; and once a few frozen ones were dropped, one over the whole heap, the index
    included)."""
    system = PermissionSystem(
        SqliteDatastore(str(tmp_path / "st.db")), poll_interval=None, gc_interval=None, probe_interval=None
    )
    await system.start()
    gc.collect()
    gc.freeze()  # as the server does once started: what a full pass walks is small
    schema_cache._Frozen.beside = 0  # process-wide: earlier tests' freezes do not count
    passes, count = _full_passes()
    try:
        for n in range(2 * schema_cache._COMPILED_SCHEMAS + 2):  # drops past the cache's size
            await system.write_schema(_chain(400) + f"definition extra{n} {{}}\n")
            assert system.state is not None
            compiled = system.state.compiled
            # tracked, yet in none of the generations: frozen
            assert gc.is_tracked(compiled) and all(item is not compiled for item in gc.get_objects())
        assert len(_chain(400)) >= schema_cache._FROZEN_SCHEMA_TEXT
        # one pass before each compilation at most, over what is not frozen: never over a
        # compilation (57,000 objects each) nor the frozen objects
        assert len(passes) <= 2 * schema_cache._COMPILED_SCHEMAS + 2, passes
        assert max(passes, default=0) < 20_000, passes
    finally:
        gc.callbacks.remove(count)
        await system.stop()
        gc.unfreeze()
        gc.collect()


async def test_distinct_large_schemas_leave_a_bounded_frozen_generation(tmp_path: Path) -> None:
    """``gc.freeze()`` freezes whatever is alive with a compilation: requests in flight that
    later die in a reference cycle are never collected (the frozen objects are never walked
    again), so a caller writing distinct large schemas would grow the frozen generation with
    every write. What is frozen beside the compilations is counted and bounded: past the
    budget, compilations are no longer frozen."""
    system = PermissionSystem(
        SqliteDatastore(str(tmp_path / "st.db")), poll_interval=None, gc_interval=None, probe_interval=None
    )
    await system.start()
    gc.collect()
    gc.freeze()
    schema_cache._Frozen.beside = 0
    in_flight_each = 50_000
    try:
        frozen_sizes, in_flight = [], []
        for n in range(12):
            requests = [_InFlight() for _ in range(in_flight_each)]
            in_flight += [weakref.ref(request) for request in requests]
            await system.write_schema(_chain(400) + f"definition extra{n} {{}}\n")
            del requests  # the requests end: garbage in cycles
            gc.collect()
            frozen_sizes.append(gc.get_freeze_count())
        budget = schema_cache._FROZEN_BESIDE_BUDGET
        assert 0 < schema_cache._Frozen.beside <= budget
        still_held = sum(ref() is not None for ref in in_flight)
        assert 0 < still_held <= budget, still_held  # frozen with the first few: bounded
        assert frozen_sizes[-1] == frozen_sizes[-2]  # the budget spent: no more freezes
    finally:
        await system.stop()
        gc.unfreeze()
        gc.collect()


def test_the_index_maps_shrink_back_after_removals_in_place() -> None:
    """An import deleted again left the index's maps at their peak size (a dict never shrinks
    as entries go); compacting rebuilds them in place, the same objects, the same entries."""
    index = RelationshipIndex(1)
    kept = [Relationship.parse(f"doc:d{i}#viewer@user:u{i}") for i in range(20_000)]
    passing = [Relationship.parse(f"doc:i{i}#viewer@user:v{i}") for i in range(20_000)]
    for rel in kept + passing:
        index.add(rel)
    for rel in passing:
        index.remove(rel)
    maps = (index.objects, index.reverse)
    sizes = [sys.getsizeof(table) for table in maps]
    assert index.compact() >= 2
    assert index.compact() == 0  # compact already
    assert index.objects is maps[0] and index.reverse is maps[1]
    assert all(sys.getsizeof(table) < size * 0.6 for table, size in zip(maps, sizes, strict=True))
    assert index.count == len(kept) and sorted(map(str, index.relationships())) == sorted(map(str, kept))
    assert index.compact(at_most=10) == 0  # larger maps are left alone


needs_pymalloc = pytest.mark.skipif(
    object_allocator._API is None or tracemalloc.is_tracing(), reason="not plain pymalloc"
)


@needs_pymalloc
async def test_a_large_compiled_schema_lives_outside_pymalloc_arenas(tmp_path: Path) -> None:
    """A large compilation is cached while it is used (the hostile mix writes it again every
    second), then dropped; in pymalloc's arenas the long-lived objects made meanwhile stayed
    in its holes and kept 14 arenas (14 MB) after it was gone. Its objects come from malloc
    now: pymalloc's blocks in use hardly grow while it is in force (the 600-permission
    chain: ~120,000 blocks before), and its checks answer as before."""
    system = PermissionSystem(
        SqliteDatastore(str(tmp_path / "st.db")), poll_interval=None, gc_interval=None, probe_interval=None
    )
    await system.start()
    try:
        await system.write_schema(BASE)
        text = _chain(600)
        assert len(text) >= schema_cache._FROZEN_SCHEMA_TEXT
        gc.collect()
        blocks = sys.getallocatedblocks()
        await system.write_schema(text)
        gc.collect()
        grown = sys.getallocatedblocks() - blocks
        assert system.state is not None and system.state.stored.text == text
        assert len(system.state.compiled.functions) >= 600
        assert grown < 20_000, f"{grown} pymalloc blocks for the compiled chain"
        await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse("bomb:b#viewer@user:u"))])
        fresh = Consistency.fully_consistent()
        for perm in ("perm1", "perm600"):
            allowed = await system.check(ObjectRef("bomb", "b"), perm, SubjectRef("user", "u"), fresh)
            assert allowed.permissionship is Permissionship.ALLOWED
            denied = await system.check(ObjectRef("bomb", "b"), perm, SubjectRef("user", "v"), fresh)
            assert denied.permissionship is Permissionship.DENIED
    finally:
        await system.stop()


@needs_pymalloc
async def test_a_large_schemas_plain_walk_lives_outside_pymalloc_arenas(tmp_path: Path) -> None:
    """A check that meets the depth limit is answered again by the plain walk, compiled on
    first use and kept with the schema (CompiledSchema.walked): for the 300 arrows, ~24,000
    pymalloc blocks, which pinned arenas once the schema was dropped as the first
    compilation's did. It takes its objects from malloc too; the walk's error is given."""
    system = PermissionSystem(
        SqliteDatastore(str(tmp_path / "st.db")), poll_interval=None, gc_interval=None, probe_interval=None
    )
    await system.start()
    try:
        text = _arrows(300)
        assert len(text) >= schema_cache._FROZEN_SCHEMA_TEXT
        await system.write_schema(text)
        chain = [f"def{i}:a#upper@def{i + 1}:a" for i in range(299)] + ["def299:a#direct@user:u"]
        await system.write_relationships([Update(UpdateOp.TOUCH, Relationship.parse(rel)) for rel in chain])
        assert system.state is not None and system.state.compiled._walked is None
        user, fresh = SubjectRef("user", "u"), Consistency.fully_consistent()
        gc.collect()
        blocks = sys.getallocatedblocks()
        with pytest.raises(DepthExceeded):
            await system.check(ObjectRef("def0", "a"), "perm", user, fresh)
        gc.collect()
        grown = sys.getallocatedblocks() - blocks
        plain = system.state.compiled._walked
        assert plain is not None and plain.large and not plain.shortcuts
        assert len(plain.functions) >= 600
        assert grown < 5_000, f"{grown} pymalloc blocks for the plain walk of the arrows"
        near = await system.check(ObjectRef("def280", "a"), "perm", user, fresh)
        assert near.permissionship is Permissionship.ALLOWED
    finally:
        await system.stop()


@needs_pymalloc
def test_objects_come_from_pymalloc_again_once_every_window_has_closed() -> None:
    """Windows overlap across threads and nest; pymalloc is back when the last one closes,
    and blocks allocated inside are freed by pymalloc's free after it."""
    started, leave = threading.Event(), threading.Event()

    def other_window() -> None:
        with object_allocator.objects_in_malloc():
            started.set()
            leave.wait(30)

    thread = threading.Thread(target=other_window)
    with object_allocator.objects_in_malloc() as switched:
        assert switched
        thread.start()
        assert started.wait(30)
        with object_allocator.objects_in_malloc():
            blocks = sys.getallocatedblocks()
            made_inside = [(n, str(n)) for n in range(10_000)]
            assert sys.getallocatedblocks() - blocks < 1_000
    blocks = sys.getallocatedblocks()
    still_malloc = [(n, str(n)) for n in range(10_000)]  # the other thread's window is open
    assert sys.getallocatedblocks() - blocks < 1_000
    leave.set()
    thread.join(30)
    blocks = sys.getallocatedblocks()
    in_pymalloc = [(n, str(n)) for n in range(10_000)]
    assert sys.getallocatedblocks() - blocks >= 20_000
    del made_inside, still_malloc, in_pymalloc
    gc.collect()


def test_under_another_allocator_the_window_does_nothing() -> None:
    """Started on malloc (`serve --allocator malloc`): nothing to switch, nothing switched."""
    code = "from stonetown.core.object_allocator import objects_in_malloc as w\nwith w() as s: print(s)"
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
