"""The index update of a bulk import, done over whole columns where it can.

After an import of 500,000 relationships commits, the event loop's thread puts them into
the in-memory index; this is the largest part of an import's Python time, and it runs while
the store's thread writes the next import. It goes in chunks (:func:`add_to_index_yielding`)
so health checks and other calls are answered in between (seconds for a large import on a
busy machine); the caller keeps readers off the half-updated index meanwhile.
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter

from stonetown.core.relationship import Relationship
from stonetown.engine.index import RelationshipIndex

_FIELDS = ("resource_type", "resource_id", "relation", "subject_type", "subject_id", "subject_relation")
_GETTERS = tuple(attrgetter(name) for name in _FIELDS)
_META = attrgetter("caveat", "expiration")
_NO_META = (None, None)
# relationships added between two yields to the event loop (a few ms of work)
CHUNK = 2000


def add_to_index(index: RelationshipIndex, relationships: Sequence[Relationship]) -> None:
    """Insert `relationships` into `index`, as :meth:`RelationshipIndex.add` one by one would.

    Synchronous (nothing else sees the index half-updated). The cyclic garbage collector is
    paused meanwhile, as for the index load: the new containers would otherwise trigger
    collections of the whole heap that find nothing (measured at 1M relationships: a dozen
    full collections, ~2 s). Without caveats and expirations (the usual case) the fields are
    read column by column in C, with one Python call per relationship.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        if any(map(_NO_META.__ne__, map(_META, relationships))):
            add = index.add
            for rel in relationships:
                add(rel)
        else:
            columns = [map(getter, relationships) for getter in _GETTERS]
            deque(map(index.add_fields, *columns, repeat(None)), maxlen=0)
    finally:
        if paused:
            gc.enable()


async def add_to_index_yielding(index: RelationshipIndex, relationships: Sequence[Relationship]) -> None:
    """:func:`add_to_index` in chunks of :data:`CHUNK`, yielding to the event loop between
    them. The index is half-updated in between: the caller keeps readers off it until this
    returns. The cyclic collector stays paused throughout (see :func:`add_to_index`)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        for start in range(0, len(relationships), CHUNK):
            add_to_index(index, relationships[start : start + CHUNK])
            await asyncio.sleep(0)
    finally:
        if paused:
            gc.enable()
