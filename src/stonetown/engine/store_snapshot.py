"""Reads at an old revision, answered through the store instead of a copy of the index.

The head index holds one revision. A read at an older one (an `at_exact_snapshot` token that
is not the head) used to load a whole index at that revision: as much memory again as the
head index for every distinct old revision asked for, and tokens are just the encoded
revision, so anyone could ask for many. The stores are multi-version and read any revision
inside the garbage-collection window exactly, so a :class:`StoreSnapshot` offers the three
maps the engine reads (`objects`, `usersets`, `reverse`, as in :class:`RelationshipIndex`)
and fills each bucket on first use with one store read at its revision.

The engine never awaits, so such an evaluation runs on a worker thread
(:class:`OldReads`): a bucket it misses is read by the event loop (the store's own
coroutine) while the thread waits. Memory is bounded by the buckets one evaluation touches
(at most :data:`MAX_CACHED_BUCKETS` kept at once) times the evaluations running at once
(:data:`OLD_READ_WORKERS`); nothing outlives the request.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from stonetown.core.errors import Unavailable
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import Datastore, RelationshipFilter, SubjectFilter
from stonetown.engine.index import ObjectKey, RelMeta, ResourceKey, UsersetKey, meta_of

T = TypeVar("T")

# evaluations at old revisions running at once (more wait their turn)
OLD_READ_WORKERS = 2
# buckets one evaluation keeps; beyond it the cache starts again (re-reads, bounded memory)
MAX_CACHED_BUCKETS = 20_000
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
        "_forward",
        "_holders",
        "_extra_forward",
        "_extra_reverse",
    )

    def __init__(
        self,
        store: Datastore,
        revision: int,
        loop: asyncio.AbstractEventLoop,
        extra: Iterable[Relationship] = (),
    ) -> None:
        self.revision = revision
        self._store = store
        self._loop = loop
        self._loop_thread = threading.get_ident()  # built on the event loop's thread
        self._forward: dict[ResourceKey, _Forward] = {}
        self._holders: dict[UsersetKey, tuple[ResourceKey, ...]] = {}
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
        """This snapshot with contextual relationships added (for one request; called on
        the event loop's thread, like the constructor)."""
        return StoreSnapshot(self._store, self.revision, self._loop, extra)

    def _read(self, filter: RelationshipFilter) -> list[Relationship]:
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
        found = self._forward.get(rkey)
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
        self._remember(self._forward, rkey, found)
        return found

    def _reverse(self, ukey: UsersetKey) -> tuple[ResourceKey, ...] | None:
        found = self._holders.get(ukey)
        if found is None:
            subject = SubjectFilter(ukey[0], ukey[1], ukey[2])
            rkeys = {
                (rel.resource_type, rel.resource_id, rel.relation)
                for rel in self._read(RelationshipFilter(subject=subject))
            }
            rkeys.update(self._extra_reverse.get(ukey, ()))
            found = tuple(rkeys)
            self._remember(self._holders, ukey, found)
        return found or None

    def _remember(self, cache: dict, key: tuple[str, str, str], value: object) -> None:  # type: ignore[type-arg]
        if len(self._forward) + len(self._holders) >= MAX_CACHED_BUCKETS:
            self._forward.clear()
            self._holders.clear()
        cache[key] = value


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
