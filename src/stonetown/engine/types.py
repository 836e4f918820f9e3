"""Values the engine takes and returns: consistency choices, check results, expand trees."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
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


def granted_resources(ids: Iterable[str]) -> list[LookupResourceResult]:
    """``LookupResourceResult(id)`` for each of `ids` (granted outright), equal to the
    constructor's, built without its per-field ``object.__setattr__`` calls: a lookup hands
    out tens of thousands, and the frozen dataclass's constructor was half its cost."""
    set_id, set_conditional, set_missing = _RESOURCE_SLOTS
    new, cls = object.__new__, LookupResourceResult
    built: list[LookupResourceResult] = []
    add = built.append
    for rid in ids:
        result = new(cls)
        set_id(result, rid)
        set_conditional(result, False)
        set_missing(result, ())
        add(result)
    return built


def granted_subjects(subject_type: str, ids: Iterable[str], relation: str) -> list[LookupSubjectResult]:
    """``LookupSubjectResult(SubjectRef(subject_type, id, relation))`` for each of `ids`
    (granted outright, nothing excluded), built as :func:`granted_resources` builds its."""
    set_type, set_id, set_relation = _SUBJECT_SLOTS
    set_subject, set_excluded, set_conditional, set_missing, set_maybe = _SUBJECT_RESULT_SLOTS
    new, ref, cls = object.__new__, SubjectRef, LookupSubjectResult
    built: list[LookupSubjectResult] = []
    add = built.append
    for sid in ids:
        subject = new(ref)
        set_type(subject, subject_type)
        set_id(subject, sid)
        set_relation(subject, relation)
        result = new(cls)
        set_subject(result, subject)
        set_excluded(result, ())
        set_conditional(result, False)
        set_missing(result, ())
        set_maybe(result, ())
        add(result)
    return built


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Callable[[object, object], None], ...]:
    """The setters of `cls`'s slots `names`, which must be all its fields, in order (so that a
    field added to the class cannot be left unset by the builders above)."""
    declared = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    if declared != names:
        raise TypeError(f"{cls.__name__} has the fields {declared}, its builder sets {names}")
    return tuple(getattr(cls, name).__set__ for name in names)


_RESOURCE_SLOTS = _slot_setters(LookupResourceResult, ("resource_id", "conditional", "missing_parameters"))
_SUBJECT_SLOTS = _slot_setters(SubjectRef, ("type", "id", "relation"))
_SUBJECT_RESULT_SLOTS = _slot_setters(
    LookupSubjectResult,
    ("subject", "excluded", "conditional", "missing_parameters", "conditionally_excluded"),
)


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A page of relationships and the revision read."""

    relationships: list[Relationship]
    revision: int
