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
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from stonetown.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from stonetown.core.relationship import WILDCARD, ObjectRef, Relationship, SubjectRef, validate_object_id
from stonetown.engine import bulk_import
from stonetown.engine.admission import admission_error, require_admitted, require_kept
from stonetown.engine.caveats import CaveatEvaluator
from stonetown.engine.check import CheckRun, CompiledSchema
from stonetown.engine.check_cache import CheckCache, CheckKey
from stonetown.engine.conditions import Result, granted
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
from stonetown.engine.expand import Expander
from stonetown.engine.index import RelationshipIndex, overlay
from stonetown.engine.lookup_resources import lookup_resources
from stonetown.engine.lookup_subjects import lookup_subjects
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

T = TypeVar("T")

_SCHEMA_CACHE = 4
# a store probe that takes longer than this counts as a failure (the store is unreachable)
PROBE_TIMEOUT = 5.0
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

    @classmethod
    def of(cls, stored: StoredSchema) -> SchemaState:
        """Compile stored schema text (it was checked when written)."""
        from stonetown.schema import compile_schema

        schema = compile_schema(stored.text)
        return cls(stored, schema, CompiledSchema(schema), Reachability.of(schema), CaveatEvaluator(schema))


@dataclass(frozen=True, slots=True)
class View:
    """What one request evaluates against: an index (the head's, or an old revision read
    through the store) and the schema at its revision."""

    index: RelationshipIndex | StoreSnapshot
    state: SchemaState

    @property
    def revision(self) -> int:
        """The revision both belong to."""
        return self.index.revision


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
        probe_interval: float | None = 1.0,
    ) -> None:
        if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}, not {max_depth}")
        # Each level of depth costs a few Python frames: make sure the interpreter allows them,
        # so the depth limit (ResourceExhausted), not a RecursionError, is what stops a walk.
        needed = FRAMES_PER_LEVEL * max_depth + 500
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)
        self.store = store
        self.max_depth = max_depth
        self.poll_interval = poll_interval
        self.token_wait = token_wait
        self.gc_interval = gc_interval
        # Dead rows and change-log entries older than this are removed (default: the store's).
        self.gc_window = gc_window if gc_window is not None else getattr(store, "gc_window_seconds", 86400.0)
        self.index = RelationshipIndex()
        self.state: SchemaState | None = None
        self._advance_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._old_reads: OldReads | None = None
        self._old_caches: OrderedDict[int, SnapshotCache] = OrderedDict()  # the latest few
        self._compiled: OrderedDict[int, SchemaState] = OrderedDict()
        self._poller: asyncio.Task[None] | None = None
        self._collector: asyncio.Task[None] | None = None
        # the store's health: what is wrong with it (None: nothing), kept by a background probe
        self.probe_interval = probe_interval
        self.store_problem: str | None = None
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
        except TimeoutError:
            problem = f"the store did not answer within {PROBE_TIMEOUT:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure to probe is a problem to report
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
        state = self._state_for(stored) if stored is not None else None
        index = await _load_index(self.store, head)
        self.index, self.state = index, state

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
                        state = self._state_for(stored) if stored is not None else None
                    self.index.apply(batch.changes, batch.revision)
                    self.state = state
            self._changed.set()
            self._changed = asyncio.Event()
        return self.index.revision

    def _state_for(self, stored: StoredSchema) -> SchemaState:
        state = self._compiled.get(stored.revision)
        if state is None:
            state = SchemaState.of(stored)
            self._compiled[stored.revision] = state
            while len(self._compiled) > _SCHEMA_CACHE:
                self._compiled.popitem(last=False)
        return state

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
        return View(self.index, self.state)

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
        self._old_caches[revision] = cache
        while len(self._old_caches) > _SCHEMA_CACHE:
            self._old_caches.popitem(last=False)
        snapshot = StoreSnapshot(self.store, revision, asyncio.get_running_loop(), cache=cache)
        return View(snapshot, self._state_for(stored))

    def _with_contextual(self, view: View, contextual: Sequence[Relationship]) -> View:
        if not contextual:
            return view
        for position, rel in enumerate(contextual):
            rel.validate_syntax()
            require_admitted(view.state.schema, rel, f"contextual_relationships[{position}]")
        if isinstance(view.index, StoreSnapshot):
            return View(view.index.with_extra(contextual), view.state)
        return View(overlay(view.index, contextual), view.state)

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
        stored relationships. Returns the new revision."""
        from stonetown.schema import compile_schema

        schema = compile_schema(text)
        revision = await self.store.write_schema(text, lambda examples: require_kept(schema, list(examples)))
        await self.catch_up()
        return revision

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
        schema = self._state_for(stored).schema
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
                self._changed.set()
                self._changed = asyncio.Event()
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
            self._changed.set()
            self._changed = asyncio.Event()
            return True

    def _validate_import(self, stored: StoredSchema | None, relationships: Sequence[Relationship]) -> None:
        """The schema check of an import, decided once per relationship shape."""
        if stored is None:
            raise FailedPrecondition("no schema has been written yet: write a schema before relationships")
        # Runs on the store's writer thread (SQLite): read the cache, never change it from here.
        known = self._compiled.get(stored.revision)
        if known is not None:
            schema = known.schema
        else:
            from stonetown.schema import compile_schema

            schema = compile_schema(stored.text)
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

    async def watch(
        self, after_revision: int, resource_types: Sequence[str] = ()
    ) -> AsyncIterator[RevisionChanges]:
        """Every change after `after_revision`, as it commits, optionally only for some types."""
        cursor = after_revision
        wanted = set(resource_types)
        while True:
            batches = await self.store.changes(cursor, limit=1000)
            for batch in batches:
                cursor = batch.revision
                changes = batch.changes
                if wanted:
                    changes = tuple(c for c in changes if c.relationship.resource_type in wanted)
                if changes:
                    yield RevisionChanges(batch.revision, batch.timestamp, changes, batch.schema_changed)
            if not batches:
                changed = self._changed
                try:
                    await asyncio.wait_for(changed.wait(), timeout=self.poll_interval or 0.05)
                except TimeoutError:
                    pass

    # ---- permissions --------------------------------------------------------------------

    @staticmethod
    def _verdict(
        state: SchemaState, result: Result, revision: int, context: dict[str, Any] | None = None
    ) -> CheckResult:
        """The answer for `result`; a caveat condition is evaluated against `context`."""
        if result is True:
            return CheckResult(Permissionship.ALLOWED, revision)
        if not granted(result):
            return CheckResult(Permissionship.DENIED, revision)
        verdict = state.caveats.verdict(result, context)  # type: ignore[arg-type]
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
        view = self._with_contextual(await self._view(consistency), contextual)
        state = view.state
        self._require_permission(state, resource.type, permission, "resource")
        self._require_subject(state, subject, "subject")
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
        return self._verdict(state, result, view.revision, context)

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
        if result is None:
            return None
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
        if not granted(result):
            return verdicts[2]
        return self._verdict(self.state, result, revision)

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

        def evaluate() -> list[CheckResult | Exception]:
            out: list[CheckResult | Exception] = []
            for position, request in enumerate(requests):
                try:
                    self._require_permission(
                        state, request.resource.type, request.permission, f"items[{position}].resource"
                    )
                    self._require_subject(state, request.subject, f"items[{position}].subject")
                    subject = request.subject
                    result = run.dispatch(
                        request.resource.type,
                        request.resource.id,
                        request.permission,
                        (subject.type, subject.id, subject.relation),
                        0,
                    )
                    out.append(self._verdict(state, result, view.revision, request.context))
                except Exception as exc:  # noqa: BLE001 - reported per item
                    out.append(exc)
            return out

        return await self._evaluate(view, evaluate)

    async def expand(
        self, resource: ObjectRef, permission: str, consistency: Consistency, *, recursive: bool = False
    ) -> tuple[ExpandNode, int]:
        """The userset tree of `permission` on `resource`, and the revision used."""
        view = await self._view(consistency)
        self._require_permission(view.state, resource.type, permission, "resource")
        expander = Expander(view.state.schema, view.index, self.max_depth, recursive)
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
        starting after the cursor id `after`; each with the revision used."""
        view = self._with_contextual(await self._view(consistency), contextual)
        state = view.state
        self._require_permission(state, resource_type, permission, "resource_object_type")
        self._require_subject(state, subject, "subject")
        found = await self._evaluate(
            view,
            partial(
                lookup_resources,
                state.compiled,
                state.facts,
                view.index,
                resource_type,
                permission,
                (subject.type, subject.id, subject.relation),
                self.max_depth,
            ),
        )
        sent = 0
        for rid, result in found:
            if after is not None and rid <= after:
                continue
            if limit is not None and sent >= limit:
                return
            verdict = self._verdict(state, result, view.revision, context)
            if verdict.permissionship is Permissionship.DENIED:
                continue
            yield (
                LookupResourceResult(
                    rid, verdict.permissionship is Permissionship.CONDITIONAL, verdict.missing_parameters
                ),
                view.revision,
            )
            sent += 1

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
        `permission` on `resource`, sorted by id (wildcard first); each with the revision used."""
        view = self._with_contextual(await self._view(consistency), contextual)
        state = view.state
        self._require_permission(state, resource.type, permission, "resource")
        self._require_subject(state, SubjectRef(subject_type, "x", subject_relation), "subject_object_type")
        found = await self._evaluate(
            view,
            partial(
                lookup_subjects,
                state.compiled,
                state.facts,
                view.index,
                (resource.type, resource.id),
                permission,
                subject_type,
                subject_relation,
                self.max_depth,
            ),
        )
        # Caveats are evaluated before paging: a subject the context denies is no answer. The
        # wildcard excludes every subject it does not grant outright (denied, or conditional
        # and listed on its own with its missing parameters).
        verdicts = [
            (cid, self._verdict(state, result, view.revision, context)) for cid, result in found.subjects
        ]
        denied = {cid for cid, verdict in verdicts if verdict.permissionship is Permissionship.DENIED}
        not_allowed = {cid for cid, v in verdicts if v.permissionship is not Permissionship.ALLOWED}
        items: list[tuple[str, CheckResult, tuple[str, ...]]] = []
        if found.wildcard is not False:
            wildcard = self._verdict(state, found.wildcard, view.revision, context)
            if wildcard.permissionship is not Permissionship.DENIED:
                items.append(("*", wildcard, tuple(sorted({*found.excluded, *not_allowed}))))
        items.extend((cid, verdict, ()) for cid, verdict in verdicts if cid not in denied)
        sent = 0
        for cid, verdict, excluded in items:
            if after is not None and cid <= after:
                continue
            if limit is not None and sent >= limit:
                return
            conditional = verdict.permissionship is Permissionship.CONDITIONAL
            yield (
                LookupSubjectResult(
                    SubjectRef(subject_type, cid, subject_relation),
                    excluded,
                    conditional,
                    verdict.missing_parameters,
                ),
                view.revision,
            )
            sent += 1


async def _load_index(store: Datastore, revision: int) -> RelationshipIndex:
    """A fresh index of every relationship live at `revision` in `store`.

    The cyclic garbage collector is paused while the index grows (its millions of new
    containers would trigger full collections that find nothing), then the index is moved
    to the permanent generation so later collections do not traverse it.
    """
    index = RelationshipIndex(revision)
    paused = gc.isenabled()
    gc.disable()
    try:
        async for batch in store.iter_fields(revision):
            index.add_all(batch)
    finally:
        if paused:
            gc.enable()
    gc.freeze()
    return index
