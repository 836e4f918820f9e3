"""The views PermissionSystem's requests evaluate against: the head index once it meets the
consistency asked for, or an old revision read through the store (its reads cached for the
latest few revisions), contextual relationships overlaid; and the release of idle caches.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from stonetown.core.errors import InvalidArgument, NotFound, Unavailable
from stonetown.core.relationship import Relationship
from stonetown.engine.admission import require_admitted
from stonetown.engine.check_cache import CheckCache
from stonetown.engine.index import RelationshipIndex, overlay
from stonetown.engine.lookup_subjects import HeldCache
from stonetown.engine.schema_cache import SchemaState
from stonetown.engine.store_snapshot import OldReads, SnapshotCache, StoreSnapshot
from stonetown.engine.types import Consistency, ConsistencyMode
from stonetown.engine.writes import Writes

T = TypeVar("T")

# Old revisions whose store reads are cached (the latest few asked for).
_OLD_READ_CACHES = 4
# Both caches give their memory back once no request has used an entry for this long (see
# release_idle_caches): after a burst of old-revision reads or schema writes, memory returns.
IDLE_CACHE_SECONDS = 30.0


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


class _ContinueOnSnapshot(Exception):
    """A paused walk over the head must go on at its own revision, read through the store."""

    def __init__(self, view: View) -> None:
        super().__init__("continue on a snapshot")
        self.view = view


class RevisionViews(Writes):
    """Consistency to view, old-revision snapshots and their caches (a layer of
    PermissionSystem, see engine/system.py)."""

    # set by PermissionSystem.__init__
    token_wait: float
    _old_reads: OldReads | None
    _old_caches: OrderedDict[int, SnapshotCache]
    check_cache: CheckCache
    held_cache: HeldCache
    _views: int  # views asked for (requests served)
    _views_seen: int  # ... at the last release of idle caches
    _quiet_since: float  # when _views last changed, as seen by that release

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
            self._forget(text)
        return len(stale) + len(unused) + self._release_request_caches(idle)

    def _release_request_caches(self, idle: float) -> int:
        """Once no request has asked for a view for `idle` seconds: empty the caches requests
        fill at the head revision (checks' answers, paged lookups' walks, the reaches of
        nested sets), which otherwise stay as long as the revision does (a quiet server kept
        them for good: MBs, and the allocator's pages they pin), and compact the index's maps
        (RelationshipIndex.compact); how many caches were not empty and maps compacted."""
        now = time.monotonic()
        if self._views != self._views_seen:
            self._views_seen, self._quiet_since = self._views, now
            return 0
        if now - self._quiet_since < idle:
            return 0
        released = 0
        if self.check_cache.entries:
            self.check_cache.entries.clear()
            released += 1
        if self.held_cache.entries:
            self.held_cache.clear()
            released += 1
        closures = self.index.closure
        released += closures.forget_reaches() if closures is not None else 0
        return released + self.index.compact()

    # ---- revisions ----------------------------------------------------------------------

    async def _view(self, consistency: Consistency) -> View:
        self._views += 1  # not idle (see _release_request_caches)
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
        """For a paused walk over `view`: does its index still hold `view`'s revision, and only
        it? (An import being added to the index changes it before its revision moves.)"""
        if not view.live:
            return lambda: True  # a snapshot never advances
        head, revision = self.index, view.revision
        return lambda: head.revision == revision and self._indexing is None

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
