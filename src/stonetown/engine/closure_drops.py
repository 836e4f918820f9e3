"""What a write of a subject set drops of the state the closures keep per plain subject
(closure.Closures.touched): the subjects whose reach in the set's nested set may hold the set,
found from the index, and their entries taken out of what is kept, one by one up to a bound."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from stonetown.engine.closure_graph import Maps

# a write of a subject set drops the kept state of the subjects below it one by one up to
# this many subjects (or sets below it); beyond, that of every subject reading the set
MAX_DROPPED = 1024

PlainSubject = tuple[str, str, str]  # (type, id, "")
_V = TypeVar("_V")


def members_below(
    index: Maps, rtype: str, relation: str, node: str, bound: int
) -> tuple[set[PlainSubject], set[str]] | None:
    """The plain subjects stored on the set `rtype:node#relation` (a nested set) or on a set
    of it with a path to it (edges with metadata or not), and the types of the wildcards
    stored there: those whose reach may hold `node`; None beyond `bound` subjects or sets."""
    usersets, objects = index.usersets, index.objects
    seen, todo = {node}, [node]
    subjects: set[PlainSubject] = set()
    wild_types: set[str] = set()
    while todo:
        current = todo.pop()
        bucket = objects.get((rtype, current, relation))
        if bucket:
            if len(subjects) + len(bucket) > bound:
                return None
            for st, sid in bucket:
                if sid == "*":
                    wild_types.add(st)
                else:
                    subjects.add((st, sid, ""))
        for st, source, srel in usersets.get((rtype, current, relation), ()):
            if srel == relation and st == rtype and source not in seen:
                if len(seen) >= bound:
                    return None
                seen.add(source)
                todo.append(source)
    return subjects, wild_types


def drop(kept: dict[PlainSubject, _V], subjects: Collection[PlainSubject], types: Collection[str]) -> None:
    """Forget from `kept` (plain subject -> what is kept for it) `subjects` and every subject
    of one of `types`."""
    if not kept:
        return
    if types:
        for subject in [subject for subject in kept if subject[0] in types]:
            del kept[subject]
    if len(subjects) <= len(kept):
        for subject in subjects:
            kept.pop(subject, None)
    else:
        for subject in [subject for subject in kept if subject in subjects]:
            del kept[subject]
