"""The compiled-schema cache of PermissionSystem: SchemaState (a stored schema with everything
derived from it once) and the latest few compilations, by text, each made off the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

from stonetown.core.object_allocator import objects_in_malloc
from stonetown.engine.caveats import CaveatEvaluator
from stonetown.engine.check_plan import CompiledSchema
from stonetown.engine.datastore import StoredSchema
from stonetown.engine.loop_budget import leave_loop_if
from stonetown.engine.reachability import Reachability
from stonetown.schema import ir

# Compiled schemas kept, by text: a schema written again, or read at many old revisions,
# compiles once (each compilation of a large schema is seconds of CPU and 100s of MB).
_COMPILED_SCHEMAS = 4
# Schema text from which its compilation is moved out of the collector's reach (see _Frozen).
_FROZEN_SCHEMA_TEXT = 16_384
# Objects frozen beside compilations, over the process's life, past which no more are frozen.
_FROZEN_BESIDE_BUDGET = 250_000


class _Frozen:
    """Process-wide, as the collector's permanent generation is: what was frozen beside the
    large compilations.

    A large compilation is ~100k long-lived acyclic objects (closures): left in the
    collector's generations, every full pass would walk them (100-200 ms each, the GIL held).
    So :func:`freeze_compilation` moves it to the permanent generation as soon as it is built,
    on the compiling thread while the collector is still paused (``gc.freeze()`` splices lists:
    constant time), before any pass has walked it. No pass runs for it: neither before the
    freeze (it would walk the compilation) nor ever over the frozen objects (``gc.unfreeze()``
    and a collection walk the whole heap, the loaded index included: a second at 1M
    relationships).

    ``gc.freeze()`` freezes everything then in the generations, not only the compilation:
    requests in flight, garbage not yet collected. A dropped compilation is freed by reference
    counting (it is acyclic), but what was frozen beside it and dies in a reference cycle is
    never collected. That is bounded instead: each freeze counts the objects it took beside
    the compilation (every tracked object then unfrozen, less those the compilation reaches),
    and once :data:`_FROZEN_BESIDE_BUDGET` is spent, compilations stay where the collector
    walks them (slower full passes, but the memory bound holds)."""

    beside = 0


def freeze_compilation(state: SchemaState) -> bool:
    """Move a just-built large compilation (and what else is unfrozen) to the collector's
    permanent generation if the budget of objects frozen beside compilations allows it (see
    _Frozen); whether it did. Call it where it was built, the collector still paused: its
    objects are all unfrozen, and no pass has walked them yet."""
    if len(state.stored.text) < _FROZEN_SCHEMA_TEXT:
        return False
    unfrozen = gc.get_objects()
    beside = len(unfrozen) - _reached(state, {id(item) for item in unfrozen})
    del unfrozen
    if _Frozen.beside + beside > _FROZEN_BESIDE_BUDGET:
        return False
    _Frozen.beside += beside
    gc.freeze()
    return True


def _reached(root: object, among: set[int]) -> int:
    """How many of the objects whose ids are `among` `root` reaches (itself included): a
    walk confined to them (the frozen modules and classes its closures refer to are not)."""
    seen = {id(root)} & among
    frontier = [root]
    while frontier:
        found = []
        for item in gc.get_referents(*frontier):
            key = id(item)
            if key in among and key not in seen:
                seen.add(key)
                found.append(item)
        frontier = found
    return len(seen)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """A stored schema with everything derived from it once."""

    stored: StoredSchema
    schema: ir.Schema
    compiled: CompiledSchema
    facts: Reachability
    caveats: CaveatEvaluator
    # compiled under every limit (new text), not trusted as stored text is
    checked_limits: bool = False

    @classmethod
    def of(cls, stored: StoredSchema, openfga_cycles: bool = False) -> SchemaState:
        """Compile stored schema text. Trusted: it was checked when written, so it loads
        whatever the limits are now (see :func:`stonetown.schema.parse_schema`);
        `openfga_cycles`: see CompiledSchema."""
        from stonetown.schema import compile_schema

        with _large_compilation(stored.text):
            state = cls.build(stored, compile_schema(stored.text, trusted=True), openfga_cycles)
            freeze_compilation(state)
        return state

    @classmethod
    def build(cls, stored: StoredSchema, schema: ir.Schema, openfga_cycles: bool = False) -> SchemaState:
        """Everything derived from a compiled schema. CPU-bound: run it off the event loop."""
        large = len(stored.text) >= _FROZEN_SCHEMA_TEXT
        compiled = CompiledSchema(schema, openfga_cycles=openfga_cycles, large=large)
        return cls(stored, schema, compiled, Reachability.of(schema), CaveatEvaluator(schema))

    @classmethod
    def checked(cls, text: str, openfga_cycles: bool = False) -> SchemaState:
        """Check new schema text against every limit and compile it all, as a state not yet
        stored (revision 0); raises SchemaError. CPU-bound: run it off the event loop."""
        from stonetown.schema import compile_schema

        with _large_compilation(text):
            state = cls.build(StoredSchema(text, 0), compile_schema(text), openfga_cycles)
            freeze_compilation(state)
        return replace(state, checked_limits=True)


class SchemaCache:
    """The latest few compiled schemas of a PermissionSystem, by text (the bottom layer of
    PermissionSystem, see engine/system.py)."""

    # set by PermissionSystem.__init__
    openfga_cycles: bool
    _schema_compile: asyncio.Lock
    _compiled: OrderedDict[str, SchemaState]
    _compiled_used: dict[str, float]
    state: SchemaState | None  # the schema in force (set by the Writes layer)

    async def _state_for(self, stored: StoredSchema) -> SchemaState:
        known = self._compiled.get(stored.text)
        if known is None:
            # a large schema takes seconds to compile: never on the event loop
            known = await asyncio.to_thread(SchemaState.of, stored, self.openfga_cycles)
        self._remember(known)
        return known if known.stored == stored else replace(known, stored=stored)

    def _remember(self, state: SchemaState) -> None:
        """Keep `state` as the latest used compilation of its text (the oldest used goes)."""
        text = state.stored.text
        self._compiled[text] = state
        self._compiled.move_to_end(text)
        self._compiled_used[text] = time.monotonic()
        while len(self._compiled) > _COMPILED_SCHEMAS:
            self._forget(next(iter(self._compiled)))

    def _forget(self, text: str) -> None:
        """Drop the compilation of `text` from the cache (frozen or not, reference counting
        frees it: it is acyclic)."""
        self._compiled.pop(text, None)
        self._compiled_used.pop(text, None)

    def _schema_of(self, stored: StoredSchema) -> ir.Schema:
        """The compiled IR of a stored schema, without changing the cache (runs on a store's
        writer thread too); the engine plans are not needed to validate relationships."""
        known = self._compiled.get(stored.text)
        if known is None and self.state is not None and self.state.stored.text == stored.text:
            known = self.state  # the schema in force, even when the cache let it go
        if known is not None:
            return known.schema
        leave_loop_if(True)  # compiling takes up to seconds: on the loop, move it off
        from stonetown.schema import compile_schema

        return compile_schema(stored.text, trusted=True)

    async def _compile_new(self, text: str) -> SchemaState:
        """SchemaState.checked in a thread, one at a time (each can take seconds and 100s of
        MB). A thread cannot be stopped: when the caller gives up (its deadline), the next
        compilation still waits for this one to finish."""
        await self._schema_compile.acquire()
        try:
            compiling = asyncio.get_running_loop().run_in_executor(
                None, SchemaState.checked, text, self.openfga_cycles
            )
        except BaseException:
            self._schema_compile.release()
            raise

        def finished(future: asyncio.Future[SchemaState]) -> None:
            self._schema_compile.release()
            if not future.cancelled():
                future.exception()  # retrieved, also when nobody awaits it any more

        compiling.add_done_callback(finished)
        return await asyncio.shield(compiling)


@contextmanager
def _large_compilation(text: str) -> Iterator[None]:
    """What a compilation runs in: the collector paused (see :func:`cyclic_gc_paused`), and
    for large text its objects from malloc (core/object_allocator.py: pymalloc's arenas would
    stay pinned by whatever long-lived objects the process made while it was cached)."""
    large = len(text) >= _FROZEN_SCHEMA_TEXT
    with cyclic_gc_paused(collect_first=large), objects_in_malloc() if large else nullcontext():
        yield


@contextmanager
def cyclic_gc_paused(collect_first: bool = False) -> Iterator[None]:
    """The cyclic garbage collector paused (in every thread) while a large structure grows:
    its new containers would trigger full collections, each walking the whole heap while
    holding the GIL, that find nothing (a schema compiles several times faster, and the
    event loop is not stalled for seconds meanwhile). `collect_first`: one full pass before
    (a structure to be frozen once built: the garbage then in the generations is not frozen
    with it; the pass walks what an automatic one would, not the structure, not yet built)."""
    paused = gc.isenabled()
    if collect_first:
        gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
