"""Values the engine takes and returns: consistency choices, check results, expand trees."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef


class ConsistencyMode(enum.Enum):
    """How fresh the data a read sees must be (SpiceDB's four choices)."""

    MINIMIZE_LATENCY = "minimize_latency"  # whatever the local index holds now
    AT_LEAST_AS_FRESH = "at_least_as_fresh"  # at or after the token's revision
    AT_EXACT_SNAPSHOT = "at_exact_snapshot"  # exactly the token's revision
    FULLY_CONSISTENT = "fully_consistent"  # the store's head, caught up first


@dataclass(frozen=True, slots=True)
class Consistency:
    """A consistency choice; ``revision`` is decoded from the token for the two token modes."""

    mode: ConsistencyMode = ConsistencyMode.MINIMIZE_LATENCY
    revision: int | None = None

    @classmethod
    def minimize_latency(cls) -> Consistency:
        """Serve from the local index as it is."""
        return cls(ConsistencyMode.MINIMIZE_LATENCY)

    @classmethod
    def fully_consistent(cls) -> Consistency:
        """Catch up with the store's head first."""
        return cls(ConsistencyMode.FULLY_CONSISTENT)

    @classmethod
    def at_least_as_fresh(cls, revision: int) -> Consistency:
        """See `revision` or anything newer."""
        return cls(ConsistencyMode.AT_LEAST_AS_FRESH, revision)

    @classmethod
    def at_exact_snapshot(cls, revision: int) -> Consistency:
        """See exactly `revision`."""
        return cls(ConsistencyMode.AT_EXACT_SNAPSHOT, revision)


class Permissionship(enum.Enum):
    """The answer of a check."""

    DENIED = "denied"
    ALLOWED = "allowed"
    CONDITIONAL = "conditional"  # depends on caveat parameters the request did not give


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One check: does `subject` have `permission` on `resource`?"""

    resource: ObjectRef
    permission: str
    subject: SubjectRef
    context: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A check's answer, the revision it was computed at, and for CONDITIONAL the caveat
    parameters that were missing."""

    permissionship: Permissionship
    revision: int
    missing_parameters: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """True only for ALLOWED."""
        return self.permissionship is Permissionship.ALLOWED


class ExpandOp(enum.Enum):
    """The kind of an inner node of an expand tree."""

    UNION = "union"
    INTERSECTION = "intersection"
    EXCLUSION = "exclusion"


@dataclass(slots=True)
class ExpandNode:
    """A node of a userset tree, rooted at `object#relation`.

    An inner node has ``op`` and ``children`` (for EXCLUSION: base first, then the
    subtracted ones). A leaf has ``op`` None and ``subjects``: the direct subjects found
    (objects, subject sets, wildcards). With a shallow expand a subject set is a leaf
    subject; with a recursive expand it becomes a child tree.
    """

    object: ObjectRef
    relation: str
    op: ExpandOp | None = None
    children: list[ExpandNode] = field(default_factory=list)
    subjects: list[SubjectRef] = field(default_factory=list)
    # Caveat names per subject (same order as `subjects`), None where uncaveated.
    subject_caveats: list[str | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LookupSubjectResult:
    """A subject found by LookupSubjects. For a wildcard (`id == "*"`), ``excluded`` lists the
    subject ids the wildcard does not cover (exclusions), ``conditionally_excluded`` those of
    them excluded only depending on caveats (their own answer is conditional); ``conditional``
    marks answers that depend on caveats."""

    subject: SubjectRef
    excluded: tuple[str, ...] = ()
    conditional: bool = False
    missing_parameters: tuple[str, ...] = ()
    conditionally_excluded: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LookupResourceResult:
    """A resource id found by LookupResources; ``conditional`` marks caveat-dependent ones."""

    resource_id: str
    conditional: bool = False
    missing_parameters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A page of relationships and the revision read."""

    relationships: list[Relationship]
    revision: int
