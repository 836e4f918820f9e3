"""A multi-version datastore held in Python dictionaries, for tests and `stonetown validate`.

Every relationship key maps to its versions (rows with the revisions that created and deleted
them), so any revision inside the garbage-collection window reads exactly. Reads by resource
use a sorted list of keys (bisect); reads by subject use a subject index. Every method runs
without awaiting in the middle, so each one is atomic with respect to other coroutines.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stonetown.core.errors import AlreadyExists
from stonetown.core.relationship import Relationship
from stonetown.engine.datastore import (
    Change,
    ChangeOp,
    Datastore,
    DeleteResult,
    Precondition,
    PreconditionOp,
    RelationshipFilter,
    RevisionChanges,
    SchemaChangeValidator,
    StoredSchema,
    Update,
    UpdateOp,
    WriteValidator,
)
from stonetown.stores.common import (
    Key,
    Shape,
    as_utc,
    changes_out_of_range,
    check_cursor,
    check_filter,
    check_no_duplicates,
    precondition_failed,
    revision_out_of_range,
    shape_of,
)


@dataclass(slots=True)
class _Row:
    """One version of a relationship: live from `created` until `deleted` (exclusive)."""

    rel: Relationship
    created: int
    deleted: int | None = None

    def visible_at(self, revision: int) -> bool:
        return self.created <= revision and (self.deleted is None or self.deleted > revision)


@dataclass(slots=True)
class _Revision:
    """A committed revision: when, whether it wrote a schema, and what it changed."""

    timestamp: datetime
    schema_changed: bool = False
    changes: list[Change] = field(default_factory=list)


class MemoryDatastore(Datastore):
    """An in-process, multi-version datastore. Nothing survives the process."""

    def __init__(self, *, gc_window_seconds: float = 24 * 3600.0) -> None:
        """Create an empty store; `gc_window_seconds` is kept for the server's GC loop."""
        self.gc_window_seconds = gc_window_seconds
        self._versions: dict[Key, list[_Row]] = {}
        self._live: dict[Key, _Row] = {}
        self._sorted_keys: list[Key] = []
        self._unsorted_keys: list[Key] = []
        self._by_subject: dict[tuple[str, str], set[Key]] = {}
        self._by_subject_type: dict[str, set[Key]] = {}
        self._revisions: dict[int, _Revision] = {}
        self._schemas: list[StoredSchema] = []
        self._head = 0
        self._min = 0

    async def open(self) -> None:
        """Nothing to open; the store is usable from construction."""

    async def close(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""

    async def head_revision(self) -> int:
        """The newest committed revision (0 for an empty store)."""
        return self._head

    async def min_revision(self) -> int:
        """The oldest revision that can still be read exactly."""
        return self._min

    # ----------------------------------------------------------------------------- writes

    async def write(
        self,
        updates: Sequence[Update],
        preconditions: Sequence[Precondition] = (),
        validate: WriteValidator | None = None,
    ) -> int:
        """Apply every update atomically and return the new revision."""
        check_no_duplicates(updates)
        if validate is not None:
            validate(self._schema_at(self._head), updates)
        self._check_preconditions(preconditions)
        for update in updates:
            if update.op is UpdateOp.CREATE and update.relationship.key in self._live:
                raise AlreadyExists(f"relationship {update.relationship} already exists")
        # Nothing below can fail, so the write is all-or-nothing.
        revision = self._new_revision()
        changes = self._revisions[revision].changes
        for update in updates:
            rel = update.relationship
            key = rel.key
            if update.op is UpdateOp.DELETE:
                old = self._live.pop(key, None)
                if old is not None:
                    old.deleted = revision
                    changes.append(Change(ChangeOp.DELETE, old.rel))
                continue
            old = self._live.get(key)
            if old is not None:
                old.deleted = revision
            self._insert(key, _Row(rel, revision))
            changes.append(Change(ChangeOp.TOUCH, rel))
        return revision

    async def delete(
        self,
        filter: RelationshipFilter,
        preconditions: Sequence[Precondition] = (),
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete every live relationship matching `filter` (at most `limit`) atomically."""
        check_filter(filter)
        self._check_preconditions(preconditions)
        probe = None if limit is None else limit + 1
        matched = list(self._scan(filter, self._head, None, probe))
        limit_reached = limit is not None and len(matched) > limit
        if limit_reached:
            matched = matched[:limit]
        if not matched:
            return DeleteResult(self._head, 0, limit_reached)
        revision = self._new_revision()
        changes = self._revisions[revision].changes
        for rel in matched:
            row = self._live.pop(rel.key)
            row.deleted = revision
            changes.append(Change(ChangeOp.DELETE, row.rel))
        return DeleteResult(revision, len(matched), limit_reached)

    async def write_schema(self, text: str, validate: SchemaChangeValidator | None = None) -> int:
        """Store schema text as the schema in force; return the new revision."""
        if validate is not None:
            examples: dict[Shape, Relationship] = {}
            for row in self._live.values():
                examples.setdefault(shape_of(row.rel), row.rel)
            validate(list(examples.values()))
        revision = self._new_revision()
        self._revisions[revision].schema_changed = True
        self._schemas.append(StoredSchema(text, revision))
        return revision

    # ------------------------------------------------------------------------------ reads

    async def read(
        self,
        filter: RelationshipFilter,
        revision: int,
        *,
        after: tuple[str, ...] | None = None,
        limit: int | None = None,
    ) -> list[Relationship]:
        """Relationships live at `revision` matching `filter`, in key order, after `after`."""
        check_filter(filter)
        check_cursor(after)
        self._check_revision(revision)
        return list(self._scan(filter, revision, after, limit))

    async def iter_all(self, revision: int, batch: int = 50000) -> AsyncIterator[list[Relationship]]:
        """Every relationship live at `revision`, in batches (a snapshot taken at the call)."""
        self._check_revision(revision)
        if revision == self._head:
            rels = [row.rel for row in self._live.values()]
        else:
            rels = [row.rel for rows in self._versions.values() for row in rows if row.visible_at(revision)]
        for start in range(0, len(rels), batch):
            yield rels[start : start + batch]

    async def changes(
        self, after_revision: int, *, limit: int | None = None, urgent: bool = False
    ) -> list[RevisionChanges]:
        """The revisions after `after_revision` in order (at most `limit`), with their changes
        (nothing waits for a connection here: `urgent` makes no difference)."""
        error = changes_out_of_range(after_revision, self._min)
        if error is not None:
            raise error
        result: list[RevisionChanges] = []
        for revision in range(after_revision + 1, self._head + 1):
            if limit is not None and len(result) >= limit:
                break
            info = self._revisions[revision]
            ordered = sorted(info.changes, key=lambda change: change.relationship.key)
            result.append(RevisionChanges(revision, info.timestamp, tuple(ordered), info.schema_changed))
        return result

    async def read_schema(self, revision: int | None = None, *, urgent: bool = False) -> StoredSchema | None:
        """The schema in force at `revision` (default: head), or None if none was written."""
        if revision is None:
            revision = self._head
        else:
            self._check_revision(revision)
        return self._schema_at(revision)

    # -------------------------------------------------------------------------------- gc

    async def gc(self, older_than: datetime) -> int:
        """Drop history older than the newest revision committed before `older_than`."""
        cutoff = as_utc(older_than)
        horizon = max((rev for rev, info in self._revisions.items() if info.timestamp < cutoff), default=0)
        horizon = max(horizon, self._min)
        removed = 0
        emptied: list[Key] = []
        for key, rows in self._versions.items():
            # Dead rows behind the horizon, and rows that expired before the cutoff (no query
            # sees an expired relationship at any revision).
            kept = [
                row
                for row in rows
                if (row.deleted is None or row.deleted > horizon)
                and (row.rel.expiration is None or row.rel.expiration >= cutoff)
            ]
            if len(kept) != len(rows):
                removed += len(rows) - len(kept)
                live = self._live.get(key)
                if live is not None and all(row is not live for row in kept):
                    del self._live[key]  # expired: gone at every revision, the head included
                if kept:
                    self._versions[key] = kept
                else:
                    emptied.append(key)
        for key in emptied:
            del self._versions[key]
            self._unindex_subject(key)
        if emptied:
            self._sorted_keys = sorted(self._versions)
            self._unsorted_keys = []
        for rev in [rev for rev in self._revisions if rev < horizon]:
            del self._revisions[rev]
        in_force = [schema for schema in self._schemas if schema.revision <= horizon]
        if len(in_force) > 1:
            self._schemas = self._schemas[len(in_force) - 1 :]
        self._min = horizon
        return removed

    # ---------------------------------------------------------------------------- helpers

    def _new_revision(self) -> int:
        self._head += 1
        self._revisions[self._head] = _Revision(datetime.now(UTC))
        return self._head

    def _check_revision(self, revision: int) -> None:
        error = revision_out_of_range(revision, self._min, self._head)
        if error is not None:
            raise error

    def _schema_at(self, revision: int) -> StoredSchema | None:
        found: StoredSchema | None = None
        for schema in self._schemas:
            if schema.revision > revision:
                break
            found = schema
        return found

    def _check_preconditions(self, preconditions: Sequence[Precondition]) -> None:
        for precondition in preconditions:
            check_filter(precondition.filter)
            matched = next(iter(self._scan(precondition.filter, self._head, None, 1)), None) is not None
            if matched != (precondition.op is PreconditionOp.MUST_MATCH):
                raise precondition_failed(precondition)

    def _insert(self, key: Key, row: _Row) -> None:
        rows = self._versions.get(key)
        if rows is None:
            self._versions[key] = [row]
            self._unsorted_keys.append(key)
            self._by_subject.setdefault((key[3], key[4]), set()).add(key)
            self._by_subject_type.setdefault(key[3], set()).add(key)
        else:
            rows.append(row)
        self._live[key] = row

    def _unindex_subject(self, key: Key) -> None:
        by_id = self._by_subject.get((key[3], key[4]))
        if by_id is not None:
            by_id.discard(key)
            if not by_id:
                del self._by_subject[(key[3], key[4])]
        by_type = self._by_subject_type.get(key[3])
        if by_type is not None:
            by_type.discard(key)
            if not by_type:
                del self._by_subject_type[key[3]]

    def _keys(self) -> list[Key]:
        if self._unsorted_keys:
            # Timsort merges the already sorted run with the new tail in about linear time.
            self._sorted_keys.extend(self._unsorted_keys)
            self._sorted_keys.sort()
            self._unsorted_keys = []
        return self._sorted_keys

    def _candidates(self, filter: RelationshipFilter, after: tuple[str, ...] | None) -> Iterable[Key]:
        """Keys that may match `filter`, in key order, starting after `after`."""
        if filter.resource_type is not None:
            keys = self._keys()
            rtype = filter.resource_type
            if filter.resource_id is not None:
                start: tuple[str, ...] = (rtype, filter.resource_id)
            elif filter.resource_id_prefix is not None:
                start = (rtype, filter.resource_id_prefix)
            else:
                start = (rtype,)
            index = bisect.bisect_left(keys, start)
            if after is not None:
                index = max(index, bisect.bisect_right(keys, after))
            return self._range(keys, index, filter)
        if filter.subject is not None:
            subject = filter.subject
            if subject.id is not None:
                pool: Iterable[Key] = self._by_subject.get((subject.type, subject.id), ())
            else:
                pool = self._by_subject_type.get(subject.type, ())
            if after is not None:
                return sorted(key for key in pool if key > after)
            return sorted(pool)
        keys = self._keys()
        index = 0 if after is None else bisect.bisect_right(keys, after)
        return (keys[i] for i in range(index, len(keys)))

    @staticmethod
    def _range(keys: list[Key], index: int, filter: RelationshipFilter) -> Iterator[Key]:
        rtype = filter.resource_type
        rid = filter.resource_id
        prefix = filter.resource_id_prefix
        for i in range(index, len(keys)):
            key = keys[i]
            if key[0] != rtype:
                return
            if rid is not None and key[1] != rid:
                return
            if prefix is not None and not key[1].startswith(prefix):
                return
            yield key

    def _scan(
        self, filter: RelationshipFilter, revision: int, after: tuple[str, ...] | None, limit: int | None
    ) -> Iterator[Relationship]:
        if limit is not None and limit <= 0:
            return
        at_head = revision == self._head
        count = 0
        for key in self._candidates(filter, after):
            if at_head:
                row = self._live.get(key)
            else:
                row = next((r for r in reversed(self._versions[key]) if r.visible_at(revision)), None)
            if row is None or not filter.matches(row.rel):
                continue
            yield row.rel
            count += 1
            if limit is not None and count >= limit:
                return
