"""The in-memory relationship index the engine answers from.

It holds every live relationship of one revision, keyed both ways:
- forward, by (resource type, resource id, relation): plain subjects `(type, id)` (wildcards
  have id `*`) and subject sets `(type, id, relation)`, each mapped to its metadata (None
  for a relationship with neither caveat nor expiration, which is nearly all of them);
- reverse, by subject `(type, id, relation)`: the (resource type, resource id, relation)
  keys holding it, for LookupResources.

The head index of a server is advanced from the store's change log; older snapshots are
built fresh from a store read. Evaluation never awaits, so a computation sees one revision.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import Change, ChangeOp

ResourceKey = tuple[str, str, str]
ObjectKey = tuple[str, str]
UsersetKey = tuple[str, str, str]

_intern = sys.intern


@dataclass(frozen=True, slots=True)
class RelMeta:
    """Caveat and expiration of a relationship (absent for plain ones)."""

    caveat: ContextualizedCaveat | None
    expires_at: float | None  # POSIX seconds


def meta_of(rel: Relationship) -> RelMeta | None:
    """The metadata to store for `rel`, or None when it has neither caveat nor expiration."""
    if rel.caveat is None and rel.expiration is None:
        return None
    expires = rel.expiration.timestamp() if rel.expiration is not None else None
    return RelMeta(rel.caveat, expires)


class RelationshipIndex:
    """Forward and reverse maps of the live relationships at :attr:`revision`."""

    __slots__ = ("objects", "usersets", "reverse", "revision", "count")

    def __init__(self, revision: int = 0) -> None:
        self.objects: dict[ResourceKey, dict[ObjectKey, RelMeta | None]] = {}
        self.usersets: dict[ResourceKey, dict[UsersetKey, RelMeta | None]] = {}
        self.reverse: dict[UsersetKey, set[ResourceKey]] = {}
        self.revision = revision
        self.count = 0

    @classmethod
    def build(cls, relationships: Iterable[Relationship], revision: int) -> RelationshipIndex:
        """An index holding exactly `relationships`, labelled `revision`."""
        index = cls(revision)
        for rel in relationships:
            index.add(rel)
        return index

    def add(self, rel: Relationship) -> None:
        """Insert or replace one relationship."""
        # Interning shares one string per distinct id however many relationships name it.
        rkey = (_intern(rel.resource_type), _intern(rel.resource_id), _intern(rel.relation))
        meta = meta_of(rel)
        stype = _intern(rel.subject_type)
        sid = _intern(rel.subject_id)
        if rel.subject_relation:
            ukey = (stype, sid, _intern(rel.subject_relation))
            bucket = self.usersets.get(rkey)
            if bucket is None:
                bucket = self.usersets[rkey] = {}
            if ukey not in bucket:
                self.count += 1
            bucket[ukey] = meta
        else:
            okey = (stype, sid)
            obucket = self.objects.get(rkey)
            if obucket is None:
                obucket = self.objects[rkey] = {}
            if okey not in obucket:
                self.count += 1
            obucket[okey] = meta
            ukey = (stype, sid, "")
        holders = self.reverse.get(ukey)
        if holders is None:
            holders = self.reverse[ukey] = set()
        holders.add(rkey)

    def remove(self, rel: Relationship) -> None:
        """Delete one relationship if present."""
        rkey = (rel.resource_type, rel.resource_id, rel.relation)
        if rel.subject_relation:
            ukey = (rel.subject_type, rel.subject_id, rel.subject_relation)
            bucket = self.usersets.get(rkey)
            if bucket is None or ukey not in bucket:
                return
            del bucket[ukey]
            if not bucket:
                del self.usersets[rkey]
        else:
            okey = (rel.subject_type, rel.subject_id)
            obucket = self.objects.get(rkey)
            if obucket is None or okey not in obucket:
                return
            del obucket[okey]
            if not obucket:
                del self.objects[rkey]
            ukey = (rel.subject_type, rel.subject_id, "")
        self.count -= 1
        holders = self.reverse.get(ukey)
        if holders is not None:
            holders.discard(rkey)
            if not holders:
                del self.reverse[ukey]

    def apply(self, changes: Iterable[Change], revision: int) -> None:
        """Advance to `revision` by applying its changes in order."""
        for change in changes:
            if change.op is ChangeOp.DELETE:
                self.remove(change.relationship)
            else:
                self.add(change.relationship)
        self.revision = revision

    def relationships(self) -> list[Relationship]:
        """Every relationship held, rebuilt (for tests and snapshots; not a hot path)."""
        out: list[Relationship] = []
        for (rtype, rid, rel), bucket in self.objects.items():
            for (stype, sid), meta in bucket.items():
                out.append(_rebuild(rtype, rid, rel, stype, sid, "", meta))
        for (rtype, rid, rel), ubucket in self.usersets.items():
            for (stype, sid, srel), meta in ubucket.items():
                out.append(_rebuild(rtype, rid, rel, stype, sid, srel, meta))
        return out

    def resource_ids(self, resource_type: str) -> set[str]:
        """Ids of every object of `resource_type` that holds at least one relationship."""
        ids = {rid for (rtype, rid, _rel) in self.objects if rtype == resource_type}
        ids.update(rid for (rtype, rid, _rel) in self.usersets if rtype == resource_type)
        return ids


def _rebuild(
    rtype: str, rid: str, rel: str, stype: str, sid: str, srel: str, meta: RelMeta | None
) -> Relationship:
    if meta is None:
        return Relationship(rtype, rid, rel, stype, sid, srel)
    from datetime import UTC, datetime

    expiration = datetime.fromtimestamp(meta.expires_at, UTC) if meta.expires_at is not None else None
    return Relationship(rtype, rid, rel, stype, sid, srel, meta.caveat, expiration)


def overlay(base: RelationshipIndex, extra: Iterable[Relationship]) -> RelationshipIndex:
    """A copy of `base` with `extra` relationships added (contextual relationships).

    Copies only the buckets that `extra` touches, so the cost is proportional to `extra`.
    """
    view = RelationshipIndex(base.revision)
    view.objects = dict(base.objects)
    view.usersets = dict(base.usersets)
    view.reverse = dict(base.reverse)
    view.count = base.count
    for rel in extra:
        rkey = (rel.resource_type, rel.resource_id, rel.relation)
        if rel.subject_relation:
            if rkey in view.usersets:
                view.usersets[rkey] = dict(view.usersets[rkey])
            ukey = (rel.subject_type, rel.subject_id, rel.subject_relation)
        else:
            if rkey in view.objects:
                view.objects[rkey] = dict(view.objects[rkey])
            ukey = (rel.subject_type, rel.subject_id, "")
        if ukey in view.reverse:
            view.reverse[ukey] = set(view.reverse[ukey])
        view.add(rel)
    return view
