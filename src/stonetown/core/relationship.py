"""Relationships and their text notation: `document:readme#viewer@user:ana`.

A relationship says that a subject (an object, `user:ana`; a subject set, `team:data#member`;
or a wildcard, `user:*`) holds a relation on a resource object. It may carry a caveat
(`[name:{json}]`) and an expiration (`[expiration:2025-12-31T23:59:59Z]`).

The notation follows SpiceDB's: `#...` after a subject means "no relation" and is dropped.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stonetown.core.errors import InvalidArgument

_intern = sys.intern

ELLIPSIS = "..."
WILDCARD = "*"

TYPE_NAME_RE = re.compile(r"^([a-z][a-z0-9_]{1,61}[a-z0-9]/)*[a-z][a-z0-9_]{1,62}[a-z0-9]$")
RELATION_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}[a-z0-9]$")
OBJECT_ID_RE = re.compile(r"^[a-zA-Z0-9/_|\-=+]{1,1024}$")
MAX_OBJECT_ID_LENGTH = 1024

_TUPLE_RE = re.compile(
    r"""^(?P<rtype>[^:#@\[\]\s]+):(?P<rid>[^#@\[\]\s]+)\#(?P<rel>[^@\[\]\s]+)
        @(?P<stype>[^:#@\[\]\s]+):(?P<sid>[^#@\[\]\s]+)(?:\#(?P<srel>[^@\[\]\s]+))?
        (?P<suffix>(?:\[.*\])?)$""",
    re.VERBOSE | re.DOTALL,
)
_OBJECT_RE = re.compile(r"^(?P<type>[^:#@\s]+):(?P<id>[^#@\s]+)$")
_SUBJECT_RE = re.compile(r"^(?P<type>[^:#@\s]+):(?P<id>[^#@\s]+)(?:\#(?P<rel>[^@\s]+))?$")


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object: a type name and an id, `document:readme`."""

    type: str
    id: str

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> ObjectRef:
        """Parse `type:id`; raise InvalidArgument naming the text on failure."""
        match = _OBJECT_RE.match(text.strip())
        if match is None:
            raise InvalidArgument(f"object {text!r} is not of the form type:id")
        return cls(match["type"], match["id"])


@dataclass(frozen=True, slots=True)
class SubjectRef:
    """A subject: an object (`relation` empty), a subject set (`team:data#member`) or a
    wildcard (`user:*`)."""

    type: str
    id: str
    relation: str = ""

    def __str__(self) -> str:
        if self.relation:
            return f"{self.type}:{self.id}#{self.relation}"
        return f"{self.type}:{self.id}"

    @property
    def is_wildcard(self) -> bool:
        """True for `type:*`."""
        return self.id == WILDCARD

    @classmethod
    def parse(cls, text: str) -> SubjectRef:
        """Parse `type:id`, `type:id#relation` or `type:*` (`#...` means no relation)."""
        match = _SUBJECT_RE.match(text.strip())
        if match is None:
            raise InvalidArgument(f"subject {text!r} is not of the form type:id or type:id#relation")
        relation = match["rel"] or ""
        if relation == ELLIPSIS:
            relation = ""
        return cls(match["type"], match["id"], relation)


@dataclass(frozen=True, slots=True)
class ContextualizedCaveat:
    """A caveat attached to a relationship: its name and the context stored with it."""

    name: str
    context: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def __hash__(self) -> int:
        return hash((self.name, json.dumps(self.context, sort_keys=True, default=str)))

    def __str__(self) -> str:
        if self.context:
            # default=str: an error message naming a relationship whose context is not JSON
            # (refused as such by the stores) must still format
            text = json.dumps(self.context, separators=(",", ":"), sort_keys=True, default=str)
            return f"[{self.name}:{text}]"
        return f"[{self.name}]"


@dataclass(frozen=True, slots=True)
class Relationship:
    """One relationship. Identity (see :attr:`key`) ignores caveat and expiration, as in
    SpiceDB: touching a relationship replaces its caveat and expiration."""

    resource_type: str
    resource_id: str
    relation: str
    subject_type: str
    subject_id: str
    subject_relation: str = ""
    caveat: ContextualizedCaveat | None = None
    expiration: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        """The identity of the relationship: resource, relation and subject."""
        return (
            self.resource_type,
            self.resource_id,
            self.relation,
            self.subject_type,
            self.subject_id,
            self.subject_relation,
        )

    @property
    def resource(self) -> ObjectRef:
        """The resource object."""
        return ObjectRef(self.resource_type, self.resource_id)

    @property
    def subject(self) -> SubjectRef:
        """The subject (object, subject set or wildcard)."""
        return SubjectRef(self.subject_type, self.subject_id, self.subject_relation)

    def __str__(self) -> str:
        text = f"{self.resource_type}:{self.resource_id}#{self.relation}@{self.subject}"
        if self.caveat is not None:
            text += str(self.caveat)
        if self.expiration is not None:
            text += f"[expiration:{format_timestamp(self.expiration)}]"
        return text

    @classmethod
    def shared(
        cls,
        resource_type: str,
        resource_id: str,
        relation: str,
        subject_type: str,
        subject_id: str,
        subject_relation: str = "",
        caveat: ContextualizedCaveat | None = None,
        expiration: datetime | None = None,
    ) -> Relationship:
        """A relationship whose six strings are the process's shared copies (``sys.intern``).

        A protobuf message or a SQLite row gives every field of every relationship a string of
        its own: a 5,000-row import or change-log read is 30,000 small strings, of which a
        handful differ (a few type and relation names, one resource id). Shared, they are
        the index's own copies (it interns every name and id), and a burst of bulk
        relationships allocates a third as many objects: fewer of Python's 1 MiB arenas in
        use at once, so fewer left pinned by long-lived objects once the burst is freed."""
        return cls(
            _intern(resource_type),
            _intern(resource_id),
            _intern(relation),
            _intern(subject_type),
            _intern(subject_id),
            _intern(subject_relation),
            caveat,
            expiration,
        )

    @classmethod
    def parse(cls, text: str) -> Relationship:
        """Parse tuple notation, with optional `[caveat:{json}]` and `[expiration:...]` suffixes.

        Raises InvalidArgument with a message naming the offending part.
        """
        stripped = text.strip()
        match = _TUPLE_RE.match(stripped)
        if match is None:
            raise InvalidArgument(
                f"relationship {text!r} is not of the form "
                "resource_type:id#relation@subject_type:id[#relation]"
            )
        srel = match["srel"] or ""
        if srel == ELLIPSIS:
            srel = ""
        caveat, expiration = _parse_suffix(match["suffix"], text)
        return cls(
            match["rtype"], match["rid"], match["rel"], match["stype"], match["sid"], srel, caveat, expiration
        )

    def validate_syntax(self) -> None:
        """Check names and ids against SpiceDB's rules; raise InvalidArgument naming the field."""
        validate_type_name(self.resource_type, "resource type")
        validate_object_id(self.resource_id, "resource id", allow_wildcard=False)
        validate_relation_name(self.relation, "relation")
        validate_type_name(self.subject_type, "subject type")
        validate_object_id(self.subject_id, "subject id", allow_wildcard=True)
        if self.subject_relation:
            validate_relation_name(self.subject_relation, "subject relation")
            if self.subject_id == WILDCARD:
                raise InvalidArgument(f"wildcard subject {self.subject} cannot have a relation")


def _parse_suffix(suffix: str, text: str) -> tuple[ContextualizedCaveat | None, datetime | None]:
    caveat: ContextualizedCaveat | None = None
    expiration: datetime | None = None
    rest = suffix
    while rest:
        if not rest.startswith("["):
            raise InvalidArgument(f"relationship {text!r}: unexpected text {rest!r} after the subject")
        end = _matching_bracket(rest)
        if end < 0:
            raise InvalidArgument(f"relationship {text!r}: unclosed '[' in {rest!r}")
        body, rest = rest[1:end], rest[end + 1 :]
        name, _, payload = body.partition(":")
        if name == "expiration":
            if expiration is not None:
                raise InvalidArgument(f"relationship {text!r}: expiration given twice")
            expiration = parse_timestamp(payload, f"relationship {text!r}: expiration")
            continue
        if caveat is not None:
            raise InvalidArgument(f"relationship {text!r}: more than one caveat")
        context: dict[str, Any] = {}
        if payload:
            try:
                loaded = json.loads(payload)
            except ValueError as exc:
                raise InvalidArgument(
                    f"relationship {text!r}: caveat context is not valid JSON: {exc}"
                ) from None
            if not isinstance(loaded, dict):
                raise InvalidArgument(f"relationship {text!r}: caveat context must be a JSON object")
            context = loaded
        caveat = ContextualizedCaveat(name, context)
    return caveat, expiration


def _matching_bracket(text: str) -> int:
    depth = 0
    in_string = False
    escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
    return -1


def parse_timestamp(text: str, what: str) -> datetime:
    """Parse an RFC 3339 timestamp (`2025-12-31T23:59:59Z`) into an aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{what}: {text!r} is not an RFC 3339 timestamp") from None
    if value.tzinfo is None:
        raise InvalidArgument(f"{what}: {text!r} has no time zone")
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with a `Z` suffix."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def validate_type_name(name: str, what: str) -> None:
    """Raise InvalidArgument unless `name` is a valid (optionally prefixed) type name."""
    if not TYPE_NAME_RE.fullmatch(name):
        raise InvalidArgument(f"{what} {name!r} is not a valid type name")


def validate_relation_name(name: str, what: str) -> None:
    """Raise InvalidArgument unless `name` is a valid relation or permission name."""
    if not RELATION_NAME_RE.fullmatch(name):
        raise InvalidArgument(f"{what} {name!r} is not a valid relation name")


def validate_object_id(object_id: str, what: str, *, allow_wildcard: bool) -> None:
    """Raise InvalidArgument unless `object_id` is a valid id (or `*` where allowed)."""
    if object_id == WILDCARD and allow_wildcard:
        return
    if len(object_id) > MAX_OBJECT_ID_LENGTH:
        raise InvalidArgument(
            f"{what} is {len(object_id)} characters long; the limit is {MAX_OBJECT_ID_LENGTH}"
        )
    if not OBJECT_ID_RE.fullmatch(object_id):
        raise InvalidArgument(
            f"{what} {object_id!r} may only contain letters, digits and / _ | - = + (1 to 1024 characters)"
        )
