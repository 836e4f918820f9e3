"""Random write histories for the engine's differential tests: an index keeping closures
(and subjects' sides) and a plain one, written alike, compared after each batch."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from stonetown.core.relationship import Relationship
from stonetown.engine.closure import Closures
from stonetown.engine.index import RelationshipIndex


def random_batches(
    rng: random.Random, make: Callable[[random.Random], Relationship], steps: int
) -> Iterator[tuple[int, RelationshipIndex, RelationshipIndex]]:
    """`steps` batches of 1-5 changes each, written to both indexes alike: a write of
    `make(rng)` (a touch: it may change a caveat) or, three times in ten, the delete of a live
    relationship; yields (step, kept, plain) after each batch. `kept` has closures attached
    but not prepared (the caller prepares them when it wants them built from data)."""
    kept = RelationshipIndex(1)
    kept.closure = Closures(kept)
    plain = RelationshipIndex(1)
    live: dict[tuple[object, ...], Relationship] = {}
    for step in range(steps):
        for _ in range(rng.randrange(1, 6)):
            if live and rng.random() < 0.3:
                rel = live.pop(rng.choice(list(live)))
                kept.remove(rel)
                plain.remove(rel)
            else:
                rel = make(rng)
                live[rel.key] = rel
                kept.add(rel)
                plain.add(rel)
        yield step, kept, plain
