"""A pool of read connections that serves urgent callers first.

The engine reads the change log while it advances its index, and every writer (and every
read that must see the newest revision) waits for that advance. Behind a first-come queue,
that read could wait for every request read queued before it (under load, many seconds
for a few reader connections): an urgent caller takes the next free connection instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

C = TypeVar("C")


class ReaderPool(Generic[C]):
    """Connections handed out one caller at a time: urgent callers first, then in order."""

    def __init__(self, connections: list[C]) -> None:
        self._free: list[C] = list(connections)
        self._waiting: deque[asyncio.Future[C]] = deque()
        self._urgent: deque[asyncio.Future[C]] = deque()

    async def get(self, urgent: bool = False) -> C:
        """A free connection, waiting for one (urgent callers are served before the others)."""
        if self._free:  # put() hands a connection to a waiter first: none waits while one is free
            return self._free.pop()
        waiter: asyncio.Future[C] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._waiting).append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.put(waiter.result())  # handed over just as the caller gave up
            raise

    def take_free(self) -> list[C]:
        """Every connection free now, taken out of the pool (give each back with :meth:`put`)."""
        free, self._free = self._free, []
        return free

    def put(self, connection: C) -> None:
        """Give `connection` back: to the first caller still waiting, urgent ones first."""
        for queue in (self._urgent, self._waiting):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(connection)
                    return
        self._free.append(connection)
