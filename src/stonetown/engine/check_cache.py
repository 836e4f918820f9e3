"""Answers of whole checks at the head revision, reused until the revision moves on.

Keys include the revision, so nothing is ever invalidated: when the index advances, the
entries of the old revision are simply dropped. Only answers that cannot change while the
revision stays put are kept: no caveat (it depends on the request's context) and no
expiration (it depends on the clock) took part in them.
"""

from __future__ import annotations

from stonetown.engine.check import Subject
from stonetown.engine.conditions import Result

CheckKey = tuple[str, str, str, Subject]


class CheckCache:
    """A bounded map (type, id, permission, subject) → result for one revision."""

    __slots__ = ("capacity", "revision", "entries", "hits", "misses")

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self.revision = -1
        self.entries: dict[CheckKey, Result] = {}
        self.hits = 0
        self.misses = 0

    def get(self, revision: int, key: CheckKey) -> Result | None:
        """The cached answer for `key` at `revision`, or None."""
        if revision != self.revision:
            self.entries.clear()
            self.revision = revision
        found = self.entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, revision: int, key: CheckKey, result: Result) -> None:
        """Remember an answer computed at `revision` (ignored if the revision moved on)."""
        if revision != self.revision:
            return
        if len(self.entries) >= self.capacity:
            self.entries.clear()  # cheaper than LRU bookkeeping on every hit
        self.entries[key] = result
