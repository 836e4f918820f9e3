"""The datastore interface the engine runs over, and the values that cross it.

Every implementation (in-memory, SQLite, later PostgreSQL) passes the one store test suite in
tests/stores/. A datastore is multi-version: each write transaction gets the next revision
(an int, strictly increasing, starting at 1 with the first write; 0 means "empty store"), and
a relationship row remembers the revision that created it and the one that deleted it, so
any revision inside the garbage-collection window reads exactly as it was.

Writes are atomic: on any error nothing is changed and no revision is used up.
"""

from __future__ import annotations

import abc
import enum
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stonetown.core.errors import InvalidArgument, StoreError
from stonetown.core.relationship import ContextualizedCaveat, Relationship

# (resource type, id, relation, subject type, id, relation or "", caveat, expiration as
# POSIX seconds): one relationship as an index load reads it
RelationshipFields = tuple[str, str, str, str, str, str, ContextualizedCaveat | None, float | None]
# the fields of a relationship with neither caveat nor expiration (a store may yield these)
PlainFields = tuple[str, str, str, str, str, str]
# relationships per batch of an index load: small batches leave little transient garbage
# (freed rows fragment the heap the long-lived index is built in)
LOAD_BATCH = 1000


@dataclass(frozen=True, slots=True)
class CodedRows:
    """A batch of plain relationships (no caveat, no expiration) given as numbers, for an
    index load (a store's :meth:`Datastore.iter_fields` may yield these): every distinct
    string, (resource type, relation) pair and subject is numbered once, in order of first
    appearance over the whole load, and each batch brings those it names first. So a load
    builds each string and subject key once, not once per row."""

    strings: list[str]  # the strings numbered next, in order
    pairs: array[int]  # (resource type, relation) numbers of strings, of the pairs numbered next
    subjects: array[int]  # (type, id, relation) numbers of strings, of the subjects numbered next
    rows: array[int]  # (pair, resource id's string, subject) numbers per relationship


class UpdateOp(enum.Enum):
    """What a write does with one relationship."""

    CREATE = "create"  # fails with AlreadyExists if the relationship is stored
    TOUCH = "touch"  # insert or replace (caveat / expiration may change)
    DELETE = "delete"  # remove if stored; deleting a missing relationship is a no-op


@dataclass(frozen=True, slots=True)
class Update:
    """One relationship update inside a write."""

    op: UpdateOp
    relationship: Relationship


@dataclass(frozen=True, slots=True)
class SubjectFilter:
    """Matches subjects: `type` always, `id` when given, `relation` when not None
    (``""`` matches subjects without a relation)."""

    type: str
    id: str | None = None
    relation: str | None = None


@dataclass(frozen=True, slots=True)
class RelationshipFilter:
    """Matches relationships; every field left as None matches anything.

    ``resource_id`` and ``resource_id_prefix`` are mutually exclusive. ``subject_is_set``:
    True matches subject sets only (subjects with a relation), False plain subjects only.
    """

    resource_type: str | None = None
    resource_id: str | None = None
    resource_id_prefix: str | None = None
    relation: str | None = None
    subject: SubjectFilter | None = None
    subject_is_set: bool | None = None

    def matches(self, rel: Relationship) -> bool:
        """True when `rel` passes the filter."""
        if self.resource_type is not None and rel.resource_type != self.resource_type:
            return False
        if self.resource_id is not None and rel.resource_id != self.resource_id:
            return False
        if self.resource_id_prefix is not None and not rel.resource_id.startswith(self.resource_id_prefix):
            return False
        if self.relation is not None and rel.relation != self.relation:
            return False
        subject = self.subject
        if subject is not None:
            if rel.subject_type != subject.type:
                return False
            if subject.id is not None and rel.subject_id != subject.id:
                return False
            if subject.relation is not None and rel.subject_relation != subject.relation:
                return False
        return self.subject_is_set is None or bool(rel.subject_relation) is self.subject_is_set


class PreconditionOp(enum.Enum):
    """Whether a precondition's filter must or must not match a live relationship."""

    MUST_MATCH = "must_match"
    MUST_NOT_MATCH = "must_not_match"


@dataclass(frozen=True, slots=True)
class Precondition:
    """Checked inside the write's transaction, against the state before the write."""

    op: PreconditionOp
    filter: RelationshipFilter


@dataclass(frozen=True, slots=True)
class StoredSchema:
    """Schema text as stored, with the revision that wrote it."""

    text: str
    revision: int


class ChangeOp(enum.Enum):
    """The kind of a change-log entry."""

    TOUCH = "touch"  # the relationship now exists (created or its caveat / expiration replaced)
    DELETE = "delete"  # the relationship no longer exists


