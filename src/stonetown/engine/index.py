"""The in-memory relationship index the engine answers from.

It holds every live relationship of one revision, keyed both ways:
- forward, by (resource type, resource id, relation): plain subjects `(type, id)` (wildcards
  have id `*`) and subject sets `(type, id, relation)`, each mapped to its metadata (None
  for a relationship with neither caveat nor expiration, which is nearly all of them);
- reverse, by subject `(type, id, relation)`: the (resource type, resource id, relation)
  keys holding it, for LookupResources.

Memory: most forward buckets hold one subject without metadata (an app's one organization,
a run's one app). Those single-entry buckets are shared: one `{subject: None}` dict per
distinct subject, reused by every bucket with exactly that content. A bucket of one entry is
never changed in place (it is copied first, see :meth:`RelationshipIndex._store`), so no
table of the shared ones is kept: a write finds a subject's through its reverse entry.
Readers treat buckets as read-only, so the sharing is invisible to them. The index counts,
per subject, its relationships that carry metadata (:attr:`RelationshipIndex.with_meta`): a
check that finds a plain subject in a reverse entry knows it is stored without metadata when
its subject has none, without a probe of the forward map (at 10M relationships each probe
of it is several cache misses). A reverse entry
is a tuple while it holds few resource keys and a dict of them (values None) beyond that:
readers iterate it or test membership (a set costs twice a dict's memory up to ~100 keys).
During a load a subject set's entry is a list (appending to it is cheap), given its
lasting form at the load's end.
A load (:meth:`RelationshipIndex.add_all`, then :meth:`RelationshipIndex.loaded`) shares
strings and subject keys through tables of its own, dropped at its end, and gives the memory
it freed back; a store may give the plain relationships as numbers (:class:`CodedRows`, a
large SQLite file's child process), each string and subject built once.

The head index of a server is advanced from the store's change log; older snapshots are
built fresh from a store read. Evaluation never awaits, so a computation sees one revision.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stonetown.core.glibc import trim
from stonetown.core.relationship import ContextualizedCaveat, Relationship
from stonetown.engine.datastore import Change, ChangeOp, CodedRows, PlainFields, RelationshipFields

if TYPE_CHECKING:
    from stonetown.engine.closure import Closures

ResourceKey = tuple[str, str, str]
ObjectKey = tuple[str, str]
UsersetKey = tuple[str, str, str]

_intern = sys.intern


# reverse entries up to this many resource keys are tuples (a dict beyond): a subject set's,
# and a plain subject's (a dict of 9-10 keys takes 352 bytes, a tuple 112-120; Check's
# membership tests on a plain subject's entry took no longer at 10 in interleaved runs at 1M,
# 10-27 % longer at 12 and 16)
_SMALL = 8
_SMALL_PLAIN = 10
_ABSENT = object()


class _EveryKey:
    """The :attr:`RelationshipIndex.with_meta` of an index that does not count (an overlay of
    contextual relationships): every subject may have relationships with metadata."""

    __slots__ = ()

    def __contains__(self, key: object) -> bool:
        return True

    def __bool__(self) -> bool:
        return True


EVERY_KEY = _EveryKey()


@dataclass(frozen=True, slots=True)
class RelMeta:
    """Caveat and expiration of a relationship (absent for plain ones)."""

    caveat: ContextualizedCaveat | None
    expires_at: float | None  # POSIX seconds


# a forward bucket, of either map: subject key -> metadata
Bucket = dict[tuple[str, ...], RelMeta | None]


def meta_of(rel: Relationship) -> RelMeta | None:
    """The metadata to store for `rel`, or None when it has neither caveat nor expiration."""
    if rel.caveat is None and rel.expiration is None:
        return None
    expires = rel.expiration.timestamp() if rel.expiration is not None else None
    return RelMeta(rel.caveat, expires)


# Maps of at most this many entries are compacted when the server is idle (see compact).
COMPACT_AT_MOST = 200_000
# Bytes a map built for its entries takes at most per entry (an entry of 24 bytes for 1.5 to
# 3 slots of the hash table); beyond, removals left it oversized.
_BYTES_PER_ENTRY = 64


class _Strings(dict):  # type: ignore[type-arg]
    """A load's table of shared strings: `table[s]` is its one copy of `s` (added on a miss)."""

    __slots__ = ()

    def __missing__(self, text: str) -> str:
        self[text] = text
        return text


