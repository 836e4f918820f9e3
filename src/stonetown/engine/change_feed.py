"""The change feed: one reader of the store's change log per process, shared by every Watch.

Each Watch stream used to poll the change log on its own, ten times a second: hundreds of
idle streams cost a core. Now the system announces every revision its index reaches (after
its own writes, and after catching up with other writers: the poll, PostgreSQL's NOTIFY),
and while anyone watches, one reader task fetches the new revisions from the store once and
keeps the latest of them (about :data:`KEEP_CHANGES` changes). A watcher takes what follows
its position from there, filtered for itself, and otherwise waits on an event: an idle
watcher costs nothing. A watcher further behind than the kept revisions (a slow consumer, an
old start token) reads the store a few revisions at a time until it reaches them; watchers
behind at the same position share the read (a hundred slow consumers of the same large
commits used to hold a copy each, of up to a thousand revisions).

The number of watchers is bounded (:class:`ResourceExhausted` names the bound).
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from functools import partial
from operator import attrgetter

from stonetown.core.errors import FailedPrecondition, ResourceExhausted
from stonetown.engine.datastore import Datastore, RevisionChanges

_REVISION = attrgetter("revision")

# Default bound on the Watch streams one process serves at once.
MAX_WATCHERS = 1000
# Changes kept for watchers slightly behind (at least the latest revision is always kept).
KEEP_CHANGES = 10_000
# Revisions per read of the change log.
READ_BATCH = 1000
# Pause after a failed read before the reader tries again.
RETRY_SECONDS = 0.1
# Revisions per read of a watcher behind the kept ones, and how many such reads are shared:
# watchers that fall behind together (slow consumers of the same large commits) read the
# store once, and each holds at most one read while its consumer catches up.
BEHIND_READ_BATCH = 16
BEHIND_READS_SHARED = 4
# Such reads running at once: the requests and the index's own advance keep the store's other
# connections.
BEHIND_READS_RUNNING = 2


class ChangeFeed:
    """The revisions after :attr:`base` up to :attr:`revision`, read once for all watchers."""

    def __init__(self, store: Datastore, max_watchers: int = MAX_WATCHERS) -> None:
        if max_watchers < 1:
            raise ValueError(f"max_watchers must be at least 1, not {max_watchers}")
        self.store = store
        self.max_watchers = max_watchers
        self.watchers = 0
        self.base = 0  # every revision after base up to revision is in _batches
        self.revision = 0
        self._batches: deque[RevisionChanges] = deque()
        self._kept = 0  # changes in _batches
        self._target = 0  # the newest revision announced
        self._wanted = asyncio.Event()  # set when the reader has something to do
        self._arrived = asyncio.Event()  # set (and replaced) when revisions arrive
        self._reader: asyncio.Task[None] | None = None
        self._behind: OrderedDict[int, asyncio.Future[list[RevisionChanges]]] = OrderedDict()
        self._behind_slots = asyncio.Semaphore(BEHIND_READS_RUNNING)

    def start(self, revision: int) -> None:
        """Start the reader task, following on from `revision` (the index's)."""
        self.base = self.revision = self._target = revision
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        """Stop the reader task."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    def announce(self, revision: int) -> None:
        """The index reached `revision`: the store holds every revision up to it."""
        if revision > self._target:
            self._target = revision
            if self.watchers:
                self._wanted.set()

    async def _read(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            while self.watchers and self.revision < self._target:
                if not await self._read_once():
                    break

    async def _read_once(self) -> bool:
        """One read of the store after :attr:`revision`, kept; False when it found nothing.
        Its own coroutine: what it read is not held by :meth:`_read`'s frame while the feed
        waits for watchers (it kept the last read, up to a 5,000-change commit, for good)."""
        start = self.revision
        try:
            batches = await self.store.changes(start, limit=READ_BATCH)
        except FailedPrecondition:
            # The log no longer reaches back that far: the watchers behind fail reading it
            # themselves; the feed follows on from the head.
            self._jump(self._target)
            return True
        except Exception:  # noqa: BLE001 - a failed read is retried (the store is down)
            await asyncio.sleep(RETRY_SECONDS)
            return True
        if self.revision != start:
            return True  # the feed jumped meanwhile: these revisions no longer follow on
        if not batches:
            return False
        self._append(batches)
        return True

    def _append(self, batches: Sequence[RevisionChanges]) -> None:
        for batch in batches:
            self._batches.append(batch)
            self._kept += len(batch.changes)
        self.revision = batches[-1].revision
        while len(self._batches) > 1 and self._kept > KEEP_CHANGES:
            dropped = self._batches.popleft()
            self._kept -= len(dropped.changes)
            self.base = dropped.revision
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def _read_behind(self, cursor: int) -> list[RevisionChanges]:
        """The revisions after `cursor` (behind :attr:`base`) read from the store, a few at a
        time, one read shared by the watchers at the same position (the latest few reads are
        kept for them; the revisions read are committed and never change)."""
        reading = self._behind.get(cursor)
        if reading is None:
            reading = asyncio.ensure_future(self._read_store(cursor))
            reading.add_done_callback(partial(self._read_done, cursor))
            self._behind[cursor] = reading
            while len(self._behind) > BEHIND_READS_SHARED:
                self._behind.popitem(last=False)
        # shielded: a watcher that goes away does not cancel the read the others wait for
        return await asyncio.shield(reading)

    async def _read_store(self, cursor: int) -> list[RevisionChanges]:
        async with self._behind_slots:  # lagging streams never take every store connection
            return await self.store.changes(cursor, limit=BEHIND_READ_BATCH)

    def _read_done(self, cursor: int, reading: asyncio.Future[list[RevisionChanges]]) -> None:
        if reading.cancelled() or reading.exception() is not None:
            if self._behind.get(cursor) is reading:
                del self._behind[cursor]  # a failed read is tried again by the next watcher

    def _jump(self, revision: int) -> None:
        """Forget the kept revisions and follow on from `revision`."""
        self._batches.clear()
        self._kept = 0
        self.base = self.revision = max(revision, self.revision)
        self._arrived.set()
        self._arrived = asyncio.Event()

    def _next_kept(self, cursor: int) -> RevisionChanges | None:
        """The first kept revision after `cursor` (which is at least :attr:`base`), or None."""
        at = bisect_right(self._batches, cursor, key=_REVISION)
        return self._batches[at] if at < len(self._batches) else None

    async def watch(
        self, after_revision: int, resource_types: Sequence[str] = (), *, every_revision: bool = False
    ) -> AsyncIterator[RevisionChanges]:
        """Every change after `after_revision`, as it commits, optionally only for some types
        (revisions without a change of those types are skipped unless `every_revision`: then
        every committed revision comes, to report a schema write or a checkpoint)."""
        if self.watchers >= self.max_watchers:
            raise ResourceExhausted(
                f"watch: {self.watchers} streams are open in this process, the bound "
                f"(--max-watch-streams {self.max_watchers}); close one or retry later"
            )
        if not self.watchers:
            self._jump(self._target)  # the reader idled without watchers: follow on from now
        self.watchers += 1
        if self.revision < self._target:
            self._wanted.set()
        wanted = set(resource_types)
        cursor = after_revision
        ready: list[RevisionChanges] = []
        try:
            while True:
                if cursor >= self.revision:
                    await self._arrived.wait()
                    continue
                if cursor >= self.base:
                    # one kept revision at a time: the later ones stay the feed's to keep or drop
                    kept = self._next_kept(cursor)
                    pending = deque(() if kept is None else (kept,))
                    del kept
                else:
                    pending = deque(await self._read_behind(cursor))
                if not pending:
                    await self._arrived.wait()
                while pending:
                    batch = pending.popleft()
                    cursor = max(cursor, batch.revision)
                    changes = batch.changes
                    if wanted:
                        changes = tuple(c for c in changes if c.relationship.resource_type in wanted)
                    if changes or every_revision:
                        revision, timestamp, schema = batch.revision, batch.timestamp, batch.schema_changed
                        ready.append(RevisionChanges(revision, timestamp, changes, schema))
                    del batch, changes
                    if ready:
                        # Nothing of it stays in this frame while its consumer holds it: a slow
                        # one (a Watch stream whose client does not read) otherwise kept every
                        # revision it had been handed, and 100 such streams a 5,000-change
                        # commit each, for as long as they stayed open (issue #18's mix).
                        yield ready.pop()
        finally:
            self.watchers -= 1
            if not self.watchers:
                self._jump(self.revision)  # nobody left to read the kept changes: free them
                self._behind.clear()
