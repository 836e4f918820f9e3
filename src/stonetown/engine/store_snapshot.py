"""Reads at an old revision, answered through the store instead of a copy of the index.

The head index holds one revision. A read at an older one (an `at_exact_snapshot` token that
is not the head) used to load a whole index at that revision: as much memory again as the
head index for every distinct old revision asked for, and tokens are just the encoded
revision, so anyone could ask for many. The stores are multi-version and read any revision
inside the garbage-collection window exactly, so a :class:`StoreSnapshot` offers the three
maps the engine reads (`objects`, `usersets`, `reverse`, as in :class:`RelationshipIndex`)
and fills each bucket on first use with one store read at its revision.

The engine never awaits, so such an evaluation runs on a worker thread
(:class:`OldReads`): a bucket it misses is read by the store's thread reader when it has one
(SQLite: one read transaction for the whole evaluation, no event-loop round trip), otherwise
by the event loop (the store's own coroutine) while the thread waits. Memory is bounded by the
buckets kept per old revision (:class:`SnapshotCache`: at most :data:`MAX_CACHED_ROWS`
relationships and :data:`MAX_CACHED_BUCKETS` buckets; the engine keeps a few revisions'
caches, so repeated reads at one old token do not read the same buckets again) plus what
the evaluations running at once (:data:`OLD_READ_WORKERS`) hold.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import nullcontext
from typing import TypeVar

from stonetown.core.errors import Unavailable
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import Datastore, RelationshipFilter, SubjectFilter
from stonetown.engine.index import ObjectKey, RelMeta, ResourceKey, UsersetKey, meta_of

T = TypeVar("T")

# evaluations at old revisions running at once (more wait their turn)
OLD_READ_WORKERS = 2
# what one revision's cache keeps; beyond either it starts again (re-reads, bounded memory)
MAX_CACHED_BUCKETS = 20_000
MAX_CACHED_ROWS = 100_000
# how long one bucket read may take before the evaluation gives up
READ_TIMEOUT = 30.0

_Forward = tuple[dict[ObjectKey, RelMeta | None] | None, dict[UsersetKey, RelMeta | None] | None]


class _Map:
    """One of the index's maps, read-only, backed by a fetch function."""

    __slots__ = ("_fetch",)

    def __init__(self, fetch: Callable[[tuple[str, str, str]], object]) -> None:
        self._fetch = fetch

    def get(self, key: tuple[str, str, str], default: object = None) -> object:
        found = self._fetch(key)
        return default if found is None else found

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return self._fetch(key) is not None

    def __getitem__(self, key: tuple[str, str, str]) -> object:
        found = self._fetch(key)
        if found is None:
            raise KeyError(key)
        return found


class SnapshotCache:
    """The buckets read at one revision, shared by every request at it: a revision never
    changes (whether garbage collection has passed it is checked per request). Bounded by
    :data:`MAX_CACHED_ROWS` and :data:`MAX_CACHED_BUCKETS`: beyond, it starts again. Worker
    threads share it; a race between two of them only costs a re-read."""

    __slots__ = ("forward", "holders", "rows", "used_at")

    def __init__(self) -> None:
        self.forward: dict[ResourceKey, _Forward] = {}
        self.holders: dict[UsersetKey, tuple[ResourceKey, ...]] = {}
        self.rows = 0
        self.used_at = time.monotonic()  # when a request last read at this revision

    def _make_room(self, rows: int) -> None:
        if self.rows + rows > MAX_CACHED_ROWS or len(self.forward) + len(self.holders) >= MAX_CACHED_BUCKETS:
            self.forward, self.holders, self.rows = {}, {}, 0
        self.rows += rows

    def keep_bucket(self, rkey: ResourceKey, bucket: _Forward, rows: int) -> None:
        """Remember the forward bucket of `rkey` (`rows` relationships)."""
        self._make_room(rows)
        self.forward[rkey] = bucket

    def keep_holders(self, ukey: UsersetKey, holders: tuple[ResourceKey, ...]) -> None:
        """Remember the resource keys holding the subject `ukey`."""
        self._make_room(len(holders))
        self.holders[ukey] = holders


