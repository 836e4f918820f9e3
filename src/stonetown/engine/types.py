"""Values the engine takes and returns: consistency choices, check results, expand trees."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from itertools import repeat
from typing import Any, TypeVar

from stonetown.core.relationship import ObjectRef, Relationship, SubjectRef

T = TypeVar("T")


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


def granted_resources(ids: list[str]) -> list[LookupResourceResult]:
    """``LookupResourceResult(id)`` for each of `ids` (granted outright), equal to the
    constructor's, built a field at a time over all of them without the constructor's
    per-field ``object.__setattr__`` calls: a lookup hands out tens of thousands, and the
    frozen dataclass's constructor was half its cost (this is a quarter of that)."""
    return _built(LookupResourceResult, _RESOURCE_SLOTS, len(ids), ids, False, ())


def granted_subjects(subject_type: str, ids: list[str], relation: str) -> list[LookupSubjectResult]:
    """``LookupSubjectResult(SubjectRef(subject_type, id, relation))`` for each of `ids`
    (granted outright, nothing excluded), built as :func:`granted_resources` builds its."""
    count = len(ids)
    subjects = _built(SubjectRef, _SUBJECT_SLOTS, count, subject_type, ids, relation)
    return _built(LookupSubjectResult, _SUBJECT_RESULT_SLOTS, count, subjects, (), False, (), ())


def _built(cls: type[T], setters: tuple[Setter, ...], count: int, *columns: object) -> list[T]:
    """`count` new instances of the slotted `cls`, each slot set by its setter from its column:
    a list (a value per instance) or any other value (the same for all); in the C loops of
    map, not a Python loop per instance."""
    built = list(map(object.__new__, repeat(cls, count)))
    for setter, column in zip(setters, columns, strict=True):
        _drain(map(setter, built, column if isinstance(column, list) else repeat(column, count)))
    return built


_drain = deque(maxlen=0).extend  # runs an iterator to its end, keeping nothing
Setter = Callable[[object, object], None]


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Setter, ...]:
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
