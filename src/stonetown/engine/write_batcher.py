"""Group commit: concurrent relationship writes share one store transaction.

Callers submit a write (or a delete-by-filter) and wait for its own outcome. One drain task
takes every write waiting at that moment and hands them to :meth:`Datastore.write_batch` as
one batch (one transaction, one fsync on SQLite); while that commit is in flight, new writes
queue up for the next batch, so batches grow with the load and a lone write is not delayed.
Each write keeps its own revision and its own verdict: a failed precondition or validation
error is raised to that caller only and changes nothing. A caller hears back only after the
batch committed and `on_committed` ran (the engine advances its index there), so an
acknowledged write is durable and visible to a Check carrying its token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from stonetown.core.errors import Unavailable
from stonetown.engine.datastore import BatchItem, BatchResult, Datastore, DeleteResult, WriteValidator

# Called after each committed batch with its items and their results, before any caller
# is answered.
CommitHook = Callable[[Sequence[BatchItem], Sequence[BatchResult]], Awaitable[None]]


class WriteBatcher:
    """Queues concurrent writes and commits them in batches through one store."""

    def __init__(
        self,
        store: Datastore,
        validate: WriteValidator | None,
        on_committed: CommitHook,
        *,
        max_items: int = 256,
        max_updates: int = 10_000,
    ) -> None:
        """`max_items` / `max_updates` bound one batch (its transaction's length)."""
        self.store = store
        self.validate = validate
        self.on_committed = on_committed
        self.max_items = max_items
        self.max_updates = max_updates
        self._pending: deque[tuple[BatchItem, asyncio.Future[BatchResult]]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: BatchItem) -> int | DeleteResult:
        """Queue `item`, wait for the batch holding it to commit; its revision or DeleteResult.

        Raises the item's own error. A cancelled caller's write may still be committed (as
        with any write whose reply is lost).
        """
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    async def wait_idle(self) -> None:
        """Return once every submitted write has been committed (or failed)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.wait({self._drainer})  # its outcome went to the writers, not here

    def _next_batch(self) -> list[tuple[BatchItem, asyncio.Future[BatchResult]]]:
        batch: list[tuple[BatchItem, asyncio.Future[BatchResult]]] = []
        updates = 0
        while self._pending and len(batch) < self.max_items:
            item = self._pending[0][0]
            size = len(getattr(item, "updates", ())) + len(item.preconditions) + 1
            if batch and updates + size > self.max_updates:
                break
            batch.append(self._pending.popleft())
            updates += size
        return batch

    async def _drain(self) -> None:
        while self._pending:
            batch = self._next_batch()
            items = [item for item, _ in batch]
            try:
                results = await self.store.write_batch(items, self.validate)
            except Exception as exc:  # noqa: BLE001 - the commit failed: every caller hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                # Cancelled (shutdown): the batch may or may not have committed.
                for _, future in [*batch, *self._pending]:
                    if not future.done():
                        future.set_exception(
                            Unavailable("the server stopped; the write's outcome is unknown")
                        )
                self._pending.clear()
                raise
            # The writes are committed whatever happens next: if the hook fails, a reader that
            # needs them catches up from the store's change log (token wait, background poll).
            with contextlib.suppress(Exception):
                await self.on_committed(items, results)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