class StoreSnapshot:
    """The relationships live at `revision`, read from `store` bucket by bucket, plus the
    request's contextual relationships `extra`. Used from an :class:`OldReads` thread only."""

    __slots__ = (
        "revision",
        "objects",
        "usersets",
        "reverse",
        "_store",
        "_loop",
        "_loop_thread",
        "_direct",
        "_cache",
        "_extra_forward",
        "_extra_reverse",
    )

    def __init__(
        self,
        store: Datastore,
        revision: int,
        loop: asyncio.AbstractEventLoop,
        extra: Iterable[Relationship] = (),
        cache: SnapshotCache | None = None,
    ) -> None:
        self.revision = revision
        self._store = store
        self._loop = loop
        self._loop_thread = threading.get_ident()  # built on the event loop's thread
        self._direct: Callable[[RelationshipFilter], list[Relationship]] | None = None
        self._cache = cache if cache is not None else SnapshotCache()
        self._extra_forward: dict[ResourceKey, list[Relationship]] = {}
        self._extra_reverse: dict[UsersetKey, list[ResourceKey]] = {}
        for rel in extra:
            rkey = (rel.resource_type, rel.resource_id, rel.relation)
            self._extra_forward.setdefault(rkey, []).append(rel)
            ukey = (rel.subject_type, rel.subject_id, rel.subject_relation)
            self._extra_reverse.setdefault(ukey, []).append(rkey)
        self.objects = _Map(lambda key: self._bucket(key)[0])
        self.usersets = _Map(lambda key: self._bucket(key)[1])
        self.reverse = _Map(self._reverse)

    def with_extra(self, extra: Iterable[Relationship]) -> StoreSnapshot:
        """This snapshot with contextual relationships added (for one request, with a cache
        of its own; called on the event loop's thread, like the constructor)."""
        return StoreSnapshot(self._store, self.revision, self._loop, extra)

    def evaluate(self, work: Callable[[], T]) -> T:
        """Run `work()` (on the worker thread), reading through the store's thread reader
        when it has one."""
        reader = self._store.thread_reader(self.revision)
        with reader if reader is not None else nullcontext(None) as direct:
            self._direct = direct
            try:
                return work()
            finally:
                self._direct = None

    def _read(self, filter: RelationshipFilter) -> list[Relationship]:
        if self._direct is not None:
            return self._direct(filter)
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("a StoreSnapshot is read from an OldReads thread, never the event loop")
        future = asyncio.run_coroutine_threadsafe(self._store.read(filter, self.revision), self._loop)
        try:
            return future.result(READ_TIMEOUT)
        except FutureTimeout:
            future.cancel()
            raise Unavailable(
                f"reading revision {self.revision} from the store took over {READ_TIMEOUT:g} s; retry"
            ) from None

    def _bucket(self, rkey: ResourceKey) -> _Forward:
        found = self._cache.forward.get(rkey)
        if found is not None:
            return found
        rows = self._read(RelationshipFilter(resource_type=rkey[0], resource_id=rkey[1], relation=rkey[2]))
        rows += self._extra_forward.get(rkey, ())
        objects: dict[ObjectKey, RelMeta | None] = {}
        usersets: dict[UsersetKey, RelMeta | None] = {}
        for rel in rows:  # a contextual relationship comes last and replaces a stored one
            if rel.subject_relation:
                usersets[(rel.subject_type, rel.subject_id, rel.subject_relation)] = meta_of(rel)
            else:
                objects[(rel.subject_type, rel.subject_id)] = meta_of(rel)
        found = (objects or None, usersets or None)
        self._cache.keep_bucket(rkey, found, len(rows))
        return found

    def _reverse(self, ukey: UsersetKey) -> tuple[ResourceKey, ...] | None:
        found = self._cache.holders.get(ukey)
        if found is None:
            subject = SubjectFilter(ukey[0], ukey[1], ukey[2])
            rkeys = {
                (rel.resource_type, rel.resource_id, rel.relation)
                for rel in self._read(RelationshipFilter(subject=subject))
            }
            rkeys.update(self._extra_reverse.get(ukey, ()))
            found = tuple(rkeys)
            self._cache.keep_holders(ukey, found)
        return found or None


class OldReads:
    """The worker threads evaluations at old revisions run on (see the module docstring)."""

    def __init__(self, workers: int = OLD_READ_WORKERS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stonetown-old-read")

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` on a worker thread, with the caller's context (its request deadline)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, work)

    def close(self) -> None:
        """Stop the threads once the evaluations in progress are done."""
        self._pool.shutdown(wait=False, cancel_futures=True)
