"""What client calls return: plain values with the revision token each answer was computed at."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from stonetown.core.relationship import Relationship, SubjectRef
from stonetown.engine.datastore import Change
from stonetown.engine.types import ExpandNode, Permissionship


class ConsistencyMode(enum.Enum):
    """How fresh the data of a read must be."""

    MINIMIZE_LATENCY = "minimize_latency"
    AT_LEAST_AS_FRESH = "at_least_as_fresh"
    AT_EXACT_SNAPSHOT = "at_exact_snapshot"
    FULLY_CONSISTENT = "fully_consistent"


@dataclass(frozen=True, slots=True)
class ReadConsistency:
    """A consistency choice as a client makes it: a mode and, for two modes, a token."""

    mode: ConsistencyMode
    token: str | None = None

    @classmethod
    def minimize_latency(cls) -> ReadConsistency:
        """Whatever the server holds now."""
        return cls(ConsistencyMode.MINIMIZE_LATENCY)

    @classmethod
    def fully_consistent(cls) -> ReadConsistency:
        """The store's head."""
        return cls(ConsistencyMode.FULLY_CONSISTENT)

    @classmethod
    def at_least_as_fresh(cls, token: str) -> ReadConsistency:
        """The token's revision or newer."""
        return cls(ConsistencyMode.AT_LEAST_AS_FRESH, token)

    @classmethod
    def at_exact_snapshot(cls, token: str) -> ReadConsistency:
        """Exactly the token's revision."""
        return cls(ConsistencyMode.AT_EXACT_SNAPSHOT, token)


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """A check's answer; ``missing_parameters`` lists caveat context a CONDITIONAL answer lacks."""

    permissionship: Permissionship
    token: str
    missing_parameters: tuple[str, ...] = ()
    # the resolution tree (ExplainNode.to_dict form) when the check asked to explain
    trace: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def allowed(self) -> bool:
        """True only for ALLOWED."""
        return self.permissionship is Permissionship.ALLOWED

    @property
    def conditional(self) -> bool:
        """True when the answer depends on caveat context the request did not give."""
        return self.permissionship is Permissionship.CONDITIONAL


@dataclass(frozen=True, slots=True)
class ExpandOutcome:
    """An expand tree and the token it was computed at."""

    tree: ExpandNode
    token: str


@dataclass(frozen=True, slots=True)
class FoundResource:
    """A resource LookupResources found, with the cursor to resume after it."""

    resource_id: str
    conditional: bool
    missing_parameters: tuple[str, ...]
    cursor: str
    token: str


@dataclass(frozen=True, slots=True)
class FoundSubject:
    """A subject LookupSubjects found; ``excluded`` are ids a wildcard does not cover."""

    subject: SubjectRef
    conditional: bool
    missing_parameters: tuple[str, ...]
    excluded: tuple[str, ...]
    cursor: str
    token: str


@dataclass(frozen=True, slots=True)
class ReadPage:
    """A page of relationships, the cursor after its last one ("" when empty) and the token."""

    relationships: list[Relationship]
    cursor: str
    token: str


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    """What a delete-by-filter did."""

    token: str
    deleted: int
    partial: bool


@dataclass(frozen=True, slots=True)
class SchemaOutcome:
    """The schema in force and the token of the revision that wrote it."""

    text: str
    token: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """The changes of one revision."""

    changes: tuple[Change, ...]
    token: str
    schema_changed: bool
