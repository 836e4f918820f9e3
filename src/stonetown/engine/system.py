"""PermissionSystem: the one object the API layer talks to.

It owns a datastore, the compiled schema and the in-memory index of the head revision, and
offers every operation of the service. The index is loaded at start and advanced from the
store's change log, after each local write and, when several processes share the store, by a
background poll; a token from any process is honoured by waiting until the index reaches it.
Reads at an older exact snapshot are answered through the store at that revision, bucket by
bucket, on a worker thread (engine/store_snapshot.py): no copy of the index, bounded memory.
All methods are coroutines; errors are stonetown.core.errors.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from stonetown.core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from stonetown.core.relationship import WILDCARD, ObjectRef, Relationship, SubjectRef, validate_object_id
from stonetown.engine import bulk_import
from stonetown.engine.admission import admission_error, require_admitted, require_kept
from stonetown.engine.caveat_values import require_request_context
from stonetown.engine.caveats import CaveatEvaluator
from stonetown.engine.cel_runtime import EvaluationBudget, EvaluationCancelled
from stonetown.engine.change_feed import MAX_WATCHERS, ChangeFeed
from stonetown.engine.check import CheckRun, CompiledSchema
from stonetown.engine.check_cache import CheckCache, CheckKey
from stonetown.engine.closure import Closures
from stonetown.engine.conditions import Result, granted
from stonetown.engine.cooperative import Pause, resumable
from stonetown.engine.datastore import (
    BatchedDelete,
    BatchedWrite,
    BatchItem,
    BatchResult,
    Change,
    ChangeOp,
    Datastore,
    DeleteResult,
    Precondition,
    RelationshipFilter,
    RevisionChanges,
    StoredSchema,
    Update,
    UpdateOp,
)
from stonetown.engine.expand import MAX_EXPAND_SIZE, Expander
from stonetown.engine.explain import ExplainNode
from stonetown.engine.explain import build as build_explanation
from stonetown.engine.index import RelationshipIndex, overlay
from stonetown.engine.lookup_resources import lookup_resources_steps
from stonetown.engine.lookup_subjects import (
    SubjectFound,
    excluded_beside,
    listed_beside,
    lookup_subjects_steps,
)
from stonetown.engine.reachability import Reachability
from stonetown.engine.store_snapshot import OldReads, SnapshotCache, StoreSnapshot
from stonetown.engine.types import (
    CheckRequest,
    CheckResult,
    Consistency,
    ConsistencyMode,
    ExpandNode,
    LookupResourceResult,
    LookupSubjectResult,
    Permissionship,
    ReadResult,
)
from stonetown.engine.write_batcher import WriteBatcher
from stonetown.schema import ir

Found = TypeVar("Found")
Answer = TypeVar("Answer")
T = TypeVar("T")

# Old revisions whose store reads are cached (the latest few asked for).
_OLD_READ_CACHES = 4
# Compiled schemas kept, by text: a schema written again, or read at many old revisions,
# compiles once (each compilation of a large schema is seconds of CPU and 100s of MB).
_COMPILED_SCHEMAS = 4
# Both caches give their memory back once no request has used an entry for this long (see
# release_idle_caches): after a burst of old-revision reads or schema writes, memory returns.
IDLE_CACHE_SECONDS = 30.0
# Schema text from which its compilation is moved out of the collector's reach (_remember).
_FROZEN_SCHEMA_TEXT = 16_384
# a store probe that takes longer than this counts as a failure (the store is unreachable)
PROBE_TIMEOUT = 5.0
# A store that is only slow (its writer busy with a large import) is not failing: it counts as
# unreachable once its probes have gone unanswered for this long in a row.
UNRESPONSIVE_AFTER = 30.0
MAX_DEPTH_LIMIT = 1000
FRAMES_PER_LEVEL = 8


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

        with cyclic_gc_paused():
            return cls.build(stored, compile_schema(stored.text, trusted=True), openfga_cycles)

    @classmethod
    def build(cls, stored: StoredSchema, schema: ir.Schema, openfga_cycles: bool = False) -> SchemaState:
        """Everything derived from a compiled schema. CPU-bound: run it off the event loop."""
        compiled = CompiledSchema(schema, openfga_cycles=openfga_cycles)
        return cls(stored, schema, compiled, Reachability.of(schema), CaveatEvaluator(schema))

    @classmethod
    def checked(cls, text: str, openfga_cycles: bool = False) -> SchemaState:
        """Check new schema text against every limit and compile it all, as a state not yet
        stored (revision 0); raises SchemaError. CPU-bound: run it off the event loop."""
        from stonetown.schema import compile_schema

        with cyclic_gc_paused():
            state = cls.build(StoredSchema(text, 0), compile_schema(text), openfga_cycles)
        return replace(state, checked_limits=True)


@dataclass(frozen=True, slots=True)
class View:
    """What one request evaluates against: an index (the head's, or an old revision read
    through the store) and the schema at its revision."""

    index: RelationshipIndex | StoreSnapshot
    state: SchemaState
    # True when `index` is (or overlays) the head index, which advances in place.
    live: bool = False
    # The revision both belong to, fixed when the view is made: a live index moves on.
    revision: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "revision", self.index.revision)


class PermissionSystem:
    """Schema, relationships and permission queries over one datastore."""

    def __init__(
        self,
        store: Datastore,
        *,
        max_depth: int = 50,
        poll_interval: float | None = 0.1,
        token_wait: float = 5.0,
        gc_interval: float | None = 600.0,
        gc_window: float | None = None,
        max_expand_size: int = MAX_EXPAND_SIZE,
        max_watchers: int = MAX_WATCHERS,
        openfga_cycles: bool = False,
        probe_interval: float | None = 1.0,
    ) -> None:
        """`openfga_cycles` resolves cycles in the data as OpenFGA does (for replaying
        OpenFGA's answers, see CompiledSchema); the server resolves them exactly."""
        if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}, not {max_depth}")
        # Each level of depth costs a few Python frames: make sure the interpreter allows them,
        # so the depth limit (ResourceExhausted), not a RecursionError, is what stops a walk.
        needed = FRAMES_PER_LEVEL * max_depth + 500
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)
        self.store = store
        self.max_depth = max_depth
        self.max_expand_size = max_expand_size
        self.openfga_cycles = openfga_cycles
        self.poll_interval = poll_interval
        self.token_wait = token_wait
        self.gc_interval = gc_interval
        # Dead rows and change-log entries older than this are removed (default: the store's).
        self.gc_window = gc_window if gc_window is not None else getattr(store, "gc_window_seconds", 86400.0)
        self.index = RelationshipIndex()
        self.state: SchemaState | None = None
        self._advance_lock = asyncio.Lock()
        self._schema_compile = asyncio.Lock()
        # One reader of the change log for every Watch stream of this process.
        self.feed = ChangeFeed(store, max_watchers)
        self._old_reads: OldReads | None = None
        self._old_caches: OrderedDict[int, SnapshotCache] = OrderedDict()  # the latest few
        self._compiled: OrderedDict[str, SchemaState] = OrderedDict()  # by schema text
        self._compiled_used: dict[str, float] = {}  # when each was last used
        self._poller: asyncio.Task[None] | None = None
        self._collector: asyncio.Task[None] | None = None
        # the store's health: what is wrong with it (None: nothing), kept by a background probe
        self.probe_interval = probe_interval
        self.store_problem: str | None = None
        self._slow_since: float | None = None  # when the probes began to go unanswered
        self._store_checked = asyncio.Event()  # set (and replaced) after every probe
        self._prober: asyncio.Task[None] | None = None
        self.check_cache = CheckCache()
        # The two answers a cache hit can give, for the revision they belong to (immutable).
        self._cached_verdicts = (
            -1,
            CheckResult(Permissionship.ALLOWED, -1),
            CheckResult(Permissionship.DENIED, -1),
        )
        # Concurrent writes and deletes share store transactions (group commit).
        self._batcher = WriteBatcher(store, self._validate_updates, self._after_batch)
        self._imports_in_flight = 0
        # set while an import's relationships go into the index (readers wait for it)
        self._indexing: asyncio.Event | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, load the schema and build the index at the head revision."""
        await self.store.open()
        await self._reload()
        self.feed.start(self.index.revision)
        if self.poll_interval:
            self._poller = asyncio.create_task(self._poll())
        if self.gc_interval:
            self._collector = asyncio.create_task(self._collect_periodically())
        if self.probe_interval:
            self._prober = asyncio.create_task(self._probe_periodically())

    async def stop(self) -> None:
        """Stop the background tasks and close the store."""
        for task in (self._poller, self._collector, self._prober):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._poller = self._collector = self._prober = None
        await self.feed.stop()
        if self._old_reads is not None:
            self._old_reads.close()
            self._old_reads = None
        await self._batcher.wait_idle()
        await self.store.close()

    async def collect_garbage(self) -> int:
        """Remove history older than the garbage-collection window; the rows removed."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.gc_window)
        removed = await self.store.gc(cutoff)
        oldest = await self.store.min_revision()
        for revision in [r for r in self._old_caches if r < oldest]:
            del self._old_caches[revision]  # no longer readable
        return removed

    async def probe_store(self) -> str | None:
        """Ask the store whether it can serve (within :data:`PROBE_TIMEOUT`); remember and
        return what is wrong, None when nothing is."""
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the
            # cancellation of stop() when the probe finishes at the same moment
            async with asyncio.timeout(PROBE_TIMEOUT):
                problem = await self.store.probe()
            self._slow_since = None
        except TimeoutError:
            now = time.monotonic()
            self._slow_since = self._slow_since or now
            silent = now - self._slow_since + PROBE_TIMEOUT
            slow = f"the store has not answered for {silent:.0f} s"
            problem = slow if silent >= UNRESPONSIVE_AFTER else self.store_problem
        except Exception as exc:  # noqa: BLE001 - any failure to probe is a problem to report
            self._slow_since = None
            problem = f"probing the store failed: {type(exc).__name__}: {exc}"
        self.store_problem = problem
        self._store_checked.set()
        self._store_checked = asyncio.Event()
        return problem

    async def store_health(self) -> AsyncIterator[str | None]:
        """The store's problem (None: healthy) now, then again each time it changes."""
        last: object = object()
        while True:
            checked = self._store_checked
            if self.store_problem != last:
                last = self.store_problem
                yield self.store_problem
            await checked.wait()

    async def _probe_periodically(self) -> None:
        assert self.probe_interval is not None
        while True:
            await self.probe_store()
            await asyncio.sleep(self.probe_interval)

    async def _collect_periodically(self) -> None:
        assert self.gc_interval is not None
        while True:
            await asyncio.sleep(self.gc_interval)
            try:
                await self.collect_garbage()
            except Exception:  # noqa: BLE001 - retried at the next interval
                continue

    async def _reload(self) -> None:
        head = await self.store.head_revision()
        stored = await self.store.read_schema(head)
        state = await self._state_for(stored) if stored is not None else None
        index = await _load_index(self.store, head)
        self.index, self.state = index, state
        if state is not None and index.closure is not None:
            index.closure.prepare(state.compiled.closure_graphs)  # not on the first checks

    async def _poll(self) -> None:
        assert self.poll_interval is not None
        while True:
            await asyncio.sleep(self.poll_interval)
            if self._imports_in_flight:
                continue  # the import applies its own relationships when it commits
            try:
                await self.catch_up()
            except Exception:  # noqa: BLE001 - a failed poll is retried at the next tick
                continue

    async def catch_up(self) -> int:
        """Apply every committed change the index has not seen; return the index revision."""
        async with self._advance_lock:
            while True:
                try:
                    batches = await self.store.changes(self.index.revision, limit=1000)
                except FailedPrecondition:
                    await self._reload()  # fell behind the garbage-collection window
                    break
                if not batches:
                    break
                for batch in batches:
                    state = self.state
                    if batch.schema_changed:
                        stored = await self.store.read_schema(batch.revision)
                        state = await self._state_for(stored) if stored is not None else None
                    self.index.apply(batch.changes, batch.revision)
                    self.state = state
            self.feed.announce(self.index.revision)
        return self.index.revision

    async def _state_for(self, stored: StoredSchema) -> SchemaState:
        known = self._compiled.get(stored.text)
        if known is None:
            # a large schema takes seconds to compile: never on the event loop
            known = await asyncio.to_thread(SchemaState.of, stored, self.openfga_cycles)
        self._remember(known)
        return known if known.stored == stored else replace(known, stored=stored)

    def _remember(self, state: SchemaState) -> None:
        """Keep `state` as the latest used compilation of its text (the oldest used goes)."""
        if len(state.stored.text) >= _FROZEN_SCHEMA_TEXT and state.stored.text not in self._compiled:
            # ~100k long-lived acyclic objects (closures): frozen, full passes no longer walk
            # them (100-200 ms each); collected first so no garbage is frozen with them
            gc.collect()
            gc.freeze()
        self._compiled[state.stored.text] = state
        self._compiled.move_to_end(state.stored.text)
        self._compiled_used[state.stored.text] = time.monotonic()
        while len(self._compiled) > _COMPILED_SCHEMAS:
            self._compiled_used.pop(self._compiled.popitem(last=False)[0], None)

    def release_idle_caches(self, idle: float = IDLE_CACHE_SECONDS) -> int:
        """Drop the old-revision caches and the compiled schemas (but the one in force) that
        no request has used for `idle` seconds; how many were dropped. The server calls it
        periodically, so memory taken by a burst of old reads or schema writes is given back."""
        cutoff = time.monotonic() - idle
        stale = [revision for revision, cache in self._old_caches.items() if cache.used_at < cutoff]
        for revision in stale:
            del self._old_caches[revision]
        current = self.state.stored.text if self.state is not None else None
        unused = [text for text, used in self._compiled_used.items() if used < cutoff and text != current]
        for text in unused:
            self._compiled.pop(text, None)
            del self._compiled_used[text]
        return len(stale) + len(unused)

    def _schema_of(self, stored: StoredSchema) -> ir.Schema:
        """The compiled IR of a stored schema, without changing the cache (runs on a store's
        writer thread too); the engine plans are not needed to validate relationships."""
        known = self._compiled.get(stored.text)
        if known is not None:
            return known.schema
        from stonetown.schema import compile_schema

        return compile_schema(stored.text, trusted=True)

    # ---- revisions ----------------------------------------------------------------------

    async def _view(self, consistency: Consistency) -> View:
        while self._indexing is not None:
            await self._indexing.wait()  # an import is half-way into the index
        mode = consistency.mode
        if mode is ConsistencyMode.FULLY_CONSISTENT:
            await self.catch_up()
        elif mode is ConsistencyMode.AT_LEAST_AS_FRESH:
            await self._reach(self._token_revision(consistency))
        elif mode is ConsistencyMode.AT_EXACT_SNAPSHOT:
            wanted = self._token_revision(consistency)
            if wanted > self.index.revision:
                await self._reach(wanted)
            if wanted != self.index.revision:
                return await self._snapshot(wanted)
        if self.state is None:
            raise NotFound("no schema has been written yet")
        return View(self.index, self.state, live=True)

    @staticmethod
    def _token_revision(consistency: Consistency) -> int:
        if consistency.revision is None:
            raise InvalidArgument(f"consistency: {consistency.mode.value} needs a token")
        return consistency.revision

    async def _reach(self, revision: int) -> None:
        if self.index.revision >= revision:
            return
        deadline = time.monotonic() + self.token_wait
        while True:
            await self.catch_up()
            if self.index.revision >= revision:
                return
            if await self.store.head_revision() < revision:
                raise InvalidArgument(
                    f"consistency: the token's revision {revision} is newer than this store's head"
                )
            if time.monotonic() > deadline:
                raise Unavailable(f"revision {revision} was not reached within {self.token_wait} s; retry")
            await asyncio.sleep(0.01)

    async def _snapshot(self, revision: int) -> View:
        """The view of an old revision: read through the store (FailedPrecondition once
        garbage collection has passed it, as the store answers)."""
        stored = await self.store.read_schema(revision)
        if stored is None:
            raise NotFound(f"no schema had been written at revision {revision}")
        cache = self._old_caches.pop(revision, None) or SnapshotCache()
        cache.used_at = time.monotonic()
        self._old_caches[revision] = cache
        while len(self._old_caches) > _OLD_READ_CACHES:
            self._old_caches.popitem(last=False)
        snapshot = StoreSnapshot(self.store, revision, asyncio.get_running_loop(), cache=cache)
        return View(snapshot, await self._state_for(stored))

    def _with_contextual(self, view: View, contextual: Sequence[Relationship]) -> View:
        if not contextual:
            return view
        for position, rel in enumerate(contextual):
            rel.validate_syntax()
            require_admitted(view.state.schema, rel, f"contextual_relationships[{position}]")
        if isinstance(view.index, StoreSnapshot):
            return View(view.index.with_extra(contextual), view.state)
        return View(overlay(view.index, contextual), view.state, view.live)

    def _unchanged(self, view: View) -> Callable[[], bool]:
        """For a paused walk over `view`: does its index still hold `view`'s revision?"""
        if not view.live:
            return lambda: True  # a snapshot never advances
        head, revision = self.index, view.revision
        return lambda: head.revision == revision

    def _replacement(
        self, consistency: Consistency, contextual: Sequence[Relationship], validate: Callable[[View], None]
    ) -> Callable[[View, bool], Awaitable[View]]:
        """Where a walk restarts when the head index advanced during one of its pauses: the
        new head when nothing was answered yet and the consistency allows it (a few times),
        else a snapshot of the walk's own revision, which never advances."""
        restarts = 0

        async def replace(view: View, sent: bool) -> View:
            nonlocal restarts
            restarts += 1
            if not sent and restarts <= 3 and consistency.mode is not ConsistencyMode.AT_EXACT_SNAPSHOT:
                fresh = self._with_contextual(await self._view(consistency), contextual)
                validate(fresh)
                return fresh
            # the walk's own revision, read through the store: continued by _lookup
            raise _ContinueOnSnapshot(self._with_contextual(await self._snapshot(view.revision), contextual))

        return replace

    async def _evaluate(self, view: View, work: Callable[[], T]) -> T:
        """`work()`, the engine's evaluation over `view`: right here for an index in memory,
        on an old-read thread for an old revision (its buckets are read from the store)."""
        if view.index.__class__ is not StoreSnapshot:
            return work()
        if self._old_reads is None:
            self._old_reads = OldReads()
        snapshot = view.index
        assert isinstance(snapshot, StoreSnapshot)
        return await self._old_reads.run(partial(snapshot.evaluate, work))

    # ---- schema -------------------------------------------------------------------------

    async def write_schema(self, text: str) -> int:
        """Parse, check and store a schema; refuse (FailedPrecondition) one that would orphan
        stored relationships. Returns the new revision.

        Everything the engine derives from the schema is compiled before the commit, in a
        thread (the event loop stays free): a schema that cannot be served is never stored.
        """
        known = self._compiled.get(text)  # the same text written before: compiled already
        state = known if known is not None and known.checked_limits else await self._compile_new(text)
        schema = state.schema
        revision = await self.store.write_schema(text, lambda examples: require_kept(schema, list(examples)))
        self._remember(replace(state, stored=StoredSchema(text, revision)))
        await self.catch_up()
        return revision

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

    async def read_schema(self) -> StoredSchema:
        """The schema in force (NotFound if none)."""
        stored = await self.store.read_schema()
        if stored is None:
            raise NotFound("no schema has been written yet")
        return stored

    # ---- relationships ------------------------------------------------------------------

    def _validate_updates(self, stored: StoredSchema | None, updates: Sequence[Update]) -> None:
        if stored is None:
            raise FailedPrecondition("no schema has been written yet: write a schema before relationships")
        schema = self._schema_of(stored)
        for position, update in enumerate(updates):
            rel = update.relationship
            if update.op is UpdateOp.DELETE:
                definition = schema.definitions.get(rel.resource_type)
                if definition is None or rel.relation not in definition.relations:
                    require_admitted(schema, rel, f"updates[{position}]")
                continue
            require_admitted(schema, rel, f"updates[{position}]")

    async def write_relationships(
        self, updates: Sequence[Update], preconditions: Sequence[Precondition] = ()
    ) -> int:
        """Validate every relationship against the schema and write atomically; new revision.

        Concurrent calls are committed together (one store transaction, one revision each);
        the answer comes once the write is durable and in this process's index.
        """
        for position, update in enumerate(updates):
            try:
                update.relationship.validate_syntax()
            except InvalidArgument as exc:
                raise InvalidArgument(f"updates[{position}]: {exc}") from None
        revision = await self._batcher.submit(BatchedWrite(updates, preconditions))
        assert isinstance(revision, int)
        return revision

    async def delete_relationships(
        self,
        filter: RelationshipFilter,
        preconditions: Sequence[Precondition] = (),
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete by filter atomically (committed together with concurrent writes)."""
        result = await self._batcher.submit(BatchedDelete(filter, preconditions, limit))
        assert isinstance(result, DeleteResult)
        return result

    async def _after_batch(self, items: Sequence[BatchItem], results: Sequence[BatchResult]) -> None:
        """Advance the index past a committed batch before its callers are answered."""
        writes: list[tuple[BatchedWrite, int]] = []
        other_change = False
        for item, result in zip(items, results, strict=True):
            if isinstance(result, int) and isinstance(item, BatchedWrite):
                writes.append((item, result))
            elif isinstance(result, DeleteResult) and result.deleted:
                other_change = True
        if not writes and not other_change:
            return
        async with self._advance_lock:
            if not other_change and self.index.revision == writes[0][1] - 1:
                # Nothing else committed in between: the writes' own updates are the whole
                # change (their revisions are consecutive), no need to read them back.
                for item, revision in writes:
                    self.index.apply(
                        [
                            Change(
                                ChangeOp.DELETE if u.op is UpdateOp.DELETE else ChangeOp.TOUCH, u.relationship
                            )
                            for u in item.updates
                        ],
                        revision,
                    )
                self.feed.announce(revision)
                return
        await self.catch_up()

    async def import_relationships(self, relationships: Sequence[Relationship]) -> int:
        """Create every relationship in one atomic write (one revision; all or nothing), by the
        store's bulk path; the new revision. An error names the relationship's position."""
        checked: set[tuple[str, str, str, str]] = set()  # names already found valid
        for position, rel in enumerate(relationships):
            if position % bulk_import.CHUNK == bulk_import.CHUNK - 1:
                await asyncio.sleep(0)  # a large import must not hold up health checks
            try:
                names = (rel.resource_type, rel.relation, rel.subject_type, rel.subject_relation)
                if names not in checked or (rel.subject_relation and rel.subject_id == WILDCARD):
                    rel.validate_syntax()
                    checked.add(names)
                else:
                    validate_object_id(rel.resource_id, "resource id", allow_wildcard=False)
                    validate_object_id(rel.subject_id, "subject id", allow_wildcard=True)
            except InvalidArgument as exc:
                raise InvalidArgument(f"relationships[{position}]: {exc}") from None
        # The background poll would read the whole import back from the change log.
        self._imports_in_flight += 1
        try:
            revision = await self.store.import_relationships(relationships, self._validate_import)
        finally:
            self._imports_in_flight -= 1
        # Shielded: once started, the index update runs to its end even if the caller goes.
        if not await asyncio.shield(asyncio.ensure_future(self._index_import(relationships, revision))):
            await self.catch_up()
        return revision

    async def _index_import(self, relationships: Sequence[Relationship], revision: int) -> bool:
        """Put a committed import into the index, chunk by chunk with readers held off, when
        nothing else committed before it; False otherwise (then the change log has it)."""
        async with self._advance_lock:
            if self.index.revision != revision - 1:
                return False
            self._indexing = indexed = asyncio.Event()
            try:
                await bulk_import.add_to_index_yielding(self.index, relationships)
                self.index.apply((), revision)
            finally:
                self._indexing = None
                indexed.set()
            self.feed.announce(revision)
            return True

    def _validate_import(self, stored: StoredSchema | None, relationships: Sequence[Relationship]) -> None:
        """The schema check of an import, decided once per relationship shape."""
        if stored is None:
            raise FailedPrecondition("no schema has been written yet: write a schema before relationships")
        # Runs on the store's writer thread (SQLite): read the cache, never change it from here.
        schema = self._schema_of(stored)
        admitted: dict[tuple[str, str, str, str, bool, bool], bool] = {}
        for position, rel in enumerate(relationships):
            if rel.caveat is None:
                # Without a caveat the verdict depends on these fields only.
                shape = (
                    rel.resource_type,
                    rel.relation,
                    rel.subject_type,
                    rel.subject_relation,
                    rel.subject_id == WILDCARD,
                    rel.expiration is not None,
                )
                verdict = admitted.get(shape)
                if verdict is None:
                    verdict = admitted[shape] = admission_error(schema, rel) is None
                if verdict:
                    continue
            require_admitted(schema, rel, f"relationships[{position}]")

    async def read_relationships(
        self,
        filter: RelationshipFilter,
        consistency: Consistency,
        *,
        after: tuple[str, ...] | None = None,
        limit: int | None = None,
    ) -> ReadResult:
        """A page of relationships matching `filter` at the chosen revision (expired ones hidden)."""
        view = await self._view(consistency)
        now = time.time()
        rows = await self.store.read(filter, view.revision, after=after, limit=limit)
        live = [r for r in rows if r.expiration is None or r.expiration.timestamp() > now]
        return ReadResult(live, view.revision)

    def watch(
        self, after_revision: int, resource_types: Sequence[str] = (), *, every_revision: bool = False
    ) -> AsyncIterator[RevisionChanges]:
        """Every change after `after_revision`, as it commits, optionally only for some types;
        served from the shared change feed (ResourceExhausted beyond the watcher bound). With
        `every_revision`, every committed revision comes, even with no change left after the
        type filter (a schema write, a checkpoint to report)."""
        return self.feed.watch(after_revision, resource_types, every_revision=every_revision)

    # ---- permissions --------------------------------------------------------------------

    @staticmethod
    async def _verdict(
        state: SchemaState,
        result: Result,
        revision: int,
        context: dict[str, Any] | None,
        budget: EvaluationBudget | None,
    ) -> CheckResult:
        """The answer for `result`; a caveat condition is evaluated against `context` under
        the request's `budget` (on the event loop while it lasts, then on the worker pool)."""
        if result is True:
            return CheckResult(Permissionship.ALLOWED, revision)
        if not granted(result):
            return CheckResult(Permissionship.DENIED, revision)
        spend = budget if budget is not None else EvaluationBudget()
        verdict = await spend.run(lambda: state.caveats.verdict(result, context, spend))  # type: ignore[arg-type]
        return CheckResult(verdict.permissionship, revision, verdict.missing_parameters)

    @staticmethod
    def _require_permission(state: SchemaState, resource_type: str, permission: str, field: str) -> None:
        definition = state.schema.definitions.get(resource_type)
        if definition is None:
            raise InvalidArgument(f"{field}: object definition `{resource_type}` not found")
        if permission not in definition.relations:
            raise InvalidArgument(
                f"{field}: relation/permission `{permission}` not found under definition `{resource_type}`"
            )

    @staticmethod
    def _require_subject(state: SchemaState, subject: SubjectRef, field: str) -> None:
        definition = state.schema.definitions.get(subject.type)
        if definition is None:
            raise InvalidArgument(f"{field}: object definition `{subject.type}` not found")
        if subject.relation and subject.relation not in definition.relations:
            raise InvalidArgument(
                f"{field}: relation/permission `{subject.relation}` "
                f"not found under definition `{subject.type}`"
            )
        if subject.is_wildcard:
            raise InvalidArgument(f"{field}: cannot check a wildcard subject ({subject})")

    async def _check_view(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None,
        contextual: Sequence[Relationship],
    ) -> View:
        """The view a Check (or its explanation) evaluates against, the request validated."""
        if context:
            require_request_context(context)
        view = self._with_contextual(await self._view(consistency), contextual)
        self._require_permission(view.state, resource.type, permission, "resource")
        self._require_subject(view.state, subject, "subject")
        return view

    async def check(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
    ) -> CheckResult:
        """Does `subject` have `permission` on `resource`?"""
        view = await self._check_view(resource, permission, subject, consistency, context, contextual)
        state = view.state
        subj = (subject.type, subject.id, subject.relation)
        cacheable = view.index is self.index
        key = (resource.type, resource.id, permission, subj)
        result = self.check_cache.get(view.revision, key) if cacheable else None
        if result is None:
            run = CheckRun(state.compiled, view.index, self.max_depth)
            work = partial(run.dispatch, resource.type, resource.id, permission, subj, 0)
            result = work() if cacheable else await self._evaluate(view, work)
            if cacheable and not run.volatile:
                self.check_cache.put(view.revision, key, result)
        if result is True:
            return CheckResult(Permissionship.ALLOWED, view.revision)
        return await self._verdict(state, result, view.revision, context, None)

    async def explain(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
    ) -> tuple[ExplainNode, CheckResult]:
        """The resolution tree of a Check (:mod:`stonetown.engine.explain`) and its answer."""
        view = await self._check_view(resource, permission, subject, consistency, context, contextual)
        state = view.state
        run = CheckRun(state.compiled, view.index, self.max_depth)
        subj = (subject.type, subject.id, subject.relation)
        budget = EvaluationBudget()

        async def verdict(result: Result) -> tuple[Permissionship, tuple[str, ...]]:
            answer = await self._verdict(state, result, view.revision, context, budget)
            return answer.permissionship, answer.missing_parameters

        where = (resource.type, resource.id)
        work = partial(build_explanation, state.schema, run, view.index, where, permission, subj)
        tree, explainer = await self._evaluate(view, work)
        await explainer.settle(tree, verdict)
        return tree, await self._verdict(state, tree.raw, view.revision, context, budget)

    def cached_check(self, key: CheckKey, consistency: Consistency) -> CheckResult | None:
        """What :meth:`check` answers for `key` ``(resource type, resource id, permission,
        (subject type, subject id, subject relation))`` with no caveat context and no
        contextual relationships, when that needs neither the store nor the engine: the
        index as it is meets `consistency` and the answer is in the whole-check cache. None
        otherwise (then call :meth:`check`; nothing was counted).

        Only checks that passed validation against the schema of the index's revision are
        cached for it (the schema only changes with the revision), so a hit needs no
        validation either."""
        revision = self.index.revision
        cache = self.check_cache
        if cache.revision != revision or self.state is None:
            return None
        mode = consistency.mode
        if mode is not ConsistencyMode.MINIMIZE_LATENCY:
            wanted = consistency.revision
            if wanted is None or mode is ConsistencyMode.FULLY_CONSISTENT:
                return None  # the store must be asked for its head (or the token is missing)
            if wanted > revision if mode is ConsistencyMode.AT_LEAST_AS_FRESH else wanted != revision:
                return None  # a newer revision to wait for, or another snapshot
        result = cache.entries.get(key)
        if result is None or (result is not True and granted(result)):
            return None  # absent, or a caveat condition: check() evaluates it, maybe off the loop
        cache.hits += 1
        verdicts = self._cached_verdicts
        if verdicts[0] != revision:
            verdicts = self._cached_verdicts = (
                revision,
                CheckResult(Permissionship.ALLOWED, revision),
                CheckResult(Permissionship.DENIED, revision),
            )
        if result is True:
            return verdicts[1]
        return verdicts[2]

    async def check_bulk(
        self,
        requests: Sequence[CheckRequest],
        consistency: Consistency,
        contextual: Sequence[Relationship] = (),
    ) -> list[CheckResult | Exception]:
        """Many checks at one revision, sharing work; per-item errors are returned, not raised."""
        view = self._with_contextual(await self._view(consistency), contextual)
        state = view.state
        run = CheckRun(state.compiled, view.index, self.max_depth)

        def evaluate() -> list[Result | Exception]:
            out: list[Result | Exception] = []
            for position, request in enumerate(requests):
                try:
                    self._require_permission(
                        state, request.resource.type, request.permission, f"items[{position}].resource"
                    )
                    self._require_subject(state, request.subject, f"items[{position}].subject")
                    subject = request.subject
                    out.append(
                        run.dispatch(
                            request.resource.type,
                            request.resource.id,
                            request.permission,
                            (subject.type, subject.id, subject.relation),
                            0,
                        )
                    )
                except DeadlineExceeded:
                    raise  # the whole request is over, not one item
                except Exception as exc:  # noqa: BLE001 - reported per item
                    out.append(exc)
            return out

        budget = EvaluationBudget()
        answers: list[CheckResult | Exception] = []
        raws = await self._evaluate(view, evaluate)
        for position, (request, raw) in enumerate(zip(requests, raws, strict=True)):
            if isinstance(raw, Exception):
                answers.append(raw)
                continue
            try:
                if request.context:
                    require_request_context(request.context, f"items[{position}].context")
                answers.append(await self._verdict(state, raw, view.revision, request.context, budget))
            except (DeadlineExceeded, EvaluationCancelled):
                raise  # the whole request is over, not one item
            except Exception as exc:  # noqa: BLE001 - reported per item
                answers.append(exc)
        return answers

    async def expand(
        self, resource: ObjectRef, permission: str, consistency: Consistency, *, recursive: bool = False
    ) -> tuple[ExpandNode, int]:
        """The userset tree of `permission` on `resource`, and the revision used."""
        view = await self._view(consistency)
        self._require_permission(view.state, resource.type, permission, "resource")
        expander = Expander(view.state.schema, view.index, self.max_depth, recursive, self.max_expand_size)
        tree = await self._evaluate(view, partial(expander.expand, resource.type, resource.id, permission))
        return tree, view.revision

    async def lookup_resources(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[LookupResourceResult, int]]:
        """Resource ids of `resource_type` on which `subject` has `permission`, sorted by id,
        starting after the cursor id `after`, at most `limit`; each with the revision used.

        Results stream as they are found; the walk gives the event loop a turn every few
        milliseconds and stops when the consumer stops (a page full, a cancelled call)."""
        if context:
            require_request_context(context)
        budget = EvaluationBudget()

        def validate(view: View) -> None:
            self._require_permission(view.state, resource_type, permission, "resource_object_type")
            self._require_subject(view.state, subject, "subject")

        def walk(view: View, cursor: str | None) -> Generator[tuple[str, Result] | Pause, None, None]:
            state = view.state
            return lookup_resources_steps(
                state.compiled, state.facts, view.index, resource_type, permission,
                (subject.type, subject.id, subject.relation), self.max_depth, cursor, _likely_wanted(limit),
            )  # fmt: skip

        async def shape(found: tuple[str, Result], view: View) -> LookupResourceResult | None:
            if found[1] is True:
                return LookupResourceResult(found[0])  # no caveat to evaluate: no verdict to ask
            verdict = await self._verdict(view.state, found[1], view.revision, context, budget)
            if verdict.permissionship is Permissionship.DENIED:
                return None
            conditional = verdict.permissionship is Permissionship.CONDITIONAL
            return LookupResourceResult(found[0], conditional, verdict.missing_parameters)

        answers = self._lookup(
            consistency, contextual, validate, walk, lambda found: found[0], shape, after, limit
        )
        async for answer in answers:
            yield answer

    async def lookup_subjects(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[LookupSubjectResult, int]]:
        """Subjects of `subject_type` (with `subject_relation`, "" for plain objects) that have
        `permission` on `resource`, sorted by id (wildcard first), after the cursor id `after`,
        at most `limit`; each with the revision used. Streams like :meth:`lookup_resources`."""
        if context:
            require_request_context(context)
        budget = EvaluationBudget()

        def validate(view: View) -> None:
            self._require_permission(view.state, resource.type, permission, "resource")
            self._require_subject(
                view.state, SubjectRef(subject_type, "x", subject_relation), "subject_object_type"
            )

        def walk(view: View, cursor: str | None) -> Generator[SubjectFound | Pause, None, None]:
            state = view.state
            return lookup_subjects_steps(
                state.compiled, state.facts, view.index, (resource.type, resource.id), permission,
                subject_type, subject_relation, self.max_depth, cursor, _likely_wanted(limit),
            )  # fmt: skip

        async def shape(found: SubjectFound, view: View) -> LookupSubjectResult | None:
            return await self._subject_answer(found, view, context, subject_type, subject_relation, budget)

        answers = self._lookup(
            consistency, contextual, validate, walk, lambda found: found.subject_id, shape, after, limit
        )
        async for answer in answers:
            yield answer

    async def _lookup(
        self,
        consistency: Consistency,
        contextual: Sequence[Relationship],
        validate: Callable[[View], None],
        walk: Callable[[View, str | None], Generator[Found | Pause, None, None]],
        key: Callable[[Found], str],
        shape: Callable[[Found, View], Awaitable[Answer | None]],
        after: str | None,
        limit: int | None,
    ) -> AsyncIterator[tuple[Answer, int]]:
        """The answers of a lookup: `walk` over the view `consistency` asks for (validated by
        `validate`) from the cursor `after` on, each found item made an answer by `shape` (or
        dropped: None), at most `limit`; the walk restarts where it was when the head index
        advances during one of its pauses (see :meth:`_replacement`)."""
        view = self._with_contextual(await self._view(consistency), contextual)
        validate(view)
        if limit == 0:
            return
        sent = 0
        if view.live:
            replacement = self._replacement(consistency, contextual, validate)
            try:
                async for found, used in resumable(view, walk, self._unchanged, replacement, key, after):
                    after = key(found)
                    answer = await shape(found, used)
                    if answer is None:
                        continue
                    yield answer, used.revision
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
                return
            except _ContinueOnSnapshot as moved:
                view = moved.view
        # An old revision is read through the store, on an old-read thread: the walk runs there
        # whole (from the cursor on), then its answers are shaped here.
        found_all = await self._evaluate(view, partial(_walked, walk, view, after))
        for found in found_all:
            answer = await shape(found, view)
            if answer is None:
                continue
            yield answer, view.revision
            sent += 1
            if limit is not None and sent >= limit:
                return

    async def _subject_answer(
        self,
        found: SubjectFound,
        view: View,
        context: dict[str, Any] | None,
        subject_type: str,
        subject_relation: str,
        budget: EvaluationBudget,
    ) -> LookupSubjectResult | None:
        """The answer LookupSubjects gives for `found`, None when the caveat context denies it.

        Caveats are evaluated here, and the answer takes SpiceDB's shape: a subject the
        context denies is no answer; beside a granted wildcard a subject is listed only as
        lookup_subjects.listed_beside says, and the wildcard excludes the subjects
        lookup_subjects.excluded_beside says, marking those the context leaves undecided
        excluded only conditionally."""
        if found.result is True and found.subject_id != WILDCARD and found.listed in (None, True):
            # granted outright and listed: the answer has nothing to evaluate
            return LookupSubjectResult(SubjectRef(subject_type, found.subject_id, subject_relation))
        state, revision = view.state, view.revision
        verdict = await self._verdict(state, found.result, revision, context, budget)
        if verdict.permissionship is Permissionship.DENIED:
            return None
        excluded: tuple[str, ...] = ()
        conditionally: tuple[str, ...] = ()
        if found.subject_id == WILDCARD:
            out: list[str] = []
            maybe: list[str] = []
            for cid, condition, result in found.conditional:
                out_of = Permissionship.DENIED
                if condition is not False:
                    out_of = (await self._verdict(state, condition, revision, context, budget)).permissionship
                theirs = (await self._verdict(state, result, revision, context, budget)).permissionship
                if excluded_beside(out_of, theirs, verdict.permissionship):
                    out.append(cid)
                    certain = out_of is Permissionship.ALLOWED or theirs is Permissionship.DENIED
                    if not certain:
                        maybe.append(cid)
            excluded, conditionally = tuple(sorted({*found.excluded, *out})), tuple(sorted(maybe))
        elif found.listed is not None:
            listed = (await self._verdict(state, found.listed, revision, context, budget)).permissionship
            if not listed_beside(verdict.permissionship, listed):
                return None
        return LookupSubjectResult(
            SubjectRef(subject_type, found.subject_id, subject_relation),
            excluded,
            verdict.permissionship is Permissionship.CONDITIONAL,
            verdict.missing_parameters,
            conditionally,
        )


class _ContinueOnSnapshot(Exception):
    """A paused walk over the head must go on at its own revision, read through the store."""

    def __init__(self, view: View) -> None:
        super().__init__("continue on a snapshot")
        self.view = view


def _walked(
    walk: Callable[[View, str | None], Generator[Found | Pause, None, None]], view: View, after: str | None
) -> list[Found]:
    """Every item a cooperative walk finds (its pauses skipped), in order."""
    return [item for item in walk(view, after) if not isinstance(item, Pause)]


def _likely_wanted(limit: int | None) -> int | None:
    """How many candidates a page of `limit` answers likely takes (some may be denied)."""
    return None if limit is None else 2 * limit + 16


async def _load_index(store: Datastore, revision: int) -> RelationshipIndex:
    """A fresh index of every relationship live at `revision` in `store`.

    The cyclic garbage collector is paused while the index grows (its millions of new
    containers would trigger full collections that find nothing), and the index is moved to
    the permanent generation before it resumes: so neither the first allocation after the
    load (a full collection was pending) nor later collections traverse it.
    """
    index = RelationshipIndex(revision)
    index.closure = Closures(index)  # the head index keeps closures of recursive sets
    with cyclic_gc_paused():
        async for batch in store.iter_fields(revision):
            index.add_all(batch)
        index.loaded()
        gc.freeze()
    return index


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (in every thread) while a large structure grows:
    its new containers would trigger full collections, each walking the whole heap while
    holding the GIL, that find nothing (a schema compiles several times faster, and the
    event loop is not stalled for seconds meanwhile)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
