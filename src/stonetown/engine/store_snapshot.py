"""Reads at an old revision, answered through the store instead of a copy of the index.

The head index holds one revision. A read at an older one (an `at_exact_snapshot` token that
is not the head) used to load a whole index at that revision: as much memory again as the
head index for every distinct old revision asked for, and tokens are just the encoded
revision, so anyone could ask for many. The stores are multi-version and read any revision
inside the garbage-collection window exactly, so a :class:`StoreSnapshot` offers the three
maps the engine reads (`objects`, `usersets`, `reverse`, as in :class:`RelationshipIndex`)
and fills each bucket on first use with store reads at its revision: the subject sets of a
bucket in one read, its plain subjects one by one as Check probes them (a membership check in
a large group reads one row), all of them at once only when a walk iterates them.

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
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import nullcontext
from typing import TypeVar

from stonetown.core.errors import Unavailable
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import Datastore, FilterReader, RelationshipFilter, SubjectFilter
from stonetown.engine.index import ObjectKey, RelMeta, ResourceKey, UsersetKey, meta_of

T = TypeVar("T")

# evaluations at old revisions running at once (more wait their turn)
OLD_READ_WORKERS = 2
# what one revision's cache keeps; beyond either it starts again (re-reads, bounded memory)
MAX_CACHED_BUCKETS = 20_000
MAX_CACHED_ROWS = 100_000
# how long one bucket read may take before the evaluation gives up
READ_TIMEOUT = 30.0

# a subject not in a bucket; a probe not made yet
_ABSENT = object()
_UNREAD = object()


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
    """What was read at one revision, shared by every request at it: a revision never
    changes (whether garbage collection has passed it is checked per request). Bounded by
    :data:`MAX_CACHED_ROWS` and :data:`MAX_CACHED_BUCKETS`: beyond, it starts again. Worker
    threads share it; a race between two of them only costs a re-read.

    Per bucket (resource, relation): its subject sets (read whole: Check walks them all), its
    plain subjects when something iterated them, whether it has plain subjects at all, and
    the plain subjects probed one by one (what Check asks of a large group)."""

    __slots__ = ("sets", "plain", "has_plain", "probed", "holders", "rows", "used_at")

    def __init__(self) -> None:
        self.sets: dict[ResourceKey, dict[UsersetKey, RelMeta | None] | None] = {}
        self.plain: dict[ResourceKey, dict[ObjectKey, RelMeta | None]] = {}
        self.has_plain: dict[ResourceKey, bool] = {}
        self.probed: dict[tuple[ResourceKey, ObjectKey], RelMeta | None | object] = {}
        self.holders: dict[UsersetKey, tuple[ResourceKey, ...]] = {}
        self.rows = 0
        self.used_at = time.monotonic()  # when a request last read at this revision

    def entries(self) -> int:
        """How many buckets, bucket facts and probes are kept."""
        return len(self.sets) + len(self.plain) + len(self.has_plain) + len(self.probed) + len(self.holders)

    def make_room(self, rows: int) -> None:
        """Account for `rows` more relationships kept; start again when over a bound."""
        if self.rows + rows > MAX_CACHED_ROWS or self.entries() >= MAX_CACHED_BUCKETS:
            self.sets, self.plain, self.has_plain, self.probed, self.holders = {}, {}, {}, {}, {}
            self.rows = 0
        self.rows += rows

    def keep_holders(self, ukey: UsersetKey, holders: tuple[ResourceKey, ...]) -> None:
        """Remember the resource keys holding the subject `ukey`."""
        self.make_room(len(holders))
        self.holders[ukey] = holders


class _PlainSubjects(Mapping[ObjectKey, "RelMeta | None"]):
    """The plain subjects of one bucket at a snapshot's revision (never empty), as the
    index's bucket dict offers them. A lookup of one subject (what Check asks) reads that
    relationship alone; iterating reads the whole bucket once. So a membership check in a
    group of a million members at an old revision reads one row, not a million."""

    __slots__ = ("_snapshot", "_rkey")

    def __init__(self, snapshot: StoreSnapshot, rkey: ResourceKey) -> None:
        self._snapshot = snapshot
        self._rkey = rkey

    def get(self, skey: ObjectKey, default: object = None) -> object:  # type: ignore[override]
        found = self._snapshot._probe(self._rkey, skey)
        return default if found is _ABSENT else found

    def __contains__(self, skey: object) -> bool:
        return self._snapshot._probe(self._rkey, skey) is not _ABSENT  # type: ignore[arg-type]

    def __getitem__(self, skey: ObjectKey) -> RelMeta | None:
        found = self._snapshot._probe(self._rkey, skey)
        if found is _ABSENT:
            raise KeyError(skey)
        return found  # type: ignore[return-value]

    def _all(self) -> dict[ObjectKey, RelMeta | None]:
        return self._snapshot._plain_all(self._rkey)

    def __iter__(self) -> Iterator[ObjectKey]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __bool__(self) -> bool:
        return True

    def keys(self) -> KeysView[ObjectKey]:  # type: ignore[override]
        return self._all().keys()

    def items(self) -> ItemsView[ObjectKey, RelMeta | None]:  # type: ignore[override]
        return self._all().items()

    def values(self) -> ValuesView[RelMeta | None]:  # type: ignore[override]
        return self._all().values()


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
        self._direct: FilterReader | None = None
        self._cache = cache if cache is not None else SnapshotCache()
        self._extra_forward: dict[ResourceKey, list[Relationship]] = {}
        self._extra_reverse: dict[UsersetKey, list[ResourceKey]] = {}
        for rel in extra:
            rkey = (rel.resource_type, rel.resource_id, rel.relation)
            self._extra_forward.setdefault(rkey, []).append(rel)
            ukey = (rel.subject_type, rel.subject_id, rel.subject_relation)
            self._extra_reverse.setdefault(ukey, []).append(rkey)
        self.objects = _Map(self._plain)
        self.usersets = _Map(self._sets)
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

    def _read(self, filter: RelationshipFilter, limit: int | None = None) -> list[Relationship]:
        if self._direct is not None:
            return self._direct(filter, limit)
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("a StoreSnapshot is read from an OldReads thread, never the event loop")
        future = asyncio.run_coroutine_threadsafe(
            self._store.read(filter, self.revision, limit=limit), self._loop
        )
        try:
            return future.result(READ_TIMEOUT)
        except FutureTimeout:
            future.cancel()
            raise Unavailable(
                f"reading revision {self.revision} from the store took over {READ_TIMEOUT:g} s; retry"
            ) from None

    def _bucket_filter(self, rkey: ResourceKey, subject_is_set: bool) -> RelationshipFilter:
        return RelationshipFilter(
            resource_type=rkey[0], resource_id=rkey[1], relation=rkey[2], subject_is_set=subject_is_set
        )

    def _sets(self, rkey: ResourceKey) -> dict[UsersetKey, RelMeta | None] | None:
        """The subject sets of the bucket `rkey` (None when it has none)."""
        cache = self._cache
        if rkey in cache.sets:
            return cache.sets[rkey]
        rows = self._read(self._bucket_filter(rkey, True))
        rows += [rel for rel in self._extra_forward.get(rkey, ()) if rel.subject_relation]
        found: dict[UsersetKey, RelMeta | None] = {}
        for rel in rows:  # a contextual relationship comes last and replaces a stored one
            found[(rel.subject_type, rel.subject_id, rel.subject_relation)] = meta_of(rel)
        cache.make_room(len(rows))
        cache.sets[rkey] = found or None
        return found or None

    def _plain(self, rkey: ResourceKey) -> _PlainSubjects | None:
        """The plain subjects of the bucket `rkey`, read as they are asked for (None when it
        has none)."""
        cache = self._cache
        has = cache.has_plain.get(rkey)
        if has is None:
            if rkey in cache.plain:
                has = bool(cache.plain[rkey])
            else:
                has = any(not rel.subject_relation for rel in self._extra_forward.get(rkey, ()))
                has = has or bool(self._read(self._bucket_filter(rkey, False), limit=1))
            cache.make_room(1)
            cache.has_plain[rkey] = has
        return _PlainSubjects(self, rkey) if has else None

    def _probe(self, rkey: ResourceKey, skey: ObjectKey) -> RelMeta | None | object:
        """The metadata of the plain subject `skey` in the bucket `rkey`; _ABSENT when not there."""
        cache = self._cache
        every = cache.plain.get(rkey)
        if every is not None:
            return every.get(skey, _ABSENT)
        found = cache.probed.get((rkey, skey), _UNREAD)
        if found is _UNREAD:
            subject = SubjectFilter(skey[0], skey[1], "")
            rows = self._read(RelationshipFilter(resource_type=rkey[0], resource_id=rkey[1], relation=rkey[2],
                                                 subject=subject))  # fmt: skip
            rows += [rel for rel in self._extra_forward.get(rkey, ()) if (rel.subject_type, rel.subject_id,
                     rel.subject_relation) == (*skey, "")]  # fmt: skip
            found = meta_of(rows[-1]) if rows else _ABSENT
            cache.make_room(1)
            cache.probed[(rkey, skey)] = found
        return found

    def _plain_all(self, rkey: ResourceKey) -> dict[ObjectKey, RelMeta | None]:
        """Every plain subject of the bucket `rkey`, read once."""
        cache = self._cache
        every = cache.plain.get(rkey)
        if every is None:
            rows = self._read(self._bucket_filter(rkey, False))
            rows += [rel for rel in self._extra_forward.get(rkey, ()) if not rel.subject_relation]
            every = {(rel.subject_type, rel.subject_id): meta_of(rel) for rel in rows}
            cache.make_room(len(rows))
            cache.plain[rkey] = every
        return every

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
