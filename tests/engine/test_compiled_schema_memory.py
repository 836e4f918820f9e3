"""Compiled schemas leave no work for the cyclic garbage collector and are compiled once.

Issue #18's soak: a 600-permission chain compiled into closures that referenced the table of
compiled relations, so every dropped compilation was ~70,000 objects of cyclic garbage, freed
only by full collections (each walking the whole heap with the GIL held, hundreds of ms);
and the compiled schemas were cached by revision, so a schema written again, or read through
old-revision tokens at many revisions, was compiled again each time.
"""

from __future__ import annotations

import gc

from stonetown.core.relationship import ObjectRef, SubjectRef
from stonetown.engine.datastore import StoredSchema
from stonetown.engine.system import PermissionSystem, SchemaState
from stonetown.engine.types import Consistency
from stonetown.stores.memory import MemoryDatastore

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


def test_a_dropped_compiled_schema_is_freed_without_the_cyclic_collector() -> None:
    for text in (_chain(300), _arrows(100), BASE):
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