@dataclass(frozen=True, slots=True)
class Change:
    """One relationship change inside a revision."""

    op: ChangeOp
    relationship: Relationship


@dataclass(frozen=True, slots=True)
class RevisionChanges:
    """Everything one revision changed: relationships, and whether it wrote a schema."""

    revision: int
    timestamp: datetime
    changes: tuple[Change, ...]
    schema_changed: bool = False


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """The outcome of a delete-by-filter: the new revision (or the head when nothing
    matched), how many relationships were deleted, and whether the limit stopped it early."""

    revision: int
    deleted: int
    limit_reached: bool = False


# Called inside a write transaction with the schema in force (None before any schema is
# written) and the updates; raise InvalidArgument to refuse the write.
WriteValidator = Callable[[StoredSchema | None, Sequence[Update]], None]

# Called inside an import transaction with the schema in force and the relationships to create;
# raise InvalidArgument (naming the relationship's position) to refuse the whole import.
ImportValidator = Callable[[StoredSchema | None, Sequence[Relationship]], None]


@dataclass(frozen=True, slots=True)
class BatchedWrite:
    """One write inside a group commit (:meth:`Datastore.write_batch`): as :meth:`Datastore.write`."""

    updates: Sequence[Update]
    preconditions: Sequence[Precondition] = ()


@dataclass(frozen=True, slots=True)
class BatchedDelete:
    """One delete-by-filter inside a group commit: as :meth:`Datastore.delete`."""

    filter: RelationshipFilter
    preconditions: Sequence[Precondition] = ()
    limit: int | None = None


BatchItem = BatchedWrite | BatchedDelete
# Per item: the new revision (a write), the DeleteResult (a delete) or the error it raised.
BatchResult = int | DeleteResult | Exception


# Called inside a schema-write transaction with one example live relationship for every
# distinct (resource_type, relation, subject_type, subject_relation, wildcard, caveat name,
# has-expiration) shape stored; raise FailedPrecondition to refuse the new schema.
SchemaChangeValidator = Callable[[Sequence[Relationship]], None]


def check_import_duplicates(relationships: Sequence[Relationship]) -> None:
    """Raise InvalidArgument naming the position of a relationship imported twice."""
    seen: dict[tuple[str, ...], int] = {}
    for position, rel in enumerate(relationships):
        first = seen.setdefault(rel.key, position)
        if first != position:
            raise InvalidArgument(
                f"relationships[{position}]: relationship {rel} appears more than once "
                f"(first at relationships[{first}])"
            )


class FilterReader(Protocol):
    """Reads the relationships matching a filter (at most `limit` of them) at a fixed revision."""

    def __call__(self, filter: RelationshipFilter, limit: int | None = None) -> list[Relationship]:
        """The matching relationships, in no particular order."""
        ...


