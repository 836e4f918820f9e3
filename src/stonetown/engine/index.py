"""The in-memory relationship index the engine answers from.

It holds every live relationship of one revision, keyed both ways:
- forward, by (resource type, resource id, relation): plain subjects `(type, id)` (wildcards
  have id `*`) and subject sets `(type, id, relation)`, each mapped to its metadata (None
  for a relationship with neither caveat nor expiration, which is nearly all of them);
- reverse, by subject `(type, id, relation)`: the (resource type, resource id, relation)
  keys holding it, for LookupResources.

Memory: most forward buckets hold one subject without metadata (an app's one organization,
a run's one app). Those single-entry buckets are shared: one `{subject: None}` dict per
distinct subject, reused by every bucket with exactly that content and copied before it is
changed (see :meth:`RelationshipIndex._owned`). Subject key tuples are shared the same way.
Readers treat buckets as read-only, so the sharing is invisible to them. A reverse entry
is a tuple while it holds few resource keys (a small set costs 216 bytes) and a set beyond
that; readers only iterate it.

The head index of a server is advanced from the store's change log; older snapshots are
built fresh from a store read. Evaluation never awaits, so a computation sees one revision.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import Change, ChangeOp, RelationshipFields

ResourceKey = tuple[str, str, str]
ObjectKey = tuple[str, str]
UsersetKey = tuple[str, str, str]

_intern = sys.intern
# reverse entries up to this many resource keys are tuples (a set beyond)
_SMALL = 8
_ABSENT = object()


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

    __slots__ = ("objects", "usersets", "reverse", "revision", "count", "_shared", "_keys")

    def __init__(self, revision: int = 0) -> None:
        self.objects: dict[ResourceKey, dict[ObjectKey, RelMeta | None]] = {}
        self.usersets: dict[ResourceKey, dict[UsersetKey, RelMeta | None]] = {}
        self.reverse: dict[UsersetKey, tuple[ResourceKey, ...] | set[ResourceKey]] = {}
        self.revision = revision
        self.count = 0
        # subject key -> the shared single-entry bucket {subject key: None}
        self._shared: dict[tuple[str, ...], dict[tuple[str, ...], RelMeta | None]] = {}
        # subject key -> its one shared tuple
        self._keys: dict[tuple[str, ...], tuple[str, ...]] = {}

    @classmethod
    def build(cls, relationships: Iterable[Relationship], revision: int) -> RelationshipIndex:
        """An index holding exactly `relationships`, labelled `revision`."""
        index = cls(revision)
        for rel in relationships:
            index.add(rel)
        return index

    def add(self, rel: Relationship) -> None:
        """Insert or replace one relationship."""
        self.add_fields(
            rel.resource_type,
            rel.resource_id,
            rel.relation,
            rel.subject_type,
            rel.subject_id,
            rel.subject_relation,
            meta_of(rel),
        )

    def add_fields(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str, meta: RelMeta | None
    ) -> None:
        """Insert or replace one relationship given as its fields (the load path: no
        Relationship object per row)."""
        # Interning shares one string per distinct id however many relationships name it.
        rkey = (_intern(rtype), _intern(rid), _intern(relation))
        stype = _intern(stype)
        sid = _intern(sid)
        keys = self._keys
        if srel:
            skey: tuple[str, ...] = (stype, sid, _intern(srel))
            skey = ukey = keys.setdefault(skey, skey)
            forward: dict[ResourceKey, dict[tuple[str, ...], RelMeta | None]] = self.usersets  # type: ignore[assignment]
        else:
            skey = (stype, sid)
            skey = keys.setdefault(skey, skey)
            ukey = (stype, sid, "")
            ukey = keys.setdefault(ukey, ukey)
            forward = self.objects  # type: ignore[assignment]
        bucket = forward.get(rkey)
        if bucket is None:
            if meta is None:
                shared = self._shared.get(skey)
                if shared is None:
                    shared = self._shared[skey] = {skey: None}
                forward[rkey] = shared
            else:
                forward[rkey] = {skey: meta}
            self.count += 1
        elif meta is not None or bucket.get(skey, _ABSENT) is not None:  # else: unchanged
            if len(bucket) == 1:
                bucket = self._owned(forward, rkey, bucket)
            if skey not in bucket:
                self.count += 1
            bucket[skey] = meta
        reverse = self.reverse
        holders = reverse.get(ukey)
        if holders is None:
            reverse[ukey] = (rkey,)
        elif type(holders) is tuple:
            if rkey not in holders:
                reverse[ukey] = holders + (rkey,) if len(holders) < _SMALL else {*holders, rkey}
        else:
            holders.add(rkey)

    def add_all(self, batch: Iterable[RelationshipFields]) -> None:
        """Insert relationships given as fields (a batch of :meth:`Datastore.iter_fields`)."""
        add = self.add_fields
        for rtype, rid, relation, stype, sid, srel, caveat, expires_at in batch:
            meta = None if caveat is None and expires_at is None else RelMeta(caveat, expires_at)
            add(rtype, rid, relation, stype, sid, srel, meta)

    def _owned(
        self,
        forward: dict[ResourceKey, dict[tuple[str, ...], RelMeta | None]],
        rkey: ResourceKey,
        bucket: dict[tuple[str, ...], RelMeta | None],
    ) -> dict[tuple[str, ...], RelMeta | None]:
        """`bucket` (the bucket of `rkey` in `forward`), made safe to change: a shared
        single-entry bucket is replaced by a copy of its own."""
        for key in bucket:
            if self._shared.get(key) is bucket:
                bucket = forward[rkey] = dict(bucket)
        return bucket

    def remove(self, rel: Relationship) -> None:
        """Delete one relationship if present."""
        rkey = (rel.resource_type, rel.resource_id, rel.relation)
        if rel.subject_relation:
            ukey = (rel.subject_type, rel.subject_id, rel.subject_relation)
            bucket = self.usersets.get(rkey)
            if bucket is None or ukey not in bucket:
                return
            if len(bucket) == 1:
                del self.usersets[rkey]  # the bucket may be shared: drop it, never empty it
            else:
                del bucket[ukey]
        else:
            okey = (rel.subject_type, rel.subject_id)
            obucket = self.objects.get(rkey)
            if obucket is None or okey not in obucket:
                return
            if len(obucket) == 1:
                del self.objects[rkey]
            else:
                del obucket[okey]
            ukey = (rel.subject_type, rel.subject_id, "")
        self.count -= 1
        holders = self.reverse.get(ukey)
        if type(holders) is tuple:
            rest = tuple(h for h in holders if h != rkey)
            if rest:
                self.reverse[ukey] = rest
            else:
                del self.reverse[ukey]
                self._forget(ukey)
        elif holders is not None:
            holders.discard(rkey)
            if not holders:
                del self.reverse[ukey]
                self._forget(ukey)

    def _forget(self, ukey: UsersetKey) -> None:
        """Drop the shared key and bucket of a subject no relationship names any more, so a
        long run of writes for ever new subjects does not grow the index."""
        skey = ukey if ukey[2] else ukey[:2]
        self._keys.pop(skey, None)
        self._keys.pop(ukey, None)
        self._shared.pop(skey, None)

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


def _rebuild(
    rtype: str, rid: str, rel: str, stype: str, sid: str, srel: str, meta: RelMeta | None
) -> Relationship:
    if meta is None:
        return Relationship(rtype, rid, rel, stype, sid, srel)
    expiration = datetime.fromtimestamp(meta.expires_at, UTC) if meta.expires_at is not None else None
    return Relationship(rtype, rid, rel, stype, sid, srel, meta.caveat, expiration)


class _Layered(dict):  # type: ignore[type-arg]
    """A map whose own entries (the top layer) shadow a base map that is never copied.

    Lookups (`get`, `in`, `[]`) cost one extra dict probe; `items()` merges both layers and is
    only for tests and tools, not the hot path.
    """

    __slots__ = ("base",)

    def __init__(self, base: dict) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.base = base

    def get(self, key: object, default: object = None) -> object:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        return self.base.get(key, default)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.base

    def __missing__(self, key: object) -> object:
        return self.base[key]

    def items(self):  # type: ignore[override]
        return {**self.base, **dict(dict.items(self))}.items()


def overlay(base: RelationshipIndex, extra: Iterable[Relationship]) -> RelationshipIndex:
    """`base` with `extra` relationships added (contextual relationships), for one request.

    Only the buckets `extra` touches are copied into a top layer over `base`'s maps, so the
    cost is proportional to `extra`, not to the size of the index.
    """
    view = RelationshipIndex(base.revision)
    objects, usersets, reverse = _Layered(base.objects), _Layered(base.usersets), _Layered(base.reverse)
    view.objects, view.usersets, view.reverse = objects, usersets, reverse
    view.count = getattr(base, "count", 0)  # an old revision read through the store keeps no count
    for rel in extra:
        rkey = (rel.resource_type, rel.resource_id, rel.relation)
        if rel.subject_relation:
            if not dict.__contains__(usersets, rkey):
                usersets[rkey] = dict(base.usersets.get(rkey, {}))
            ukey = (rel.subject_type, rel.subject_id, rel.subject_relation)
        else:
            if not dict.__contains__(objects, rkey):
                objects[rkey] = dict(base.objects.get(rkey, {}))
            ukey = (rel.subject_type, rel.subject_id, "")
        if not dict.__contains__(reverse, ukey):
            reverse[ukey] = set(base.reverse.get(ukey, ()))
        view.add(rel)
    return view
