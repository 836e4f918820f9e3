"""PermissionSystem: the one object the API layer talks to.

It owns a datastore, the compiled schema and the in-memory index of the head revision, and
offers every operation of the service. The index is loaded at start and advanced from the
store's change log, after each local write and, when several processes share the store, by a
background poll; a token from any process is honoured by waiting until the index reaches it.
Reads at an older exact snapshot are answered through the store at that revision, bucket by
bucket, on a worker thread (engine/store_snapshot.py): no copy of the index, bounded memory.
All methods are coroutines; errors are stonetown.core.errors.

PermissionSystem is built in layers, each a module using only those before it:
engine/schema_cache.py (compiled schemas), engine/writes.py (writes, imports, the head index
advanced), engine/revision_views.py (consistency to view, old-revision snapshots, idle cache
release), engine/permission_checks.py (Check, CheckBulk, Expand), engine/lookup_answers.py
(LookupResources, LookupSubjects); this module adds the lifecycle, background tasks and reads.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

from stonetown.core.errors import NotFound
from stonetown.engine.change_feed import MAX_WATCHERS, ChangeFeed
from stonetown.engine.check_cache import CheckCache
from stonetown.engine.datastore import Datastore, RelationshipFilter, RevisionChanges, StoredSchema
from stonetown.engine.expand import MAX_EXPAND_SIZE
from stonetown.engine.index import RelationshipIndex
from stonetown.engine.lookup_answers import LookupAnswers
from stonetown.engine.lookup_subjects import HeldCache
from stonetown.engine.revision_views import IDLE_CACHE_SECONDS, View
from stonetown.engine.schema_cache import SchemaState, cyclic_gc_paused
from stonetown.engine.store_snapshot import OldReads, SnapshotCache
from stonetown.engine.types import CheckResult, Consistency, Permissionship, ReadResult
from stonetown.engine.write_batcher import WriteBatcher

__all__ = [
    "FRAMES_PER_LEVEL",
    "IDLE_CACHE_SECONDS",
    "MAX_DEPTH_LIMIT",
    "PROBE_TIMEOUT",
    "UNRESPONSIVE_AFTER",
    "PermissionSystem",
    "SchemaState",
    "View",
    "cyclic_gc_paused",
]

# a store probe that takes longer than this counts as a failure (the store is unreachable)
PROBE_TIMEOUT = 5.0
# A store that is only slow (its writer busy with a large import) is not failing: it counts as
# unreachable once its probes have gone unanswered for this long in a row.
UNRESPONSIVE_AFTER = 30.0
MAX_DEPTH_LIMIT = 1000
FRAMES_PER_LEVEL = 8


class PermissionSystem(LookupAnswers):
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
        self.held_cache = HeldCache()
        self._views = self._views_seen = 0
        self._quiet_since = time.monotonic()
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

    # ---- reads --------------------------------------------------------------------------

    async def read_schema(self) -> StoredSchema:
        """The schema in force (NotFound if none)."""
        stored = await self.store.read_schema()
        if stored is None:
            raise NotFound("no schema has been written yet")
        return stored

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