class Datastore(abc.ABC):
    """A multi-version relationship store. All methods are coroutine-safe."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or open the store (migrations included); raise StoreError if it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource. Safe to call twice."""

    @abc.abstractmethod
    async def head_revision(self) -> int:
        """The newest committed revision (0 for an empty store)."""

    def thread_reader(self, revision: int) -> AbstractContextManager[FilterReader] | None:
        """For a worker thread (reads at old revisions): a context manager holding one read
        transaction at `revision` (FailedPrecondition like :meth:`read` when it is not
        readable) and giving a function that reads a filter at it (at most `limit` rows when
        given), or None when the store
        can only be read through its coroutines (this default)."""
        return None

    async def release_memory(self) -> int:
        """Give back what the store keeps in memory only for speed (SQLite's page caches),
        called when the server is idle; how many connections did. Reads and writes go on
        meanwhile and after. This default keeps nothing of the kind (the memory store's data
        is the store; PostgreSQL's caches are the database server's)."""
        return 0

    async def probe(self) -> str | None:
        """None while the store can serve; otherwise what is wrong, in one line (for the
        health status). This default reads the head revision; stores check more."""
        try:
            await self.head_revision()
        except StoreError as exc:
            return str(exc)
        return None

    @abc.abstractmethod
    async def min_revision(self) -> int:
        """The oldest revision that can still be read exactly (garbage collection moves it)."""

    @abc.abstractmethod
    async def write(
        self,
        updates: Sequence[Update],
        preconditions: Sequence[Precondition] = (),
        validate: WriteValidator | None = None,
    ) -> int:
        """Apply every update atomically and return the new revision.

        Preconditions are evaluated against the state before the write; a failing one raises
        FailedPrecondition naming it. CREATE of a stored relationship raises AlreadyExists.
        The same relationship twice in one write raises InvalidArgument. An empty write still
        returns a new revision.
        """

    async def write_batch(
        self, items: Sequence[BatchItem], validate: WriteValidator | None = None
    ) -> list[BatchResult]:
        """Apply each item in order as its own atomic write with its own revision (consecutive
        for the items that change something), and return one result per item.

        An item that fails (precondition, AlreadyExists, validation) changes nothing and its
        error is returned in its place; the others are unaffected and see the effects of the
        items before them. The batch is acknowledged as a whole: stores with a durable commit
        make it one commit (group commit). If that commit itself fails, the error is raised
        and no item is applied. This default runs the items one after the other.
        """
        results: list[BatchResult] = []
        for item in items:
            try:
                if isinstance(item, BatchedWrite):
                    results.append(await self.write(item.updates, item.preconditions, validate))
                else:
                    results.append(await self.delete(item.filter, item.preconditions, item.limit))
            except Exception as exc:  # noqa: BLE001 - reported for this item only
                results.append(exc)
        return results

    async def import_relationships(
        self, relationships: Sequence[Relationship], validate: ImportValidator | None = None
    ) -> int:
        """Create every relationship in one atomic write (one revision); return it.

        All or nothing: a relationship already stored raises AlreadyExists naming it, the same
        relationship twice raises InvalidArgument. Stores override this with a bulk path; this
        default is :meth:`write` with CREATE updates.
        """

        check_import_duplicates(relationships)

        def check(stored: StoredSchema | None, updates: Sequence[Update]) -> None:
            if validate is not None:
                validate(stored, relationships)

        return await self.write([Update(UpdateOp.CREATE, rel) for rel in relationships], (), check)

    @abc.abstractmethod
    async def delete(
        self,
        filter: RelationshipFilter,
        preconditions: Sequence[Precondition] = (),
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete every live relationship matching `filter` (at most `limit`) atomically."""

    @abc.abstractmethod
    async def read(
        self,
        filter: RelationshipFilter,
        revision: int,
        *,
        after: tuple[str, ...] | None = None,
        limit: int | None = None,
    ) -> list[Relationship]:
        """Relationships live at `revision` matching `filter`, ordered by :attr:`Relationship.key`,
        starting after the key `after` (a cursor), at most `limit` of them.

        Raises FailedPrecondition if `revision` is older than :meth:`min_revision` or newer
        than the head.
        """

    @abc.abstractmethod
    async def changes(
        self, after_revision: int, *, limit: int | None = None, urgent: bool = False
    ) -> list[RevisionChanges]:
        """The revisions after `after_revision` in order (at most `limit`), each with its changes.
        `urgent`: the caller holds up writers (the engine advancing its index), so a store that
        queues reads for a connection serves this one first.

        Raises FailedPrecondition if the change log no longer reaches back to `after_revision`.
        """

    @abc.abstractmethod
    async def write_schema(self, text: str, validate: SchemaChangeValidator | None = None) -> int:
        """Store schema text as the schema in force; return the new revision."""

    @abc.abstractmethod
    async def read_schema(self, revision: int | None = None, *, urgent: bool = False) -> StoredSchema | None:
        """The schema in force at `revision` (default: head), or None if none was written.
        `urgent` as for :meth:`changes`."""

    @abc.abstractmethod
    async def gc(self, older_than: datetime) -> int:
        """Remove rows deleted by revisions committed before `older_than`, and change-log
        entries as old; advance :meth:`min_revision`. Returns the rows removed."""

    async def iter_all(self, revision: int, batch: int = 50000) -> AsyncIterator[list[Relationship]]:
        """Every relationship live at `revision`, in batches of at most `batch` (for loading
        an index). The batches together form one consistent snapshot; the order of the
        relationships is unspecified (this default, built on :meth:`read`, yields key order).

        Raises FailedPrecondition like :meth:`read`. Stores override it with a faster path.
        """
        after: tuple[str, ...] | None = None
        while True:
            page = await self.read(RelationshipFilter(), revision, after=after, limit=batch)
            if page:
                yield page
            if len(page) < batch:
                return
            after = page[-1].key

    async def iter_fields(
        self, revision: int, batch: int = LOAD_BATCH
    ) -> AsyncIterator[list[RelationshipFields] | list[PlainFields] | CodedRows]:
        """:meth:`iter_all` for loading an index: each relationship as its fields (type, id,
        relation, subject type, id and relation, caveat, expiration as POSIX seconds), in
        small batches, so a load leaves little transient garbage behind. Stores override it
        to skip the Relationship objects; a batch may be of plain relationships only, given
        as their first six fields, or as :class:`CodedRows` (before any other batch)."""
        async for page in self.iter_all(revision, batch):
            yield [
                (
                    *r.key,
                    r.caveat,
                    None if r.expiration is None else r.expiration.timestamp(),
                )
                for r in page
            ]
