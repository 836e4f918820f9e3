"""PermissionSystem: the one object the API layer talks to (INTERFACE DRAFT, being implemented).

It owns a datastore, the compiled schema and the in-memory index of the head revision, and
offers every operation of the service. All methods are coroutines; errors are the classes of
stonetown.core.errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef
from stonetown.engine.datastore import (
    Datastore,
    DeleteResult,
    Precondition,
    RelationshipFilter,
    RevisionChanges,
    StoredSchema,
    Update,
)
from stonetown.engine.types import (
    CheckRequest,
    CheckResult,
    Consistency,
    ExpandNode,
    LookupResourceResult,
    LookupSubjectResult,
    ReadResult,
)


class PermissionSystem:
    """Schema, relationships and permission queries over one datastore."""

    def __init__(self, store: Datastore, *, max_depth: int = 50) -> None:
        self.store = store
        self.max_depth = max_depth

    async def start(self) -> None:
        """Open the store, load the schema and build the index at the head revision."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Close the store."""
        raise NotImplementedError

    # ---- schema ----
    async def write_schema(self, text: str) -> int:
        """Parse, check and store a schema; refuse (FailedPrecondition) one that would orphan
        stored relationships. Returns the new revision."""
        raise NotImplementedError

    async def read_schema(self) -> StoredSchema:
        """The schema in force (NotFound if none)."""
        raise NotImplementedError

    # ---- relationships ----
    async def write_relationships(
        self, updates: Sequence[Update], preconditions: Sequence[Precondition] = ()
    ) -> int:
        """Validate every relationship against the schema and write atomically; new revision."""
        raise NotImplementedError

    async def delete_relationships(
        self,
        filter: RelationshipFilter,
        preconditions: Sequence[Precondition] = (),
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete by filter atomically."""
        raise NotImplementedError

    async def read_relationships(
        self,
        filter: RelationshipFilter,
        consistency: Consistency,
        *,
        after: tuple[str, ...] | None = None,
        limit: int | None = None,
    ) -> ReadResult:
        """A page of relationships matching `filter` at the chosen revision."""
        raise NotImplementedError

    def watch(self, after_revision: int, resource_types: Sequence[str] = ()) -> AsyncIterator[RevisionChanges]:
        """Every change after `after_revision`, as it commits, optionally only for some types."""
        raise NotImplementedError

    # ---- permissions ----
    async def check(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
    ) -> CheckResult:
        """Does `subject` have `permission` on `resource`?"""
        raise NotImplementedError

    async def check_bulk(
        self,
        requests: Sequence[CheckRequest],
        consistency: Consistency,
        contextual: Sequence[Relationship] = (),
    ) -> list[CheckResult | Exception]:
        """Many checks at one revision, sharing work; per-item errors are returned, not raised."""
        raise NotImplementedError

    async def expand(
        self, resource: ObjectRef, permission: str, consistency: Consistency, *, recursive: bool = False
    ) -> tuple[ExpandNode, int]:
        """The userset tree of `permission` on `resource`, and the revision used."""
        raise NotImplementedError

    def lookup_resources(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[LookupResourceResult, int]]:
        """Resource ids of `resource_type` on which `subject` has `permission`, sorted by id,
        starting after the cursor id `after`; each with the revision used."""
        raise NotImplementedError

    def lookup_subjects(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str,
        consistency: Consistency,
        context: dict[str, Any] | None = None,
        contextual: Sequence[Relationship] = (),
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[LookupSubjectResult, int]]:
        """Subjects of `subject_type` (with `subject_relation`, "" for plain objects) that have
        `permission` on `resource`, sorted by id (wildcard first); each with the revision used."""
        raise NotImplementedError