class _Numbered:
    """A load's numbered strings, (resource type, relation) pairs and subjects (their shared
    key and single-entry bucket), as :class:`CodedRows` number them; and the latest row's
    (pair, resource id) numbers and resource key."""

    __slots__ = ("strings", "pairs", "ukeys", "singles", "last")

    def __init__(self) -> None:
        self.strings: list[str] = []
        self.pairs: list[tuple[str, str]] = []
        self.ukeys: list[UsersetKey] = []
        self.singles: list[Bucket] = []
        self.last: tuple[int, int, ResourceKey | None] = (-1, -1, None)


class RelationshipIndex:
    """Forward and reverse maps of the live relationships at :attr:`revision`."""

    __slots__ = (
        "objects", "usersets", "reverse", "with_meta", "revision", "count", "closure", "_ids", "_subjects",
        "_last", "_coded",
    )

    def __init__(self, revision: int = 0) -> None:
        self.objects: dict[ResourceKey, dict[ObjectKey, RelMeta | None]] = {}
        self.usersets: dict[ResourceKey, dict[UsersetKey, RelMeta | None]] = {}
        self.reverse: dict[UsersetKey, tuple[ResourceKey, ...] | dict[ResourceKey, None]] = {}
        # subject (its reverse key) -> how many of its relationships have a caveat or an
        # expiration; a subject not in it has none (exact: never fewer than there are)
        self.with_meta: dict[UsersetKey, int] | _EveryKey = {}
        self.revision = revision
        self.count = 0
        # the closures of recursive sets, on the head index only (engine/closure.py)
        self.closure: Closures | None = None
        # while a load is under way (see add_all): string -> its one shared copy, and
        # subject (type, id, relation) -> its shared single-entry bucket
        self._ids: _Strings | None = None
        self._subjects: dict[UsersetKey, Bucket] | None = None
        self._last: ResourceKey | None = None  # the key of the load's latest row
        self._coded: _Numbered | None = None  # while a load of CodedRows is under way

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
        """Insert or replace one relationship given as its fields (no Relationship object)."""
        # Interning shares one string per distinct id however many relationships name it.
        rkey = (_intern(rtype), _intern(rid), _intern(relation))
        stype, sid, srel = _intern(stype), _intern(sid), _intern(srel) if srel else ""
        if srel:
            skey: tuple[str, ...] = (stype, sid, srel)
            ukey = skey
            forward: dict[ResourceKey, Bucket] = self.usersets  # type: ignore[assignment]
        else:
            skey, ukey = (stype, sid), (stype, sid, "")
            forward = self.objects  # type: ignore[assignment]
        stored = self._store(forward, rkey, skey, ukey, meta, None)  # type: ignore[arg-type]
        if stored is None:
            # held already, caveat and expiration alike (a TOUCH of what is there): nothing
            # changes, so nothing the closures keep goes stale
            return
        if stored:
            self._hold(ukey, rkey)
        if self.closure is not None:
            self._tell_closure(rkey, stype, sid, srel)

    def add_all(self, batch: Iterable[RelationshipFields | PlainFields] | CodedRows) -> None:
        """Insert relationships given as fields: a batch of :meth:`Datastore.iter_fields`, the
        load path of a fresh index (no closures yet; nothing reads or changes it until
        :meth:`loaded`). The rows of a batch all have six fields (plain relationships) or
        all eight.

        Strings are shared through the load's own table, subject keys and buckets through
        another, which :meth:`loaded` drops (the interpreter's table would keep an entry
        per id for good); consecutive rows of one resource key (the store's rowid order is
        mostly key order) share one key tuple. A subject set's reverse entry is a list until
        :meth:`loaded` (a tuple would be copied for every key added). A batch of
        :class:`CodedRows` builds the same index from numbers (:meth:`_add_coded`)."""
        if self.closure is not None:
            raise RuntimeError("a load is into an index without closures (they are built after it)")
        if isinstance(batch, CodedRows):
            self._add_coded(batch)
            return
        rows = batch if isinstance(batch, list) else list(batch)
        if not rows:
            return
        if self._ids is None:
            coded = self._coded
            if coded is None:
                self._ids, self._subjects = _Strings(), {}
            else:  # after a coded load: the same strings and subjects shared
                self._ids = _Strings(zip(coded.strings, coded.strings, strict=True))
                self._subjects = dict(zip(coded.ukeys, coded.singles, strict=True))
        strs, subjects, load = self._ids, self._subjects, self._load
        assert strs is not None and subjects is not None
        last = self._last
        if len(rows[0]) != 6:
            for rtype, rid, relation, stype, sid, srel, caveat, expires_at in rows:
                rkey = (strs[rtype], strs[rid], strs[relation])
                if rkey == last:
                    rkey = last
                else:
                    last = rkey
                meta = None if caveat is None and expires_at is None else RelMeta(caveat, expires_at)
                load(rkey, stype, sid, srel, meta)
            self._last = last
            return
        objects, usersets, hold = self.objects, self.usersets, self._hold
        added, raw, shared = 0, None, ""
        for rtype, rid, relation, stype, sid, srel in rows:
            if rid != raw:  # else the row's resource is the previous row's (no probe of strs)
                raw, shared = rid, strs[rid]
            rkey = (strs[rtype], shared, strs[relation])
            if rkey == last:
                rkey = last
            else:
                last = rkey
            # the common row inline: a new resource key for a subject seen before
            ukey = (stype, sid, srel)
            single = subjects.get(ukey)
            forward = usersets if srel else objects
            if single is None or rkey in forward:
                load(rkey, stype, sid, srel, None)
                continue
            forward[rkey] = single
            hold(ukey, rkey)  # the entry's stored key is the subject's shared tuple
            added += 1
        self.count += added
        self._last = last

    def _add_coded(self, batch: CodedRows) -> None:
        """:meth:`add_all` of plain relationships given as numbers: the strings, pairs and
        subjects a batch numbers first are built (a subject's shared key and single-entry
        bucket as :meth:`_load` builds them), then each row is a few list reads; consecutive
        rows of one resource key share its tuple, as in :meth:`add_all`."""
        if self._ids is not None:
            raise RuntimeError("numbered rows come before any other batch of a load")
        coded = self._coded
        if coded is None:
            coded = self._coded = _Numbered()
        strings, pairs, ukeys, singles = coded.strings, coded.pairs, coded.ukeys, coded.singles
        strings.extend(batch.strings)
        numbers = iter(batch.pairs)
        pairs.extend((strings[rtype], strings[rel]) for rtype, rel in zip(numbers, numbers, strict=False))
        objects, usersets, reverse = self.objects, self.usersets, self.reverse
        numbers = iter(batch.subjects)
        for stype, sid, srel in zip(numbers, numbers, numbers, strict=False):
            ukey = (strings[stype], strings[sid], strings[srel])
            ukeys.append(ukey)
            singles.append({(ukey if ukey[2] else ukey[:2]): None})
        last_pair, last_rid, rkey = coded.last
        added = 0
        numbers = iter(batch.rows)
        for pair, rid, subject in zip(numbers, numbers, numbers, strict=False):
            if rid != last_rid or pair != last_pair:
                last_pair, last_rid = pair, rid
                rtype, relation = pairs[pair]
                rkey = (rtype, strings[rid], relation)
            ukey = ukeys[subject]
            forward = usersets if ukey[2] else objects
            if rkey in forward:  # a second subject of the key, or a repeated row
                single = singles[subject]
                if self._store(forward, rkey, next(iter(single)), ukey, None, single):
                    if ukey[2] and ukey not in reverse:
                        reverse[ukey] = []  # a subject set's entry: a list while the load lasts
                    self._hold(ukey, rkey)
                continue
            forward[rkey] = singles[subject]
            # self._hold(ukey, rkey) inline (the common row); a subject set's entry is a list
            holders = reverse.get(ukey)
            if holders is None:
                reverse[ukey] = [rkey] if ukey[2] else (rkey,)
            elif type(holders) is tuple:
                if len(holders) < _SMALL_PLAIN:
                    reverse[ukey] = holders + (rkey,)
                else:
                    reverse[ukey] = dict.fromkeys((*holders, rkey))
            elif type(holders) is list:
                holders.append(rkey)
            else:
                holders[rkey] = None
            added += 1
        self.count += added
        coded.last = (last_pair, last_rid, rkey)

    def _load(self, rkey: ResourceKey, stype: str, sid: str, srel: str, meta: RelMeta | None) -> None:
        """One row of a load (:meth:`add_all`), any case; `rkey` is built of shared strings."""
        strs, subjects = self._ids, self._subjects
        assert strs is not None and subjects is not None
        ukey = (stype, sid, srel)
        single = subjects.get(ukey)
        if single is None:  # a subject's first row: its shared keys, bucket and reverse entry
            ukey = (strs[stype], strs[sid], strs[srel])
            single = subjects[ukey] = {(ukey if srel else ukey[:2]): None}
            if srel:
                self.reverse[ukey] = list(self.reverse.get(ukey, ()))
        (skey,) = single
        if self._store(self.usersets if srel else self.objects, rkey, skey, ukey, meta, single):
            self._hold(ukey, rkey)

    def loaded(self) -> None:
        """The end of a load through :meth:`add_all`: subject sets' reverse entries take their
        lasting form (lists while it lasted), the load's tables are dropped (the strings
        and keys stay shared where the index holds them), and the memory the load freed
        (those tables, the maps' outgrown hash tables, the rows read) is handed back to the
        system where the C library allows it: glibc keeps freed blocks of a grown heap
        otherwise (measured at 1M relationships: 16 B per relationship of resident memory)."""
        subjects: Iterable[UsersetKey] = self._subjects or (self._coded.ukeys if self._coded else ())
        reverse = self.reverse
        self._ids = self._subjects = self._last = self._coded = None
        for ukey in subjects:
            if ukey[2]:
                holders = reverse[ukey]
                if holders:
                    reverse[ukey] = tuple(holders) if len(holders) <= _SMALL else dict.fromkeys(holders)
                else:
                    del reverse[ukey]
        del subjects
        trim()

    def _store(
        self,
        forward: dict[ResourceKey, Bucket],
        rkey: ResourceKey,
        skey: tuple[str, ...],
        ukey: UsersetKey,
        meta: RelMeta | None,
        single: Bucket | None,
    ) -> bool | None:
        """Insert or replace one relationship whose keys are built, `skey` in the bucket of
        `rkey` in `forward` (`ukey`: the subject's reverse key, which the caller updates):
        True if it is new, False if only its caveat or expiration was replaced, None if it
        was held already as it is (nothing changed). A new bucket without metadata is the
        subject's shared one: `single`, or found through its reverse entry."""
        bucket = forward.get(rkey)
        if bucket is None:
            if meta is None:
                forward[rkey] = single if single is not None else self._single(forward, skey, ukey)
            else:
                forward[rkey] = {skey: meta}
                self._count_meta(ukey, 1)
        else:
            held = bucket.get(skey, _ABSENT)
            if held == meta:
                return None
            if len(bucket) == 1:  # maybe shared: never changed in place
                bucket = forward[rkey] = dict(bucket)
            bucket[skey] = meta
            had = held is not None and held is not _ABSENT
            if had != (meta is not None):
                self._count_meta(ukey, -1 if had else 1)
            if held is not _ABSENT:
                return False
        self.count += 1
        return True

    def _count_meta(self, ukey: UsersetKey, change: int) -> None:
        """`ukey` gained (1) or lost (-1) a relationship with a caveat or an expiration."""
        counts = self.with_meta
        if type(counts) is dict:
            left = counts.get(ukey, 0) + change
            if left:
                counts[ukey] = left
            else:
                del counts[ukey]

    def _hold(self, ukey: UsersetKey, rkey: ResourceKey) -> None:
        """Add `rkey` to the reverse entry of `ukey`, for a new relationship (a reverse entry
        holds `rkey` exactly when the forward bucket of `rkey` holds the subject, so there
        is no membership test)."""
        reverse = self.reverse
        holders = reverse.get(ukey)
        if holders is None:
            reverse[ukey] = (rkey,)
        elif type(holders) is dict:
            holders[rkey] = None
        elif type(holders) is list:  # a subject set's, while a load is under way
            holders.append(rkey)
        elif len(holders) < (_SMALL if ukey[2] else _SMALL_PLAIN):
            reverse[ukey] = holders + (rkey,)
        else:
            reverse[ukey] = dict.fromkeys((*holders, rkey))

    def _single(self, forward: dict[ResourceKey, Bucket], skey: tuple[str, ...], ukey: UsersetKey) -> Bucket:
        """The single-entry bucket `{skey: None}` to share: the one some resource key among
        the first few holding the subject has (buckets of one entry are never changed in
        place), else a new one."""
        for count, rkey in enumerate(self.reverse.get(ukey, ()), 1):
            bucket = forward.get(rkey)
            if bucket is not None and len(bucket) == 1 and bucket.get(skey, _ABSENT) is None:
                return bucket
            if count == _SMALL:
                break
        return {skey: None}

    def remove(self, rel: Relationship) -> None:
        """Delete one relationship if present."""
        rkey = (rel.resource_type, rel.resource_id, rel.relation)
        if rel.subject_relation:
            ukey = (rel.subject_type, rel.subject_id, rel.subject_relation)
            bucket = self.usersets.get(rkey)
            if bucket is None or ukey not in bucket:
                return
            meta = bucket[ukey]
            if len(bucket) == 1:
                del self.usersets[rkey]  # the bucket may be shared: drop it, never empty it
            else:
                del bucket[ukey]
        else:
            okey = (rel.subject_type, rel.subject_id)
            obucket = self.objects.get(rkey)
            if obucket is None or okey not in obucket:
                return
            meta = obucket[okey]
            if len(obucket) == 1:
                del self.objects[rkey]
            else:
                del obucket[okey]
            ukey = (rel.subject_type, rel.subject_id, "")
        if meta is not None:
            self._count_meta(ukey, -1)
        self.count -= 1
        holders = self.reverse.get(ukey)
        if type(holders) is tuple:
            rest = tuple(h for h in holders if h != rkey)
            if rest:
                self.reverse[ukey] = rest
            else:
                del self.reverse[ukey]
        elif holders is not None:
            holders.pop(rkey, None)
            if not holders:
                del self.reverse[ukey]
        if self.closure is not None:
            self._tell_closure(rkey, rel.subject_type, rel.subject_id, rel.subject_relation)

    def _tell_closure(self, rkey: ResourceKey, stype: str, sid: str, srel: str) -> None:
        """A relationship `rkey@stype:sid#srel` was written or deleted: the closures' graphs
        follow an edge between two objects of one type, and what they keep goes stale."""
        closure = self.closure
        assert closure is not None
        if stype == rkey[0]:
            closure.changed(rkey[0], rkey[1], rkey[2], sid, srel)
        closure.touched(rkey[0], rkey[1], rkey[2], stype, sid, srel)

    def compact(self, at_most: int = COMPACT_AT_MOST) -> int:
        """Rebuild, in place, the index's top-level maps that removals left far larger than
        their entries need (a dict never shrinks as entries go: an import deleted again left
        its maps at their peak size, MBs of glibc's heap); maps of more than `at_most` entries
        are left as they are (two copies of them would hold the event loop too long). The
        maps stay the same objects (closures, runs and walks hold them). How many were."""
        rebuilt = 0
        for table in (self.objects, self.usersets, self.reverse):
            if len(table) <= at_most and sys.getsizeof(table) > _BYTES_PER_ENTRY * len(table) + 4096:
                kept = dict(table)  # sized for its entries
                table.clear()
                table.update(kept)  # into an empty dict: takes the copy's table as it is
                rebuilt += 1
        return rebuilt

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
    view.with_meta = EVERY_KEY  # not counted for one request: every forward probe is made
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
            reverse[ukey] = dict.fromkeys(base.reverse.get(ukey, ()))
        view.add(rel)
    return view
