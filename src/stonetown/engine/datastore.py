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
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from stonetown.core.relationship import Relationship


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

    ``resource_id`` and ``resource_id_prefix`` are mutually exclusive.
    """

    resource_type: str | None = None
    resource_id: str | None = None
    resource_id_prefix: str | None = None
    relation: str | None = None
    subject: SubjectFilter | None = None

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
        return True


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

# Called inside a schema-write transaction with one example live relationship for every
# distinct (resource_type, relation, subject_type, subject_relation, wildcard, caveat name,
# has-expiration) shape stored; raise FailedPrecondition to refuse the new schema.
SchemaChangeValidator = Callable[[Sequence[Relationship]], None]


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
    async def changes(self, after_revision: int, *, limit: int | None = None) -> list[RevisionChanges]:
        """The revisions after `after_revision` in order (at most `limit`), each with its changes.

        Raises FailedPrecondition if the change log no longer reaches back to `after_revision`.
        """

    @abc.abstractmethod
    async def write_schema(self, text: str, validate: SchemaChangeValidator | None = None) -> int:
        """Store schema text as the schema in force; return the new revision."""

    @abc.abstractmethod
    async def read_schema(self, revision: int | None = None) -> StoredSchema | None:
        """The schema in force at `revision` (default: head), or None if none was written."""

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
